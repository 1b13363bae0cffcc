"""Prophet tuning: the old way against ours, on the same generated entities and the same cores.

For each entity (a 60-day daily series: trailing-7-day CPL for half, daily leads for the other
half), both pick (changepoint_prior_scale, seasonality_prior_scale) from the 3×3 grid by CV error.
Prints seconds per entity for each, the ratio, and the share of entities whose choice (ours) has an
old-way CV error within 1 % of the old way's own choice.

    .venv/bin/python -m benchmarks.bench_prophet_tuning [--entities 200] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time

import numpy as np
import pandas as pd

from ads_ml.demo import generate_account
from ads_ml.ml.fanout import fan_out
from ads_ml.ml.forecasting import metric_series
from ads_ml.ml.prophet_tuning import tune_series
from benchmarks.prophet_old_way import old_way_cv_errors, quiet_prophet


def series_for(n: int, days: int = 60, seed: int = 4) -> list[tuple[str, tuple]]:
    ads_per_adset = 5
    adsets = max(1, int(np.ceil(n / ads_per_adset / 4)))
    raw = generate_account(4, adsets, ads_per_adset, days=days, end_date=dt.date(2026, 6, 30), seed=seed, churn=False).insights
    raw["date"] = pd.to_datetime(raw["date"])
    out = []
    for i, (ad_id, rows) in enumerate(raw.groupby("ad_id", sort=True)):
        if len(out) >= n:
            break
        metric = "cpl" if i % 2 == 0 else "leads"
        series = metric_series(rows[["date", "spend", "leads"]], metric)
        out.append((f"{ad_id}:{metric}", (series.index, series.to_numpy())))
    return out


def ours(payload):  # noqa: ANN001, ANN201
    ds, y = payload
    return tune_series(ds, y)


def old(payload):  # noqa: ANN001, ANN201
    ds, y = payload
    return old_way_cv_errors(ds, y)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--entities", type=int, default=200)
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    quiet_prophet()
    items = series_for(args.entities)
    print(f"# Prophet tuning benchmark — {len(items)} entities × 60 days, 9 combinations, {args.n_jobs} cores")

    start = time.perf_counter()
    old_results = fan_out(old, items, n_jobs=args.n_jobs, label="entities (old way)", progress=print, progress_every_seconds=60)
    old_seconds = time.perf_counter() - start
    start = time.perf_counter()
    new_results = fan_out(ours, items, n_jobs=args.n_jobs, label="entities (ours)", progress=print, progress_every_seconds=60)
    new_seconds = time.perf_counter() - start

    agree, compared, same = 0, 0, 0
    for key, (errors, _metric) in old_results.results.items():
        if key not in new_results.results:
            continue
        mine = new_results.results[key]
        old_best = min(errors.values())
        chosen = errors[f"{mine.changepoint_prior_scale}|{mine.seasonality_prior_scale}"]
        compared += 1
        agree += chosen <= old_best * 1.01 + 1e-12
        same += chosen == old_best
    n = len(items)
    print(f"old way: {old_seconds / n:.3f} s per entity ({old_seconds:.0f} s in all, {len(old_results.errors)} failed)")
    print(f"ours:    {new_seconds / n:.4f} s per entity ({new_seconds:.1f} s in all, {len(new_results.errors)} failed)")
    print(f"speed-up: {old_seconds / new_seconds:.1f}× (target ≥ 10×, aim 30×)")
    print(f"agreement: {agree}/{compared} = {agree / max(compared, 1):.1%} of entities chose params whose old-way CV error "
          f"is within 1 % of the old way's best (target ≥ 95 %); identical choice {same / max(compared, 1):.1%}")


if __name__ == "__main__":
    main()
