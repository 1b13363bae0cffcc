"""Bring a database to the newest schema with the Alembic migrations in ``migrations/``."""

from __future__ import annotations

import threading
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from ads_ml.db.engine import get_engine

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "migrations"
_migrated: set[str] = set()
_lock = threading.Lock()


class SchemaError(RuntimeError):
    """The database is not at the schema this code expects."""


def alembic_config(url: str) -> Config:
    if not (MIGRATIONS_DIR / "env.py").exists():
        raise SchemaError(
            f"Alembic migrations not found at {MIGRATIONS_DIR}; install ads_ml from its source tree "
            "(pip install -e .)"
        )
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    # '%' is interpolation syntax in configparser.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision(url: str) -> str:
    return ScriptDirectory.from_config(alembic_config(url)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def migrate(url: str | None = None) -> str:
    """Upgrade the database at ``url`` to the head revision (idempotent). Returns the revision."""
    engine = get_engine(url)
    key = engine.url.render_as_string(hide_password=False)
    with _lock:
        if key in _migrated:
            return head_revision(key)
        config = alembic_config(key)
        with engine.begin() as connection:
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        _migrated.add(key)
        return head_revision(key)


def ensure_current(engine: Engine) -> None:
    """Raise a clear error when the database has not been migrated to head."""
    key = engine.url.render_as_string(hide_password=False)
    if key in _migrated:
        return
    current = current_revision(engine)
    head = head_revision(key)
    if current != head:
        raise SchemaError(
            f"database schema is at revision {current or 'none'}, expected {head}: run `ads-ml migrate`"
        )
    _migrated.add(key)
