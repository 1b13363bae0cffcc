"""The account pipeline on a real Dagster instance (SQLite or PostgreSQL storage) and database."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from ads_ml.db.queries import load_features
from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import PipelineError, materialize_account
from ads_ml_tests.helpers import count

END = dt.date(2026, 6, 30)
BASE = [f"{level}_{kind}" for level in ("campaign", "adset", "ad") for kind in ("insights", "features")]


@pytest.fixture
def demo_account(engine, tmp_path):
    account = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=3, days=60, end_date=END, seed=11)
    path = tmp_path / "demo.csv"
    account.insights.to_csv(path, index=False)
    import_insights(engine, path, "act_pipe")
    return account


def test_partitioned_materialisation_writes_features_and_replaces_on_rerun(dagster_instance, engine, demo_account):
    result = materialize_account("act_pipe", BASE, instance=dagster_instance)
    assert result.success
    assert dagster_instance.get_dynamic_partitions("ad_account") == ["act_pipe"]

    n_ads = demo_account.insights["ad_id"].nunique()
    assert count(engine, "ml_features", "entity_type = 'ad'") == n_ads
    assert count(engine, "ml_features", "entity_type = 'adset'") == 4
    assert count(engine, "ml_features", "entity_type = 'campaign'") == 2
    features = load_features(engine, "act_pipe", "campaign")
    assert set(features["reference_date"]) == {END}
    assert features["spend_7d"].sum() == pytest.approx(
        demo_account.insights.loc[demo_account.insights["date"] > str(END - dt.timedelta(days=7)), "spend"].sum()
    )

    # Materialisations are stored against the partition, with metadata.
    for name in ("campaign_insights", "adset_features", "ad_features"):
        assert dagster_instance.get_materialized_partitions(dg.AssetKey(name)) == {"act_pipe"}
    event = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_insights"))
    metadata = event.asset_materialization.metadata
    assert metadata["rows"].value == len(demo_account.insights)
    assert metadata["reference_date"].value == END.isoformat()
    assert "| entity_id" in metadata["top_by_spend"].value and "| name" in metadata["top_by_spend"].value
    assert "Ad " in metadata["top_by_spend"].value  # the names a marketer knows, beside the ids

    checks = [e for e in result.all_events if e.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
    assert len(checks) == 12
    assert all(e.event_specific_data.passed for e in checks)

    # Re-running the partition replaces the rows; nothing is duplicated.
    assert materialize_account("act_pipe", BASE, instance=dagster_instance).success
    assert count(engine, "ml_features", "entity_type = 'ad'") == n_ads


def test_reference_date_can_be_given(dagster_instance, engine, demo_account):
    earlier = END - dt.timedelta(days=20)
    materialize_account("act_pipe", ["campaign_insights", "campaign_features"], reference_date=earlier, instance=dagster_instance)
    features = load_features(engine, "act_pipe", "campaign")
    assert set(features["reference_date"]) == {earlier}
    assert count(engine, "ml_features", "entity_type = 'ad'") == 0  # not selected


def test_account_without_insights_materialises_every_asset_saying_so(dagster_instance, engine):
    """A new account (no insights yet) is not an error: every asset materialises, with metadata
    saying there was no data, and nothing is written to the result tables."""
    result = materialize_account("act_none", instance=dagster_instance)
    assert result.success
    for event in result.get_asset_materialization_events():
        metadata = event.event_specific_data.materialization.metadata
        name = event.asset_key.to_user_string()
        if name.endswith(("_tier_classifier", "transfer_classifier")):
            assert metadata["status"].value == "insufficient_data", name
        else:
            assert metadata["no_data"].value is True, name
    assert count(engine, "ml_features") == count(engine, "ml_classifications") == count(engine, "ml_forecasts") == 0


def test_inputs_are_read_back_from_the_database_in_a_later_run(dagster_instance, engine, demo_account):
    """Outputs cross runs and processes through the database-backed IO manager: a later run that
    does not re-materialise the insights reads them as of the reference date they were computed
    for (a backfill's date stays that date), and gets the type the step expects."""
    earlier = END - dt.timedelta(days=20)
    materialize_account("act_pipe", ["campaign_insights"], reference_date=earlier, instance=dagster_instance)
    materialize_account("act_pipe", ["campaign_features"], instance=dagster_instance)
    assert set(load_features(engine, "act_pipe", "campaign")["reference_date"]) == {earlier}
    # features, in turn, are read back from ml_features by a run of the classifications alone
    result = materialize_account("act_pipe", ["campaign_classifications"], instance=dagster_instance)
    [event] = result.get_asset_materialization_events()
    assert event.event_specific_data.materialization.metadata["reference_date"].value == earlier.isoformat()
    assert count(engine, "ml_classifications", "entity_type = 'campaign'") == 2


def test_unknown_asset_is_refused(dagster_instance):
    with pytest.raises(PipelineError, match="unknown asset\\(s\\) nonsense"):
        materialize_account("act_pipe", ["nonsense"], instance=dagster_instance)
