"""A realistic synthetic ad account: the demo's data and the benchmarks' and tests' workload.

Pure NumPy/pandas, no database. What it builds, per ad and day:

- weekly seasonality (weekends deliver less and convert worse),
- creative fatigue (frequency rises with an ad's age while its CTR decays, for some ads),
- budget changes with real effects (more delivery, slightly dearer leads), recorded as change events,
- a few injected anomalies (a spend spike, a broken lead form, a CTR collapse) on the last days,
- paused entities (no delivery after they stop) and new ads (a few days old).

The frame is in the canonical import form, so the demo goes through the real importer.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

WEEKDAY_DELIVERY = np.array([1.04, 1.08, 1.06, 1.02, 0.96, 0.90, 0.92])  # Monday first
WEEKDAY_CONVERSION = np.array([1.05, 1.06, 1.04, 1.00, 0.95, 0.90, 0.94])


@dataclass
class DemoAccount:
    insights: pd.DataFrame  # canonical ad-level daily rows
    changes: pd.DataFrame  # change events
    anomalies: pd.DataFrame  # what was injected: level, entity_id, date, metric, kind
    ads: pd.DataFrame  # one row per ad with its hidden parameters
    notes: list[str] = field(default_factory=list)

    def write_export(self, insights_path: Path, changes_path: Path, currency: str = "BRL") -> None:
        """The account as files to import: the insights with Ads Manager's "Amount spent (BRL)" header
        (so the account's currency is recorded) and the change events."""
        self.insights.rename(columns={"spend": f"Amount spent ({currency})"}).to_csv(insights_path, index=False)
        self.changes.to_csv(changes_path, index=False)


def generate_account(
    n_campaigns: int = 4,
    adsets_per_campaign: int = 3,
    ads_per_adset: int = 4,
    days: int = 120,
    end_date: dt.date | None = None,
    seed: int = 7,
    churn: bool = True,
    inject_anomalies: bool = True,
) -> DemoAccount:
    """Generate an account of ``n_campaigns × adsets_per_campaign × ads_per_adset`` ads over
    ``days`` days ending at ``end_date`` (default: yesterday). ``churn=False`` keeps every ad
    delivering every day (no late starts or pauses), e.g. for an exact row count in benchmarks."""
    if days < 30:
        raise ValueError(f"days must be at least 30 (got {days}): the account needs history to analyse")
    rng = np.random.default_rng(seed)
    end = pd.Timestamp(end_date or (dt.date.today() - dt.timedelta(days=1)))
    dates = pd.date_range(end=end, periods=days, freq="D")
    n_adsets = n_campaigns * adsets_per_campaign
    n_ads = n_adsets * ads_per_adset

    campaign_ids = np.array([f"2385{100000 + c}" for c in range(n_campaigns)])
    adset_ids = np.array([f"2386{100000 + s}" for s in range(n_adsets)])
    ad_ids = np.array([f"2387{100000 + a}" for a in range(n_ads)])
    adset_campaign = np.repeat(np.arange(n_campaigns), adsets_per_campaign)
    ad_adset = np.repeat(np.arange(n_adsets), ads_per_adset)
    ad_campaign = adset_campaign[ad_adset]

    # Hidden quality of each campaign / adset / ad: drives how cheap its leads are.
    campaign_quality = rng.lognormal(0.0, 0.35, n_campaigns)
    adset_quality = campaign_quality[adset_campaign] * rng.lognormal(0.0, 0.3, n_adsets)
    ad_quality = adset_quality[ad_adset] * rng.lognormal(0.0, 0.25, n_ads)
    adset_budget = np.round(rng.choice([30.0, 50.0, 80.0, 120.0, 200.0], n_adsets), 2)
    cpm = rng.uniform(7.0, 18.0, n_ads)
    base_ctr = np.clip(rng.normal(0.012, 0.003, n_ads), 0.004, 0.03) * np.sqrt(ad_quality)
    lead_rate = np.clip(rng.normal(0.07, 0.02, n_ads), 0.01, 0.2) * np.sqrt(ad_quality)
    fatigue_prone = rng.random(n_ads) < 0.3

    # Lifetimes: most ads run the whole period; some start late (new), some stop (paused).
    start = np.zeros(n_ads, dtype=int)
    late = rng.random(n_ads) < 0.25
    start[late] = rng.integers(days // 3, days - 20, late.sum())
    new = rng.choice(n_ads, size=max(1, n_ads // 20), replace=False)
    start[new] = days - rng.integers(2, 6, len(new))
    stop = np.full(n_ads, days)
    paused_ads = rng.choice(np.setdiff1d(np.arange(n_ads), new), size=max(1, n_ads // 12), replace=False)
    stop[paused_ads] = rng.integers(days // 2, days - 8, len(paused_ads))
    paused_adsets = rng.choice(n_adsets, size=max(1, n_adsets // 10), replace=False)
    adset_stop = np.full(n_adsets, days)
    adset_stop[paused_adsets] = rng.integers(days // 2, days - 10, len(paused_adsets))
    stop = np.minimum(stop, adset_stop[ad_adset])
    if not churn:
        start[:] = 0
        stop[:] = days
        adset_stop[:] = days
        paused_adsets = paused_adsets[:0]

    # Budget changes: a third of the adsets scale up by 20-60 % on one day.
    changed = rng.choice(n_adsets, size=max(1, n_adsets // 3), replace=False)
    change_day = np.full(n_adsets, -1)
    change_day[changed] = rng.integers(days // 3, days - 10, len(changed))
    change_factor = np.ones(n_adsets)
    change_factor[changed] = rng.uniform(1.2, 1.6, len(changed))

    day = np.arange(days)
    weekday = dates.day_of_week.to_numpy()
    age = day[None, :] - start[:, None]  # ads × days
    alive = (age >= 0) & (day[None, :] < stop[:, None])
    after_change = (change_day[ad_adset][:, None] >= 0) & (day[None, :] >= change_day[ad_adset][:, None])
    budget_mult = np.where(after_change, change_factor[ad_adset][:, None], 1.0)

    daily_spend_target = adset_budget[ad_adset] / ads_per_adset
    expected_impr = daily_spend_target[:, None] / cpm[:, None] * 1000 * WEEKDAY_DELIVERY[weekday][None, :]
    expected_impr = expected_impr * budget_mult * rng.lognormal(0.0, 0.12, (n_ads, days))
    impressions = rng.poisson(np.where(alive, expected_impr, 0.0))

    ages = np.clip(age, 0, None)
    frequency = 1.0 + ages / 25.0 * np.where(fatigue_prone[:, None], 1.0, 0.25)
    fatigue = np.where(fatigue_prone[:, None], np.exp(-ages / 45.0), 1.0)
    ctr = base_ctr[:, None] * fatigue
    clicks = rng.binomial(impressions, np.clip(ctr, 0, 1))
    # Scaling up buys dearer audiences: a little lower conversion after a budget increase.
    conv = lead_rate[:, None] * WEEKDAY_CONVERSION[weekday][None, :] / np.where(after_change, budget_mult**0.3, 1.0)
    leads = rng.binomial(clicks, np.clip(conv, 0, 1))
    spend = impressions / 1000.0 * cpm[:, None] * rng.lognormal(0.0, 0.05, (n_ads, days))

    # Injected anomalies on the last days.
    anomalies = []
    # On ads with enough volume that a single day can tell (a 1-lead-a-day ad without a lead today
    # is nothing unusual): three of the five busiest ads delivering on the last day.
    live_last = np.flatnonzero(alive[:, -1] & (start < days - 30))
    busiest = live_last[np.argsort(-leads[live_last, -15:-1].sum(axis=1))][:5]
    if inject_anomalies and len(busiest) >= 3:
        spike, broken, collapse = rng.choice(busiest, size=3, replace=False)
        impressions[spike, -1] *= 5
        clicks[spike, -1] *= 5
        leads[spike, -1] *= 2
        spend[spike, -1] *= 5
        anomalies.append(("ad", ad_ids[spike], dates[-1], "spend", "spend_spike"))
        leads[broken, -2:] = 0
        anomalies.append(("ad", ad_ids[broken], dates[-1], "leads", "zero_leads"))
        clicks[collapse, -1] = clicks[collapse, -1] // 8
        leads[collapse, -1] = np.minimum(leads[collapse, -1], clicks[collapse, -1])
        anomalies.append(("ad", ad_ids[collapse], dates[-1], "ctr", "ctr_drop"))

    reach = np.floor(impressions / frequency).astype(np.int64)
    spend = np.round(spend, 2)

    a_idx, d_idx = np.nonzero(impressions > 0)  # exports carry only days with delivery
    ad_status = np.where(stop < days, "PAUSED", "ACTIVE")
    adset_status = np.where(adset_stop < days, "PAUSED", "ACTIVE")
    insights = pd.DataFrame(
        {
            "date": dates[d_idx].strftime("%Y-%m-%d"),
            "campaign_id": campaign_ids[ad_campaign[a_idx]],
            "campaign_name": [f"Campaign {c + 1}" for c in ad_campaign[a_idx]],
            "adset_id": adset_ids[ad_adset[a_idx]],
            "adset_name": [f"Adset {s + 1}" for s in ad_adset[a_idx]],
            "ad_id": ad_ids[a_idx],
            "ad_name": [f"Ad {a + 1}" for a in a_idx],
            "impressions": impressions[a_idx, d_idx],
            "reach": reach[a_idx, d_idx],
            "clicks": clicks[a_idx, d_idx],
            "spend": spend[a_idx, d_idx],
            "leads": leads[a_idx, d_idx],
            "conversions": leads[a_idx, d_idx],
            "campaign_status": "ACTIVE",
            "adset_status": adset_status[ad_adset[a_idx]],
            "ad_status": ad_status[a_idx],
            # the budget in force at the end of the period
            "adset_daily_budget": np.round(adset_budget * change_factor, 2)[ad_adset[a_idx]],
        }
    ).sort_values(["date", "ad_id"], kind="stable", ignore_index=True)

    change_rows = [
        {
            "entity_type": "adset",
            "entity_id": adset_ids[s],
            "change_date": dates[change_day[s]].strftime("%Y-%m-%d"),
            "change_type": "budget_change",
            "old_value": f"{adset_budget[s]:.2f}",
            "new_value": f"{adset_budget[s] * change_factor[s]:.2f}",
        }
        for s in changed
    ]
    change_rows += [
        {
            "entity_type": "adset",
            "entity_id": adset_ids[s],
            "change_date": dates[adset_stop[s]].strftime("%Y-%m-%d"),
            "change_type": "pause",
            "old_value": "ACTIVE",
            "new_value": "PAUSED",
        }
        for s in paused_adsets
    ]
    changes = pd.DataFrame(change_rows, columns=["entity_type", "entity_id", "change_date", "change_type", "old_value", "new_value"])
    ads = pd.DataFrame(
        {
            "ad_id": ad_ids,
            "adset_id": adset_ids[ad_adset],
            "campaign_id": campaign_ids[ad_campaign],
            "quality": ad_quality,
            "fatigue_prone": fatigue_prone,
            "start_day": start,
            "stop_day": stop,
        }
    )
    anomaly_frame = pd.DataFrame(anomalies, columns=["entity_type", "entity_id", "date", "metric", "kind"])
    return DemoAccount(insights=insights, changes=changes, anomalies=anomaly_frame, ads=ads)
