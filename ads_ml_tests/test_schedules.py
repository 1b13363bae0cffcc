"""Every schedule asks for one run per ad-account partition."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from ads_ml import settings
from ads_ml.definitions import defs

EXPECTED = {
    "tier_training_schedule": ("0 3 * * *", "tier_training"),
    "transfer_training_schedule": ("0 3 * * 1", "transfer_training"),
    "campaign_classification_schedule": ("0 5 * * *", "campaign_classification"),
    "adset_classification_schedule": ("30 5 * * *", "adset_classification"),
    "ad_classification_schedule": ("0 6 * * *", "ad_classification"),
    "prophet_tuning_cpl_schedule": ("0 2 * * 0", "prophet_tuning"),
    "prophet_tuning_leads_schedule": ("30 2 * * 0", "prophet_tuning"),
    "ensemble_calibration_schedule": ("30 5 * * *", "ensemble_calibration"),
    "forecasts_schedule": ("30 6 * * *", "forecasts"),
    "anomaly_training_schedule": ("0 1 * * *", "anomaly_training"),
    "campaign_anomaly_detection_schedule": ("0 * * * *", "campaign_anomaly_detection"),
    "adset_anomaly_detection_schedule": ("30 * * * *", "adset_anomaly_detection"),
    "ad_anomaly_detection_schedule": ("0 */2 * * *", "ad_anomaly_detection"),
    "recommendations_schedule": ("30 7 * * *", "recommendations"),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_schedule_requests_one_run_per_account(name, backend, dagster_instance):
    schedule = defs.resolve_schedule_def(name)
    cron, job = EXPECTED[name]
    assert schedule.cron_schedule == cron and schedule.job_name == job
    assert schedule.execution_timezone == settings.schedule_timezone()

    context = dg.build_schedule_context(
        instance=dagster_instance,
        scheduled_execution_time=dt.datetime(2026, 11, 23, 3),
        repository_def=defs.get_repository_def(),
    )
    empty = schedule.evaluate_tick(context)
    assert not empty.run_requests and "no ad-account partitions" in empty.skip_message

    dagster_instance.add_dynamic_partitions("ad_account", ["act_a", "act_b", "act_c"])
    result = schedule.evaluate_tick(context)
    assert sorted(r.partition_key for r in result.run_requests) == ["act_a", "act_b", "act_c"]
    assert len({r.run_key for r in result.run_requests}) == 3
    if name.startswith("prophet_tuning"):
        metric = name.split("_")[2]
        for request in result.run_requests:
            assert {op["config"]["metrics"][0] for op in request.run_config["ops"].values()} == {metric}
            assert set(request.run_config["ops"]) == {"campaign_prophet_params", "adset_prophet_params", "ad_prophet_params"}
    # the job's selection resolves against the asset graph (no missing assets)
    assert defs.resolve_job_def(job).asset_layer is not None


def test_timezone_is_configurable(monkeypatch):
    monkeypatch.setenv("ADS_ML_SCHEDULE_TIMEZONE", "America/Sao_Paulo")
    assert settings.schedule_timezone() == "America/Sao_Paulo"
