"""Tier labels, the classifier, calibration, transfer and the insufficient-data path (pure ML)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ads_ml.demo import generate_account
from ads_ml.ml.features import compute_entity_features
from ads_ml.ml.tiers import (
    TRANSFER_FEATURE_COLUMNS,
    TierClassifier,
    build_training_set,
    classify_entities,
    expected_calibration_error,
    rule_tiers,
    tier_direction,
    train_tier_classifier,
)
from ads_ml_tests.tier_data import known_tier_account

REF = dt.date(2026, 6, 30)


def test_rule_tiers_use_cpl_against_the_account_and_lead_volume():
    spend = [50, 100, 130, 200, 200, 1, 20]
    leads = [10, 10, 10, 10, 0, 0, 4]
    tiers = rule_tiers(spend, leads, account_cpl=10.0)
    # quantiles of (spend + 3 · 10) / (leads + 3) among the six with evidence
    assert tiers.tolist() == [
        "HIGH_PERFORMER",   # CPL 5 over 10 leads: 6.2
        "MODERATE",         # 10.0
        "LOW",              # 12.3
        "UNDERPERFORMER",   # 17.7
        "UNDERPERFORMER",   # spent 20 average CPLs without a lead: 76.7
        "INSUFFICIENT_DATA",  # spent 0.1 average CPL without a lead: no evidence yet
        "MODERATE",         # cheap (CPL 5) but only 4 leads: 7.1, shrunk past the 10-lead one
    ]


def test_direction_between_tiers():
    assert tier_direction(["LOW", "HIGH_PERFORMER", "MODERATE", None, "INSUFFICIENT_DATA"],
                          ["MODERATE", "LOW", "MODERATE", "LOW", "LOW"]).tolist() == [
        "improved", "declined", "stable", None, None]


def _frames(account):
    raw = account.insights
    daily = raw.rename(columns={"ad_id": "entity_id"})[
        ["entity_id", "date", "impressions", "reach", "clicks", "spend", "leads", "conversions"]]
    entities = raw.drop_duplicates("ad_id").rename(
        columns={"ad_id": "entity_id", "adset_id": "parent_id", "ad_status": "status"})[["entity_id", "parent_id", "status"]]
    return daily, entities


def test_known_tiers_are_learned():
    daily, entities, truth = known_tier_account()
    training = build_training_set(daily, entities, REF)
    assert set(training.label_source) == {"outcome"}
    result = train_tier_classifier(training)
    assert result.status == "trained"
    assert result.metrics["accuracy"] >= 0.9
    features = compute_entity_features(daily, entities, REF)
    classified = classify_entities(features, result.model)
    assert (classified["method"] == "model").all()
    agreement = (classified["tier"] == truth.reindex(classified.index)).mean()
    assert agreement >= 0.9
    assert classified["confidence"].between(0, 1).all()
    assert all(len(top) > 0 for top in classified["top_features"])


def test_outcome_labels_look_forward_without_touching_the_features():
    daily, entities, _truth = known_tier_account(per_group=8)
    base = build_training_set(daily, entities, REF)
    # Make ad_0_0 (a HIGH performer) bring no leads in the week after the last snapshot.
    snapshot = base.snapshot.max()
    after = (daily["entity_id"] == "ad_0_0") & (daily["date"] > snapshot)
    changed = daily.copy()
    changed.loc[after, "leads"] = 0
    moved = build_training_set(changed, entities, REF)
    pick = lambda ts: (ts.entity_id == "ad_0_0") & (ts.snapshot == snapshot)  # noqa: E731
    assert base.y[pick(base)].item() == "HIGH_PERFORMER"
    assert moved.y[pick(moved)].item() == "UNDERPERFORMER"
    pd.testing.assert_frame_equal(base.X[pick(base)], moved.X[pick(moved)])


def test_feedback_labels_override_rules_and_outcomes():
    daily, entities, _truth = known_tier_account(per_group=8)
    feedback = pd.DataFrame({
        "entity_id": ["ad_3_0", "ad_0_1"],
        "tier": ["HIGH_PERFORMER", "LOW"],
        "feedback_date": [pd.Timestamp("2026-06-20"), None],
    })
    training = build_training_set(daily, entities, REF, feedback)
    from_people = training.label_source == "feedback"
    assert from_people.sum() == 2
    labelled = dict(zip(training.entity_id[from_people], training.y[from_people]))
    assert labelled == {"ad_3_0": "HIGH_PERFORMER", "ad_0_1": "LOW"}
    # the outcome of ad_3_0's other weeks is still the rule's UNDERPERFORMER
    others = (training.entity_id == "ad_3_0") & ~from_people
    assert set(training.y[others]) == {"UNDERPERFORMER"}


def test_calibrated_confidence_on_generated_accounts():
    probabilities, labels = [], []
    for seed in (1, 2, 3):
        daily, entities = _frames(generate_account(5, 4, 5, days=120, end_date=REF, seed=seed))
        training = build_training_set(daily, entities, REF)
        result = train_tier_classifier(training)
        assert result.status == "trained"
        val = training.snapshot >= pd.Timestamp(result.metrics["validation_from"])
        train = training.snapshot <= pd.Timestamp(result.metrics["validation_from"]) - pd.Timedelta(days=7)
        model = TierClassifier().fit(training.X[train], training.y[train], groups=training.snapshot[train].astype("int64"))
        probabilities.append(model.predict_proba(training.X[val]))
        index = {t: i for i, t in enumerate(model.classes_)}
        labels.append(np.array([index.get(v, -1) for v in training.y[val]]))
        assert result.metrics["ece"] <= 0.15
    pooled = expected_calibration_error(np.vstack(probabilities), np.concatenate(labels))
    # stated bound: pooled top-label ECE of the validation weeks within 0.10
    assert pooled <= 0.10


def test_transfer_model_classifies_young_entities_with_a_penalty():
    daily, entities, _truth = known_tier_account(per_group=8)
    training = build_training_set(daily, entities, REF)
    transfer = train_tier_classifier(training, feature_columns=TRANSFER_FEATURE_COLUMNS).model
    features = compute_entity_features(daily, entities, REF)
    young = features.index[:3]
    features.loc[young, "age_days"] = 5.0
    classified = classify_entities(features, None, transfer)
    assert (classified.loc[young, "method"] == "transfer").all() and classified.loc[young, "is_transfer"].all()
    expected = transfer.predict_proba(features.loc[young]).max(axis=1) * 0.85
    np.testing.assert_allclose(classified.loc[young, "confidence"].to_numpy(dtype=float), expected)
    # entities with history and no own model also fall back to the transfer model
    assert (classified["method"] == "transfer").all()
    # with an own model, only the young ones are transferred
    own = train_tier_classifier(training).model
    mixed = classify_entities(features, own, transfer)
    assert set(mixed.loc[mixed["is_transfer"]].index) == set(young)


def test_too_few_samples_is_insufficient_data_not_an_exception():
    daily, entities, _truth = known_tier_account(per_group=1, days=20)
    training = build_training_set(daily, entities, REF)
    result = train_tier_classifier(training)
    assert result.status == "insufficient_data" and result.model is None
    assert result.reason.endswith("at least 30 needed")
    features = compute_entity_features(daily, entities, REF)
    classified = classify_entities(features, None, None)
    assert (classified["method"] == "rules").all() and classified["confidence"].isna().all()
    assert (classified["tier"] == classified["rule_tier"]).all()


def test_rule_tiers_are_quantiles_of_shrunk_cpl_with_a_volume_guard():
    # twenty entities with CPL 5 … 24 and 20 leads each: a quarter in every tier, cheapest HIGH
    spend = [20.0 * c for c in range(5, 25)]
    tiers = rule_tiers(spend, [20] * 20, account_cpl=14.5)
    assert tiers.tolist() == ["HIGH_PERFORMER"] * 5 + ["MODERATE"] * 5 + ["LOW"] * 5 + ["UNDERPERFORMER"] * 5
    # one lucky lead at CPL 2 is not better evidence than 40 leads at CPL 6
    tiers = rule_tiers([2.0, 240.0, 400.0, 600.0], [1, 40, 40, 40], account_cpl=10.0)
    assert tiers[1] == "HIGH_PERFORMER" and tiers[0] != "HIGH_PERFORMER"


def test_a_past_snapshot_cannot_read_todays_status_or_budget():
    daily, entities, _truth = known_tier_account(per_group=6)
    training = build_training_set(daily, entities, REF)
    model = train_tier_classifier(training).model
    assert not set(model.feature_columns) & {"is_active", "has_budget"}
    # the same account, where every ad has since been paused and lost its budget: same model
    paused = entities.assign(status="PAUSED", daily_budget=0.0)
    other = train_tier_classifier(build_training_set(daily, paused, REF)).model
    X = training.X
    assert np.allclose(model.predict_proba(X), other.predict_proba(X))


def test_a_classifier_that_does_not_beat_the_rules_is_not_used():
    daily, entities, _truth = known_tier_account(per_group=8)
    training = build_training_set(daily, entities, REF)
    # labels that carry no information: a model of noise orders next week worse than the rules
    noise = training.y.sample(frac=1.0, random_state=3).to_numpy()
    training.y = pd.Series(noise, index=training.y.index)
    result = train_tier_classifier(training)
    assert result.status == "trained" and result.metrics["beats_rules"] is False
    assert result.metrics["model_order"] < result.metrics["rule_order"]
    assert result.metrics["use"].startswith("rules:")
    classified = classify_entities(compute_entity_features(daily, entities, REF), result.model)
    assert (classified["method"] == "rules").all() and (classified["tier"] == classified["rule_tier"]).all()
