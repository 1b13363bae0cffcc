"""Tier labels, the classifier, calibration, transfer and the insufficient-data path (pure ML)."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ads_ml import settings
from ads_ml.demo import generate_account
from ads_ml.ml.features import compute_entity_features
from ads_ml.ml.tiers import (
    TRANSFER_FEATURE_COLUMNS,
    TierClassifier,
    build_training_set,
    classify_entities,
    method_reasons,
    expected_calibration_error,
    expected_cost,
    rule_tiers,
    rule_tiers_from_features,
    tier_direction,
    tiers_from_cost,
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
    model = result.model
    learned = tiers_from_cost(expected_cost(model, features))
    assert (learned == truth.reindex(features.index).to_numpy()).mean() >= 0.9
    assert all(len(top) > 0 for top in model.top_features(features))
    # the rule tiers are just as right here: a classifier that only ties them is not used
    assert result.metrics["order_gain_lower"] <= 0 and result.metrics["beats_rules"] is False
    classified = classify_entities(features, model)
    assert (classified["method"] == "rules").all()
    assert (classified["tier"] == truth.reindex(classified.index)).mean() >= 0.9


def test_a_classifier_that_orders_clearly_better_than_the_rules_is_used():
    daily, entities, truth = known_tier_account(per_group=8)
    training = build_training_set(daily, entities, REF)
    # the rules' evidence scrambled within each snapshot: they order next week no better than chance,
    # while the classifier still reads the 7- and 30-day CPL
    rng = np.random.default_rng(1)
    for snapshot in training.snapshot.unique():
        rows = (training.snapshot == snapshot).to_numpy()
        order = rng.permutation(rows.sum())
        for column in ("spend_weighted", "leads_weighted", "cpl_weighted_vs_account"):
            training.X.loc[rows, column] = training.X.loc[rows, column].to_numpy()[order]
    result = train_tier_classifier(training)
    assert result.metrics["order_gain_lower"] > 0 and result.metrics["beats_rules"] is True
    assert result.metrics["use"] == "model"
    features = compute_entity_features(daily, entities, REF)
    classified = classify_entities(features, result.model)
    assert (classified["method"] == "model").all()
    assert classified["confidence"].between(0, 1).all()
    assert (classified["tier"] == truth.reindex(classified.index)).mean() >= 0.9


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
    transfer.beats_rules_ = True
    features = compute_entity_features(daily, entities, REF)
    young = features.index[:3]
    features.loc[young, "age_days"] = 5.0
    classified = classify_entities(features, None, transfer)
    assert (classified.loc[young, "method"] == "transfer").all() and classified.loc[young, "is_transfer"].all()
    expected = transfer.predict_proba(features.loc[young]).max(axis=1) * 0.85
    np.testing.assert_allclose(classified.loc[young, "confidence"].to_numpy(dtype=float), expected)
    # entities with history of their own never go to the transfer model: without a level classifier, rule tiers
    older = classified.index.difference(young)
    assert (classified.loc[older, "method"] == "rules").all()
    assert (classified.loc[older, "tier"] == classified.loc[older, "rule_tier"]).all()
    reasons = method_reasons(classified, features, None, transfer)
    assert reasons["transfer"]["entities"] == 3
    assert sum(r["entities"] for r in reasons.values()) == len(classified)
    assert "no level's classifier was trained" in reasons["rules (history)"]["why"]
    # with an own model (one that passed its check against the rules), only the young ones are transferred
    own = train_tier_classifier(training).model
    own.beats_rules_ = True
    mixed = classify_entities(features, own, transfer)
    assert set(mixed.loc[mixed["is_transfer"]].index) == set(young)
    assert (mixed.loc[older, "method"] == "model").all()


def test_a_transfer_model_that_lost_to_the_rules_tiers_nothing():
    daily, entities, _truth = known_tier_account(per_group=8)
    training = build_training_set(daily, entities, REF)
    transfer = train_tier_classifier(training, feature_columns=TRANSFER_FEATURE_COLUMNS).model
    transfer.beats_rules_ = False
    own = train_tier_classifier(training).model
    own.beats_rules_ = False
    features = compute_entity_features(daily, entities, REF)
    features.loc[features.index[:3], "age_days"] = 5.0
    classified = classify_entities(features, own, transfer)
    assert (classified["method"] == "rules").all()
    pd.testing.assert_series_equal(classified["tier"], classified["rule_tier"], check_names=False)
    reasons = method_reasons(classified, features, own, transfer)
    assert set(reasons) <= {"rules (history)", "rules (young)", "insufficient data"}
    assert "transfer model did not beat the rule tiers" in reasons["rules (young)"]["why"]
    assert "level's classifier did not beat the rule tiers" in reasons["rules (history)"]["why"]


def test_too_few_samples_is_insufficient_data_not_an_exception():
    daily, entities, _truth = known_tier_account(per_group=1, days=20)
    training = build_training_set(daily, entities, REF)
    result = train_tier_classifier(training)
    assert result.status == "insufficient_data" and result.model is None
    assert result.reason.endswith("at least 30 needed")
    features = compute_entity_features(daily, entities, REF)
    classified = classify_entities(features, None, None)
    assert (classified["method"] == "rules").all()
    assert (classified["tier"] == classified["rule_tier"]).all()
    tiered = classified["tier"] != "INSUFFICIENT_DATA"
    assert classified.loc[tiered, "confidence"].between(0, 1).all() and classified.loc[~tiered, "confidence"].isna().all()


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


def test_rule_tiers_weigh_older_weeks_and_need_recent_delivery():
    dates = pd.date_range(end=REF, periods=56, freq="D")

    def ad(entity: str, old_leads: int, recent_leads: list[int], delivering: bool = True) -> pd.DataFrame:
        leads = np.array([old_leads] * 49 + recent_leads)
        spend = np.full(56, 50.0)
        if not delivering:  # stopped ten days ago
            spend[-10:], leads[-10:] = 0.0, 0
        return pd.DataFrame({"entity_id": entity, "date": dates, "impressions": 5000, "reach": 4000.0, "clicks": 50,
                             "spend": spend, "leads": leads, "conversions": 0})

    last_week = [1, 0, 1, 0, 1, 0, 1]  # the same four leads this week for the first two
    daily = pd.concat([
        ad("steady_cheap", 5, last_week), ad("steady_dear", 1, last_week),
        ad("mid_1", 3, [3] * 7), ad("mid_2", 2, [2] * 7), ad("stopped", 9, [0] * 7, delivering=False),
    ])
    entities = pd.DataFrame({"entity_id": daily["entity_id"].unique(), "parent_id": "adset", "status": "ACTIVE"})
    features = compute_entity_features(daily, entities, REF)
    tiers = pd.Series(rule_tiers_from_features(features), index=features.index)
    # a week of four leads says little; seven weeks of five leads a day say the ad is cheap
    assert tiers["steady_cheap"] == "HIGH_PERFORMER" and tiers["steady_dear"] == "UNDERPERFORMER"
    # the last 7 days alone could not tell them apart
    assert features.loc["steady_cheap", "cpl_7d"] == features.loc["steady_dear", "cpl_7d"]
    # no spend in the last 7 days: nothing recent to judge, however cheap it was
    assert tiers["stopped"] == "INSUFFICIENT_DATA"
    # the weight of a day halves every RECENCY_HALF_LIFE_DAYS
    weights = 0.5 ** (np.arange(56)[::-1] / settings.RECENCY_HALF_LIFE_DAYS)
    assert features.loc["mid_2", "spend_weighted"] == pytest.approx(50.0 * weights.sum())


def test_rule_tiers_carry_a_calibrated_confidence():
    # on ground-truth accounts, against the tier each ad earned over the held-out week
    from benchmarks.tiers_direct import ad_level, held_out_tiers
    from benchmarks.truth_accounts import generate

    confidence, right = [], []
    for volume in ("small", "large"):
        for seed in (1, 2, 3):
            truth = generate(seed, volume)
            daily, entities = ad_level(truth)
            classified = classify_entities(compute_entity_features(daily, entities, truth.last_day), None)
            tiered = classified["tier"] != "INSUFFICIENT_DATA"
            assert classified.loc[tiered, "confidence"].between(0, 1).all() and classified.loc[~tiered, "confidence"].isna().all()
            assert all(set(top) == {"cpl_weighted_vs_account"} for top in classified.loc[tiered, "top_features"])
            held = held_out_tiers(truth, classified.index)
            judged = tiered.to_numpy() & pd.Series(held).isin(["HIGH_PERFORMER", "MODERATE", "LOW", "UNDERPERFORMER"]).to_numpy()
            confidence.append(classified["confidence"].to_numpy(dtype=float)[judged])
            right.append((classified["tier"].to_numpy() == held)[judged])
    confidence, right = np.concatenate(confidence), np.concatenate(right)
    bins = np.clip((confidence * 10).astype(int), 0, 9)
    ece = sum((bins == b).mean() * abs(right[bins == b].mean() - confidence[bins == b].mean()) for b in np.unique(bins))
    # stated bound: top-label ECE within 0.10 (measured 0.03–0.05 on 40 accounts); confidence means something
    assert ece <= 0.10
    assert right[confidence >= 0.8].mean() > right[confidence < 0.5].mean() + 0.2
