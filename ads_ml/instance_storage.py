"""Dagster instance storage chosen by environment, for ``dagster.yaml``.

``DAGSTER_PG_HOST`` set (with ``DAGSTER_PG_USERNAME``, ``DAGSTER_PG_PASSWORD``, ``DAGSTER_PG_DB``,
``DAGSTER_PG_PORT``): runs, events and schedules in PostgreSQL (dagster-postgres). Otherwise SQLite
under ``$DAGSTER_HOME/storage`` (or ``.ads_ml/storage`` when ``DAGSTER_HOME`` is unset), so a laptop
needs no configuration and a deployment only sets variables.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from dagster import Field, StringSource
from dagster._core.storage.base_storage import DagsterStorage
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from ads_ml import settings


def postgres_config_from_env() -> dict[str, Any] | None:
    host = os.environ.get("DAGSTER_PG_HOST", "").strip()
    if not host:
        return None
    return {
        "postgres_db": {
            "hostname": host,
            "username": os.environ.get("DAGSTER_PG_USERNAME", "postgres"),
            "password": os.environ.get("DAGSTER_PG_PASSWORD", ""),
            "db_name": os.environ.get("DAGSTER_PG_DB", "dagster"),
            "port": os.environ.get("DAGSTER_PG_PORT", "5432"),
            # psycopg2 is the driver we install; SQLAlchemy 2.1 would pick psycopg 3 for "postgresql".
            "scheme": "postgresql+psycopg2",
        }
    }


def sqlite_base_dir(configured: str | None = None) -> str:
    return configured or str(settings.state_dir() / "storage")


class EnvSelectedStorage(DagsterStorage, ConfigurableClass):
    """Never instantiated: ``from_config_value`` returns the PostgreSQL or SQLite storage."""

    @classmethod
    def config_type(cls) -> Mapping[str, Any]:
        return {"sqlite_base_dir": Field(StringSource, is_required=False)}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData | None, config_value: Mapping[str, Any]):  # noqa: ANN206
        pg = postgres_config_from_env()
        if pg is not None:
            from dagster_postgres import DagsterPostgresStorage

            return DagsterPostgresStorage.from_config_value(inst_data, pg)
        from dagster._core.storage.sqlite_storage import DagsterSqliteStorage

        base_dir = sqlite_base_dir(config_value.get("sqlite_base_dir"))
        os.makedirs(base_dir, exist_ok=True)
        return DagsterSqliteStorage.from_config_value(inst_data, {"base_dir": base_dir})
