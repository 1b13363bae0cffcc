"""The ads_ml code location: a list of definitions, no logic."""

import dagster as dg

from ads_ml import settings
from ads_ml.defs.assets.features import features_assets
from ads_ml.defs.assets.actions import action_assets
from ads_ml.defs.assets.anomalies import anomalies_assets
from ads_ml.defs.assets.forecasting import forecasting_assets
from ads_ml.defs.assets.insights import insights_assets
from ads_ml.defs.assets.sync import sync_assets
from ads_ml.defs.assets.tiers import tier_assets
from ads_ml.defs.automation import automation_sensor
from ads_ml.defs.executor import account_turn
from ads_ml.defs.checks import insights_checks
from ads_ml.defs.io_managers import DatabaseIOManager, ModelIOManager
from ads_ml.defs.jobs import all_jobs
from ads_ml.defs.resources import DatabaseResource, FanoutResource, ModelStoreResource, meta_resource
from ads_ml.defs.sensors import (
    ad_account_partitions_sensor,
    alerts_sensor,
    change_events_sensor,
    dead_cli_runs_sensor,
    new_insights_sensor,
)


def build_resources() -> dict:
    database = DatabaseResource()
    model_store = ModelStoreResource()
    return {
        "database": database,
        "model_store": model_store,
        "io_manager": DatabaseIOManager(database=database),
        "model_io_manager": ModelIOManager(database=database, model_store=model_store),
        "fanout": FanoutResource(),
        "meta": meta_resource(),
    }


#: ADS_ML_EXECUTOR's integrations: (module, executor, the extra that installs it).
INTEGRATION_EXECUTORS = {
    "celery": ("dagster_celery", "celery_executor", "celery"),
    "k8s": ("dagster_k8s", "k8s_job_executor", "k8s"),
}


def integration_executor(kind: str) -> dg.ExecutorDefinition:
    """The Dagster integration's own executor, configured from the environment; its run config
    (launchpad: ``execution.config``) can still override what is set here."""
    import importlib

    module, name, extra = INTEGRATION_EXECUTORS[kind]
    try:
        executor = account_turn(getattr(importlib.import_module(module), name))
    except ImportError as exc:
        raise ImportError(f"{settings.EXECUTOR_ENV}={kind} needs {module.replace('_', '-')}: "
                          f"pip install 'ads_ml[{extra}]'") from exc
    if kind == "celery" and settings.celery_broker_url():
        return executor.configured({"broker": settings.celery_broker_url()}, name="celery_executor")
    return executor  # k8s: image, namespace and the rest from the K8sRunLauncher of dagster.yaml


def build_executor() -> dg.ExecutorDefinition:
    kind = settings.executor_kind()
    if kind in INTEGRATION_EXECUTORS:
        return integration_executor(kind)
    # SQLite storage and the multiprocess executor lock each other: see settings.executor_kind.
    if kind == "multiprocess":
        # forkserver: each step forks from a server that has already imported this code location
        # (pandas, scikit-learn, XGBoost, ...), instead of a fresh interpreter importing it all
        # again for every step (seconds per step).
        return account_turn(dg.multiprocess_executor).configured(
            {"start_method": {"forkserver": {"preload_modules": ["ads_ml.definitions"]}},
             # runs × steps × fan-out workers add up to the cores (see FanoutResource)
             "max_concurrent": settings.step_concurrency()},
            name="multiprocess_executor"
        )
    return account_turn(dg.in_process_executor)


def build_definitions() -> dg.Definitions:
    """The code location's definitions, with the executor and resources the environment selects."""
    return dg.Definitions(
        assets=[*sync_assets, *insights_assets, *features_assets, *tier_assets, *forecasting_assets, *anomalies_assets, *action_assets],
        asset_checks=insights_checks,
        jobs=all_jobs,
        sensors=[ad_account_partitions_sensor, new_insights_sensor, change_events_sensor, dead_cli_runs_sensor,
                 alerts_sensor,
                 automation_sensor()],
        resources=build_resources(),
        executor=build_executor(),
    )


defs = build_definitions()
