"""The rule engine: level-specific recommendations from entity features (and, when present, tiers
and anomalies). Pure code: frames in, a frame of recommendations out; thresholds in settings.

Every recommendation has a type, a priority (high / medium / low), a confidence (0–1, growing with
the evidence: leads and days behind the numbers, or the tier's calibrated confidence), a reason in
words with the numbers behind it, a suggested action as a small dict and an expiry.

All levels: SCALE_UP, BUDGET_INCREASE, BUDGET_DECREASE, PAUSE, REACTIVATE.
Adsets also: AUDIENCE_REVIEW, AUDIENCE_EXPANSION, AUDIENCE_NARROWING.
Ads also: CREATIVE_REFRESH (frequency rising while CTR falls), CREATIVE_TEST, CREATIVE_WINNER.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ads_ml import settings as s
from ads_ml.ml.metrics import cpl, format_value

COLUMNS = ["entity_id", "recommendation_type", "priority", "confidence", "reason", "suggested_action", "evidence"]
ALL_LEVELS = ("SCALE_UP", "BUDGET_INCREASE", "BUDGET_DECREASE", "PAUSE", "REACTIVATE")
LEVEL_TYPES = {
    "campaign": ALL_LEVELS,
    "adset": ALL_LEVELS + ("AUDIENCE_REVIEW", "AUDIENCE_EXPANSION", "AUDIENCE_NARROWING"),
    "ad": ALL_LEVELS + ("CREATIVE_REFRESH", "CREATIVE_TEST", "CREATIVE_WINNER"),
}


def _confidence(leads: float, days: float = 7.0) -> float:
    """More leads and days behind the numbers, more confidence (0.5 → 0.95)."""
    return float(min(0.95, 0.5 + 0.45 * (1 - np.exp(-leads / 20.0)) * min(days / 7.0, 1.0)))


def recommend(
    level: str,
    features: pd.DataFrame,
    *,
    budgets: pd.Series | None = None,
    tiers: pd.DataFrame | None = None,
    anomalies: pd.DataFrame | None = None,
    currency: str | None = None,
) -> pd.DataFrame:
    """Recommendations for every entity of one level; amounts in the reasons carry ``currency``.

    ``features``: index entity_id, FEATURE_COLUMNS. ``budgets``: daily budget per entity (where the
    level has one). ``tiers``: index entity_id with ``tier`` and ``confidence_score``.
    ``anomalies``: rows with entity_id, metric, method of the latest day (a broken tracking anomaly
    holds back PAUSE: the leads may be there, just not counted)."""
    if level not in LEVEL_TYPES:
        raise ValueError(f"unknown level {level!r}")

    def _money(value: float) -> str:
        return format_value("spend", float(value), currency)

    f = features
    account_cpl_7d = cpl(f["spend_7d"].sum(), f["leads_7d"].sum())
    account_cpl_30d = cpl(f["spend_30d"].sum() if "spend_30d" in f else np.nan, f["leads_30d"].sum())
    if not np.isfinite(account_cpl_30d):
        account_cpl_30d = float(cpl((f["avg_daily_spend_30d"] * f["age_days"].clip(upper=30).fillna(30)).sum(), f["leads_30d"].sum()))
    budgets = pd.to_numeric(budgets, errors="coerce") if budgets is not None else pd.Series(dtype="float64")
    tier = tiers["tier"] if tiers is not None and len(tiers) else pd.Series(dtype="object")
    tier_conf = tiers["confidence_score"] if tiers is not None and len(tiers) else pd.Series(dtype="float64")
    broken = set()
    if anomalies is not None and len(anomalies):
        broken = set(anomalies.loc[anomalies["method"].astype(str).str.contains("tracking_broken"), "entity_id"].astype(str))
    out: list[dict] = []

    def add(entity, kind, priority, confidence, reason, action, evidence):  # noqa: ANN001
        out.append({"entity_id": str(entity), "recommendation_type": kind, "priority": priority,
                    "confidence": round(float(confidence), 3), "reason": reason, "suggested_action": action,
                    "evidence": {k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in evidence.items()}})

    for entity, r in f.iterrows():
        active = r["is_active"] >= 1
        spend, leads, entity_cpl = r["spend_7d"], r["leads_7d"], r["cpl_7d"]
        ratio = r["cpl_vs_account_7d"]
        trend = r["cpl_trend_7d"]
        budget = float(budgets.get(entity, np.nan))
        evidence = {"spend_7d": round(float(spend), 2), "leads_7d": float(leads),
                    "cpl_7d": None if not np.isfinite(entity_cpl) else round(float(entity_cpl), 2),
                    "account_cpl_7d": None if not np.isfinite(account_cpl_7d) else round(float(account_cpl_7d), 2)}
        conf = _confidence(leads)
        if active and spend >= s.REC_MIN_SPEND_7D:
            is_high_tier = tier.get(entity) == s.TIER_HIGH
            if (np.isfinite(ratio) and ratio <= s.REC_SCALE_UP_MAX_CPL_RATIO and leads >= s.REC_SCALE_UP_MIN_LEADS
                    and not (np.isfinite(trend) and trend > 0.10)):
                c = max(conf, float(tier_conf.get(entity, 0) or 0)) if is_high_tier else conf
                add(entity, "SCALE_UP", "high", c,
                    f"CPL {_money(entity_cpl)} is {ratio:.0%} of the account's {_money(account_cpl_7d)} over 7 days "
                    f"with {leads:.0f} leads" + (" and a HIGH_PERFORMER tier" if is_high_tier else "")
                    + f": scale up by {s.REC_SCALE_UP_BUDGET_PCT} %.",
                    {"budget_change_pct": s.REC_SCALE_UP_BUDGET_PCT}, {**evidence, "cpl_ratio": round(float(ratio), 3)})
            elif (np.isfinite(budget) and budget > 0 and np.isfinite(ratio) and ratio <= s.REC_BUDGET_INCREASE_MAX_CPL_RATIO
                  and leads >= s.REC_BUDGET_INCREASE_MIN_LEADS and spend / 7 >= s.REC_BUDGET_INCREASE_MIN_BUDGET_USE * budget):
                add(entity, "BUDGET_INCREASE", "medium", conf,
                    f"Spends {_money(spend / 7)} a day of a {_money(budget)} budget ({spend / 7 / budget:.0%}) at a CPL "
                    f"{ratio:.0%} of the account's: the budget limits it; raise it by {s.REC_BUDGET_INCREASE_PCT} %.",
                    {"budget_change_pct": s.REC_BUDGET_INCREASE_PCT, "new_daily_budget": round(budget * (1 + s.REC_BUDGET_INCREASE_PCT / 100), 2)},
                    {**evidence, "daily_budget": budget, "budget_use": round(float(spend / 7 / budget), 3)})
            pause_case = (leads == 0 and np.isfinite(account_cpl_7d) and spend >= s.REC_PAUSE_MIN_SPEND_IN_CPLS * account_cpl_7d) or (
                np.isfinite(ratio) and ratio >= s.REC_PAUSE_MIN_CPL_RATIO and leads >= 1)
            # with tracking broken the leads may be there, just not counted: fixing it comes first
            if pause_case and entity not in broken:
                why = (f"It spent {_money(spend)} in 7 days without a lead ({spend / account_cpl_7d:.1f}× the account CPL)"
                       if leads == 0 else f"Its CPL {_money(entity_cpl)} is {ratio:.1f}× the account's {_money(account_cpl_7d)}")
                add(entity, "PAUSE", "high", conf if leads else _confidence(spend / account_cpl_7d),
                    f"{why}: pause it.", {"status": "PAUSED"}, evidence)
            if (not pause_case and np.isfinite(ratio) and ratio >= s.REC_BUDGET_DECREASE_MIN_CPL_RATIO and np.isfinite(trend)
                  and trend >= s.REC_BUDGET_DECREASE_MIN_CPL_TREND):
                add(entity, "BUDGET_DECREASE", "medium", conf,
                    f"CPL {_money(entity_cpl)} is {ratio:.0%} of the account's and rose {trend:+.0%} on the week before: "
                    f"cut the budget by {-s.REC_BUDGET_DECREASE_PCT} %.",
                    {"budget_change_pct": s.REC_BUDGET_DECREASE_PCT}, {**evidence, "cpl_trend_7d": round(float(trend), 3)})
        if not active:
            cpl_30 = r["cpl_30d"]
            if (np.isfinite(cpl_30) and np.isfinite(account_cpl_30d) and r["leads_30d"] >= s.REC_REACTIVATE_MIN_LEADS_30D
                    and cpl_30 <= s.REC_REACTIVATE_MAX_CPL_RATIO * account_cpl_30d):
                add(entity, "REACTIVATE", "medium", _confidence(r["leads_30d"], 30),
                    f"Paused, but its 30-day CPL {_money(cpl_30)} beat the account's {_money(account_cpl_30d)} "
                    f"with {r['leads_30d']:.0f} leads: reactivate it.",
                    {"status": "ACTIVE"}, {**evidence, "cpl_30d": round(float(cpl_30), 2), "leads_30d": float(r["leads_30d"])})
        if not active or spend < s.REC_MIN_SPEND_7D:
            continue
        freq = r["frequency_7d"]
        if level == "adset":
            sib = r["cpl_vs_siblings_7d"]
            if np.isfinite(sib) and sib >= s.REC_AUDIENCE_REVIEW_MIN_SIBLING_RATIO:
                add(entity, "AUDIENCE_REVIEW", "medium", conf,
                    f"Its CPL is {sib:.1f}× that of its sibling adsets: review the audience.",
                    {"review": "audience"}, {**evidence, "cpl_vs_siblings_7d": round(float(sib), 3)})
            if np.isfinite(freq) and freq >= s.REC_AUDIENCE_EXPANSION_MIN_FREQUENCY and np.isfinite(ratio) \
                    and ratio <= s.REC_AUDIENCE_EXPANSION_MAX_CPL_RATIO:
                add(entity, "AUDIENCE_EXPANSION", "medium", conf,
                    f"Each person saw it {freq:.1f} times this week while CPL is {ratio:.0%} of the account's: "
                    "the audience is saturating; widen it.", {"audience_size_change_pct": 25},
                    {**evidence, "frequency_7d": round(float(freq), 2)})
            if np.isfinite(freq) and freq <= s.REC_AUDIENCE_NARROWING_MAX_FREQUENCY and np.isfinite(ratio) \
                    and ratio >= s.REC_AUDIENCE_NARROWING_MIN_CPL_RATIO:
                add(entity, "AUDIENCE_NARROWING", "low", conf,
                    f"Frequency {freq:.1f} with a CPL {ratio:.0%} of the account's: a broad, unfocused audience; narrow it.",
                    {"audience_size_change_pct": -25}, {**evidence, "frequency_7d": round(float(freq), 2)})
        if level == "ad":
            ctr_trend, freq_trend = r["ctr_trend_7d"], r.get("frequency_trend_7d", np.nan)
            if (np.isfinite(freq) and freq >= s.REC_CREATIVE_REFRESH_MIN_FREQUENCY and np.isfinite(ctr_trend)
                    and ctr_trend <= s.REC_CREATIVE_REFRESH_MAX_CTR_TREND and np.isfinite(freq_trend)
                    and freq_trend >= s.REC_CREATIVE_REFRESH_MIN_FREQUENCY_TREND):
                add(entity, "CREATIVE_REFRESH", "high", conf,
                    f"Creative fatigue: frequency {freq:.1f} ({freq_trend:+.0%} on the week before) while CTR fell "
                    f"{ctr_trend:+.0%}: refresh the creative.", {"creative": "refresh"},
                    {**evidence, "frequency_7d": round(float(freq), 2), "ctr_trend_7d": round(float(ctr_trend), 3),
                     "frequency_trend_7d": round(float(freq_trend), 3)})
            share = r["share_of_parent_spend_7d"]
            if np.isfinite(share) and share >= s.REC_CREATIVE_TEST_MIN_SHARE and r["age_days"] >= s.REC_CREATIVE_TEST_MIN_AGE_DAYS:
                add(entity, "CREATIVE_TEST", "low", 0.6,
                    f"It carries {share:.0%} of its adset's spend and has run {r['age_days']:.0f} days: "
                    "test a new creative beside it.", {"creative": "add_variant"},
                    {**evidence, "share_of_parent_spend_7d": round(float(share), 3)})
            sib = r["cpl_vs_siblings_7d"]
            if np.isfinite(sib) and sib <= s.REC_CREATIVE_WINNER_MAX_SIBLING_RATIO and leads >= s.REC_CREATIVE_WINNER_MIN_LEADS:
                add(entity, "CREATIVE_WINNER", "medium", conf,
                    f"Its CPL is {sib:.0%} of its sibling ads' with {leads:.0f} leads: the winning creative; "
                    "shift the adset's budget to it.", {"creative": "winner", "shift_budget_to": str(entity)},
                    {**evidence, "cpl_vs_siblings_7d": round(float(sib), 3)})
    frame = pd.DataFrame(out, columns=COLUMNS)
    allowed = set(LEVEL_TYPES[level])
    return frame.loc[frame["recommendation_type"].isin(allowed)].reset_index(drop=True)


def expiry(created: dt.datetime) -> dt.datetime:
    return created + dt.timedelta(days=s.RECOMMENDATION_EXPIRY_DAYS)
