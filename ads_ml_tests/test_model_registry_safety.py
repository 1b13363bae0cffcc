"""The model registry under concurrency and tampering, on SQLite and PostgreSQL: two runs saving
the same models at once both land with their files; a path outside the models directory is never
loaded; a corrupted per-entity file is skipped, not fatal; files left by killed writes are removed."""

from __future__ import annotations

import hashlib
import io
import os
import threading
import time
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ads_ml.db.model_registry import ModelArtifact, ModelIntegrityError, ModelRegistry
from ads_ml.ml.anomalies import fit_entity_forest
from ads_ml.ml.tiers import TIERS, TierClassifier


def _artifacts(tag: str) -> list[ModelArtifact]:
    return [ModelArtifact("iforest", "toy", "ad", {"tag": tag, "entity": e}, entity_id=e) for e in ("1", "2", "3")]


def test_concurrent_saves_both_land_and_keep_their_files(engine, tmp_path):
    registries = [ModelRegistry(engine, tmp_path / "models") for _ in range(2)]
    barrier = threading.Barrier(2)
    errors: list[BaseException] = []

    def save(registry: ModelRegistry, tag: str) -> None:
        try:
            barrier.wait(timeout=30)
            registry.save_many("act_c", _artifacts(tag))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=save, args=(r, t)) for r, t in zip(registries, ("a", "b"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert errors == []
    with engine.connect() as conn:
        rows = conn.execute(sa.text(
            "select entity_id, version, status, path from ml_trained_models where account_id = 'act_c' "
            "order by entity_id, version")).all()
    assert [(r.entity_id, r.version) for r in rows] == [(e, v) for e in ("1", "2", "3") for v in (1, 2)]
    assert all(Path(r.path).is_file() for r in rows)  # nobody deleted a committed file
    ready = {r.entity_id: r for r in rows if r.status == "READY"}
    assert {e: r.version for e, r in ready.items()} == {"1": 2, "2": 2, "3": 2}
    loaded = registries[0].load_all("act_c", "iforest", "ad")
    assert {e: m.model["entity"] for e, m in loaded.items()} == {"1": "1", "2": "2", "3": "3"}


def test_a_path_outside_the_models_directory_is_refused(engine, tmp_path):
    registry = ModelRegistry(engine, tmp_path / "models")
    stored = registry.save("act_p", ModelArtifact("tier", "toy", "ad", {"w": 1}))
    outside = tmp_path / "elsewhere.model"
    outside.write_bytes(Path(stored.path).read_bytes())  # same bytes, same checksum
    with engine.begin() as conn:
        conn.execute(sa.text("update ml_trained_models set path = :p where id = :i"), {"p": str(outside), "i": stored.id})
    with pytest.raises(ModelIntegrityError, match="outside the models directory"):
        registry.load("act_p", "tier", "ad")
    escaping = tmp_path / "models" / ".." / "elsewhere.model"
    with engine.begin() as conn:
        conn.execute(sa.text("update ml_trained_models set path = :p where id = :i"), {"p": str(escaping), "i": stored.id})
    with pytest.raises(ModelIntegrityError, match="outside the models directory"):
        registry.load("act_p", "tier", "ad")


def test_a_corrupted_per_entity_model_is_skipped_not_fatal(engine, tmp_path):
    registry = ModelRegistry(engine, tmp_path / "models")
    stored = registry.save_many("act_k", _artifacts("x"))
    Path(stored[1].path).write_bytes(b"tampered")
    skipped: dict[str, str] = {}
    loaded = registry.load_all("act_k", "iforest", "ad", skipped=skipped)
    assert sorted(loaded) == ["1", "3"]
    assert list(skipped) == ["2"] and "does not match its checksum" in skipped["2"]
    with pytest.raises(ModelIntegrityError):
        registry.load_all("act_k", "iforest", "ad")  # without a place to report it, it is an error


def test_temporary_files_of_killed_writes_are_removed(engine, tmp_path):
    registry = ModelRegistry(engine, tmp_path / "models")
    registry.save("act_t", ModelArtifact("tier", "toy", "ad", {"w": 1}))
    folder = tmp_path / "models" / "act_t" / "ad" / "tier"
    stale, fresh = folder / ".v9.model.abc.tmp", folder / ".v10.model.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    registry.save("act_t", ModelArtifact("tier", "toy", "ad", {"w": 2}))
    assert not stale.exists() and fresh.exists()


def test_models_are_stored_without_pickle_and_come_back_the_same(engine, tmp_path):
    """Tier classifiers in XGBoost's UBJ format, forests as their training rows (refitted with the
    same seed: the same forest); a pickle, even with the right checksum, is refused."""
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"a": rng.normal(size=120), "b": rng.normal(size=120)})
    tiers = np.array(TIERS[:4])[(X["a"] > 0).astype(int) * 2 + (X["b"] > 0).astype(int)]
    classifier = TierClassifier(feature_columns=("a", "b")).fit(X, tiers, groups=np.arange(120) % 4)
    classifier.beats_rules_ = False
    days = pd.date_range("2026-08-01", periods=40)
    metrics = pd.DataFrame({"date": days, "spend": rng.gamma(5, 10, 40), "model_cpl": rng.gamma(5, 3, 40),
                            "ctr": rng.uniform(0.5, 2, 40), "frequency": rng.uniform(1, 2, 40),
                            "leads": rng.poisson(4, 40), "cpm": rng.gamma(9, 2, 40)})
    forest = fit_entity_forest(metrics)
    registry = ModelRegistry(engine, tmp_path / "models")
    registry.save_many("act_f", [ModelArtifact("tier", "xgboost", "ad", classifier),
                                 ModelArtifact("iforest", "sklearn", "ad", forest, entity_id="7")])

    tier = registry.load("act_f", "tier", "ad").model
    assert np.allclose(tier.predict_proba(X), classifier.predict_proba(X)) and tier.beats_rules_ is False
    assert tier.top_features(X.head(3)) == classifier.top_features(X.head(3))
    back = registry.load_all("act_f", "iforest", "ad")["7"].model
    assert np.array_equal(back.score(back.training), forest.score(forest.training))  # refitted: the same forest
    assert np.array_equal(back.is_outlier(back.training), forest.is_outlier(forest.training))
    assert (back.samples, back.first_date, back.last_date) == (40, "2026-08-01", "2026-09-09")
    for path in (registry.latest("act_f", "tier", "ad").path, registry.latest("act_f", "iforest", "ad", "7").path):
        with zipfile.ZipFile(path) as archive:
            assert not [n for n in archive.namelist() if n.endswith((".pkl", ".joblib", ".pickle"))]

    # A pickle put in place of the file, with its checksum in the row: never unpickled.
    stored = registry.latest("act_f", "tier", "ad")
    buffer = io.BytesIO()
    joblib.dump({"boom": 1}, buffer)
    Path(stored.path).write_bytes(buffer.getvalue())
    with engine.begin() as conn:
        conn.execute(sa.text("update ml_trained_models set checksum = :c where id = :i"),
                     {"c": hashlib.sha256(buffer.getvalue()).hexdigest(), "i": stored.id})
    with pytest.raises(ModelIntegrityError, match="not an ads_ml model file"):
        registry.load("act_f", "tier", "ad")
