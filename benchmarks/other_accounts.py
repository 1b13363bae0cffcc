"""A second generator of ad accounts whose truth is known, written apart from
:mod:`benchmarks.truth_accounts` and different from it on purpose, so that an estimator tuned on
one is checked on the other.

Where :mod:`benchmarks.truth_accounts` has AR(1) noise, Poisson counts and a one-day conversion
shift, here:

- adset spend: budget × a weekday pattern × a **random walk** (the level wanders and does not come
  back) × **Student-t (3 df) daily noise** — heavy tails, a day at −60 % or +150 % now and then;
- cost per lead: the ad's own level × a **weekday effect on CPM** (Mondays dear, weekends cheap)
  × a slow account-wide **drift** (a sine of 5–9 weeks) × a **ramp** (the account's conversion
  gets 25 % dearer over 10 days, logged nowhere) × the ad's AR(1) wobble;
- leads and clicks **negative binomial** (gamma-Poisson, shape 2.5: overdispersed); ads mostly
  0–5 leads a day, so many days have none; adsets 2–16 at the base cost (``volume="small"``) or 20–60;
- ads **start and stop**: late starters, ads stopped for good, ads paused for 4–10 days and back;
  an adset's spend goes to its live ads;
- changes **bunched**: 3–4 change days per account, each with 2–6 changes (adset budgets ×1.5 or
  a logged change that did not take; ad creatives with CPL ×0.65 or ×1.5 from the next day, or
  none) — so siblings change on the same day and the clean controls are few.

:func:`ceiling` is the chance a test that knows the counterfactual and every hidden state up to the
day before the change finds the change's direction from the entity's leads in the window: what
no method can beat, facing only the wander after the change.

Pure NumPy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

DAYS = 150
WEEKDAY_SPEND = np.array([0.97, 1.03, 1.05, 1.04, 1.0, 0.94, 0.97])  # Monday first
WEEKDAY_CPM = np.array([1.12, 1.06, 1.0, 0.98, 0.97, 0.88, 0.90])
SHAPE = 2.5  # negative binomial shape: variance = μ + μ²/SHAPE
WALK_SD = 0.025  # the random walk of an adset's spend level (log, per day)
T_SCALE, T_DF = 0.10, 3  # an adset's daily spend noise (log, Student t)
CPL_PHI, CPL_SD = 0.6, 0.10  # an ad's AR(1) cost-per-lead wobble (log)
REAL_EFFECTS = {"budget_change": [("spend x1.5", 1.5, 1.0)],
                "creative_change": [("cpl x0.65", 1.0, 0.65), ("cpl x1.5", 1.0, 1.5)]}


@dataclass
class OtherAccount:
    seed: int
    volume: str
    insights: pd.DataFrame  # one row per ad and day with delivery, as an Ads Manager export
    changes: pd.DataFrame  # entity_type, entity_id, change_date, change_type, old_value, new_value
    change_truth: pd.DataFrame  # the changes with ``effect`` and ``truth`` (positive / negative / neutral)
    ads: pd.DataFrame  # ad_id, adset_id, campaign_id
    adsets: pd.DataFrame  # adset_id, campaign_id, daily_budget
    last_day: pd.Timestamp
    state: dict  # the hidden processes, for :func:`ceiling`


def _nbinom(rng: np.random.Generator, mean: np.ndarray) -> np.ndarray:
    mean = np.maximum(mean, 0.0)
    return rng.poisson(rng.gamma(SHAPE, 1.0, mean.shape) * mean / SHAPE)


def generate(seed: int, volume: str = "small") -> OtherAccount:
    rng = np.random.default_rng(10_000 + seed)
    dates = pd.date_range(end=pd.Timestamp("2026-09-30"), periods=DAYS, freq="D")
    dow = dates.day_of_week.to_numpy()
    n_campaigns = int(rng.integers(3, 5))
    adset_campaign = np.concatenate([np.full(int(rng.integers(2, 5)), c) for c in range(n_campaigns)])
    n_adsets = len(adset_campaign)
    ad_adset = np.concatenate([np.full(int(rng.integers(3, 8)), s) for s in range(n_adsets)])
    n_ads = len(ad_adset)
    low, high = (2.0, 16.0) if volume == "small" else (20.0, 60.0)
    adset_leads = rng.uniform(low, high, n_adsets)  # expected leads a day at the base cost per lead
    ad_cpl = rng.uniform(15.0, 60.0, n_ads)
    adset_cpl = np.array([ad_cpl[ad_adset == s].mean() for s in range(n_adsets)])
    budget = np.round(adset_leads * adset_cpl, 0)

    # --- delivery spans: late starters, ads stopped for good, pauses of 4–10 days -------------------
    alive = np.ones((n_ads, DAYS), dtype=bool)
    adset_start = np.where(rng.random(n_adsets) < 0.2, rng.integers(10, 60, n_adsets), 0)
    for a in range(n_ads):
        start = max(adset_start[ad_adset[a]], int(rng.integers(20, DAYS - 20)) if rng.random() < 0.25 else 0)
        alive[a, :start] = False
        if rng.random() < 0.15:
            alive[a, int(rng.integers(start + 20, DAYS)) if start + 20 < DAYS else DAYS - 1:] = False
        if rng.random() < 0.2:
            pause = int(rng.integers(start + 5, DAYS - 5)) if start + 5 < DAYS - 5 else DAYS - 6
            alive[a, pause:pause + int(rng.integers(4, 11))] = False
    for s in range(n_adsets):  # an adset always has a live ad once started
        members = np.flatnonzero(ad_adset == s)
        alive[members[0], adset_start[s]:] = True

    # --- the hidden processes -----------------------------------------------------------------------
    walk = np.cumsum(rng.normal(0.0, WALK_SD, (n_adsets, DAYS)), axis=1)
    spend_noise = np.clip(rng.standard_t(T_DF, (n_adsets, DAYS)) * T_SCALE, -1.0, 1.0)
    wobble = np.empty((n_ads, DAYS))
    wobble[:, 0] = rng.normal(0.0, CPL_SD / np.sqrt(1 - CPL_PHI**2), n_ads)
    for t in range(1, DAYS):
        wobble[:, t] = CPL_PHI * wobble[:, t - 1] + rng.normal(0.0, CPL_SD, n_ads)
    period = rng.uniform(35, 63)
    drift = 0.08 * np.sin(2 * np.pi * (np.arange(DAYS) / period + rng.random()))
    ramp_day = int(rng.integers(40, DAYS - 20))
    ramp = np.log(1.25) * np.clip((np.arange(DAYS) - ramp_day) / 10.0, 0.0, 1.0)

    # --- bunched changes ----------------------------------------------------------------------------
    spend_mult = np.ones((n_ads, DAYS))
    cpl_mult = np.ones((n_ads, DAYS))
    change_days = np.sort(rng.choice(np.arange(DAYS - 70, DAYS - 7), size=int(rng.integers(3, 5)), replace=False))
    rows = []
    changed_adsets: set[int] = set()
    changed_ads: set[int] = set()
    for day in change_days:
        for _ in range(int(rng.integers(2, 7))):
            if rng.random() < 0.45:
                live = [s for s in range(n_adsets) if s not in changed_adsets and adset_start[s] < day - 28]
                if not live:
                    continue
                s = int(rng.choice(live))
                changed_adsets.add(s)
                members = ad_adset == s
                real = rng.random() < 0.5
                effect, spend_x, cpl_x = REAL_EFFECTS["budget_change"][0] if real else ("none", 1.0, 1.0)
                spend_mult[members, day + 1:] *= spend_x
                rows.append({"entity_type": "adset", "entity_id": f"as{seed}_{s}", "change_type": "budget_change",
                             "day": int(day), "old_value": budget[s], "new_value": round(budget[s] * 1.5, 0),
                             "effect": effect, "truth": "positive" if real else "neutral"})
            else:
                live = [a for a in range(n_ads) if a not in changed_ads and alive[a, day - 28:day + 8].all()]
                if not live:
                    continue
                a = int(rng.choice(live))
                changed_ads.add(a)
                real = rng.random() < 0.5
                options = REAL_EFFECTS["creative_change"]
                effect, spend_x, cpl_x = options[int(rng.integers(len(options)))] if real else ("none", 1.0, 1.0)
                cpl_mult[a, day + 1:] *= cpl_x
                truth = "neutral" if not real else ("positive" if cpl_x < 1 else "negative")
                rows.append({"entity_type": "ad", "entity_id": f"ad{seed}_{a}", "change_type": "creative_change",
                             "day": int(day), "old_value": None, "new_value": None, "effect": effect, "truth": truth})

    # --- the days -----------------------------------------------------------------------------------
    share_weight = np.exp(rng.normal(0.0, 0.4, n_ads))[:, None] * alive
    totals = np.zeros((n_adsets, DAYS))
    np.add.at(totals, ad_adset, share_weight)
    share = np.divide(share_weight, totals[ad_adset], out=np.zeros_like(share_weight), where=totals[ad_adset] > 0)
    adset_live = (totals > 0)
    base_spend = budget[:, None] * WEEKDAY_SPEND[dow][None] * adset_live
    expected_spend = base_spend[ad_adset] * share * spend_mult  # without the noise
    spend = expected_spend * np.exp(walk + spend_noise)[ad_adset]
    cpl_fixed = ad_cpl[:, None] * WEEKDAY_CPM[dow][None] * np.exp(drift + ramp)[None]
    cpl = cpl_fixed * cpl_mult * np.exp(wobble)
    leads = _nbinom(rng, spend / cpl)
    cpm = 9.0 * WEEKDAY_CPM[dow][None] * np.exp(rng.normal(0.0, 0.05, (n_ads, DAYS)))
    impressions = np.floor(spend / cpm * 1000).astype(np.int64)
    ctr = np.clip(0.011 * np.exp(rng.normal(0.0, 0.15, n_ads))[:, None] * np.exp(0.5 * (wobble * -1)), 0.001, 0.2)
    clicks = np.minimum(_nbinom(rng, impressions * ctr), impressions)
    clicks = np.maximum(clicks, leads)  # a lead form is opened by a click

    a_idx, d_idx = np.nonzero((spend > 0.005) & alive)
    campaign_ids = np.array([f"c{seed}_{c}" for c in range(n_campaigns)])
    adset_ids = np.array([f"as{seed}_{s}" for s in range(n_adsets)])
    ad_ids = np.array([f"ad{seed}_{a}" for a in range(n_ads)])
    insights = pd.DataFrame({
        "date": dates[d_idx].strftime("%Y-%m-%d"),
        "campaign_id": campaign_ids[adset_campaign[ad_adset[a_idx]]],
        "campaign_name": [f"Campaign {c}" for c in adset_campaign[ad_adset[a_idx]]],
        "adset_id": adset_ids[ad_adset[a_idx]],
        "adset_name": [f"Adset {s}" for s in ad_adset[a_idx]],
        "ad_id": ad_ids[a_idx],
        "ad_name": [f"Ad {a}" for a in a_idx],
        "impressions": np.maximum(impressions[a_idx, d_idx], 1),
        "reach": np.maximum((impressions[a_idx, d_idx] / 1.4).astype(np.int64), 1),
        "clicks": clicks[a_idx, d_idx],
        "spend": np.round(spend[a_idx, d_idx], 2),
        "leads": leads[a_idx, d_idx],
        "adset_daily_budget": budget[ad_adset[a_idx]],
    })
    truth = pd.DataFrame(rows)
    truth["change_date"] = dates[truth["day"].to_numpy()].strftime("%Y-%m-%d")
    return OtherAccount(
        seed=seed, volume=volume, insights=insights,
        changes=truth[["entity_type", "entity_id", "change_date", "change_type", "old_value", "new_value"]],
        change_truth=truth.drop(columns=["day"]),
        ads=pd.DataFrame({"ad_id": ad_ids, "adset_id": adset_ids[ad_adset], "campaign_id": campaign_ids[adset_campaign[ad_adset]]}),
        adsets=pd.DataFrame({"adset_id": adset_ids, "campaign_id": campaign_ids[adset_campaign], "daily_budget": budget}),
        last_day=dates[-1],
        state={"dates": dates, "ad_ids": ad_ids, "ad_adset": ad_adset, "walk": walk, "wobble": wobble,
               "expected_spend": expected_spend, "spend_mult": spend_mult, "cpl_fixed": cpl_fixed, "cpl_mult": cpl_mult,
               "alive": alive},
    )


def ceiling(account: OtherAccount, change: pd.Series, window: int, draws: int = 4000) -> float:
    """The chance that a test knowing the counterfactual and every hidden state up to the day before
    the change (the adset's spend level, the ads' CPL wobble) finds the change's true direction from
    the entity's leads summed over the ``window`` days after it (two-sided, 5 %), facing only how
    those states wander on and the daily noise: the ceiling no method on the same data reaches."""
    s = account.state
    t0 = int(s["dates"].get_loc(pd.Timestamp(change["change_date"])))
    days = np.arange(t0 + 1, min(t0 + window, len(s["dates"]) - 1) + 1)
    if change["entity_type"] == "ad":
        rows = np.flatnonzero(s["ad_ids"] == change["entity_id"])
    else:
        rows = np.flatnonzero(account.ads["adset_id"].to_numpy() == change["entity_id"])
    adset = s["ad_adset"][rows[0]]
    rng = np.random.default_rng(0)
    steps = days[-1] - t0 + 1 if len(days) else 0
    if steps <= 1:
        return 0.0
    walk = s["walk"][adset, t0 - 1] + np.cumsum(rng.normal(0.0, WALK_SD, (draws, steps)), axis=1)[:, 1:]
    noise = np.clip(rng.standard_t(T_DF, (draws, steps - 1)) * T_SCALE, -1.0, 1.0)
    wobble = np.empty((draws, len(rows), steps))
    state = np.broadcast_to(s["wobble"][rows, t0 - 1], (draws, len(rows))).copy()
    for k in range(steps):
        state = CPL_PHI * state + rng.normal(0.0, CPL_SD, state.shape)
        wobble[:, :, k] = state
    wobble = wobble[:, :, 1:]
    alive = s["alive"][rows][:, days]
    spend = s["expected_spend"][rows][:, days][None] * np.exp(walk + noise)[:, None, :] * alive[None]
    with_effect = spend / (s["cpl_fixed"][rows][:, days] * s["cpl_mult"][rows][:, days])[None] / np.exp(wobble)
    without = (spend / s["spend_mult"][rows][:, days][None]) / s["cpl_fixed"][rows][:, days][None] / np.exp(wobble)
    null = _nbinom(rng, without).sum(axis=(1, 2))
    real = _nbinom(rng, with_effect).sum(axis=(1, 2))
    lo, hi = np.quantile(null, [0.025, 0.975])
    if with_effect.sum() > without.sum():
        return float(np.mean(real > hi))
    return float(np.mean(real < lo))
