"""The model registry under concurrency and tampering, on SQLite and PostgreSQL: two runs saving
the same models at once both land with their files; a path outside the models directory is never
loaded; a corrupted per-entity file is skipped, not fatal; files left by killed writes are removed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from ads_ml.db.model_registry import ModelArtifact, ModelIntegrityError, ModelRegistry


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
    outside = tmp_path / "elsewhere.joblib"
    outside.write_bytes(Path(stored.path).read_bytes())  # same bytes, same checksum
    with engine.begin() as conn:
        conn.execute(sa.text("update ml_trained_models set path = :p where id = :i"), {"p": str(outside), "i": stored.id})
    with pytest.raises(ModelIntegrityError, match="outside the models directory"):
        registry.load("act_p", "tier", "ad")
    escaping = tmp_path / "models" / ".." / "elsewhere.joblib"
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
    stale, fresh = folder / ".v9.joblib.abc.tmp", folder / ".v10.joblib.def.tmp"
    stale.write_bytes(b"half")
    fresh.write_bytes(b"being written")
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    registry.save("act_t", ModelArtifact("tier", "toy", "ad", {"w": 2}))
    assert not stale.exists() and fresh.exists()
