"""The ads_ml code location: a list of definitions, no logic."""

import dagster as dg

from ads_ml import settings
from ads_ml.defs.assets.features import features_assets
from ads_ml.defs.assets.actions import action_assets
from ads_ml.defs.assets.anomalies import anomalies_assets
from ads_ml.defs.assets.forecasting import forecasting_assets
from ads_ml.defs.assets.insights import insights_assets
from ads_ml.defs.assets.tiers import tier_assets
from ads_ml.defs.automation import automation_sensor
from ads_ml.defs.checks import insights_checks, tier_checks
from ads_ml.defs.io_managers import DatabaseIOManager, ModelIOManager
from ads_ml.defs.jobs import all_jobs
from ads_ml.defs.resources import DatabaseResource, FanoutResource, ModelStoreResource
from ads_ml.defs.sensors import (
    ad_account_partitions_sensor,
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
    }


def build_executor() -> dg.ExecutorDefinition:
    # SQLite storage and the multiprocess executor lock each other: see settings.executor_kind.
    if settings.executor_kind() == "multiprocess":
        # forkserver: each step forks from a server that has already imported this code location
        # (pandas, scikit-learn, XGBoost, ...), instead of a fresh interpreter importing it all
        # again for every step (seconds per step).
        return dg.multiprocess_executor.configured(
            {"start_method": {"forkserver": {"preload_modules": ["ads_ml.definitions"]}},
             # runs × steps × fan-out workers add up to the cores (see FanoutResource)
             "max_concurrent": settings.step_concurrency()},
            name="multiprocess_executor"
        )
    return dg.in_process_executor


defs = dg.Definitions(
    assets=[*insights_assets, *features_assets, *tier_assets, *forecasting_assets, *anomalies_assets, *action_assets],
    asset_checks=[*insights_checks, *tier_checks],
    jobs=all_jobs,
    sensors=[ad_account_partitions_sensor, new_insights_sensor, change_events_sensor, dead_cli_runs_sensor,
             automation_sensor()],
    resources=build_resources(),
    executor=build_executor(),
)
