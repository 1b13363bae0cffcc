"""Model file formats for one ad's Isolation Forest (60 days × 6 features, 100 trees): bytes on
disk and seconds to read back, for pickle (joblib, the old format), skops (scikit-learn's safe
format) and ours (the training rows, refitted with the same seed on load).

    pip install -e ".[bench]"   # skops, for the comparison
    python -m benchmarks.model_files [--repeat 20]
"""

from __future__ import annotations

import argparse
import io
import time
import zipfile

import joblib
import numpy as np
import pandas as pd

from ads_ml.db import model_files
from ads_ml.ml.anomalies import fit_entity_forest


def _forest(seed: int):  # noqa: ANN202
    rng = np.random.default_rng(seed)
    days = pd.date_range("2026-08-01", periods=60)
    metrics = pd.DataFrame({"date": days, "spend": rng.gamma(5, 10, 60), "model_cpl": rng.gamma(5, 3, 60),
                            "ctr": rng.uniform(0.5, 2, 60), "frequency": rng.uniform(1, 2, 60),
                            "leads": rng.poisson(4, 60), "cpm": rng.gamma(9, 2, 60)})
    return fit_entity_forest(metrics)


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

    forest = _forest(0)
    buffer = io.BytesIO()
    joblib.dump(forest, buffer)
    pickled = buffer.getvalue()
    skops_bytes = sio.dumps(forest.model, compression=zipfile.ZIP_DEFLATED)
    trusted = sio.get_untrusted_types(data=skops_bytes)
    ours = model_files.dumps(forest)
    back = model_files.loads(ours)
    assert np.array_equal(back.model.score_samples(forest.training), forest.model.score_samples(forest.training))

    rows = [
        ("pickle (joblib)", len(pickled), _time(lambda: joblib.dump(forest, io.BytesIO()), args.repeat),
         _time(lambda: joblib.load(io.BytesIO(pickled)), args.repeat)),
        ("skops (deflated)", len(skops_bytes),
         _time(lambda: sio.dumps(forest.model, compression=zipfile.ZIP_DEFLATED), args.repeat),
         _time(lambda: sio.loads(skops_bytes, trusted=trusted), args.repeat)),
        ("ours: rows + seed, refit", len(ours), _time(lambda: model_files.dumps(forest), args.repeat),
         _time(lambda: model_files.loads(ours), args.repeat)),
    ]
    base = rows[0][3]
    print(f"{'format':28} {'bytes':>9} {'write s':>8} {'read s':>8} {'read ÷ pickle':>14}")
    for name, size, write, read in rows:
        print(f"{name:28} {size:9d} {write:8.3f} {read:8.3f} {read / base:14.2f}")
    print("ours gives the same scores as the forest that was stored (asserted)")


if __name__ == "__main__":
    main()
