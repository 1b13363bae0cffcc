"""Accounts whose right tiers are known by construction."""

from __future__ import annotations

import numpy as np
import pandas as pd

#: CPL of each group; with equal spend the pooled CPL is ~9.95, so the ratios are 0.50, 1.0,
#: 1.31 and 4.0: HIGH_PERFORMER, MODERATE, LOW, UNDERPERFORMER by the rules.
GROUP_CPL = {"HIGH_PERFORMER": 5.0, "MODERATE": 10.0, "LOW": 13.0, "UNDERPERFORMER": 40.0}


def known_tier_account(per_group: int = 12, days: int = 90, end: str = "2026-06-30", seed: int = 0,
                       daily_spend: float = 200.0) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """(daily, entities, true tier per entity): each ad keeps its group's CPL every day (Poisson
    leads), spends ``daily_spend`` a day; two adsets per group."""
    rng = np.random.default_rng(seed)
    dates = pd.date_range(end=end, periods=days, freq="D")
    rows, entities, truth = [], [], {}
    for g, (tier, group_cpl) in enumerate(GROUP_CPL.items()):
        for i in range(per_group):
            entity = f"ad_{g}_{i}"
            spend = daily_spend * rng.lognormal(0, 0.05, days)
            leads = rng.poisson(spend / group_cpl)
            impressions = rng.poisson(spend / 10 * 1000)
            clicks = rng.binomial(impressions, 0.01)
            rows.append(pd.DataFrame({
                "entity_id": entity, "date": dates, "impressions": impressions, "reach": impressions * 0.8,
                "clicks": clicks, "spend": spend, "leads": leads, "conversions": 0,
            }))
            entities.append({"entity_id": entity, "parent_id": f"adset_{g}_{i % 2}", "status": "ACTIVE", "daily_budget": np.nan})
            truth[entity] = tier
    return pd.concat(rows, ignore_index=True), pd.DataFrame(entities), pd.Series(truth)
