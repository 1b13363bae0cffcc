"""Foundation benchmark: import an account of 2,000 ads × 90 days, materialise its features.

Prints import rows/s, peak memory of the import (and of an import twice as large, to show memory
does not grow with file size), feature time, and the vectorised features against a plain
per-entity pandas loop on the same data (asserting equal results).

    .venv/bin/python -m benchmarks.bench_foundation                       # SQLite in a temp dir
    .venv/bin/python -m benchmarks.bench_foundation --database-url postgresql+psycopg2://postgres@127.0.0.1/bench

Targets: 180k ad-days imported in under 30 s; features at least 20× the loop.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import resource
import tempfile
import time
from pathlib import Path

import pandas as pd

END = dt.date(2026, 6, 30)


def _vm_hwm_mb() -> float:
    """Peak resident memory of this process (VmHWM: reset at exec, unlike ru_maxrss)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _import_in_child(url: str, path: str, account: str, queue: mp.Queue) -> None:
    from ads_ml.db.engine import get_engine
    from ads_ml.ingest.insights import import_insights

    engine = get_engine(url)
    before = _vm_hwm_mb()
    start = time.perf_counter()
    result = import_insights(engine, path, account)
    seconds = time.perf_counter() - start
    queue.put((result.rows, seconds, before, _vm_hwm_mb()))


def timed_import(url: str, path: Path, account: str) -> tuple[int, float, float, float]:
    """Import in a fresh process so its peak RSS is the import's own."""
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_import_in_child, args=(url, str(path), account, queue))
    proc.start()
    out = queue.get()
    proc.join()
    if proc.exitcode != 0:
        raise SystemExit(f"import process failed with exit code {proc.exitcode}")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="default: a SQLite file in a temp dir")
    parser.add_argument("--campaigns", type=int, default=20)
    parser.add_argument("--adsets-per-campaign", type=int, default=10)
    parser.add_argument("--ads-per-adset", type=int, default=10)
    parser.add_argument("--days", type=int, default=90)
    args = parser.parse_args()

    from ads_ml.db.engine import get_engine
    from ads_ml.db.migrate import migrate
    from ads_ml.db.queries import load_level_insights
    from ads_ml.demo import generate_account
    from ads_ml.ml.features import compute_entity_features
    from benchmarks.feature_loop import features_by_loop

    tmp = Path(tempfile.mkdtemp(prefix="ads_ml_bench_"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.db'}"
    os.environ["ADS_ML_DATABASE_URL"] = url
    os.environ["ADS_ML_MODELS_DIR"] = str(tmp / "models")
    os.environ["DAGSTER_HOME"] = str(tmp)
    migrate(url)
    engine = get_engine(url)

    n_ads = args.campaigns * args.adsets_per_campaign * args.ads_per_adset
    account = generate_account(args.campaigns, args.adsets_per_campaign, args.ads_per_adset, args.days,
                               end_date=END, seed=1, churn=False)
    csv = tmp / "insights.csv"
    account.insights.to_csv(csv, index=False)
    double = generate_account(args.campaigns * 2, args.adsets_per_campaign, args.ads_per_adset, args.days,
                              end_date=END, seed=2, churn=False)
    csv2 = tmp / "insights_x2.csv"
    double.insights.to_csv(csv2, index=False)
    backend = engine.dialect.name
    print(f"# ads_ml foundation benchmark — {backend}, {n_ads} ads × {args.days} days, {os.cpu_count()} cores")

    rows, seconds, base_mb, peak_mb = timed_import(url, csv, "act_bench")
    print(f"import: {rows} ad-day rows in {seconds:.1f} s = {rows / seconds:,.0f} rows/s "
          f"(target: 180,000 in < 30 s) — file {csv.stat().st_size / 1e6:.1f} MB")
    rows2, seconds2, base2, peak2 = timed_import(url, csv2, "act_bench_x2")
    print(f"import peak RSS: {peak_mb:.0f} MB for {rows} rows; {peak2:.0f} MB for {rows2} rows "
          f"(ratio {peak2 / peak_mb:.2f} for {rows2 / rows:.1f}× the rows; interpreter+libraries alone {base_mb:.0f} MB)")
    _rows, seconds_again, _b, _p = timed_import(url, csv, "act_bench")
    print(f"re-import of the same file (no changes written): {seconds_again:.1f} s")

    insights = load_level_insights(engine, "act_bench", "ad", END, 90)
    t = time.perf_counter()
    fast = compute_entity_features(insights.daily, insights.entities, END)
    fast_s = time.perf_counter() - t
    t = time.perf_counter()
    slow = features_by_loop(insights.daily, insights.entities, END)
    slow_s = time.perf_counter() - t
    pd.testing.assert_frame_equal(fast, slow.loc[fast.index], check_dtype=False, rtol=1e-9, atol=1e-9)
    print(f"ad features ({len(fast)} ads, {len(insights.daily)} rows): vectorised {fast_s:.3f} s, "
          f"per-entity loop {slow_s:.1f} s — {slow_s / fast_s:.0f}× faster, results equal (target ≥ 20×)")

    import dagster as dg

    from ads_ml.runner import materialize_account

    features_assets = [f"{level}_{kind}" for level in ("campaign", "adset", "ad") for kind in ("insights", "features")]
    with dg.DagsterInstance.ephemeral() as instance:
        t = time.perf_counter()
        materialize_account("act_bench", features_assets, instance=instance)
        run_s = time.perf_counter() - t
    peak_self = _vm_hwm_mb()
    print(f"Dagster run, insights + features of all three levels (+ 12 checks): {run_s:.1f} s; "
          f"benchmark process peak RSS {peak_self:.0f} MB")


if __name__ == "__main__":
    main()
