"""Many accounts through a live deployment, as production runs them: ``dagster-webserver`` +
``dagster-daemon`` on PostgreSQL storage (ML tables and Dagster's); a partition backfill of the
daily pipeline over N generated accounts, launched through GraphQL as the UI launches it, and the
daemon's queue running them (dagster.yaml: 4 runs at a time, one per account).

Passes on the same imported accounts:

- ``daily, <executor>``: the daily pipeline without tuning (insights → features → tier classifiers
  → classifications → forests → anomalies → ensemble weights → forecasts → recommendations, three
  levels), once per executor (``--executors``, default ``in_process multiprocess``: every step of a
  run in one process, or Dagster's multiprocess executor, a forked process per step);
- ``ad anomalies``: the 2-hourly refresh (ad insights → ad anomalies), first executor;
- ``daily, …, fan-out on dask``: the daily backfill again with ``ADS_ML_DASK_ADDRESS`` pointing at
  a ``dask.distributed`` cluster of several worker processes started here, so every step's
  per-entity fan-out (validation, forecasts) runs on the cluster (the scheduler's tasks counted).

Prints, per pass: wall time from the backfill's launch to its last run's end, accounts per hour,
median run time, peak memory of the whole deployment (webserver, daemon, code servers, run and
step processes, Dask workers: the sum of their proportional set sizes, sampled every second), and
what a 500-account deployment would need on paper from the fastest daily pass.

    .venv/bin/python -m benchmarks.multi_account [--accounts 20] [--ads 20 50 100] [--dask-workers 3]

``ADS_ML_BENCH_PG_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``) is the
server on which two throwaway databases are created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import math
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import dagster as dg
import psutil
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from ads_ml.db.engine import dispose_engine, get_engine
from ads_ml.db.migrate import migrate
from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import asset_names, ensure_partition
from ads_ml_tests.live import REPO_ROOT, TERMINAL, Deployment

SERVER = os.environ.get("ADS_ML_BENCH_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")
END = dt.date.today() - dt.timedelta(days=1)
AD_ANOMALIES = ["ad_insights", "ad_anomalies"]


def _admin(sql: str) -> None:
    engine = sa.create_engine(SERVER, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with engine.connect() as conn:
        conn.execute(sa.text(sql))
    engine.dispose()


class MemorySampler:
    """Peak of the summed resident memory of some processes and all their descendants."""

    def __init__(self, roots: list[int]) -> None:
        self.roots, self.peak_mb, self._stop = roots, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)

    def _loop(self) -> None:
        while not self._stop.wait(1.0):
            total = 0
            for pid in self.roots:
                try:
                    root = psutil.Process(pid)
                    processes = [root, *root.children(recursive=True)]
                except psutil.Error:
                    continue
                for process in processes:
                    try:  # proportional set size: pages shared by forked step processes count once
                        total += process.memory_full_info().pss
                    except psutil.Error:  # a step process ended between listing and reading
                        continue
            self.peak_mb = max(self.peak_mb, total / 1e6)

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _environment(home: Path, ml_url: str, dagster_url: str, executor: str, dask_address: str | None = None) -> dict[str, str]:
    url = make_url(dagster_url)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "ADS_ML_"))}
    env.update({
        "DAGSTER_HOME": str(home), "ADS_ML_DATABASE_URL": ml_url, "ADS_ML_MODELS_DIR": str(home / "models"),
        "DAGSTER_PG_HOST": url.host or "127.0.0.1", "DAGSTER_PG_PORT": str(url.port or 5432),
        "DAGSTER_PG_USERNAME": url.username or "postgres", "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database, "ADS_ML_EXECUTOR": executor,
    })
    if dask_address:
        env["ADS_ML_DASK_ADDRESS"] = dask_address
    return env


def _backfill(live: Deployment, accounts: list[str], assets: list[str], extra_pids: list[int]) -> dict:
    """Launch one backfill of ``assets`` over ``accounts``; wait for its runs; their figures."""
    before = {r["run_id"] for r in live.runs()}
    with MemorySampler([p.pid for p in live.processes] + extra_pids) as memory:
        launched = time.time()
        live.launch_backfill(accounts, assets)

        def finished() -> list[dict] | None:
            runs = [r for r in live.runs() if r["run_id"] not in before]
            done = {r["tags"].get("dagster/partition") for r in runs if r["status"] in TERMINAL}
            return runs if done >= set(accounts) and all(r["status"] in TERMINAL for r in runs) else None

        runs = live.wait_for(finished, f"backfill of {len(accounts)} accounts", timeout=6 * 3600)
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    if failed:
        raise SystemExit(f"{len(failed)} runs did not succeed: {failed[:3]} (logs in {live.root / 'logs'})")
    wall = max(r["end"] for r in runs) - launched
    return {"runs": len(runs), "wall": wall, "per_hour": 3600 * len(accounts) / wall,
            "median_run": statistics.median(r["end"] - r["start"] for r in runs), "peak_mb": memory.peak_mb}


#: On by default in a deployment; stopped here so that a pass measures its backfill alone (the
#: automation would also start the weekly Prophet tuning of every new account, for instance).
SENSORS = ["ad_account_partitions_sensor", "new_insights_sensor", "change_events_sensor", "dead_cli_runs_sensor",
           "ads_ml_automation"]


def _deployment(root: Path, env: dict[str, str]) -> Deployment:
    root.mkdir(parents=True, exist_ok=True)
    live = Deployment(root, env)
    live.wait_ready()
    for sensor in SENSORS:
        live.stop_sensor(sensor)
    live.wait_for(lambda: all(r["status"] in TERMINAL for r in live.runs()), "runs a sensor started", timeout=3600)
    return live


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--ads", type=int, nargs="+", default=[20, 50, 100],
                        help="ads per account, cycled over the accounts (default 20 50 100)")
    parser.add_argument("--executors", nargs="+", default=["in_process", "multiprocess"],
                        help="a daily pass with each; the anomaly and Dask passes use the first")
    parser.add_argument("--dask-workers", type=int, default=3, help="worker processes of the Dask cluster (0: no Dask pass)")
    args = parser.parse_args()
    from dask.distributed import Client, LocalCluster, get_task_stream

    suffix = uuid.uuid4().hex[:8]
    names = [f"ads_ml_bench_{suffix}", f"ads_ml_bench_dagster_{suffix}"]
    for name in names:
        _admin(f'CREATE DATABASE "{name}"')
    ml_url, dagster_url = (make_url(SERVER).set(database=n).render_as_string(hide_password=False) for n in names)
    try:
        with tempfile.TemporaryDirectory(prefix="ads_ml_accounts_") as tmp:
            root = Path(tmp)
            home = root / "home"
            home.mkdir()
            (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
            migrate(ml_url)
            engine = get_engine(ml_url)
            accounts, ads_total, rows, started = [], 0, 0, time.perf_counter()
            for i in range(args.accounts):
                ads = args.ads[i % len(args.ads)]
                account = generate_account(max(1, ads // 50), max(1, min(5, ads // 10)), 10, days=90, end_date=END, seed=100 + i)
                ads_total += account.insights["ad_id"].nunique()
                rows += len(account.insights)
                path = root / f"insights_{i}.csv"
                account.insights.to_csv(path, index=False)
                accounts.append(f"act_bench_{i:03d}")
                import_insights(engine, path, accounts[-1])
            print(f"{args.accounts} accounts, {ads_total} ads, {rows} ad-days imported in "
                  f"{time.perf_counter() - started:.0f} s; {os.cpu_count()} cores", flush=True)
            dispose_engine(ml_url)
            # the partitions sensor would add them within a minute; added here so the clock starts at the backfill
            os.environ.update(_environment(home, ml_url, dagster_url, args.executors[0]))
            with dg.DagsterInstance.get() as instance:
                for account_id in accounts:
                    ensure_partition(instance, account_id)
            daily = [a for a in asset_names() if not a.endswith("_prophet_params") and a != "impact_reports"]

            results = {}
            for executor in args.executors:
                live = _deployment(root / executor, _environment(home, ml_url, dagster_url, executor))
                try:
                    results[f"daily, {executor}"] = _backfill(live, accounts, daily, [])
                    print(f"daily, {executor}: {results[f'daily, {executor}']}", flush=True)
                    if executor == args.executors[0]:
                        results["ad anomalies"] = _backfill(live, accounts, AD_ANOMALIES, [])
                        print(f"ad anomalies: {results['ad anomalies']}", flush=True)
                finally:
                    live.stop()
            if args.dask_workers:
                with LocalCluster(n_workers=args.dask_workers, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster, Client(cluster) as client:
                    workers = list(client.run(os.getpid).values())  # the worker processes' pids
                    env = _environment(home, ml_url, dagster_url, args.executors[0], cluster.scheduler_address)
                    live = _deployment(root / "dask", env)
                    name = f"daily, {args.executors[0]}, fan-out on dask"
                    try:
                        with get_task_stream(client) as stream:
                            results[name] = _backfill(live, accounts, daily, workers)
                        results[name]["dask_tasks"] = len(stream.data)
                        print(f"{name}: {results[name]}", flush=True)
                    finally:
                        live.stop()
    finally:
        dispose_engine(ml_url)
        for name in names:
            _admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    _report(results, args.accounts, ads_total)


def _report(results: dict, accounts: int, ads: int) -> None:
    cores = os.cpu_count() or 1
    print(f"\n# {accounts} accounts ({ads} ads), live deployment on PostgreSQL, {cores} cores")
    print(f"{'pass':40}{'runs':>6}{'wall s':>9}{'accounts/h':>12}{'median run s':>14}{'peak MB':>9}{'dask tasks':>12}")
    for name, r in results.items():
        print(f"{name:40}{r['runs']:6d}{r['wall']:9.0f}{r['per_hour']:12.0f}{r['median_run']:14.1f}{r['peak_mb']:9.0f}"
              f"{r.get('dask_tasks', ''):>12}")
    daily = min((r for n, r in results.items() if n.startswith("daily")), key=lambda r: r["wall"])
    anomalies = results["ad anomalies"]
    core_s_daily = daily["wall"] * cores / accounts
    core_s_anomalies = anomalies["wall"] * cores / accounts
    print(f"\n# a 500-account deployment of accounts like these ({ads / accounts:.0f} ads on average), on paper")
    print(f"daily pipeline: {core_s_daily:.0f} core-s per account → {500 * core_s_daily / 3600:.1f} core-hours a day; "
          f"done within 4 h on {math.ceil(500 * core_s_daily / (4 * 3600))} cores")
    print(f"ad anomalies every 2 h: {core_s_anomalies:.0f} core-s per account → {500 * core_s_anomalies / 3600:.1f} "
          f"core-hours a round; within the 2 h on {math.ceil(500 * core_s_anomalies / 7200)} cores "
          "(beside the daily pipeline's)")
    print(f"memory (the fastest daily pass): {daily['peak_mb']:.0f} MB for the whole deployment running 4 runs at "
          f"once here ({daily['peak_mb'] / 4:.0f} MB per concurrent run, an upper bound: it includes webserver and daemon)")


if __name__ == "__main__":
    main()
