"""The Meta sync of a large account from the local fake Graph API, against the CSV import of the
same rows (the baseline, measured in the same run):

    .venv/bin/python -m benchmarks.bench_meta_sync [--ads 2000] [--days 90] [--pg-admin-url URL]

A generated account of ``--ads`` ads × ``--days`` days (every ad delivering every day) is served by
``ads_ml.testing.fake_graph_api`` in a process of its own (pages of 500, the asynchronous report
path as for any large account). Each measured step runs in a fresh process, so its peak memory
(max RSS) is its own: the first sync (entities, 90 days of insights, activity log), a re-sync with
nothing changed (the 28-day window), and ``import_insights`` of the same rows as a CSV file. Prints
wall time, requests, rows and peak memory, and the sync's ratios to the import.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import multiprocessing
import resource
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ACCOUNT = "act_7000001"


def _serve(ads: int, days: int, end: str, queue) -> None:  # noqa: ANN001 - runs in the fake's own process
    from benchmarks.bench_meta_sync import generate
    from ads_ml.testing.fake_graph_api import FakeAccount, FakeGraphApi

    demo = generate(ads, days, dt.date.fromisoformat(end))
    server = FakeGraphApi([FakeAccount.from_canonical(ACCOUNT, demo.insights, demo.changes, timezone_name="UTC")],
                          page_size=500)
    server.report_polls_to_finish = 2
    server.start()
    queue.put(server.url)
    while True:
        time.sleep(3600)


def generate(ads: int, days: int, end: dt.date):  # noqa: ANN201
    from ads_ml.demo import generate_account

    per_adset, per_campaign = 10, 10
    campaigns = max(1, ads // (per_adset * per_campaign))
    return generate_account(n_campaigns=campaigns, adsets_per_campaign=per_campaign, ads_per_adset=per_adset,
                            days=days, end_date=end, seed=11, churn=False, inject_anomalies=False)


def _step(args: argparse.Namespace) -> dict:
    """One measured step in this (fresh) process."""
    from ads_ml.db.engine import get_engine
    from ads_ml.db.migrate import migrate

    migrate(args.database_url)
    engine = get_engine(args.database_url)
    started = time.perf_counter()
    out: dict = {}
    if args.step in ("sync", "resync"):
        from ads_ml.ingest.meta import MetaClient
        from ads_ml.ingest.sync import discover_accounts, sync_account

        client = MetaClient("test-token", graph_url=args.graph_url)
        if args.step == "sync":
            discover_accounts(engine, client)
        result = sync_account(engine, client, ACCOUNT, full=True)
        out = {"requests": result.requests, "rows": result.insight_rows_read,
               "rows_changed": result.insights.rows_changed, "changed": result.changed}
    else:
        from ads_ml.ingest.insights import import_insights

        result = import_insights(engine, args.csv, ACCOUNT)
        out = {"requests": 0, "rows": result.rows, "rows_changed": result.rows_changed, "changed": bool(result.rows_changed)}
    out["seconds"] = time.perf_counter() - started
    out["peak_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _run_step(step: str, database_url: str, **extra: str) -> dict:
    command = [sys.executable, "-m", "benchmarks.bench_meta_sync", "--step", step, "--database-url", database_url]
    for key, value in extra.items():
        command += [f"--{key.replace('_', '-')}", value]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{step} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _databases(tmp: Path, pg_admin_url: str | None) -> tuple[list[str], callable]:
    if not pg_admin_url:
        return [f"sqlite:///{tmp / 'sync.db'}", f"sqlite:///{tmp / 'import.db'}"], lambda: None
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    names = [f"ads_ml_bench_sync_{uuid.uuid4().hex[:8]}", f"ads_ml_bench_import_{uuid.uuid4().hex[:8]}"]
    admin = sa.create_engine(pg_admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        for name in names:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))

    def drop() -> None:
        with admin.connect() as conn:
            for name in names:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    return [make_url(pg_admin_url).set(database=n).render_as_string(hide_password=False) for n in names], drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--pg-admin-url", default=None, help="PostgreSQL server URL: throwaway databases instead of SQLite")
    parser.add_argument("--step", choices=["sync", "resync", "import"], help=argparse.SUPPRESS)
    parser.add_argument("--database-url", help=argparse.SUPPRESS)
    parser.add_argument("--graph-url", help=argparse.SUPPRESS)
    parser.add_argument("--csv", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.step:
        print(json.dumps(_step(args)))
        return

    end = dt.datetime.now(dt.timezone.utc).date()  # through today: the sync reads 90 days ending today
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        demo = generate(args.ads, args.days, end)
        csv = tmp / "insights.csv"
        demo.insights.to_csv(csv, index=False)
        ads = demo.insights["ad_id"].nunique()
        context = multiprocessing.get_context("fork")
        queue = context.Queue()
        server = context.Process(target=_serve, args=(args.ads, args.days, end.isoformat(), queue), daemon=True)
        server.start()
        url = queue.get(timeout=600)
        urls, drop = _databases(tmp, args.pg_admin_url)
        try:
            sync = _run_step("sync", urls[0], graph_url=url)
            resync = _run_step("resync", urls[0], graph_url=url)
            baseline = _run_step("import", urls[1], csv=str(csv))
        finally:
            server.terminate()
            drop()
    backend = "PostgreSQL" if args.pg_admin_url else "SQLite"
    print(f"Meta sync of {ads:,} ads × {args.days} days ({len(demo.insights):,} ad-days) on {backend}, "
          f"from the local fake Graph API (pages of 500, asynchronous report):")
    print(f"{'step':<44} {'seconds':>8} {'requests':>9} {'rows':>9} {'changed':>9} {'peak MB':>8}")
    for name, r in (("first sync (entities, 90 days, activity log)", sync),
                    ("re-sync, nothing changed (28-day window)", resync),
                    ("baseline: ads-ml import of the same rows", baseline)):
        print(f"{name:<44} {r['seconds']:>8.1f} {r['requests']:>9} {r['rows']:>9,} {r['rows_changed']:>9,} "
              f"{r['peak_mb']:>8.0f}")
    print(f"first sync ÷ import: time {sync['seconds'] / baseline['seconds']:.2f}×, "
          f"peak memory {sync['peak_mb'] / baseline['peak_mb']:.2f}×; "
          f"re-sync ÷ import: time {resync['seconds'] / baseline['seconds']:.2f}×; "
          f"ad-days per second: sync {sync['rows'] / sync['seconds']:,.0f}, import {baseline['rows'] / baseline['seconds']:,.0f}")
    assert not resync["changed"], "a re-sync with nothing new changed something"


if __name__ == "__main__":
    main()
