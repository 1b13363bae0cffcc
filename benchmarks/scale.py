"""The daily pipeline of one large account, step by step: 500 … 5,000 ads × 90 days through Dagster
(``materialize_account``, the CLI's path) in a fresh process per size, on an embedded deployment in a
temporary directory (or ``--database-url``); the account is generated and imported in a process of
its own first, so the peak memory reported is the pipeline run's alone.

Daily pipeline = every asset except the weekly Prophet tuning (``*_prophet_params``; forecasts then
use Prophet's defaults) and the impact reports (no change events here): insights → features → tier
classifiers → classifications → isolation forests → anomalies → ensemble weights → forecasts →
recommendations, at campaign, adset and ad level. Prints per size each step's seconds (summed over
the three levels; the run executes steps one at a time, so the steps add up to the run), the
total, the peak memory of the run's process, and the growth per 1,000 ads between sizes.

    .venv/bin/python -m benchmarks.scale [--ads 500 2000] [--database-url URL] [--steps-only anomalies]

Targets (issue 12): the daily pipeline for 2,000 ads under 2 minutes on 2 cores and under 2 GB.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
import os
import re
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from benchmarks.bench_foundation import _vm_hwm_mb

END = dt.date(2026, 6, 30)
ACCOUNT = "act_scale"
STEPS = ("insights", "features", "tier_classifier", "transfer_classifier", "classifications", "isolation_forest_models",
         "anomalies", "ensemble_weights", "forecasts", "recommendations")


def _environment(workdir: str, database_url: str | None) -> None:
    os.environ["DAGSTER_HOME"] = workdir
    os.environ["ADS_ML_MODELS_DIR"] = str(Path(workdir) / "models")
    os.environ["ADS_ML_DATABASE_URL"] = database_url or f"sqlite:///{Path(workdir) / 'ads_ml.db'}"


def _import(ads: int, workdir: str, database_url: str | None, queue: mp.Queue) -> None:
    """Generate the account and import it (its own process: the generator's memory is not the run's)."""
    _environment(workdir, database_url)
    from ads_ml.db.engine import get_engine
    from ads_ml.db.migrate import migrate
    from ads_ml.demo import generate_account
    from ads_ml.ingest.insights import import_insights

    migrate(os.environ["ADS_ML_DATABASE_URL"])
    account = generate_account(max(1, ads // 100), 10, 10, days=90, end_date=END, seed=21, churn=False)
    path = Path(workdir) / "insights.csv"
    account.insights.to_csv(path, index=False)
    started = time.perf_counter()
    import_insights(get_engine(os.environ["ADS_ML_DATABASE_URL"]), path, ACCOUNT)
    queue.put({"rows": len(account.insights), "import": time.perf_counter() - started, "import_peak_mb": _vm_hwm_mb()})


def _run(ads: int, workdir: str, database_url: str | None, queue: mp.Queue) -> None:
    """The daily pipeline of the imported account in a fresh process: its peak memory is the run's."""
    _environment(workdir, database_url)
    import dagster as dg

    from ads_ml.runner import asset_names, materialize_account

    select = [a for a in asset_names() if not a.endswith("_prophet_params") and a != "impact_reports"]
    instance = dg.DagsterInstance.get()
    started = time.perf_counter()
    result = materialize_account(ACCOUNT, select, reference_date=END, instance=instance)
    total = time.perf_counter() - started
    begun, steps = {}, defaultdict(float)
    for entry in instance.all_logs(result.run_id):
        event = entry.dagster_event
        if event is None or not event.step_key:
            continue
        if event.event_type_value == "STEP_START":
            begun[event.step_key] = entry.timestamp
        elif event.event_type_value in ("STEP_SUCCESS", "STEP_FAILURE") and event.step_key in begun:
            step = re.sub(r"^(campaign|adset|ad)_", "", event.step_key)
            steps[step] += entry.timestamp - begun[event.step_key]
    queue.put({"ads": ads, "total": total, "steps": dict(steps), "peak_mb": _vm_hwm_mb()})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, nargs="+", default=[500, 1000, 2000, 5000])
    parser.add_argument("--database-url", default=None, help="a PostgreSQL URL (its tables are replaced per size)")
    args = parser.parse_args()
    context = mp.get_context("spawn")
    rows = []
    for ads in args.ads:
        with tempfile.TemporaryDirectory(prefix="ads_ml_scale_") as workdir:
            row = {}
            for target in (_import, _run):
                queue = context.Queue()
                process = context.Process(target=target, args=(ads, workdir, args.database_url, queue))
                process.start()
                row.update(queue.get())
                process.join()
            rows.append(row)
        row = rows[-1]
        print(f"{row['ads']} ads ({row['rows']} ad-days): run {row['total']:.1f} s, peak {row['peak_mb']:.0f} MB, "
              f"import {row['import']:.1f} s (generator + import peak {row['import_peak_mb']:.0f} MB)", flush=True)
    print(f"\n# daily pipeline, seconds per step (three levels), {os.cpu_count()} cores")
    print(f"{'step':26}" + "".join(f"{r['ads']:>9}" for r in rows) + (f"{'per 1k ads':>12}" if len(rows) > 1 else ""))
    for step in (*STEPS, "total", "peak_mb"):
        values = [r["total"] if step == "total" else r["peak_mb"] if step == "peak_mb" else r["steps"].get(step, 0.0)
                  for r in rows]
        growth = ""
        if len(rows) > 1:
            growth = f"{1000 * (values[-1] - values[0]) / (rows[-1]['ads'] - rows[0]['ads']):12.2f}"
        label = "peak memory (MB)" if step == "peak_mb" else step
        print(f"{label:26}" + "".join(f"{v:9.1f}" for v in values) + growth)


if __name__ == "__main__":
    main()
