"""Anomaly detection at scale: Isolation Forests and detection for 500 … 5,000 ads × 90 days, the
one-pass path the assets use beside the per-entity path they used before, on the same data.

- **before**: one scikit-learn Isolation Forest per ad and one :func:`detect_entity` call per ad,
  each fanned out over the cores (joblib processes, chunks of entities);
- **now**: isotree forests fitted in the asset's process and :func:`detect_level` over the level's
  long frame in one pass.

The detection results of both paths are asserted equal (same forests, same rules). Also printed:
peak memory of this process, and precision / recall of the anomalies injected on the last day into
random delivering ads (a spend spike ×3, a CTR collapse ÷6, broken tracking on the last two days;
an alarm on another metric of an injected ad is counted apart, not as false).

    .venv/bin/python -m benchmarks.bench_anomalies [--ads 500 1000 2000 5000] [--before-up-to 2000]
        [--injected-share 0.075] [--n-jobs 2]

Targets (issue 12): detection for 2,000 ads under 10 s on 2 cores; cost linear in ads.
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np
import pandas as pd
from sklearn.ensemble import IsolationForest

from ads_ml import settings
from ads_ml.demo import generate_account
from ads_ml.ml.anomalies import daily_metrics, detect_entity, detect_level, fit_entity_forest, history_window, model_matrix
from ads_ml.ml.fanout import fan_out

END = pd.Timestamp("2026-06-30")


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def sklearn_forest(history: pd.DataFrame) -> IsolationForest:
    """The forest of the per-entity path: scikit-learn's, as the assets fitted it before."""
    return IsolationForest(n_estimators=settings.ANOMALY_N_ESTIMATORS, contamination=settings.ANOMALY_CONTAMINATION,
                           random_state=0, n_jobs=1).fit(model_matrix(history))


def detect_one(payload: tuple) -> pd.DataFrame:
    entity, rows, forest = payload
    return detect_entity(entity, rows, END, forest=forest)


def account(ads: int, injected_share: float) -> tuple[pd.DataFrame, set]:
    campaigns = max(1, ads // 100)
    raw = generate_account(campaigns, 10, 10, days=90, end_date=END.date(), seed=21, churn=False, inject_anomalies=False).insights
    raw["date"] = pd.to_datetime(raw["date"])
    rng = np.random.default_rng(0)
    last = raw["date"] == END
    n = int(injected_share * raw.loc[last, "ad_id"].nunique())
    chosen = rng.choice(raw.loc[last, "ad_id"].unique(), size=n, replace=False)
    truth = set()
    for ad, metric in zip(chosen, np.array(["spend", "ctr", "leads"])[np.arange(n) % 3]):
        rows = raw["ad_id"] == ad
        if metric == "spend":
            raw.loc[rows & last, ["spend", "impressions", "clicks"]] *= 3
        elif metric == "ctr":
            raw.loc[rows & last, "clicks"] = (raw.loc[rows & last, "clicks"] / 6).round()
        else:
            raw.loc[rows & (raw["date"] >= END - pd.Timedelta(days=1)), ["leads", "conversions"]] = 0
        truth.add((ad, metric))
    raw["leads"] = np.minimum(raw["leads"], raw["clicks"])
    return daily_metrics(raw.rename(columns={"ad_id": "entity_id"})), truth


def score(found: pd.DataFrame, truth: set) -> str:
    alarms = found.loc[pd.to_datetime(found["anomaly_date"]) == END]
    pairs = set(zip(alarms["entity_id"], alarms["metric"]))
    hits = truth & pairs
    injected = {a for a, _m in truth}
    false = {(a, m) for a, m in pairs - truth if a not in injected}
    return f"recall {len(hits) / max(len(truth), 1):.2f}, precision {len(hits) / max(len(hits) + len(false), 1):.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--before-up-to", type=int, default=2000, help="time the per-entity path up to this many ads")
    parser.add_argument("--injected-share", type=float, default=0.075)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"# anomaly detection at scale — 90 days per ad, {args.n_jobs} cores; seconds")
    header = (f"{'ads':>6} {'forests before':>15} {'forests now':>12} {'×':>6} {'detect before':>14} {'detect now':>11} "
              f"{'×':>6} {'now ms/ad':>10} {'peak MB':>8}  quality")
    print(header)
    for n_ads in args.ads:
        metrics, truth = account(n_ads, args.injected_share)
        history, _ = history_window(metrics, END, 1)
        histories = {e: rows for e, rows in history.groupby("entity_id")}
        start = time.perf_counter()
        forests = {e: fit_entity_forest(rows) for e, rows in histories.items() if len(rows) >= settings.ANOMALY_MIN_SAMPLES}
        forests_now = time.perf_counter() - start
        start = time.perf_counter()
        found = detect_level(metrics, END, forests=forests)
        detect_now = time.perf_counter() - start
        forests_before = detect_before = float("nan")
        if n_ads <= args.before_up_to:
            start = time.perf_counter()
            fan_out(sklearn_forest, list(histories.items()), n_jobs=args.n_jobs, label="scikit-learn forests")
            forests_before = time.perf_counter() - start
            start = time.perf_counter()
            items = [(e, (e, rows.reset_index(drop=True), forests.get(e))) for e, rows in metrics.groupby("entity_id")]
            per = fan_out(detect_one, items, n_jobs=args.n_jobs, label="detections")
            detect_before = time.perf_counter() - start
            keys = ["entity_id", "anomaly_date", "metric"]
            before = pd.concat([f for f in per.results.values() if len(f)], ignore_index=True)
            pd.testing.assert_frame_equal(before.sort_values(keys, ignore_index=True), found.sort_values(keys, ignore_index=True),
                                          check_dtype=False, rtol=1e-9)
        ads = metrics["entity_id"].nunique()
        print(f"{ads:6d} {forests_before:15.1f} {forests_now:12.2f} {forests_before / forests_now:6.0f} {detect_before:14.1f} "
              f"{detect_now:11.2f} {detect_before / detect_now:6.1f} {1000 * (forests_now + detect_now) / ads:10.2f} "
              f"{_peak_mb():8.0f}  {score(found, truth)}" + ("  (equal results asserted)" if n_ads <= args.before_up_to else ""))


if __name__ == "__main__":
    main()
