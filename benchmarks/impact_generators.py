"""Impact verdicts on two independently written account generators, at every after-window.

For each generator (:mod:`benchmarks.truth_accounts`, the one the estimator was tuned on, and
:mod:`benchmarks.other_accounts`, written apart and different on purpose) and seed, the pure code
the ``impact_reports`` asset runs (:func:`benchmarks.impact_direct.reports`) reports every change at
the 7-, 14- and 28-day windows that have elapsed. Printed, per generator × level × change type ×
window, and for the verdict of record (:func:`ads_ml.ml.impact.verdict_of_record`):

- **false calls**: null changes (logged, nothing moved) called positive or negative;
- **right verdicts**: real changes given their true direction;
- the peers on the same changes, at our false-call rate (their significance level set so they call
  no more null changes than we do): the plain before/after **Welch t-test** on the entity's daily
  log metric, and a **regression on the controls** in the CausalImpact manner (the entity's log
  metric on its unchanged siblings' over the 28 days before, the after-window's residual mean
  against the pre-period's autocorrelated noise) — :func:`benchmarks.ground_truth.peer_tests`;
- the **ceiling** that faces the day-to-day wander: the expected share of real changes a test that
  knows the counterfactual and every hidden state up to the change finds (each generator's own);
- a **placebo**: pseudo-changes at random dates of entities with no change of their own, analysed
  by the same code: the share called significant and the Kolmogorov–Smirnov distance of their
  p-values from the uniform, per level and metric.

    .venv/bin/python -m benchmarks.impact_generators [--seeds 1 .. 20] [--generators first other]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from scipy import stats

from ads_ml import settings
from ads_ml.ml.impact import analyse_changes, verdict_of_record
from benchmarks import other_accounts, truth_accounts
from benchmarks.ground_truth import oracle_power_wander, peer_tests
from benchmarks.impact_direct import account_levels, reports

GENERATORS = {
    "first": (truth_accounts.generate, oracle_power_wander),
    "other": (other_accounts.generate, other_accounts.ceiling),
}
KEY = ["entity_type", "entity_id", "change_date", "change_type"]
PEERS = ("ttest", "counterfactual")
#: The metric each change type's placebo p-values are read from (what decides its verdict).
PLACEBO = {"adset": ("budget_change", ("leads", "cpl")), "ad": ("creative_change", ("cpl",))}


def scored_changes(account, generator: str, windows: tuple[int, ...]) -> pd.DataFrame:  # noqa: ANN001
    """One row per change × elapsed window: the truth, our verdict, the peers' p and direction, the ceiling."""
    _generate, ceiling = GENERATORS[generator]
    ours = reports(account, windows)
    ours["change_date"] = pd.to_datetime(ours["change_date"])
    truth = account.change_truth.assign(change_date=pd.to_datetime(account.change_truth["change_date"]))
    rows = truth.merge(ours, on=KEY, how="inner")
    out = []
    for _, row in rows.iterrows():
        peers = peer_tests(account, row, window=int(row["window_after"]))
        item = {k: row[k] for k in [*KEY, "window_after", "truth", "status", "overall_impact"]}
        for name in PEERS:
            item[f"{name}_p"], item[f"{name}_dir"] = peers[name]
        item["ceiling"] = ceiling(account, row, int(row["window_after"])) if row["truth"] != "neutral" else np.nan
        out.append(item)
    return pd.DataFrame(out)


def placebo(account, windows: tuple[int, ...], rng: np.random.Generator, per_level: int = 8) -> pd.DataFrame:  # noqa: ANN001
    """p-values of pseudo-changes at random dates of entities without a change of their own."""
    levels, changes = account_levels(account)
    end = pd.Timestamp(account.last_day)
    start = end - pd.Timedelta(days=settings.INSIGHTS_LOOKBACK_DAYS - 1)
    changed = set(changes["entity_id"]) | set(account.ads.loc[account.ads["ad_id"].isin(changes["entity_id"]), "adset_id"])
    out = []
    for level, (change_type, metrics) in PLACEBO.items():
        spans = levels[level].daily.groupby("entity_id")["date"].agg(["min", "max"])
        free = [e for e in spans.index if e not in changed]
        picked = rng.permutation(free)[:per_level]
        for window in windows:
            pseudo = []
            for entity in picked:
                first = max(spans.loc[entity, "min"], start) + pd.Timedelta(days=settings.IMPACT_PRE_PERIOD_DAYS // 2)
                last = min(spans.loc[entity, "max"], end) - pd.Timedelta(days=window)
                if last <= first:
                    continue
                day = first + pd.Timedelta(days=int(rng.integers(0, (last - first).days + 1)))
                pseudo.append({"id": None, "entity_type": level, "entity_id": entity, "change_date": day, "change_type": change_type})
            if not pseudo:
                continue
            for change, report in analyse_changes(levels, pd.DataFrame(pseudo), changes, settings.IMPACT_DEFAULT_WINDOW_DAYS, window):
                for metric in metrics:
                    p = ((report.metric_changes or {}).get(metric) or {}).get("p_value")
                    out.append({"level": level, "window_after": window, "metric": metric, "p": p,
                                "called": report.overall_impact in ("positive", "negative")})
    return pd.DataFrame(out)


def matched_alpha(null_p: pd.Series, rate: float) -> float:
    """The largest significance level at which a peer calls no more than ``rate`` of the null changes."""
    p = np.sort(null_p.fillna(1.0).to_numpy())
    allowed = int(np.floor(rate * len(p) + 1e-9))
    if allowed <= 0:
        return float(p[0]) * 0.999 if len(p) else 0.0
    return float(p[allowed]) * 0.999 if allowed < len(p) else 1.0


def table(frame: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    rows = []
    for keys, group in frame.groupby(by):
        null = group["truth"] == "neutral"
        real = ~null
        called = group["overall_impact"].isin(["positive", "negative"])
        rate = float((null & called).sum() / null.sum()) if null.any() else 0.0
        row = dict(zip(by, keys if isinstance(keys, tuple) else (keys,)))
        row.update({"nulls": int(null.sum()), "false_calls": int((null & called).sum()), "false_rate": rate,
                    "reals": int(real.sum()), "ours_right": int((real & (group["overall_impact"] == group["truth"])).sum())})
        for name in PEERS:
            alpha = matched_alpha(group.loc[null, f"{name}_p"], rate) if null.any() else 0.05
            right = real & (group[f"{name}_p"] < alpha) & (group[f"{name}_dir"] == group["truth"])
            row[f"{name}_right"] = int(right.sum())
            row[f"{name}_5pct_false"] = int((null & (group[f"{name}_p"] < 0.05)).sum())
        row["ceiling"] = float(group.loc[real, "ceiling"].sum())
        row["ours/ceiling"] = row["ours_right"] / row["ceiling"] if row["ceiling"] else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def ks_table(frame: pd.DataFrame) -> pd.DataFrame:
    rows = []
    for (generator, level, metric, window), group in frame.groupby(["generator", "level", "metric", "window_after"]):
        p = group["p"].dropna().to_numpy(dtype=float)
        rows.append({"generator": generator, "level": level, "metric": metric, "window": window, "pseudo": len(group),
                     "tested": len(p), "p<0.05": float(np.mean(p < 0.05)) if len(p) else np.nan,
                     "called": float(group["called"].mean()),
                     "ks": float(stats.kstest(p, "uniform").statistic) if len(p) >= 5 else np.nan,
                     "ks_p": float(stats.kstest(p, "uniform").pvalue) if len(p) >= 5 else np.nan})
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(1, 21)))
    parser.add_argument("--generators", nargs="+", choices=list(GENERATORS), default=list(GENERATORS))
    parser.add_argument("--windows", type=int, nargs="+", default=list(settings.IMPACT_REPORT_WINDOWS))
    args = parser.parse_args()
    windows = tuple(args.windows)
    changes, placebos = [], []
    started = time.perf_counter()
    for generator in args.generators:
        generate = GENERATORS[generator][0]
        for seed in args.seeds:
            account = generate(seed, "small")
            changes.append(scored_changes(account, generator, windows).assign(generator=generator, seed=seed))
            placebos.append(placebo(account, windows, np.random.default_rng(seed)).assign(generator=generator, seed=seed))
    frame = pd.concat(changes, ignore_index=True)
    pd.set_option("display.width", 250)
    print(f"{frame['seed'].nunique()} seeds × {len(args.generators)} generators, {len(frame)} change × window reports, "
          f"{time.perf_counter() - started:.0f} s\n")
    print("per generator × level × change type × window:")
    print(table(frame, ["generator", "entity_type", "change_type", "window_after"]).round(3).to_string(index=False))
    record = verdict_of_record(frame, ["generator", "seed", *KEY])
    print("\nverdict of record (the longest complete window that reached a verdict) per generator × level × change type:")
    print(table(record, ["generator", "entity_type", "change_type"]).round(3).to_string(index=False))
    print("\nverdict of record per generator:")
    print(table(record, ["generator"]).round(3).to_string(index=False))
    print("\nplacebo (pseudo-changes of unchanged entities): p-values against the uniform")
    print(ks_table(pd.concat(placebos, ignore_index=True)).round(3).to_string(index=False))


if __name__ == "__main__":
    main()
