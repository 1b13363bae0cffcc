"""Migrations match the models; the code location loads cleanly; executor choice."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from ads_ml import settings
from ads_ml.db.engine import get_engine
from ads_ml.db.migrate import migrate
from ads_ml.db.models import Base


def test_migrations_create_exactly_the_models(db_url):
    migrate(db_url)  # idempotent on an already migrated database
    with get_engine(db_url).connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
    assert diff == []


@pytest.mark.parametrize("meta_token", ["", "a-token"])
def test_definitions_load_without_warnings(meta_token):
    code = (
        "import warnings; warnings.simplefilter('error');"
        "from ads_ml.definitions import defs; import dagster as dg;"
        "dg.Definitions.validate_loadable(defs);"
        # the repository as the webserver builds it: op and job names must not collide
        "defs.get_repository_def().get_all_jobs();"
        "print(sorted(k.to_user_string() for k in defs.resolve_all_asset_keys()))"
    )
    env = {**os.environ, "ADS_ML_META_ACCESS_TOKEN": meta_token}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr
    assert "ad_features" in done.stdout and "campaign_insights" in done.stdout


POSTGRES = {"DAGSTER_PG_HOST": "db", "ADS_ML_DATABASE_URL": "postgresql://u@db/ads"}


@pytest.mark.parametrize(
    ("env", "cores", "expected"),
    [
        ({}, 16, "in_process"),
        (POSTGRES, 16, "multiprocess"),  # 4 steps of each of the 4 concurrent runs at once
        (POSTGRES, 4, "in_process"),  # one core per run: a process per step would be pure overhead
        (POSTGRES | {"ADS_ML_CONCURRENT_RUNS": "2"}, 4, "multiprocess"),
        ({"DAGSTER_PG_HOST": "db"}, 16, "in_process"),  # the ML database is still SQLite
        ({"ADS_ML_EXECUTOR": "multiprocess"}, 2, "multiprocess"),
    ],
)
def test_executor_avoids_sqlite_locking_and_idle_processes(monkeypatch, tmp_path, env, cores, expected):
    for key in ("DAGSTER_PG_HOST", "ADS_ML_DATABASE_URL", "ADS_ML_EXECUTOR", "ADS_ML_CONCURRENT_RUNS", "ADS_ML_STEP_CONCURRENCY"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setattr(settings, "cores", lambda: cores)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    assert settings.executor_kind() == expected


def test_default_locations(monkeypatch, tmp_path):
    monkeypatch.delenv("ADS_ML_DATABASE_URL", raising=False)
    monkeypatch.delenv("ADS_ML_MODELS_DIR", raising=False)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    assert settings.database_url() == f"sqlite:///{tmp_path / 'ads_ml.db'}"
    assert settings.models_dir() == tmp_path / "models"
    monkeypatch.delenv("DAGSTER_HOME")
    monkeypatch.chdir(tmp_path)
    assert settings.database_url() == f"sqlite:///{tmp_path / '.ads_ml' / 'ads_ml.db'}"
    monkeypatch.setenv("ADS_ML_DATABASE_URL", "postgresql://u:p@h/db")
    assert settings.database_url() == "postgresql+psycopg2://u:p@h/db"
