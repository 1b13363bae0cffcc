"""Resources: the source + ML database and the model store.

Both default to ``ads_ml.settings`` (``ADS_ML_DATABASE_URL``, ``ADS_ML_MODELS_DIR``), resolved when
a run starts, so no URL (or password in it) is baked into the definitions shown in the UI.
"""

from pathlib import Path

import dagster as dg
from pydantic import Field, PrivateAttr
from sqlalchemy import Engine

from ads_ml import settings
from ads_ml.db.engine import get_engine
from ads_ml.db.migrate import ensure_current
from ads_ml.db.model_registry import ModelRegistry


class DatabaseResource(dg.ConfigurableResource):
    """The source + ML database (PostgreSQL in production, SQLite by default)."""

    url: str | None = Field(
        default=None,
        description="SQLAlchemy URL; unset means ADS_ML_DATABASE_URL or the embedded SQLite default.",
    )

    def resolved_url(self) -> str:
        return self.url or settings.database_url()

    def engine(self) -> Engine:
        """The engine, after checking the schema is migrated (a clear error if not)."""
        engine = get_engine(self.resolved_url())
        ensure_current(engine)
        return engine


class ModelStoreResource(dg.ConfigurableResource):
    """Where model files live; their metadata goes to ``ml_trained_models``."""

    models_dir: str | None = Field(
        default=None, description="Directory for model files; unset means ADS_ML_MODELS_DIR or beside the database."
    )

    def resolved_dir(self, database_url: str | None = None) -> Path:
        return Path(self.models_dir) if self.models_dir else settings.models_dir(database_url)

    def registry(self, database: DatabaseResource) -> ModelRegistry:
        return ModelRegistry(database.engine(), self.resolved_dir(database.resolved_url()))


class FanoutResource(dg.ConfigurableResource):
    """Where per-entity work runs: local processes (joblib) or a Dask cluster.

    Unless told how many processes to use, a step takes its share of the cores: the cores divided by
    the runs in progress and the steps each may run at once (each worker also limited to one BLAS
    thread), so a lone run uses the whole machine and four runs at once do not start 4 × cores
    processes."""

    n_jobs: int | None = Field(default=None, description="Local processes; unset means ADS_ML_N_JOBS or this step's share of the cores.")
    dask_address: str | None = Field(
        default=None, description="Dask scheduler address; unset means ADS_ML_DASK_ADDRESS (none: local)."
    )
    _instance: dg.DagsterInstance | None = PrivateAttr(default=None)

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        self._instance = context.instance

    def workers(self) -> int:
        configured = self.n_jobs if self.n_jobs is not None else settings.n_jobs()
        if configured is not None:
            return configured
        runs = 1
        if self._instance is not None:
            runs = self._instance.get_runs_count(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED]))
        return settings.fanout_workers(runs, steps_per_run())

    def run(self, fn, items, *, label: str, log=None):  # noqa: ANN001, ANN201
        from ads_ml.ml.fanout import fan_out

        return fan_out(
            fn,
            items,
            n_jobs=self.workers(),
            dask_address=self.dask_address or settings.dask_address(),
            progress=log.info if log is not None else None,
            label=label,
        )

    def mapper(self, *, label: str, log, errors: dict):  # noqa: ANN001, ANN201
        """``map_rows`` for the ML's one-pass level functions: ``fn`` over ``(key, payload)`` items by
        :meth:`run` (chunks of many entities per worker task); each entity's failure is logged and
        kept in ``errors``, the others' results returned."""
        def run(fn, items):  # noqa: ANN001, ANN202
            result = self.run(fn, items, label=label, log=log)
            for key, error in result.errors.items():
                log.error(f"{label}: {key} failed: {error}")
            errors.update(result.errors)
            return result.results

        return run



def steps_per_run() -> int:
    """Steps one run executes at once: the multiprocess executor's limit, or 1 in process."""
    return settings.step_concurrency() if settings.executor_kind() == "multiprocess" else 1


class MetaResource(dg.ConfigurableResource):
    """The Meta Marketing API (``facebook-business`` SDK). The definitions pass the token as
    ``EnvVar("ADS_ML_META_ACCESS_TOKEN")`` (never its value) when it is set; without it the sync
    and discovery assets record that Meta is not configured and the account's data comes from CSV
    imports."""

    access_token: str | None = Field(default=None, description="A system user's token with ads_read (EnvVar).")
    app_secret: str | None = Field(default=None, description="The app secret: adds appsecret_proof (EnvVar).")
    graph_url: str | None = Field(default=None, description="Base URL; unset means ADS_ML_META_GRAPH_URL or Meta's.")
    api_version: str = Field(default=settings.META_API_VERSION, description="The Graph API version every request names.")
    account_ids: list[str] = Field(default_factory=list,
                                   description="Only these ad accounts (act_…); empty: every account the token reads "
                                   "(or ADS_ML_META_ACCOUNT_IDS).")
    lead_action_types: list[str] = Field(default_factory=list,
                                         description="Leads from these action types (alternatives in order, '+' sums); "
                                         "empty: ADS_ML_META_LEAD_ACTION_TYPES or the defaults.")

    @property
    def configured(self) -> bool:
        return bool(self.access_token)

    def client(self):  # noqa: ANN201
        from ads_ml.ingest.meta import MetaClient

        return MetaClient(self.access_token or "", app_secret=self.app_secret, graph_url=self.graph_url,
                          api_version=self.api_version)

    def accounts(self) -> tuple[str, ...]:
        return tuple(self.account_ids) or settings.meta_account_ids()

    def lead_types(self) -> tuple[str, ...]:
        return tuple(self.lead_action_types) or settings.meta_lead_action_types()


def meta_resource() -> MetaResource:
    """The resource as the environment configures it: the token and app secret as EnvVars."""
    import os

    return MetaResource(
        access_token=dg.EnvVar(settings.META_ACCESS_TOKEN_ENV) if settings.meta_configured() else None,
        app_secret=dg.EnvVar(settings.META_APP_SECRET_ENV) if os.environ.get(settings.META_APP_SECRET_ENV) else None,
    )
