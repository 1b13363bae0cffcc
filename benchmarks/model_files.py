"""Model file formats for one ad's Isolation Forest (60 days × 6 features, 100 trees): bytes on
disk and seconds to write and read back (read = ready to score), for scikit-learn's forest pickled
(joblib, the oldest format) and in skops (its safe format), isotree's forest pickled and in its own
binary export, and ours (the training rows and seed, refitted with isotree on load).

    pip install -e ".[bench]"   # skops, for the comparison
    python -m benchmarks.model_files [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
import zipfile

import joblib
import numpy as np
import pandas as pd
from isotree import IsolationForest as IsoForest
from sklearn.ensemble import IsolationForest as SkForest

from ads_ml.db import model_files
from ads_ml.ml.anomalies import fit_entity_forest


def _metrics(seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    days = pd.date_range("2026-08-01", periods=60)
    return pd.DataFrame({"date": days, "spend": rng.gamma(5, 10, 60), "model_cpl": rng.gamma(5, 3, 60),
                         "ctr": rng.uniform(0.5, 2, 60), "frequency": rng.uniform(1, 2, 60),
                         "leads": rng.poisson(4, 60), "cpm": rng.gamma(9, 2, 60)})


def _time(fn, repeat: int) -> float:  # noqa: ANN001
    start = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - start) / repeat


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=20)
    args = parser.parse_args(argv)
    import skops.io as sio

    forest = fit_entity_forest(_metrics(0))
    X = forest.training
    sk = SkForest(n_estimators=100, contamination=0.05, random_state=0, n_jobs=1).fit(X)
    iso = forest._fitted()

    def dump(obj) -> bytes:  # noqa: ANN001
        buffer = io.BytesIO()
        joblib.dump(obj, buffer)
        return buffer.getvalue()

    sk_pickle, iso_pickle = dump(sk), dump(iso)
    skops_bytes = sio.dumps(sk, compression=zipfile.ZIP_DEFLATED)
    trusted = sio.get_untrusted_types(data=skops_bytes)
    export = os.path.join(tempfile.mkdtemp(), "forest.isotree")
    iso.export_model(export, add_metada_file=False)
    ours = model_files.dumps(forest)
    back = model_files.loads(ours)
    assert np.array_equal(back.score(X), forest.score(X))

    def our_read() -> None:
        model_files.loads(ours).score(X[:1])  # refitted on first use

    rows = [
        ("scikit-learn, pickle", len(sk_pickle), _time(lambda: dump(sk), args.repeat),
         _time(lambda: joblib.load(io.BytesIO(sk_pickle)), args.repeat)),
        ("scikit-learn, skops", len(skops_bytes), _time(lambda: sio.dumps(sk, compression=zipfile.ZIP_DEFLATED), args.repeat),
         _time(lambda: sio.loads(skops_bytes, trusted=trusted), args.repeat)),
        ("isotree, pickle", len(iso_pickle), _time(lambda: dump(iso), args.repeat),
         _time(lambda: joblib.load(io.BytesIO(iso_pickle)), args.repeat)),
        ("isotree, export_model", os.path.getsize(export), _time(lambda: iso.export_model(export, add_metada_file=False), args.repeat),
         _time(lambda: IsoForest.import_model(export), args.repeat)),
        ("ours: rows + seed, refit", len(ours), _time(lambda: model_files.dumps(forest), args.repeat),
         _time(our_read, args.repeat)),
    ]
    base = rows[1][3]
    print(f"{'format':28} {'bytes':>9} {'write s':>8} {'read s':>8} {'read ÷ skops':>13}")
    for name, size, write, read in rows:
        print(f"{name:28} {size:9d} {write:8.4f} {read:8.4f} {read / base:13.3f}")
    print("ours gives the same scores as the forest that was stored (asserted)")


if __name__ == "__main__":
    main()
