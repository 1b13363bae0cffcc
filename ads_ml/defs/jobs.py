"""Jobs over the account-partitioned assets (one partition = one ad account)."""

import dagster as dg

from ads_ml.defs.common import LEVELS

INSIGHTS_KEYS = [dg.AssetKey(f"{level}_insights") for level in LEVELS]

PROPHET_PARAMS_KEYS = [dg.AssetKey(f"{level}_prophet_params") for level in LEVELS]

#: Launched by ``new_insights_sensor`` when an import commits: the account's insights only; what
#: depends on them follows by declarative automation (``ads_ml.defs.automation``).
insights_refresh_job = dg.define_asset_job(
    name="insights_refresh",
    selection=dg.AssetSelection.assets(*INSIGHTS_KEYS),
    description="Read an ad account's insights as of its latest date; features, anomalies and "
    "recommendations follow by automation.",
)

tier_training_job = dg.define_asset_job(
    name="tier_training",
    selection=dg.AssetSelection.assets(*[f"{level}_tier_classifier" for level in LEVELS]),
    description="Retrain the tier classifiers of every level from the stored insights.",
)

transfer_training_job = dg.define_asset_job(
    name="transfer_training",
    selection=dg.AssetSelection.assets("transfer_classifier"),
    description="Retrain the campaign-level transfer classifier.",
)


def classification_job(level: str):  # noqa: ANN201
    return dg.define_asset_job(
        name=f"{level}_classification",
        selection=dg.AssetSelection.assets(f"{level}_classifications"),
        description=f"Classify every {level} (from its stored features and tier classifier).",
    )


classification_jobs = {level: classification_job(level) for level in LEVELS}

prophet_tuning_job = dg.define_asset_job(
    name="prophet_tuning",
    selection=dg.AssetSelection.assets(*PROPHET_PARAMS_KEYS),
    description="Tune Prophet per entity (run config chooses the metrics: cpl, leads).",
)

ensemble_calibration_job = dg.define_asset_job(
    name="ensemble_calibration",
    selection=dg.AssetSelection.assets(*[f"{level}_ensemble_weights" for level in LEVELS]),
    description="Recalibrate the forecast ensemble weights of every level.",
)

forecast_job = dg.define_asset_job(
    name="forecasts",
    selection=dg.AssetSelection.assets(*[f"{level}_forecasts" for level in LEVELS]),
    description="7-day forecasts of every level with the calibrated weights.",
)

anomaly_training_job = dg.define_asset_job(
    name="anomaly_training",
    selection=dg.AssetSelection.assets(*[f"{level}_isolation_forest_models" for level in LEVELS]),
    description="Retrain the per-entity Isolation Forests of every level.",
)


def anomaly_detection_job(level: str):  # noqa: ANN201
    return dg.define_asset_job(
        name=f"{level}_anomaly_detection",
        selection=dg.AssetSelection.assets(f"{level}_anomalies"),
        description=f"Check every {level} for anomalies (in the insights last read, with the stored forests).",
    )


anomaly_detection_jobs = {level: anomaly_detection_job(level) for level in LEVELS}

#: Impact reports (with fresh insights): launched by the change-events sensor with the due
#: change ids, or from the UI / ``ads-ml impact`` with an entity, change date and type.
impact_job = dg.define_asset_job(
    name="impact_analysis",
    selection=dg.AssetSelection.assets(*INSIGHTS_KEYS, "impact_reports"),
    description="Before/after impact reports of change events (config: change_ids, or one entity's change).",
)

recommendation_job = dg.define_asset_job(
    name="recommendations",
    selection=dg.AssetSelection.assets(*[f"{level}_recommendations" for level in LEVELS]),
    description="Run the rule engine on every level.",
)

#: The Meta sync of one account (launchpad config: ``since`` for a backfill from Meta, ``full``).
meta_sync_job = dg.define_asset_job(
    name="sync_from_meta",
    selection=dg.AssetSelection.assets("meta_sync"),
    description="Pull the account's entities, insights and activity log from the Meta Marketing API; what changed "
    "flows on through the sensors and automation.",
)

all_jobs = [
    meta_sync_job, insights_refresh_job, tier_training_job, transfer_training_job, *classification_jobs.values(),
    prophet_tuning_job, ensemble_calibration_job, forecast_job,
    anomaly_training_job, *anomaly_detection_jobs.values(), impact_job, recommendation_job,
]
