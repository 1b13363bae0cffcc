"""Import benchmark: does the importer's memory stay flat as files grow, and how fast is it?

Imports generated canonical files of N and 4·N ad-days (N = 2,000 ads × 90 days by default), each
into a fresh database in a fresh process, then the same file again (a re-import that changes
nothing), and prints rows/s of both, the import's peak resident memory above the process's
baseline, and the growth in bytes per extra row between the two sizes. ``--baseline CHECKOUT``
runs another checkout's importer (e.g. a ``git worktree`` of an earlier commit) on the same files
in the same run and prints our speed as a ratio of its.

    .venv/bin/python benchmarks/bench_import.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/bench_import.py --database-url postgresql+psycopg2://postgres@127.0.0.1/postgres
    .venv/bin/python benchmarks/bench_import.py --baseline ../before  # and an earlier checkout, same files
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd


def _vm_hwm_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def write_file(path: Path, ads: int, days: int, seed: int = 1) -> int:
    """A canonical insights file of ``ads`` ads (10 per adset, 10 adsets per campaign) × ``days``."""
    rng = np.random.default_rng(seed)
    end = dt.date.today() - dt.timedelta(days=1)
    dates = pd.date_range(end=end, periods=days, freq="D").strftime("%Y-%m-%d")
    with path.open("w") as handle:
        handle.write("date,campaign_id,adset_id,ad_id,impressions,reach,clicks,spend,leads,conversions\n")
        ad = np.arange(ads)
        for day in dates:
            impressions = rng.integers(200, 5000, ads)
            clicks = (impressions * rng.uniform(0.005, 0.03, ads)).astype(int)
            frame = pd.DataFrame({
                "date": day, "campaign_id": 100000 + ad // 100, "adset_id": 200000 + ad // 10, "ad_id": 300000 + ad,
                "impressions": impressions, "reach": (impressions * 0.9).astype(int), "clicks": clicks,
                "spend": np.round(impressions * rng.uniform(0.005, 0.02, ads), 2),
                "leads": rng.poisson(1.5, ads), "conversions": 0,
            })
            frame.to_csv(handle, header=False, index=False)
    return ads * days


def _child(url: str, path: str) -> None:
    """In a fresh process: import ``path`` twice into ``url``; prints JSON figures."""
    from ads_ml.db.engine import get_engine
    from ads_ml.db.migrate import migrate
    from ads_ml.ingest.insights import import_insights

    migrate(url)
    engine = get_engine(url)
    with engine.connect():
        pass
    before = _vm_hwm_mb()
    start = time.perf_counter()
    result = import_insights(engine, path, "act_bench")
    first = time.perf_counter() - start
    peak = _vm_hwm_mb()
    start = time.perf_counter()
    again = import_insights(engine, path, "act_bench")
    print(json.dumps({"module": import_insights.__code__.co_filename, "rows": result.rows, "first": first, "again": time.perf_counter() - start,
                      "again_changed": again.rows_changed, "base": before, "peak": peak}))


def timed_import(url: str, path: Path, checkout: str | None = None) -> dict:
    """Run :func:`_child` in a fresh interpreter, on ``checkout``'s ``ads_ml`` when given."""
    env = dict(os.environ)
    if checkout:
        env["PYTHONPATH"] = str(Path(checkout).resolve())
    code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); import bench_import; bench_import._child(*sys.argv[1:])"
    # run from the file's folder: ``-c`` puts the working directory first on sys.path, and a
    # checkout's root there would shadow the one asked for
    done = subprocess.run([sys.executable, "-c", code, url, str(path)], env=env, capture_output=True, text=True,
                          check=False, cwd=path.parent)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    if checkout:
        assert Path(figures["module"]).resolve().is_relative_to(Path(checkout).resolve()), figures["module"]
    return figures


def _database(base_url: str | None, folder: Path, name: str):  # noqa: ANN202
    if base_url is None:
        return f"sqlite:///{folder / (name + '.db')}", None
    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    db = f"bench_import_{name}_{uuid.uuid4().hex[:6]}"
    admin = sa.create_engine(base_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{db}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    return make_url(base_url).set(database=db).render_as_string(hide_password=False), drop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None, help="PostgreSQL server URL (default: SQLite files)")
    parser.add_argument("--ads", type=int, default=2000)
    parser.add_argument("--days", type=int, default=90)
    parser.add_argument("--baseline", default=None, help="another checkout whose importer to time on the same files")
    args = parser.parse_args()
    runs = [("ours", None)] + ([("baseline", args.baseline)] if args.baseline else [])
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        memory = []
        for factor in (1, 4):
            path = folder / f"insights_{factor}.csv"
            rows = write_file(path, args.ads * factor, args.days)
            speeds = {}
            for name, checkout in runs:
                url, drop = _database(args.database_url, folder, f"{name}{factor}")
                try:
                    figures = timed_import(url, path, checkout)
                finally:
                    if drop:
                        drop()
                assert figures["rows"] == rows and figures["again_changed"] == 0, figures
                speeds[name] = (rows / figures["first"], rows / figures["again"])
                growth = figures["peak"] - figures["base"]
                if name == "ours":
                    memory.append((rows, growth))
                print(f"{name:>8} {rows:>9,} ad-days ({path.stat().st_size / 1e6:6.1f} MB file): first import "
                      f"{figures['first']:6.1f} s, {speeds[name][0]:8,.0f} rows/s; again (no change) {figures['again']:6.1f} s, "
                      f"{speeds[name][1]:8,.0f} rows/s; peak memory above baseline {growth:7.1f} MB", flush=True)
            if "baseline" in speeds:
                print(f"    ours / baseline at {rows:,}: first {speeds['ours'][0] / speeds['baseline'][0]:.2f}x, "
                      f"again {speeds['ours'][1] / speeds['baseline'][1]:.2f}x")
        (r1, m1), (r4, m4) = memory
        print(f"memory growth: {(m4 - m1) * 1024 * 1024 / (r4 - r1):.1f} bytes per extra row "
              f"({m1:.1f} MB at {r1:,} rows, {m4:.1f} MB at {r4:,} rows)")


if __name__ == "__main__":
    main()
