"""The rule engine: each rule fires on a case built for it and stays silent on its near miss."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from ads_ml.db.queries import store_recommendations
from ads_ml.ml.features import FEATURE_COLUMNS
from ads_ml.ml.recommendations import LEVEL_TYPES, recommend

ANCHOR = {"spend_7d": 10000.0, "leads_7d": 1000.0, "cpl_7d": 10.0, "cpl_vs_account_7d": 1.0,
          "avg_daily_spend_30d": 1428.57, "leads_30d": 4285.7, "cpl_30d": 10.0}


def _row(**overrides) -> dict:
    base = {c: np.nan for c in FEATURE_COLUMNS}
    base.update({
        "spend_7d": 100.0, "leads_7d": 10.0, "cpl_7d": 10.0, "cpl_vs_account_7d": 1.0, "cpl_trend_7d": 0.0,
        "ctr_trend_7d": 0.0, "frequency_7d": 1.8, "frequency_trend_7d": 0.0, "cpl_vs_siblings_7d": 1.0,
        "share_of_parent_spend_7d": 0.3, "cpl_30d": 10.0, "leads_30d": 40.0, "avg_daily_spend_30d": 14.3,
        "age_days": 60.0, "is_active": 1.0, "has_budget": 0.0,
    })
    base.update(overrides)
    return base


def _run(level: str, case: dict, budget: float | None = None, anomalies: pd.DataFrame | None = None) -> set[str]:
    features = pd.DataFrame([_row(**ANCHOR), _row(**case)], index=pd.Index(["anchor", "x"], name="entity_id"))
    budgets = pd.Series({"x": budget}) if budget is not None else None
    recs = recommend(level, features, budgets=budgets, anomalies=anomalies)
    mine = recs.loc[recs["entity_id"] == "x"]
    for rec in mine.itertuples():
        assert 0 < rec.confidence <= 1 and rec.priority in ("high", "medium", "low")
        assert any(ch.isdigit() for ch in rec.reason) and isinstance(rec.suggested_action, dict)
    return set(mine["recommendation_type"])


CASES = [
    # type, level, firing case, near miss, budget
    ("SCALE_UP", "campaign", dict(cpl_7d=6.0, cpl_vs_account_7d=0.6, leads_7d=12), dict(cpl_7d=6.0, cpl_vs_account_7d=0.6, leads_7d=9), None),
    ("BUDGET_INCREASE", "adset", dict(cpl_7d=9.0, cpl_vs_account_7d=0.9, leads_7d=6), dict(cpl_7d=9.0, cpl_vs_account_7d=0.9, leads_7d=6, spend_7d=90.0), 15.0),
    ("BUDGET_DECREASE", "campaign", dict(cpl_7d=14.0, cpl_vs_account_7d=1.4, cpl_trend_7d=0.15), dict(cpl_7d=14.0, cpl_vs_account_7d=1.4, cpl_trend_7d=0.05), None),
    ("PAUSE", "ad", dict(leads_7d=0, cpl_7d=np.nan, cpl_vs_account_7d=np.nan, spend_7d=35.0), dict(leads_7d=0, cpl_7d=np.nan, cpl_vs_account_7d=np.nan, spend_7d=25.0), None),
    ("REACTIVATE", "adset", dict(is_active=0.0, cpl_30d=8.0, leads_30d=6), dict(is_active=0.0, cpl_30d=9.5, leads_30d=6), None),
    ("AUDIENCE_REVIEW", "adset", dict(cpl_vs_siblings_7d=1.6), dict(cpl_vs_siblings_7d=1.4), None),
    ("AUDIENCE_EXPANSION", "adset", dict(frequency_7d=3.2, cpl_vs_account_7d=0.95, cpl_7d=9.5), dict(frequency_7d=2.8, cpl_vs_account_7d=0.95, cpl_7d=9.5), None),
    ("AUDIENCE_NARROWING", "adset", dict(frequency_7d=1.2, cpl_vs_account_7d=1.35, cpl_7d=13.5), dict(frequency_7d=1.4, cpl_vs_account_7d=1.35, cpl_7d=13.5), None),
    ("CREATIVE_REFRESH", "ad", dict(frequency_7d=2.8, ctr_trend_7d=-0.25, frequency_trend_7d=0.10), dict(frequency_7d=2.8, ctr_trend_7d=-0.15, frequency_trend_7d=0.10), None),
    ("CREATIVE_TEST", "ad", dict(share_of_parent_spend_7d=0.95, age_days=30.0), dict(share_of_parent_spend_7d=0.95, age_days=15.0), None),
    ("CREATIVE_WINNER", "ad", dict(cpl_vs_siblings_7d=0.6, leads_7d=12), dict(cpl_vs_siblings_7d=0.6, leads_7d=8), None),
]


@pytest.mark.parametrize(("kind", "level", "fires", "near", "budget"), CASES, ids=[c[0] for c in CASES])
def test_rule_fires_on_its_case_and_not_on_the_near_miss(kind, level, fires, near, budget):
    assert kind in _run(level, fires, budget)
    assert kind not in _run(level, near, budget)


def test_level_specific_rules_stay_at_their_level():
    assert "AUDIENCE_REVIEW" not in _run("ad", dict(cpl_vs_siblings_7d=1.6))
    assert "CREATIVE_TEST" not in _run("adset", dict(share_of_parent_spend_7d=0.95, age_days=30.0))
    assert set(LEVEL_TYPES["campaign"]) == {"SCALE_UP", "BUDGET_INCREASE", "BUDGET_DECREASE", "PAUSE", "REACTIVATE"}


def test_broken_tracking_holds_back_pause():
    case = dict(leads_7d=0, cpl_7d=np.nan, cpl_vs_account_7d=np.nan, spend_7d=50.0)
    anomalies = pd.DataFrame({"entity_id": ["x"], "metric": ["leads"], "method": ["structural:tracking_broken"], "severity": ["critical"]})
    assert "PAUSE" in _run("ad", case)
    assert "PAUSE" not in _run("ad", case, anomalies=anomalies)


def test_no_duplicate_open_recommendations_and_expiry(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("insert into ad_accounts (id, name, is_active, timezone, created_at, updated_at) "
                             "values ('act_r', 'r', true, 'UTC', '2026-01-01', '2026-01-01')"))
    features = pd.DataFrame([_row(**ANCHOR), _row(cpl_7d=6.0, cpl_vs_account_7d=0.6, leads_7d=12)],
                            index=pd.Index(["anchor", "x"], name="entity_id"))
    recs = recommend("campaign", features)
    first = store_recommendations(engine, "act_r", "campaign", dt.date(2026, 6, 30), recs, 7)
    second = store_recommendations(engine, "act_r", "campaign", dt.date(2026, 6, 30), recs, 7)
    assert first["new"] == len(recs) > 0 and second == {"new": 0, "already_open": len(recs), "expired": 0}
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from ml_recommendations where status = 'OPEN'")).scalar_one() == len(recs)
    with engine.begin() as conn:  # a week later
        conn.execute(sa.text("update ml_recommendations set expires_at = created_at - interval '1 day'")
                     if engine.dialect.name == "postgresql" else
                     sa.text("update ml_recommendations set expires_at = datetime(created_at, '-1 day')"))
    third = store_recommendations(engine, "act_r", "campaign", dt.date(2026, 7, 7), recs, 7)
    assert third == {"new": len(recs), "already_open": 0, "expired": len(recs)}
    with engine.connect() as conn:
        statuses = dict(conn.execute(sa.text("select status, count(*) from ml_recommendations group by status")).all())
    assert statuses == {"OPEN": len(recs), "EXPIRED": len(recs)}


def test_one_open_recommendation_per_entity_and_type_is_enforced_by_the_schema(engine):
    with engine.begin() as conn:
        conn.execute(sa.text("insert into ad_accounts (id, name, is_active, timezone, created_at, updated_at) "
                             "values ('act_u', 'u', true, 'UTC', '2026-01-01', '2026-01-01')"))
    insert = sa.text(
        "insert into ml_recommendations (account_id, entity_type, entity_id, recommendation_type, priority, confidence, "
        "reason, suggested_action, evidence, status, reference_date, created_at, expires_at, updated_at) values "
        "('act_u', 'ad', '1', 'PAUSE', 'high', 0.9, 'r', '{}', '{}', :status, '2026-06-30', '2026-06-30', "
        "'2026-07-07', '2026-06-30')")
    with engine.begin() as conn:
        conn.execute(insert, {"status": "OPEN"})
        conn.execute(insert, {"status": "EXPIRED"})  # closed ones may repeat
    with pytest.raises(sa.exc.IntegrityError):
        with engine.begin() as conn:
            conn.execute(insert, {"status": "OPEN"})

    # two runs storing the same recommendations at once: one OPEN row each, however they interleave
    features = pd.DataFrame([_row(**ANCHOR), _row(cpl_7d=6.0, cpl_vs_account_7d=0.6, leads_7d=12)],
                            index=pd.Index(["anchor", "x"], name="entity_id"))
    recs = recommend("campaign", features)
    import threading

    barrier, results = threading.Barrier(2), []

    def store() -> None:
        barrier.wait(timeout=30)
        results.append(store_recommendations(engine, "act_u", "campaign", dt.date(2026, 6, 30), recs, 7))

    threads = [threading.Thread(target=store) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sorted(r["new"] for r in results) == [0, len(recs)]
    with engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from ml_recommendations where account_id = 'act_u' "
                                    "and entity_type = 'campaign' and status = 'OPEN'")).scalar_one() == len(recs)


def test_amounts_in_reasons_carry_the_account_currency():
    features = pd.DataFrame([_row(**ANCHOR), _row(cpl_7d=6.0, cpl_vs_account_7d=0.6, leads_7d=12)],
                            index=pd.Index(["anchor", "x"], name="entity_id"))
    with_currency = recommend("campaign", features, currency="BRL")
    scale_up = with_currency.loc[(with_currency["entity_id"] == "x") & (with_currency["recommendation_type"] == "SCALE_UP")]
    assert scale_up["reason"].iat[0].startswith("CPL 6.00 BRL is ")
    without = recommend("campaign", features)
    assert "BRL" not in " ".join(without["reason"])
