"""Prophet params, ensemble weights and forecasts materialised through Dagster on both databases."""

from __future__ import annotations

import datetime as dt
import json

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from ads_ml import settings
from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import materialize_account
from ads_ml_tests.helpers import count

END = dt.date(2026, 6, 30)
LEVEL_ASSETS = ["campaign_insights", "campaign_prophet_params", "campaign_ensemble_weights", "campaign_forecasts",
                "adset_insights", "adset_prophet_params", "adset_ensemble_weights", "adset_forecasts",
                "ad_insights", "ad_prophet_params", "ad_ensemble_weights", "ad_forecasts"]


@pytest.fixture
def account(engine, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_ML_N_JOBS", "1")  # small account: no process pool needed
    data = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=2, days=75, end_date=END, seed=9)
    # one ad that started 10 days ago: too little history to tune, forecast from 7 points on
    path = tmp_path / "acc.csv"
    data.insights.to_csv(path, index=False)
    import_insights(engine, path, "act_fc")
    return data


def _rows(engine, sql):
    with engine.connect() as conn:
        return pd.read_sql(sa.text(sql), conn)


WITH_PROPHET = "ema,linear,swa,ets,theta,snaive,prophet"


def test_tuning_weights_and_forecasts(dagster_instance, engine, account, monkeypatch):
    # Prophet is no member by default (it did not earn its cost: README); configured here for
    # campaigns and adsets, so the tuning and its parameters in the ensemble run too
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_CAMPAIGN", WITH_PROPHET)
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_ADSET", WITH_PROPHET)
    assert materialize_account("act_fc", LEVEL_ASSETS, instance=dagster_instance).success

    params = _rows(engine, "select * from ml_prophet_params")
    # tuned only where the level's ensemble has Prophet (not at ad level here)
    with_prophet = {level for level in ("campaign", "adset", "ad") if "prophet" in settings.forecast_methods(level)}
    assert set(params["metric"]) == {"cpl", "leads"} and set(params["entity_type"]) == with_prophet == {"campaign", "adset"}
    skipped = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_prophet_params")).asset_materialization.metadata
    assert skipped["skipped"].value is True and "has no Prophet member" in skipped["note"].value
    assert params["changepoint_prior_scale"].isin([0.01, 0.05, 0.1]).all()
    assert params["seasonality_prior_scale"].isin([0.1, 1.0, 10.0]).all()
    leads = params.loc[params["metric"] == "leads"]
    assert set(params["error_metric"]) <= {"mape", "mae"}
    one = params.iloc[0]
    stored = json.loads(open(one["params_path"]).read())
    assert stored["changepoint_prior_scale"] == one["changepoint_prior_scale"] and stored["metric"] == one["metric"]
    cv = one["cv_metrics"] if isinstance(one["cv_metrics"], dict) else json.loads(one["cv_metrics"])
    assert len(cv) == 9
    assert len(leads) > 0

    weights = _rows(engine, "select * from ml_ensemble_weights")
    # levels × metrics × each level's members
    assert len(weights) == 3 * sum(len(settings.forecast_methods(level)) for level in ("campaign", "adset", "ad"))
    sums = weights.groupby(["entity_type", "metric"])["weight"].sum()
    assert ((sums - 1.0).abs() < 1e-9).all()
    for level in ("campaign", "adset", "ad"):
        assert set(weights.loc[weights["entity_type"] == level, "method"]) == set(settings.forecast_methods(level))
    assert (weights.loc[weights["method"] == "prophet", "weight"] > 0).all()
    # the conformal interval of each level and metric: below and above the forecast
    assert (weights["interval_low"] <= 0).all() and (weights["interval_high"] > 0).all()
    assert weights.groupby(["entity_type", "metric"])["interval_high"].nunique().eq(1).all()

    forecasts = _rows(engine, "select * from ml_forecasts")
    assert {"ensemble", "seasonal_naive"} <= set(forecasts["method"]) <= {"ensemble", "seasonal_naive", "stopped"}
    assert (forecasts["predicted_value"] >= 0).all() and (forecasts["lower_bound"] >= 0).all()
    assert (forecasts["lower_bound"] <= forecasts["predicted_value"] + 1e-9).all()
    assert (forecasts["predicted_value"] <= forecasts["upper_bound"] + 1e-9).all()
    per_entity = forecasts.loc[forecasts["method"] == "ensemble"].groupby(["entity_type", "entity_id", "metric"]).size()
    assert (per_entity == 7).all()
    dates = pd.to_datetime(forecasts["forecast_date"])
    assert dates.min() == pd.Timestamp(END) + pd.Timedelta(days=1) and dates.max() == pd.Timestamp(END) + pd.Timedelta(days=7)
    spend = forecasts.loc[(forecasts["metric"] == "spend") & (forecasts["method"] == "ensemble")]
    assert spend["beat_baseline"].notna().any()

    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_forecasts")).asset_materialization.metadata
    assert meta["forecast_plot"].value.startswith("![forecast](data:image/png;base64,")
    assert meta["entities_forecast"].value > 0
    weights_meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_ensemble_weights")).asset_materialization.metadata
    assert "| metric" in weights_meta["weights"].value

    # re-running replaces the partition's rows
    before = count(engine, "ml_forecasts")
    assert materialize_account("act_fc", ["ad_insights", "ad_ensemble_weights", "ad_forecasts"], instance=dagster_instance).success
    assert count(engine, "ml_forecasts") == before


def test_tuning_one_metric_keeps_the_other(dagster_instance, engine, account, monkeypatch):
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_CAMPAIGN", WITH_PROPHET)
    materialize_account("act_fc", ["campaign_insights", "campaign_prophet_params"], instance=dagster_instance)
    both = count(engine, "ml_prophet_params")
    from ads_ml.definitions import defs  # the run config the weekly schedules send

    result = defs.resolve_job_def("prophet_tuning").execute_in_process(
        instance=dagster_instance, partition_key="act_fc",
        asset_selection=[dg.AssetKey("campaign_prophet_params")],
        run_config={"ops": {"campaign_prophet_params": {"config": {"metrics": ["cpl"]}}}},
    )
    assert result.success
    assert both > 0 and count(engine, "ml_prophet_params") == both
