"""Model files on disk with their metadata in ``ml_trained_models``.

Saving writes the artifact to a temporary name in the target folder, fsyncs and renames it into
place (a reader never sees half a file), then commits the row — status READY, parameters, feature
columns, training metrics, SHA-256 checksum — and marks the previous READY versions of the same
model DEPRECATED in the same transaction. Loading takes the newest READY version and refuses a file
whose checksum does not match its row, lies outside the models directory or is not in our format.
Folder and file names built from ids are sanitised. Files hold no pickle (``model_files``):
XGBoost boosters in XGBoost's UBJ format, forests as their training rows, plain values as JSON.

No Dagster here: the model IO manager (``ads_ml.defs.io_managers``) is a thin wrapper.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, and_, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ads_ml.db import model_files
from ads_ml.db.jsonsafe import to_jsonable
from ads_ml.db.models import TrainedModel, utcnow

SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]")
#: Attempts at taking the next version numbers when another run commits the same ones first.
VERSION_ATTEMPTS = 5
#: A temporary model file older than this was left by a killed write.
STALE_TEMPORARY_SECONDS = 3600


class ModelIntegrityError(RuntimeError):
    """A stored model file is missing or does not match its checksum."""


class ModelNotFoundError(LookupError):
    """No READY model for the given account, name and entity."""


@dataclass
class ModelArtifact:
    """What a model asset produces: the fitted object and what a reader needs to use it."""

    name: str  # e.g. "tier_classifier"
    model_type: str  # e.g. "xgboost.XGBClassifier"
    entity_type: str  # campaign / adset / ad
    model: Any
    entity_id: str = ""  # "" for one model per account and level
    parameters: dict[str, Any] = field(default_factory=dict)
    feature_columns: list[str] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)


@dataclass
class StoredModel:
    """A model row (and, once loaded, its object)."""

    id: int
    name: str
    model_type: str
    version: int
    account_id: str
    entity_type: str
    entity_id: str
    path: str
    parameters: dict[str, Any]
    feature_columns: list[str]
    training_metrics: dict[str, Any]
    status: str
    checksum: str | None
    model: Any = None

    @classmethod
    def from_row(cls, row: TrainedModel) -> "StoredModel":
        return cls(
            id=row.id, name=row.name, model_type=row.model_type, version=row.version,
            account_id=row.account_id, entity_type=row.entity_type, entity_id=row.entity_id,
            path=row.path, parameters=dict(row.parameters or {}),
            feature_columns=list(row.feature_columns or []),
            training_metrics=dict(row.training_metrics or {}), status=row.status, checksum=row.checksum,
        )


def safe_component(value: str) -> str:
    """A file-name-safe form of an id; altered ids get a short hash so two never collide."""
    text = str(value)
    cleaned = re.sub(r"\.{2,}", "_", SAFE_NAME.sub("_", text)).lstrip(".")[:80] or "_"
    if cleaned != text:
        cleaned = f"{cleaned}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"
    return cleaned


def write_atomically(path: Path, write: Callable[[Any], None]) -> str:
    """Write a file through ``write(handle)`` to a temporary name beside ``path``, fsync, rename
    into place (readers never see half a file); returns the file's SHA-256."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        checksum = file_sha256(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return checksum


def write_json_atomically(path: Path, value: Any) -> str:
    return write_atomically(path, lambda handle: handle.write(json.dumps(to_jsonable(value), indent=2).encode()))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ModelRegistry:
    def __init__(self, engine: Engine, models_dir: str | Path, keep_versions: int = 2):
        self.engine = engine
        self.models_dir = Path(models_dir).expanduser().resolve()
        self.keep_versions = keep_versions  # files kept per model: the READY one and the one before

    # --- writing ---------------------------------------------------------------------------

    def save(self, account_id: str, artifact: ModelArtifact) -> StoredModel:
        return self.save_many(account_id, [artifact])[0]

    def save_many(self, account_id: str, artifacts: Sequence[ModelArtifact]) -> list[StoredModel]:
        """Write every artifact's file, then commit all their rows in one transaction.

        Safe when two runs save the same models at once: each writes files under names of its own
        (a random token beside the version), so a run that loses the race on the version numbers
        deletes only the files it wrote and never committed, takes the next versions and retries."""
        if not artifacts:
            return []
        self._remove_stale_temporaries(account_id)
        for attempt in range(1, VERSION_ATTEMPTS + 1):
            versions = self._next_versions(account_id, artifacts)
            written: list[tuple[ModelArtifact, int, Path, str]] = []
            token = secrets.token_hex(4)
            try:
                for artifact in artifacts:
                    key = (artifact.name, artifact.entity_type, artifact.entity_id)
                    version = versions[key]
                    versions[key] += 1
                    path = self._path_for(account_id, artifact, version, token)
                    checksum = self._write_atomically(artifact.model, path)
                    written.append((artifact, version, path, checksum))
                self._commit(account_id, written)
            except IntegrityError:
                for _a, _v, path, _c in written:
                    path.unlink(missing_ok=True)
                if attempt == VERSION_ATTEMPTS:
                    raise
                continue
            except BaseException:
                for _a, _v, path, _c in written:
                    path.unlink(missing_ok=True)
                raise
            break
        self._prune_files(account_id, {(a.name, a.entity_type) for a, _v, _p, _c in written})
        return self._rows_for(account_id, [(a.name, a.entity_type, a.entity_id, v) for a, v, _p, _c in written])

    def _commit(self, account_id: str, written: list[tuple[ModelArtifact, int, Path, str]]) -> None:
        """The rows of the written files, READY, and the previous READY versions DEPRECATED, in one
        transaction (a concurrent run that took the same versions fails on the unique key)."""
        now = utcnow()
        with self.engine.begin() as conn:
            table = TrainedModel.__table__
            for artifact, _v, _p, _c in written:
                conn.execute(
                    update(table)
                    .where(
                        table.c.account_id == account_id,
                        table.c.name == artifact.name,
                        table.c.entity_type == artifact.entity_type,
                        table.c.entity_id == artifact.entity_id,
                        table.c.status == "READY",
                    )
                    .values(status="DEPRECATED", updated_at=now)
                )
            rows = [
                {
                    "name": artifact.name,
                    "model_type": artifact.model_type,
                    "version": version,
                    "account_id": account_id,
                    "entity_type": artifact.entity_type,
                    "entity_id": artifact.entity_id,
                    "path": str(path),
                    "parameters": to_jsonable(artifact.parameters),
                    "feature_columns": list(artifact.feature_columns),
                    "training_metrics": to_jsonable(artifact.metrics),
                    "status": "READY",
                    "checksum": checksum,
                    "created_at": now,
                    "updated_at": now,
                }
                for artifact, version, path, checksum in written
            ]
            conn.execute(table.insert(), rows)

    def _remove_stale_temporaries(self, account_id: str) -> None:
        """Temporary files left by writes that were killed (older than an hour; a write in
        progress is never that old)."""
        folder = self.models_dir / safe_component(account_id)
        if not folder.is_dir():
            return
        cutoff = time.time() - STALE_TEMPORARY_SECONDS
        for tmp in folder.rglob(".*.tmp"):
            try:
                if tmp.stat().st_mtime < cutoff:
                    tmp.unlink(missing_ok=True)
            except OSError:
                continue

    def _prune_files(self, account_id: str, keys: set[tuple[str, str]]) -> None:
        """Delete the files of DEPRECATED versions older than the previous one (the rows stay, as
        history); per-entity models are written daily by the thousand."""
        table = TrainedModel.__table__
        for name, entity_type in keys:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    select(table.c.entity_id, table.c.version, table.c.path, table.c.status)
                    .where(table.c.account_id == account_id, table.c.name == name, table.c.entity_type == entity_type)
                ).all()
            newest: dict[str, int] = {}
            for row in rows:
                newest[row.entity_id] = max(newest.get(row.entity_id, 0), row.version)
            for row in rows:
                if row.status == "DEPRECATED" and row.version < newest[row.entity_id] - (self.keep_versions - 1) and row.path:
                    Path(row.path).unlink(missing_ok=True)

    def record_failure(self, account_id: str, name: str, model_type: str, entity_type: str,
                       entity_id: str, error: str) -> None:
        """Keep a FAILED row (no file) so operators see which entity's training broke and why."""
        versions = self._next_versions(
            account_id, [ModelArtifact(name, model_type, entity_type, None, entity_id=entity_id)]
        )
        now = utcnow()
        with self.engine.begin() as conn:
            conn.execute(
                TrainedModel.__table__.insert().values(
                    name=name, model_type=model_type, version=versions[(name, entity_type, entity_id)],
                    account_id=account_id, entity_type=entity_type, entity_id=entity_id, path="",
                    parameters={}, feature_columns=[], training_metrics={}, status="FAILED",
                    checksum=None, error=error[:4000], created_at=now, updated_at=now,
                )
            )

    # --- reading ---------------------------------------------------------------------------

    def latest(self, account_id: str, name: str, entity_type: str, entity_id: str = "") -> StoredModel:
        """Metadata of the newest READY model (no file access)."""
        with Session(self.engine) as session:
            row = session.execute(
                select(TrainedModel)
                .where(
                    TrainedModel.account_id == account_id,
                    TrainedModel.name == name,
                    TrainedModel.entity_type == entity_type,
                    TrainedModel.entity_id == entity_id,
                    TrainedModel.status == "READY",
                )
                .order_by(TrainedModel.version.desc())
                .limit(1)
            ).first()
            if row is None:
                what = f"{name} for {entity_type} {entity_id}".rstrip() if entity_id else f"{name} ({entity_type})"
                raise ModelNotFoundError(f"no READY model {what} in account {account_id}")
            stored = StoredModel.from_row(row[0])
        return stored

    def load(self, account_id: str, name: str, entity_type: str, entity_id: str = "") -> StoredModel:
        """The newest READY model with its object, checksum verified."""
        stored = self.latest(account_id, name, entity_type, entity_id)
        stored.model = self._read_verified(stored)
        return stored

    def load_all(self, account_id: str, name: str, entity_type: str,
                 skipped: dict[str, str] | None = None) -> dict[str, StoredModel]:
        """The newest READY model of every entity of a level (per-entity models), verified. One
        entity's missing or corrupted file does not fail the others: it is left out, and the reason
        goes into ``skipped`` (entity id -> why) when given, else the error is raised."""
        newest = (
            select(
                TrainedModel.entity_id,
                func.max(TrainedModel.version).label("version"),
            )
            .where(
                TrainedModel.account_id == account_id,
                TrainedModel.name == name,
                TrainedModel.entity_type == entity_type,
                TrainedModel.status == "READY",
            )
            .group_by(TrainedModel.entity_id)
            .subquery()
        )
        with Session(self.engine) as session:
            rows = session.execute(
                select(TrainedModel).join(
                    newest,
                    and_(
                        TrainedModel.entity_id == newest.c.entity_id,
                        TrainedModel.version == newest.c.version,
                    ),
                ).where(
                    TrainedModel.account_id == account_id,
                    TrainedModel.name == name,
                    TrainedModel.entity_type == entity_type,
                )
            ).scalars().all()
        out = {}
        for row in rows:
            stored = StoredModel.from_row(row)
            try:
                stored.model = self._read_verified(stored)
            except (ModelIntegrityError, OSError, ValueError, EOFError) as exc:
                if skipped is None:
                    raise
                skipped[stored.entity_id] = str(exc)
                continue
            out[stored.entity_id] = stored
        return out

    # --- internals -------------------------------------------------------------------------

    def _path_for(self, account_id: str, artifact: ModelArtifact, version: int, token: str) -> Path:
        folder = self.models_dir / safe_component(account_id) / safe_component(artifact.entity_type) / safe_component(artifact.name)
        stem = f"{safe_component(artifact.entity_id)}-v{version}" if artifact.entity_id else f"v{version}"
        stem = f"{stem}-{token}"
        path = (folder / f"{stem}.model").resolve()
        if not path.is_relative_to(self.models_dir):
            raise ValueError(f"model path {path} escapes the models directory {self.models_dir}")
        return path

    @staticmethod
    def _write_atomically(model: Any, path: Path) -> str:
        data = model_files.dumps(model)
        return write_atomically(path, lambda handle: handle.write(data))

    def _read_verified(self, stored: StoredModel) -> Any:
        """The model object, from a file that must lie inside the models directory and match its
        checksum; the bytes are read once, hashed and loaded from memory (no swap in between)."""
        path = Path(stored.path).expanduser().resolve()
        what = f"{stored.name} v{stored.version} ({stored.entity_type} {stored.entity_id})".replace(" )", ")")
        if not path.is_relative_to(self.models_dir):
            raise ModelIntegrityError(
                f"model file of {what} is recorded at {path}, outside the models directory {self.models_dir}: "
                "refusing to load it"
            )
        if not path.is_file():
            raise ModelIntegrityError(f"model file of {what} is missing: {path}")
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != stored.checksum:
            raise ModelIntegrityError(
                f"model file {path} of {what} does not match its checksum (expected {stored.checksum}, "
                f"found {actual}); refusing to load it — re-materialise the model asset"
            )
        try:
            return model_files.loads(data)
        except model_files.ModelFormatError as exc:
            raise ModelIntegrityError(f"model file {path} of {what}: {exc}") from None

    def _next_versions(self, account_id: str, artifacts: Iterable[ModelArtifact]) -> dict[tuple[str, str, str], int]:
        keys = {(a.name, a.entity_type, a.entity_id) for a in artifacts}
        names = {k[0] for k in keys}
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(
                    TrainedModel.name, TrainedModel.entity_type, TrainedModel.entity_id,
                    func.max(TrainedModel.version),
                )
                .where(TrainedModel.account_id == account_id, TrainedModel.name.in_(names))
                .group_by(TrainedModel.name, TrainedModel.entity_type, TrainedModel.entity_id)
            ).all()
        current = {(n, t, e): v for n, t, e, v in rows}
        return {k: current.get(k, 0) + 1 for k in keys}

    def _rows_for(self, account_id: str, keys: list[tuple[str, str, str, int]]) -> list[StoredModel]:
        by_key = {}
        names = {k[0] for k in keys}
        with Session(self.engine) as session:
            rows = session.execute(
                select(TrainedModel).where(
                    TrainedModel.account_id == account_id,
                    TrainedModel.name.in_(names),
                    TrainedModel.status == "READY",
                )
            ).scalars().all()
        for row in rows:
            by_key[(row.name, row.entity_type, row.entity_id, row.version)] = StoredModel.from_row(row)
        return [by_key[k] for k in keys]

