"""The baseline the vectorised features are measured against: a plain per-entity pandas loop that
computes the same columns the obvious way (slice each entity's rows, compute each feature)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.ml.features import FEATURE_COLUMNS


def _ratio(num: float, den: float, scale: float = 1.0) -> float:
    return num / den * scale if den else np.nan


def features_by_loop(daily: pd.DataFrame, entities: pd.DataFrame, reference_date) -> pd.DataFrame:  # noqa: ANN001
    ref = pd.Timestamp(reference_date).normalize()
    daily = daily.assign(date=pd.to_datetime(daily["date"]).dt.normalize(), entity_id=daily["entity_id"].astype(str))
    daily = daily.loc[daily["date"] <= ref]
    ent = entities.assign(entity_id=entities["entity_id"].astype(str)).set_index("entity_id")
    rows = {}
    for entity_id, info in ent.iterrows():
        d = daily.loc[daily["entity_id"] == entity_id]
        delivered = d.loc[(d["impressions"] > 0) | (d["spend"] > 0)]
        first_seen = delivered["date"].min() if len(delivered) else pd.NaT
        age = (ref - first_seen).days + 1 if pd.notna(first_seen) else np.nan
        w7 = d.loc[d["date"] > ref - pd.Timedelta(days=7)]
        prev = d.loc[(d["date"] <= ref - pd.Timedelta(days=7)) & (d["date"] > ref - pd.Timedelta(days=14))]
        w14 = d.loc[d["date"] > ref - pd.Timedelta(days=14)]
        w30 = d.loc[d["date"] > ref - pd.Timedelta(days=30)]
        f = {}
        for c in ("spend", "impressions", "clicks", "leads", "conversions"):
            f[f"{c}_7d"] = float(w7[c].sum())
        f["cpl_7d"] = _ratio(f["spend_7d"], f["leads_7d"])
        f["ctr_7d"] = _ratio(f["clicks_7d"], f["impressions_7d"], 100)
        f["cpc_7d"] = _ratio(f["spend_7d"], f["clicks_7d"])
        f["conversion_rate_7d"] = _ratio(f["leads_7d"], f["clicks_7d"], 100)
        full = pd.notna(first_seen) and first_seen <= ref - pd.Timedelta(days=13)
        prev_values = {
            "cpl": _ratio(prev["spend"].sum(), prev["leads"].sum()),
            "leads": float(prev["leads"].sum()),
            "spend": float(prev["spend"].sum()),
            "ctr": _ratio(prev["clicks"].sum(), prev["impressions"].sum(), 100),
        }
        current = {"cpl": f["cpl_7d"], "leads": f["leads_7d"], "spend": f["spend_7d"], "ctr": f["ctr_7d"]}
        for m in ("cpl", "leads", "spend", "ctr"):
            p, c = prev_values[m], current[m]
            ok = full and not np.isnan(p) and p != 0 and not np.isnan(c)
            f[f"{m}_trend_7d"] = (c - p) / p if ok else np.nan
        f["cpl_14d"] = _ratio(w14["spend"].sum(), w14["leads"].sum())
        f["leads_14d"] = float(w14["leads"].sum())
        f["cpl_30d"] = _ratio(w30["spend"].sum(), w30["leads"].sum())
        f["leads_30d"] = float(w30["leads"].sum())
        f["avg_daily_spend_30d"] = float(w30["spend"].sum()) / (min(age, 30) if not np.isnan(age) else 30)
        lead_days = w7.loc[w7["leads"] > 0]
        f["cpl_std_7d"] = (lead_days["spend"] / lead_days["leads"]).std(ddof=1) if len(lead_days) >= 2 else np.nan
        if not np.isnan(age) and min(age, 7) >= 2:
            n = int(min(age, 7))
            days = pd.date_range(end=ref, periods=n, freq="D")
            series = w7.set_index("date")["leads"].reindex(days, fill_value=0).astype(float)
            f["leads_std_7d"] = series.std(ddof=1)
        else:
            f["leads_std_7d"] = np.nan
        by_day = w30.assign(wd=w30["date"].dt.day_of_week).groupby("wd")[["spend", "leads"]].sum()
        best, best_cpl, worst, worst_key, worst_spend = np.nan, np.inf, np.nan, -np.inf, -np.inf
        for wd, r in by_day.iterrows():
            if r["leads"] > 0:
                value = r["spend"] / r["leads"]
                if value < best_cpl or (value == best_cpl and wd < best):
                    best, best_cpl = wd, value
            if r["spend"] > 0:
                key = r["spend"] / r["leads"] if r["leads"] > 0 else np.inf
                if key > worst_key or (key == worst_key and (r["spend"] > worst_spend or (r["spend"] == worst_spend and wd < worst))):
                    worst, worst_key, worst_spend = wd, key, r["spend"]
        f["best_day_of_week"] = float(best)
        f["worst_day_of_week"] = float(worst)
        reach = w7["reach"].sum(min_count=1)
        f["reach_7d"] = float(reach) if pd.notna(reach) else np.nan
        f["frequency_7d"] = _ratio(f["impressions_7d"], f["reach_7d"]) if pd.notna(reach) else np.nan
        prev_reach = prev["reach"].sum(min_count=1)
        prev_freq = _ratio(prev["impressions"].sum(), prev_reach) if pd.notna(prev_reach) else np.nan
        ok = full and np.isfinite(prev_freq) and prev_freq != 0 and np.isfinite(f["frequency_7d"])
        f["frequency_trend_7d"] = (f["frequency_7d"] - prev_freq) / prev_freq if ok else np.nan
        f["days_with_leads_7d"] = float((w7["leads"] > 0).sum())
        f["days_active"] = float(len(delivered))
        f["age_days"] = float(age)
        f["is_active"] = float(str(info["status"]).upper() == "ACTIVE")
        budget = info.get("daily_budget", np.nan)
        f["has_budget"] = float(pd.notna(budget) and float(budget) > 0)
        f["parent_id"] = info["parent_id"]
        f["_spend_30d"] = float(w30["spend"].sum())
        weight = 0.5 ** ((ref - d["date"]).dt.days / settings.RECENCY_HALF_LIFE_DAYS)
        f["spend_weighted"] = float((d["spend"] * weight).sum())
        f["leads_weighted"] = float((d["leads"] * weight).sum())
        rows[entity_id] = f
    out = pd.DataFrame.from_dict(rows, orient="index")
    parent = out["parent_id"].fillna("")
    for column in ("share_of_parent_spend_7d", "share_of_parent_leads_7d", "cpl_vs_siblings_7d"):
        out[column] = np.nan
    for entity_id in out.index:
        siblings = out.loc[(parent == parent[entity_id]) & (out.index != entity_id)]
        family_spend = siblings["spend_7d"].sum() + out.at[entity_id, "spend_7d"]
        family_leads = siblings["leads_7d"].sum() + out.at[entity_id, "leads_7d"]
        out.at[entity_id, "share_of_parent_spend_7d"] = _ratio(out.at[entity_id, "spend_7d"], family_spend)
        out.at[entity_id, "share_of_parent_leads_7d"] = _ratio(out.at[entity_id, "leads_7d"], family_leads)
        sib_cpl = _ratio(siblings["spend_7d"].sum(), siblings["leads_7d"].sum())
        own = out.at[entity_id, "cpl_7d"]
        out.at[entity_id, "cpl_vs_siblings_7d"] = own / sib_cpl if not np.isnan(own) and not np.isnan(sib_cpl) and sib_cpl else np.nan
    account_cpl_7d = _ratio(out["spend_7d"].sum(), out["leads_7d"].sum())
    account_cpl_30d = _ratio(sum(r["_spend_30d"] for r in rows.values()), out["leads_30d"].sum())
    out["cpl_vs_account_7d"] = [_ratio(v, account_cpl_7d) if not np.isnan(v) else np.nan for v in out["cpl_7d"]]
    out["cpl_vs_account_30d"] = [_ratio(v, account_cpl_30d) if not np.isnan(v) else np.nan for v in out["cpl_30d"]]
    pooled = _ratio(out["spend_weighted"].sum(), out["leads_weighted"].sum())
    prior = settings.TIER_PRIOR_LEADS
    out["cpl_weighted_vs_account"] = [(s + prior * pooled) / (n + prior) / pooled if pooled == pooled and pooled else np.nan
                                      for s, n in zip(out["spend_weighted"], out["leads_weighted"])]
    out.index.name = "entity_id"
    return out[["parent_id", *FEATURE_COLUMNS]]
