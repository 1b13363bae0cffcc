"""Entity features on a hand-computed account, and the vectorised pass against a plain loop."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest

from ads_ml.demo import generate_account
from ads_ml.ml.features import FEATURE_COLUMNS, compute_entity_features
from ads_ml.ml.metrics import cpl, ctr, relative_change, safe_ratio
from benchmarks.feature_loop import features_by_loop

REF = pd.Timestamp("2026-03-31")  # a Tuesday


def _days(n: int, end: pd.Timestamp = REF) -> pd.DatetimeIndex:
    return pd.date_range(end=end, periods=n, freq="D")


def _rows(entity: str, dates, spend, leads, impressions=1000, clicks=10, reach=None) -> pd.DataFrame:
    n = len(dates)
    return pd.DataFrame(
        {
            "entity_id": entity,
            "date": dates,
            "impressions": np.broadcast_to(impressions, n),
            "reach": np.broadcast_to(np.nan if reach is None else reach, n),
            "clicks": np.broadcast_to(clicks, n),
            "spend": np.broadcast_to(spend, n).astype(float),
            "leads": np.broadcast_to(leads, n),
            "conversions": 0,
        }
    )


@pytest.fixture
def hand_account() -> tuple[pd.DataFrame, pd.DataFrame]:
    dates30 = _days(30)
    # A: 30 days, 10/day; 1 lead/day before the last week, then leads 1,3,1,3,1,3,2 (= 14).
    a_leads = np.r_[np.ones(23, dtype=int), [1, 3, 1, 3, 1, 3, 2]]
    a = _rows("A", dates30, 10.0, a_leads, reach=800)
    # B: spends every day, no lead in the last 7 days (1/day before).
    b = _rows("B", dates30, 5.0, np.r_[np.ones(23, dtype=int), np.zeros(7, dtype=int)])
    # C: new, first delivery two days before the reference date: 20/day, 4 leads/day.
    c = _rows("C", _days(3), 20.0, 4)
    # D: paused ten days ago.
    d = _rows("D", _days(20, REF - pd.Timedelta(days=10)), 8.0, 1)
    # F: 30 days, 10/day, 1 lead/day but 2 on Mondays and 0 on Sundays.
    weekday = dates30.day_of_week
    f = _rows("F", dates30, 10.0, np.where(weekday == 0, 2, np.where(weekday == 6, 0, 1)))
    daily = pd.concat([a, b, c, d, f], ignore_index=True)
    entities = pd.DataFrame(
        {
            "entity_id": ["A", "B", "C", "D", "E", "F"],
            "parent_id": ["S1", "S1", "S2", "S2", "S2", "S2"],
            "status": ["ACTIVE", "ACTIVE", "ACTIVE", "PAUSED", "ACTIVE", "ACTIVE"],
            "daily_budget": [50.0, np.nan, 0.0, 20.0, np.nan, np.nan],
        }
    )
    return daily, entities


def test_ratios_with_zero_denominator_are_missing_never_zero():
    assert np.isnan(cpl(100.0, 0))
    assert cpl(100.0, 4) == 25.0
    assert np.isnan(ctr(0, 0)) and ctr(5, 1000) == 0.5
    values = safe_ratio(pd.Series([1.0, 2.0, 3.0]), pd.Series([0.0, np.nan, 2.0]))
    assert values.isna().tolist() == [True, True, False] and values.iloc[2] == 1.5
    assert np.isnan(relative_change(5.0, 0.0)) and relative_change(15.0, 10.0) == 0.5


def test_hand_computed_account(hand_account):
    daily, entities = hand_account
    f = compute_entity_features(daily, entities, REF.date())
    assert list(f.index) == ["A", "B", "C", "D", "E", "F"]
    assert list(f.columns) == ["parent_id", *FEATURE_COLUMNS]

    a = f.loc["A"]
    assert a.spend_7d == 70 and a.leads_7d == 14 and a.cpl_7d == 5.0
    assert a.ctr_7d == pytest.approx(1.0) and a.cpc_7d == 1.0 and a.conversion_rate_7d == pytest.approx(20.0)
    assert a.cpl_trend_7d == pytest.approx(-0.5) and a.leads_trend_7d == pytest.approx(1.0)
    assert a.spend_trend_7d == 0 and a.ctr_trend_7d == 0
    assert a.cpl_14d == pytest.approx(140 / 21) and a.leads_14d == 21
    assert a.cpl_30d == pytest.approx(300 / 37) and a.leads_30d == 37
    assert a.avg_daily_spend_30d == 10
    assert a.leads_std_7d == pytest.approx(1.0)
    assert a.cpl_std_7d == pytest.approx(np.std([10, 10 / 3, 10, 10 / 3, 10, 10 / 3, 5], ddof=1))
    assert a.reach_7d == 5600 and a.frequency_7d == pytest.approx(7000 / 5600)
    assert a.days_with_leads_7d == 7 and a.days_active == 30 and a.age_days == 30
    assert a.is_active == 1 and a.has_budget == 1
    assert a.share_of_parent_spend_7d == pytest.approx(70 / 105) and a.share_of_parent_leads_7d == 1.0
    assert np.isnan(a.cpl_vs_siblings_7d)  # its only sibling has no leads: no CPL to compare with

    b = f.loc["B"]  # spends without leads: no CPL at all, never a cheap-looking 0
    assert b.spend_7d == 35 and b.leads_7d == 0
    assert np.isnan(b.cpl_7d) and np.isnan(b.cpl_trend_7d) and np.isnan(b.cpl_std_7d)
    assert b.leads_trend_7d == -1.0 and b.conversion_rate_7d == 0.0
    assert b.days_with_leads_7d == 0 and b.share_of_parent_leads_7d == 0.0
    assert b.has_budget == 0 and np.isnan(b.frequency_7d) and np.isnan(b.reach_7d)

    c = f.loc["C"]  # younger than 7 days
    assert c.age_days == 3 and c.days_active == 3
    assert c.spend_7d == 60 and c.cpl_7d == 5.0
    for trend in ("cpl_trend_7d", "leads_trend_7d", "spend_trend_7d", "ctr_trend_7d"):
        assert np.isnan(c[trend])
    assert c.avg_daily_spend_30d == 20.0  # over the days it existed, not 30
    assert c.leads_std_7d == 0.0
    assert c.has_budget == 0  # a zero budget is no budget
    assert c.cpl_vs_siblings_7d == pytest.approx(5 / 10)

    d = f.loc["D"]  # paused ten days ago
    assert d.is_active == 0 and d.spend_7d == 0 and np.isnan(d.cpl_7d)
    assert d.leads_14d == 4 and d.cpl_14d == 8.0 and d.has_budget == 1
    assert d.days_active == 20 and d.age_days == 30
    assert d.leads_std_7d == 0.0

    e = f.loc["E"]  # known entity that never delivered
    assert e.spend_7d == 0 and e.days_active == 0 and np.isnan(e.age_days) and np.isnan(e.cpl_7d)
    assert e.avg_daily_spend_30d == 0 and np.isnan(e.leads_std_7d)

    fr = f.loc["F"]
    assert fr.best_day_of_week == 0 and fr.worst_day_of_week == 6  # Monday cheapest, Sunday no leads
    assert fr.cpl_7d == 10.0 and fr.cpl_vs_siblings_7d == pytest.approx(10 / 5)
    assert fr.share_of_parent_spend_7d == pytest.approx(70 / 130)


def test_rows_after_the_reference_date_are_ignored(hand_account):
    daily, entities = hand_account
    later = _rows("A", _days(5, REF + pd.Timedelta(days=5)), 999.0, 0)
    with_future = pd.concat([daily, later], ignore_index=True)
    pd.testing.assert_frame_equal(
        compute_entity_features(with_future, entities, REF), compute_entity_features(daily, entities, REF)
    )


def test_vectorised_features_equal_the_per_entity_loop():
    account = generate_account(n_campaigns=2, adsets_per_campaign=3, ads_per_adset=5, days=75, end_date=dt.date(2026, 5, 31), seed=3)
    raw = account.insights
    daily = raw.rename(columns={"ad_id": "entity_id"})[
        ["entity_id", "date", "impressions", "reach", "clicks", "spend", "leads", "conversions"]
    ]
    entities = (
        raw.drop_duplicates("ad_id")
        .rename(columns={"ad_id": "entity_id", "adset_id": "parent_id", "ad_status": "status"})[["entity_id", "parent_id", "status"]]
        .assign(daily_budget=np.nan)
    )
    ref = dt.date(2026, 5, 31)
    fast = compute_entity_features(daily, entities, ref)
    slow = features_by_loop(daily, entities, ref)
    pd.testing.assert_frame_equal(fast, slow.loc[fast.index], check_dtype=False, rtol=1e-9, atol=1e-9)
