"""Schedules replacing Celery Beat: each tick requests one run per ad-account partition.

A custom ``@schedule`` (``build_schedule_from_partitioned_job`` refuses purely dynamic partitions).
Cron times live in ``settings.SCHEDULES`` (``ADS_ML_SCHEDULE_<NAME>`` overrides one); the timezone is ``ADS_ML_SCHEDULE_TIMEZONE`` (UTC)."""

import dagster as dg

from ads_ml import settings
from ads_ml.defs.common import LEVELS
from ads_ml.defs.jobs import (
    anomaly_detection_jobs,
    anomaly_training_job,
    classification_jobs,
    ensemble_calibration_job,
    forecast_job,
    prophet_tuning_job,
    recommendation_job,
    tier_training_job,
    transfer_training_job,
)


def tuning_config(metric: str) -> dict:
    return {"ops": {f"{level}_prophet_params": {"config": {"metrics": [metric]}} for level in LEVELS}}
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME


def build_account_schedule(name: str, job, description: str, run_config: dict | None = None) -> dg.ScheduleDefinition:  # noqa: ANN001
    @dg.schedule(
        name=f"{name}_schedule",
        cron_schedule=settings.schedule_cron(name),
        job=job,
        execution_timezone=settings.schedule_timezone(),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=description,
    )
    def _schedule(context: dg.ScheduleEvaluationContext):
        accounts = context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME)
        if not accounts:
            yield dg.SkipReason("no ad-account partitions yet")
            return
        tick = context.scheduled_execution_time.isoformat() if context.scheduled_execution_time else "manual"
        for account in accounts:
            yield dg.RunRequest(run_key=f"{name}:{account}:{tick}", partition_key=account, run_config=run_config or {})

    return _schedule


schedules = [
    build_account_schedule("tier_training", tier_training_job, "Retrain the tier classifiers, daily 03:00."),
    build_account_schedule("transfer_training", transfer_training_job, "Retrain the transfer classifier, Mondays 03:00."),
    build_account_schedule("campaign_classification", classification_jobs["campaign"], "Classify campaigns, daily 05:00."),
    build_account_schedule("adset_classification", classification_jobs["adset"], "Classify adsets, daily 05:30."),
    build_account_schedule("ad_classification", classification_jobs["ad"], "Classify ads, daily 06:00."),
    build_account_schedule("prophet_tuning_cpl", prophet_tuning_job, "Tune Prophet for CPL, Sundays 02:00.",
                           tuning_config("cpl")),
    build_account_schedule("prophet_tuning_leads", prophet_tuning_job, "Tune Prophet for leads, Sundays 02:30.",
                           tuning_config("leads")),
    build_account_schedule("ensemble_calibration", ensemble_calibration_job, "Calibrate ensemble weights, daily 05:30."),
    build_account_schedule("forecasts", forecast_job, "7-day forecasts, daily 06:30 (after calibration)."),
    build_account_schedule("anomaly_training", anomaly_training_job, "Retrain the Isolation Forests, daily 01:00."),
    build_account_schedule("campaign_anomaly_detection", anomaly_detection_jobs["campaign"], "Campaign anomalies, hourly."),
    build_account_schedule("adset_anomaly_detection", anomaly_detection_jobs["adset"], "Adset anomalies, hourly at :30."),
    build_account_schedule("ad_anomaly_detection", anomaly_detection_jobs["ad"], "Ad anomalies, every 2 hours."),
    build_account_schedule("recommendations", recommendation_job,
                           "Recommendations, daily 07:30 (after tiers, forecasts and the night's anomalies)."),
]
