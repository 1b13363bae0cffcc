"""Import benchmark: does the importer's memory stay flat as files grow, and how fast is it?

Imports generated canonical files of N and 4·N ad-days (N = 2,000 ads × 90 days by default), each
into a fresh database in a fresh process, and prints rows/s, the import's peak resident memory
above the process's baseline, and the growth in bytes per extra row between the two sizes.

    .venv/bin/python benchmarks/bench_import.py                      # SQLite in a temp dir
    .venv/bin/python benchmarks/bench_import.py --database-url postgresql+psycopg2://postgres@127.0.0.1/postgres

Run with ``PYTHONPATH=<another checkout>`` to measure that checkout's importer on the same files.
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing as mp
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


def _child(url: str, path: str, queue: mp.Queue) -> None:
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
    queue.put((result.rows, time.perf_counter() - start, before, _vm_hwm_mb()))


def timed_import(url: str, path: Path) -> tuple[int, float, float, float]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_child, args=(url, str(path), queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


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
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        figures = []
        for factor in (1, 4):
            path = folder / f"insights_{factor}.csv"
            rows = write_file(path, args.ads * factor, args.days)
            url, drop = _database(args.database_url, folder, f"x{factor}")
            try:
                n, seconds, base, peak = timed_import(url, path)
            finally:
                if drop:
                    drop()
            assert n == rows, (n, rows)
            figures.append((rows, seconds, peak - base))
            print(f"{rows:>9,} ad-days ({path.stat().st_size / 1e6:6.1f} MB file): {seconds:6.1f} s, "
                  f"{rows / seconds:8,.0f} rows/s, import peak memory above baseline {peak - base:7.1f} MB")
        (r1, _s1, m1), (r4, _s4, m4) = figures
        print(f"memory growth: {(m4 - m1) * 1024 * 1024 / (r4 - r1):.1f} bytes per extra row "
              f"({m1:.1f} MB at {r1:,} rows, {m4:.1f} MB at {r4:,} rows)")


if __name__ == "__main__":
    main()
