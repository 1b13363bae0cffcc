"""Entity features, computed for all entities of a level in one vectorised pass.

Inputs are plain frames (no database, no Dagster):

- ``daily``: one row per entity and day — ``entity_id``, ``date``, ``impressions``, ``reach``,
  ``clicks``, ``spend``, ``leads``, ``conversions``. Days without a row count as no delivery.
- ``entities``: one row per entity of the level — ``entity_id``, ``parent_id`` (campaign for an
  adset, adset for an ad, the account for a campaign), ``status`` and, where the level has one,
  ``daily_budget``. Entities without any daily row still get a feature row (zeros, ratios missing).

Windows end at the reference date *inclusive*: "7 days" is ``(R-7, R]``. Definitions:

- ``spend_7d``, ``impressions_7d``, ``clicks_7d``, ``leads_7d``, ``conversions_7d``: sums.
- ``cpl_7d``, ``ctr_7d`` (%), ``cpc_7d``, ``conversion_rate_7d`` (leads per click, %): ratios of
  the sums; missing when the denominator is 0 (:mod:`ads_ml.ml.metrics`).
- ``*_trend_7d``: relative change of the last 7 days against the 7 before (0.1 = +10 %), for
  ``cpl``, ``leads``, ``spend``, ``ctr``; missing unless the entity was delivering at the start of
  the earlier window (a 10-day-old entity has no trend) or when the earlier value is 0/missing.
- ``cpl_14d``, ``leads_14d``, ``cpl_30d``, ``leads_30d``.
- ``avg_daily_spend_30d``: 30-day spend divided by the days the entity existed in that window.
- ``cpl_std_7d``: standard deviation (ddof=1) of daily CPL over the days with leads (≥ 2 needed);
  ``leads_std_7d``: standard deviation of daily leads over the days the entity existed (≥ 2).
- ``best_day_of_week`` / ``worst_day_of_week``: weekday (0 = Monday) with the lowest / highest
  CPL over 30 days; a weekday that spent without a lead is the worst of all.
- ``reach_7d`` (sum of daily reach — Meta's deduplicated reach is not additive, so this is an upper
  bound), ``frequency_7d`` (= impressions_7d / reach_7d), ``frequency_trend_7d`` (its relative
  change on the week before, same rules as the other trends).
- ``days_with_leads_7d``; ``days_active`` (days with delivery in the loaded history);
  ``age_days`` (days since first delivery, inclusive; missing if it never delivered).
- ``is_active`` (status ACTIVE), ``has_budget`` (a daily budget > 0 at this level).
- ``share_of_parent_spend_7d``, ``share_of_parent_leads_7d``: the entity's part of its parent's
  7-day totals (the parent's totals are the sum over its children at this level);
  ``cpl_vs_siblings_7d``: the entity's CPL divided by the pooled CPL of its siblings;
  ``cpl_vs_account_7d`` / ``_30d``: the entity's CPL divided by the pooled CPL of every entity of
  the level (the account average), over 7 / 30 days.
- ``spend_weighted``, ``leads_weighted``: sums over the whole loaded history, each day weighted
  by 0.5^(days before the reference date / RECENCY_HALF_LIFE_DAYS): recent weeks count most, older
  ones still add evidence where a week holds a few leads; ``cpl_weighted_vs_account``: their
  ratio shrunk toward the level's pooled weighted CPL by TIER_PRIOR_LEADS pseudo-leads, divided
  by that pooled CPL (the cost the rule tiers rank by, :func:`ads_ml.ml.tiers.rule_tiers`).
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.ml.metrics import conversion_rate, cpc, cpl, ctr, frequency, relative_change, safe_ratio, shrunk_cpl

METRIC_COLUMNS = ("impressions", "reach", "clicks", "spend", "leads", "conversions")

FEATURE_COLUMNS: tuple[str, ...] = (
    "spend_7d",
    "impressions_7d",
    "clicks_7d",
    "leads_7d",
    "conversions_7d",
    "cpl_7d",
    "ctr_7d",
    "cpc_7d",
    "conversion_rate_7d",
    "cpl_trend_7d",
    "leads_trend_7d",
    "spend_trend_7d",
    "ctr_trend_7d",
    "cpl_14d",
    "leads_14d",
    "cpl_30d",
    "leads_30d",
    "avg_daily_spend_30d",
    "cpl_std_7d",
    "leads_std_7d",
    "best_day_of_week",
    "worst_day_of_week",
    "frequency_7d",
    "frequency_trend_7d",
    "reach_7d",
    "days_with_leads_7d",
    "days_active",
    "age_days",
    "is_active",
    "has_budget",
    "share_of_parent_spend_7d",
    "share_of_parent_leads_7d",
    "cpl_vs_siblings_7d",
    "cpl_vs_account_7d",
    "cpl_vs_account_30d",
    "spend_weighted",
    "leads_weighted",
    "cpl_weighted_vs_account",
)


class FeatureInputError(ValueError):
    """The frames given to the feature computation are malformed."""


def compute_entity_features(
    daily: pd.DataFrame,
    entities: pd.DataFrame,
    reference_date: dt.date | str | pd.Timestamp,
) -> pd.DataFrame:
    """One row per entity (index ``entity_id``) with ``parent_id`` and every FEATURE_COLUMNS."""
    _check_inputs(daily, entities)
    ref = pd.Timestamp(reference_date).normalize()
    short, medium, long_ = (
        settings.SHORT_WINDOW_DAYS,
        settings.MEDIUM_WINDOW_DAYS,
        settings.LONG_WINDOW_DAYS,
    )

    d = daily.loc[pd.to_datetime(daily["date"]) <= ref].copy()
    d["date"] = pd.to_datetime(d["date"]).dt.normalize()
    d["entity_id"] = d["entity_id"].astype(str)
    for column in METRIC_COLUMNS:
        d[column] = pd.to_numeric(d[column], errors="coerce").astype("float64")
    for column in ("impressions", "clicks", "spend", "leads", "conversions"):
        d[column] = d[column].fillna(0.0)
    offset = (ref - d["date"]).dt.days.to_numpy()
    delivered = ((d["impressions"] > 0) | (d["spend"] > 0)).to_numpy()

    w_short = offset < short
    w_prev = (offset >= short) & (offset < 2 * short)
    w_medium = offset < medium
    w_long = offset < long_

    sums = {"days_active": delivered.astype("float64")}
    for column in ("impressions", "clicks", "spend", "leads", "conversions"):
        values = d[column].to_numpy()
        sums[f"{column}_7d"] = values * w_short
        sums[f"{column}_prev7d"] = values * w_prev
    for column in ("spend", "leads"):
        values = d[column].to_numpy()
        sums[f"{column}_14d"] = values * w_medium
        sums[f"{column}_30d"] = values * w_long
    recency = 0.5 ** (offset / settings.RECENCY_HALF_LIFE_DAYS)
    for column in ("spend", "leads"):
        sums[f"{column}_weighted"] = d[column].to_numpy() * recency
    sums["leads_sq_7d"] = d["leads"].to_numpy() ** 2 * w_short
    sums["days_with_leads_7d"] = ((d["leads"].to_numpy() > 0) & w_short).astype("float64")
    # Reach may be absent (NaN): keep it missing unless some day in the window reported it.
    sums["reach_7d"] = np.where(w_short, d["reach"].to_numpy(), np.nan)
    sums["reach_prev7d"] = np.where(w_prev, d["reach"].to_numpy(), np.nan)

    frame = pd.DataFrame(sums, index=d.index)
    frame["entity_id"] = d["entity_id"].to_numpy()
    grouped = frame.groupby("entity_id", sort=False)
    agg = grouped.sum(min_count=0)
    agg["reach_7d"] = grouped["reach_7d"].sum(min_count=1)
    agg["reach_prev7d"] = grouped["reach_prev7d"].sum(min_count=1)
    first_seen = d.loc[delivered].groupby("entity_id", sort=False)["date"].min()

    # Every entity of the level, including those without a single daily row.
    ent = _entity_frame(entities, agg.index)
    out = pd.DataFrame(index=ent.index)
    out["parent_id"] = ent["parent_id"]
    agg = agg.reindex(out.index).fillna({c: 0.0 for c in agg.columns if not c.startswith("reach_")})
    first_seen = first_seen.reindex(out.index)
    age_days = (ref - first_seen).dt.days + 1.0

    for column in ("spend", "impressions", "clicks", "leads", "conversions"):
        out[f"{column}_7d"] = agg[f"{column}_7d"]
    out["cpl_7d"] = cpl(agg["spend_7d"], agg["leads_7d"])
    out["ctr_7d"] = ctr(agg["clicks_7d"], agg["impressions_7d"])
    out["cpc_7d"] = cpc(agg["spend_7d"], agg["clicks_7d"])
    out["conversion_rate_7d"] = conversion_rate(agg["leads_7d"], agg["clicks_7d"])

    # A trend needs delivery at the start of the earlier window, else it compares unlike periods.
    full_history = (first_seen <= ref - pd.Timedelta(days=2 * short - 1)).to_numpy()
    previous = {
        "cpl": cpl(agg["spend_prev7d"], agg["leads_prev7d"]),
        "leads": agg["leads_prev7d"],
        "spend": agg["spend_prev7d"],
        "ctr": ctr(agg["clicks_prev7d"], agg["impressions_prev7d"]),
    }
    current = {"cpl": out["cpl_7d"], "leads": out["leads_7d"], "spend": out["spend_7d"], "ctr": out["ctr_7d"]}
    for metric in ("cpl", "leads", "spend", "ctr"):
        trend = relative_change(current[metric], previous[metric])
        out[f"{metric}_trend_7d"] = trend.where(full_history, np.nan)

    out["cpl_14d"] = cpl(agg["spend_14d"], agg["leads_14d"])
    out["leads_14d"] = agg["leads_14d"]
    out["cpl_30d"] = cpl(agg["spend_30d"], agg["leads_30d"])
    out["leads_30d"] = agg["leads_30d"]
    days_in_long = age_days.clip(upper=long_).fillna(long_)
    out["avg_daily_spend_30d"] = agg["spend_30d"] / days_in_long

    # Daily CPL spread over the days that had leads.
    lead_days = d.loc[w_short & (d["leads"].to_numpy() > 0), ["entity_id", "spend", "leads"]]
    daily_cpl = lead_days["spend"] / lead_days["leads"]
    out["cpl_std_7d"] = daily_cpl.groupby(lead_days["entity_id"]).std(ddof=1).reindex(out.index)
    # Daily leads spread over the days the entity existed, missing days counting as zero leads.
    n_days = age_days.clip(upper=short)
    mean = agg["leads_7d"] / n_days
    variance = (agg["leads_sq_7d"] - n_days * mean**2) / (n_days - 1)
    out["leads_std_7d"] = np.sqrt(variance.clip(lower=0.0)).where(n_days >= 2, np.nan)

    best, worst = _best_and_worst_weekday(d.loc[w_long], out.index)
    out["best_day_of_week"] = best
    out["worst_day_of_week"] = worst

    out["frequency_7d"] = frequency(agg["impressions_7d"], agg["reach_7d"])
    previous_frequency = frequency(agg["impressions_prev7d"], agg["reach_prev7d"])
    out["frequency_trend_7d"] = relative_change(out["frequency_7d"], previous_frequency).where(full_history, np.nan)
    out["reach_7d"] = agg["reach_7d"]
    out["days_with_leads_7d"] = agg["days_with_leads_7d"]
    out["days_active"] = agg["days_active"]
    out["age_days"] = age_days
    out["is_active"] = (ent["status"].astype(str).str.upper() == "ACTIVE").astype("float64")
    budget = pd.to_numeric(ent["daily_budget"], errors="coerce")
    out["has_budget"] = (budget.fillna(0.0) > 0).astype("float64")

    parent = out["parent_id"].fillna("")
    parent_spend = out["spend_7d"].groupby(parent).transform("sum")
    parent_leads = out["leads_7d"].groupby(parent).transform("sum")
    out["share_of_parent_spend_7d"] = safe_ratio(out["spend_7d"], parent_spend)
    out["share_of_parent_leads_7d"] = safe_ratio(out["leads_7d"], parent_leads)
    siblings_cpl = cpl(parent_spend - out["spend_7d"], parent_leads - out["leads_7d"])
    out["cpl_vs_siblings_7d"] = safe_ratio(out["cpl_7d"], siblings_cpl)
    out["cpl_vs_account_7d"] = safe_ratio(out["cpl_7d"], cpl(out["spend_7d"].sum(), out["leads_7d"].sum()))
    out["cpl_vs_account_30d"] = safe_ratio(out["cpl_30d"], cpl(agg["spend_30d"].sum(), agg["leads_30d"].sum()))

    out["spend_weighted"] = agg["spend_weighted"]
    out["leads_weighted"] = agg["leads_weighted"]
    pooled = cpl(agg["spend_weighted"].sum(), agg["leads_weighted"].sum())
    shrunk = shrunk_cpl(agg["spend_weighted"], agg["leads_weighted"], pooled)
    out["cpl_weighted_vs_account"] = shrunk / pooled if np.isfinite(pooled) and pooled > 0 else np.nan

    out.index.name = "entity_id"
    return out[["parent_id", *FEATURE_COLUMNS]]


def _best_and_worst_weekday(window: pd.DataFrame, index: pd.Index) -> tuple[pd.Series, pd.Series]:
    by_day = (
        window.assign(weekday=window["date"].dt.day_of_week)
        .groupby(["entity_id", "weekday"], sort=False)[["spend", "leads"]]
        .sum()
        .reset_index()
    )
    by_day["cpl"] = cpl(by_day["spend"], by_day["leads"])
    with_leads = by_day.loc[by_day["leads"] > 0]
    best = (
        with_leads.sort_values(["entity_id", "cpl", "weekday"])
        .drop_duplicates("entity_id")
        .set_index("entity_id")["weekday"]
    )
    spent = by_day.loc[by_day["spend"] > 0].copy()
    spent["worst_key"] = spent["cpl"].fillna(np.inf)  # spend without a lead is the worst
    worst = (
        spent.sort_values(["entity_id", "worst_key", "spend", "weekday"], ascending=[True, False, False, True])
        .drop_duplicates("entity_id")
        .set_index("entity_id")["weekday"]
    )
    return best.reindex(index).astype("float64"), worst.reindex(index).astype("float64")


def _entity_frame(entities: pd.DataFrame, seen: pd.Index) -> pd.DataFrame:
    ent = entities.copy()
    ent["entity_id"] = ent["entity_id"].astype(str)
    if ent["entity_id"].duplicated().any():
        dup = ent.loc[ent["entity_id"].duplicated(), "entity_id"].iloc[0]
        raise FeatureInputError(f"entities: entity_id {dup!r} appears more than once")
    for column, default in (("parent_id", None), ("status", "ACTIVE"), ("daily_budget", np.nan)):
        if column not in ent.columns:
            ent[column] = default
    ent = ent.set_index("entity_id")[["parent_id", "status", "daily_budget"]]
    missing = seen.difference(ent.index)
    if len(missing):
        extra = pd.DataFrame(
            {"parent_id": None, "status": "ACTIVE", "daily_budget": np.nan}, index=pd.Index(missing)
        )
        ent = pd.concat([ent, extra])
    return ent


def _check_inputs(daily: pd.DataFrame, entities: pd.DataFrame) -> None:
    required = {"entity_id", "date", *METRIC_COLUMNS}
    missing = sorted(required - set(daily.columns))
    if missing:
        raise FeatureInputError(f"daily insights frame lacks column(s): {', '.join(missing)}")
    if "entity_id" not in entities.columns:
        raise FeatureInputError("entities frame lacks column: entity_id")
