"""Tier classifiers and classifications materialised through Dagster on both databases."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import sqlalchemy as sa

from ads_ml.db.queries import latest_classifications
from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import materialize_account
from ads_ml_tests.helpers import count

END = dt.date(2026, 6, 30)
TIER_ASSETS = [
    "campaign_insights", "adset_insights", "ad_insights",
    "campaign_features", "adset_features", "ad_features",
    "campaign_tier_classifier", "adset_tier_classifier", "ad_tier_classifier", "transfer_classifier",
    "campaign_classifications", "adset_classifications", "ad_classifications",
]


def _import(engine, tmp_path, account_id, **kwargs):
    account = generate_account(end_date=END, **kwargs)
    path = tmp_path / f"{account_id}.csv"
    account.insights.to_csv(path, index=False)
    import_insights(engine, path, account_id)
    return account


def test_classifications_for_every_level_with_models_and_directions(dagster_instance, engine, tmp_path):
    _import(engine, tmp_path, "act_tiers", n_campaigns=10, adsets_per_campaign=2, ads_per_adset=2, days=90, seed=5)
    earlier = END - dt.timedelta(days=7)
    assert materialize_account("act_tiers", TIER_ASSETS, reference_date=earlier, instance=dagster_instance).success
    assert materialize_account("act_tiers", TIER_ASSETS, instance=dagster_instance).success

    with engine.connect() as conn:
        models = conn.execute(sa.text(
            "select name, entity_type, version, status from ml_trained_models order by name, entity_type, version")).all()
    ready = {(m.name, m.entity_type) for m in models if m.status == "READY"}
    assert ready == {("tier_classifier", "campaign"), ("tier_classifier", "adset"), ("tier_classifier", "ad"),
                     ("transfer_classifier", "campaign")}
    assert {m.version for m in models if m.status == "READY"} == {2}

    for level, n in (("campaign", 10), ("adset", 20), ("ad", 40)):
        tiers = latest_classifications(engine, "act_tiers", level)
        assert len(tiers) == n and set(tiers["reference_date"]) == {END}
        assert tiers["tier"].isin(["HIGH_PERFORMER", "MODERATE", "LOW", "UNDERPERFORMER", "INSUFFICIENT_DATA"]).all()
        by_model = tiers["method"] == "model"
        # the classifier is used only where it ordered its validation weeks better than the rules
        trained = dagster_instance.get_latest_materialization_event(dg.AssetKey(f"{level}_tier_classifier"))
        use = trained.asset_materialization.metadata["use"].value
        if use == "model":
            assert by_model.sum() > 0 and (tiers.loc[by_model, "model_version"] == 2).all()
        else:
            assert use.startswith("rules:") and not by_model.any()
            classified = dagster_instance.get_latest_materialization_event(dg.AssetKey(f"{level}_classifications"))
            assert classified.asset_materialization.metadata["note"].value == use
        tiered = tiers["tier"] != "INSUFFICIENT_DATA"
        assert tiers.loc[tiered, "confidence_score"].between(0, 1).all()
        # the run a week earlier gives every entity a previous tier and a direction
        had = tiers["previous_tier"].notna()
        assert had.sum() >= n * 0.8
        same = had & (tiers["previous_tier"] == tiers["tier"])
        assert (tiers.loc[same, "tier_change_direction"] == "stable").all()
    # two reference dates, no duplicates
    assert count(engine, "ml_classifications", "entity_type = 'campaign'") == 20

    event = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_classifications"))
    metadata = event.asset_materialization.metadata
    assert sum(metadata["tier_counts"].value.values()) == 40
    assert "| tier" in metadata["top_by_spend"].value
    trained = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_tier_classifier"))
    assert trained.asset_materialization.metadata["status"].value == "trained"
    assert 0 <= trained.asset_materialization.metadata["validation_accuracy"].value <= 1


def test_account_with_too_little_data_materialises_and_says_why(dagster_instance, engine, tmp_path):
    _import(engine, tmp_path, "act_small", n_campaigns=2, adsets_per_campaign=1, ads_per_adset=2, days=36, seed=2)
    assert materialize_account("act_small", TIER_ASSETS, instance=dagster_instance).success
    assert count(engine, "ml_trained_models") == 0
    meta = dagster_instance.get_latest_materialization_event(dg.AssetKey("campaign_tier_classifier")).asset_materialization.metadata
    assert meta["status"].value == "insufficient_data" and "at least 30 needed" in meta["reason"].value
    transfer = dagster_instance.get_latest_materialization_event(dg.AssetKey("transfer_classifier")).asset_materialization.metadata
    assert transfer["reason"].value == "2 campaigns with delivery, at least 10 needed"
    tiers = latest_classifications(engine, "act_small", "ad")
    assert len(tiers) == 4 and (tiers["method"] == "rules").all()
    tiered = tiers["tier"] != "INSUFFICIENT_DATA"
    assert tiers.loc[tiered, "confidence_score"].between(0, 1).all() and tiers.loc[~tiered, "confidence_score"].isna().all()
    note = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_classifications")).asset_materialization.metadata
    assert "no READY ad tier classifier" in note["note"].value
