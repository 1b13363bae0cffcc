"""Test fixtures: real databases (SQLite files and a throwaway PostgreSQL database per session) and
real Dagster instances on either storage.

PostgreSQL: ``ADS_ML_TEST_PG_URL`` (default ``postgresql+psycopg2://postgres@127.0.0.1:5432/postgres``)
is the server used to create the throwaway databases. When it does not answer, the session tries to
start the local cluster (``pg_ctlcluster … start``); if it still does not answer, the PostgreSQL tests
fail — they are never skipped.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import make_url

from ads_ml.db.engine import dispose_engine, get_engine
from ads_ml.db.migrate import migrate
from ads_ml.db.models import Base

# Failed steps are retried as in production, without production's 10-second waits.
os.environ.setdefault("ADS_ML_STEP_RETRY_DELAY_SECONDS", "0.2")

from ads_ml_tests.live import REPO_ROOT  # noqa: E402 - one definition of the checkout root
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
PG_ADMIN_URL = os.environ.get("ADS_ML_TEST_PG_URL", "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres")


def _pg_answers(url: str) -> bool:
    engine = sa.create_engine(url, poolclass=sa.pool.NullPool, connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
        return True
    except sa.exc.OperationalError:
        return False
    finally:
        engine.dispose()


def _start_local_postgres() -> None:
    versions = sorted(os.listdir("/etc/postgresql")) if os.path.isdir("/etc/postgresql") else []
    if not versions or shutil.which("pg_ctlcluster") is None:
        return
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"],
        check=False, capture_output=True, timeout=60,
    )


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    if not _pg_answers(PG_ADMIN_URL):
        _start_local_postgres()
        for _ in range(30):
            if _pg_answers(PG_ADMIN_URL):
                break
            time.sleep(1)
        else:
            pytest.fail(f"PostgreSQL does not answer at {make_url(PG_ADMIN_URL).render_as_string(hide_password=True)}")
    return PG_ADMIN_URL


def _create_database(server_url: str, name: str) -> str:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop_database(server_url: str, name: str) -> None:
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT", poolclass=sa.pool.NullPool)
    with admin.connect() as conn:
        conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def pg_databases(pg_server_url: str) -> Iterator[dict[str, str]]:
    """Two throwaway databases for this run: the ML/source schema and Dagster's storage."""
    suffix = f"{os.getpid()}_{uuid.uuid4().hex[:8]}"
    names = {"ml": f"ads_ml_test_{suffix}", "dagster": f"ads_ml_test_dagster_{suffix}"}
    urls = {kind: _create_database(pg_server_url, name) for kind, name in names.items()}
    migrate(urls["ml"])
    yield urls
    dispose_engine(urls["ml"])
    for name in names.values():
        _drop_database(pg_server_url, name)


def _wipe(url: str) -> None:
    engine = get_engine(url)
    tables = [t.name for t in reversed(Base.metadata.sorted_tables)]
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(sa.text("TRUNCATE " + ", ".join(tables) + " RESTART IDENTITY CASCADE"))
        else:
            for table in tables:
                conn.execute(sa.text(f"DELETE FROM {table}"))


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def db_url(backend: str, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database of the test's backend."""
    if backend == "postgresql":
        url = request.getfixturevalue("pg_databases")["ml"]
        _wipe(url)
        yield url
        return
    url = f"sqlite:///{tmp_path / 'ads_ml.db'}"
    migrate(url)
    yield url
    dispose_engine(url)


@pytest.fixture
def engine(db_url: str) -> sa.Engine:
    return get_engine(db_url)


@pytest.fixture
def app_env(db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point ADS_ML_* and DAGSTER_HOME at this test's database and a temporary home."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    monkeypatch.setenv("ADS_ML_DATABASE_URL", db_url)
    monkeypatch.setenv("ADS_ML_MODELS_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    # test accounts are small: per-entity work runs in-process (the fan-out has its own tests)
    monkeypatch.setenv("ADS_ML_N_JOBS", "1")
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    return home


@pytest.fixture
def dagster_instance(backend: str, request: pytest.FixtureRequest, app_env: Path, monkeypatch: pytest.MonkeyPatch):
    """A real Dagster instance built from the repository's dagster.yaml: SQLite storage, or
    PostgreSQL (dagster-postgres) selected through the DAGSTER_PG_* variables."""
    for key in ("DAGSTER_PG_HOST", "DAGSTER_PG_USERNAME", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB", "DAGSTER_PG_PORT"):
        monkeypatch.delenv(key, raising=False)
    if backend == "postgresql":
        url = make_url(request.getfixturevalue("pg_databases")["dagster"])
        monkeypatch.setenv("DAGSTER_PG_HOST", url.host or "127.0.0.1")
        monkeypatch.setenv("DAGSTER_PG_USERNAME", url.username or "postgres")
        monkeypatch.setenv("DAGSTER_PG_PASSWORD", url.password or "")
        monkeypatch.setenv("DAGSTER_PG_DB", url.database)
        monkeypatch.setenv("DAGSTER_PG_PORT", str(url.port or 5432))
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(app_env)))
    instance.wipe()
    for key in instance.get_dynamic_partitions("ad_account"):
        instance.delete_dynamic_partition("ad_account", key)
    yield instance
    instance.dispose()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"shared test data not found at {SHARED_DATA}")
    return SHARED_DATA
