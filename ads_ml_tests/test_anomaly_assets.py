"""Isolation Forest models through the model IO manager, and anomalies into ml_anomalies."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import dagster as dg
import pandas as pd
import sqlalchemy as sa

from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import materialize_account
from ads_ml_tests.helpers import count

END = dt.date(2026, 6, 30)
ASSETS = ["ad_insights", "ad_isolation_forest_models", "ad_anomalies"]


def test_models_round_trip_and_anomalies(dagster_instance, engine, tmp_path, monkeypatch):
    monkeypatch.setenv("ADS_ML_N_JOBS", "1")
    account = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=4, days=60, end_date=END, seed=8)
    path = tmp_path / "acc.csv"
    account.insights.to_csv(path, index=False)
    import_insights(engine, path, "act_an")

    assert materialize_account("act_an", ASSETS, instance=dagster_instance).success
    with engine.connect() as conn:
        models = pd.read_sql(sa.text(
            "select entity_id, status, training_metrics, checksum, path from ml_trained_models "
            "where name = 'isolation_forest' and entity_type = 'ad'"), conn)
    delivering = account.insights["ad_id"].nunique()
    assert 0 < len(models) <= delivering and (models["status"] == "READY").all()
    metrics = models["training_metrics"].iloc[0]
    metrics = metrics if isinstance(metrics, dict) else __import__("json").loads(metrics)
    assert metrics["samples"] >= 14 and metrics["features"] == 6 and metrics["contamination"] == 0.05
    # trained on the history detection compares with: the analysed day is not in it
    last_dates = [(m if isinstance(m, dict) else __import__("json").loads(m))["last_date"] for m in models["training_metrics"]]
    assert max(last_dates) == (END - dt.timedelta(days=1)).isoformat()

    anomalies = pd.read_sql(sa.text("select * from ml_anomalies"), engine.connect())
    spike = account.anomalies.loc[account.anomalies["kind"] == "spend_spike"].iloc[0]
    hit = anomalies[(anomalies["entity_id"] == spike.entity_id) & (anomalies["metric"] == "spend")]
    assert len(hit) == 1 and hit["direction"].iloc[0] == "up" and pd.Timestamp(hit["anomaly_date"].iloc[0]).date() == END
    assert "isolation_forest" in hit["method"].iloc[0]  # the entity's model agreed
    assert len(anomalies) <= 6
    assert set(anomalies["severity"]) <= {"low", "medium", "high", "critical"}
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_anomalies")).asset_materialization.metadata
    assert meta["entities_with_model"].value == len(models) and "| entity_id" in meta["top_anomalies"].value

    # re-running detection over the same window replaces its rows; a 3-day window covers more
    n = count(engine, "ml_anomalies")
    assert materialize_account("act_an", ["ad_insights", "ad_anomalies"], instance=dagster_instance).success
    assert count(engine, "ml_anomalies") == n
    from ads_ml.definitions import defs

    result = defs.resolve_job_def("ad_anomaly_detection").execute_in_process(
        instance=dagster_instance, partition_key="act_an",
        run_config={"ops": {"ad_anomalies": {"config": {"days_to_analyze": 3}}}},
    )
    assert result.success
    dates = pd.read_sql(sa.text("select distinct anomaly_date from ml_anomalies"), engine.connect())["anomaly_date"]
    assert pd.to_datetime(dates).max().date() == END and count(engine, "ml_anomalies") >= n

    # a second training deprecates the first models; the files of older versions are pruned
    assert materialize_account("act_an", ["ad_isolation_forest_models"], instance=dagster_instance).success
    assert count(engine, "ml_trained_models", "name = 'isolation_forest' and status = 'READY'") == len(models)
    assert count(engine, "ml_trained_models", "name = 'isolation_forest' and status = 'DEPRECATED'") == len(models)

    # A corrupted forest file: that ad is still checked with the same forest, rebuilt for the run,
    # and the metadata says which file was refused.
    spike_model = pd.read_sql(sa.text(
        "select path from ml_trained_models where name = 'isolation_forest' and status = 'READY' "
        f"and entity_id = '{spike.entity_id}'"), engine.connect())["path"].iloc[0]
    Path(spike_model).write_bytes(b"tampered")
    assert materialize_account("act_an", ["ad_insights", "ad_anomalies"], instance=dagster_instance).success
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_anomalies")).asset_materialization.metadata
    assert list(meta["models_unreadable"].value) == [spike.entity_id]
    assert "does not match its checksum" in meta["models_unreadable"].value[spike.entity_id]
    assert meta["models_rebuilt_for_this_run"].value == 1 and meta["entities_with_model"].value == len(models)
    again = pd.read_sql(sa.text("select * from ml_anomalies"), engine.connect())
    hit = again[(again["entity_id"] == spike.entity_id) & (again["metric"] == "spend")]
    assert len(hit) == 1 and "isolation_forest" in hit["method"].iloc[0]
