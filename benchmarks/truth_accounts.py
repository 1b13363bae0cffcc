"""Generated ad accounts whose truth is known: the workload of :mod:`benchmarks.ground_truth`.

Unlike the demo account, everything a judge needs is kept: each ad's true expected cost per lead on
every day (the held-out week included), which change events really moved something and how, and
which entity had which anomaly on the last day. Volumes are those of real small accounts: adsets
with 2–20 leads a day ("small") or 20–60 ("large"), ads with 0–5.

Per ad and day:

- spend: the adset's budget × a weekday delivery pattern × AR(1) noise, shared among the adset's
  live ads (better ads get more, with AR(1) drift of the shares); a budget change moves it;
- CPM, CTR and conversion rate each with their own AR(1) noise; CPL = CPM / (1000 · CTR · CVR);
- creative fatigue: for some ads CTR decays and frequency grows with age;
- an account-wide conversion shift (every CPL × ``shift``) on one day, not logged anywhere;
- late starts, long-stopped ads (weeks before the end) and new ads in the last days; the export
  has no status column, as many real ones, so "stopped" is only visible as missing rows;
- change events: real ones (budget ×1.35 → more leads at the same CPL; a creative with CPL ×0.7;
  an audience with CPL ×1.67) and null ones (logged, nothing moved) — some null ones on the shift
  day, some on adsets whose ads start or stop around the change;
- anomalies on the last imported day: at ad level a spend spike, a CPM spike, a CTR drop, delivery
  stopped and a leads drop on an ad busy enough for one day to tell (≥ 7 expected leads; none
  when no ad is); at adset level lost tracking (no lead on any ad, on the busiest free adset) and
  overspend (spend over twice the budget);
- a held-out week after the last imported day (no anomaly, no change) for forecasts and tiers.

Pure NumPy/pandas.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

WEEKDAY_DELIVERY = np.array([1.04, 1.08, 1.06, 1.02, 0.96, 0.88, 0.92])  # Monday first
WEEKDAY_CONVERSION = np.array([1.05, 1.06, 1.04, 1.00, 0.95, 0.90, 0.94])
HOLDOUT_DAYS = 7
#: The hidden day-to-day wander (AR(1) log noise: innovation sd, φ) of an ad's share of its
#: adset's spend, of an adset's spend, and of an ad's CPM, CTR and conversion rate.
WANDER = (("share", 0.08, 0.8), ("spend", 0.06, 0.7), ("cpm", 0.05, 0.7), ("ctr", 0.06, 0.7), ("cvr", 0.08, 0.8))

#: Expected leads a day of one adset, by account volume.
VOLUMES = {"small": (2.0, 20.0), "large": (20.0, 60.0)}


@dataclass
class TruthAccount:
    seed: int
    volume: str
    insights: pd.DataFrame  # canonical ad-level rows of the imported days (what is imported)
    holdout: pd.DataFrame  # the same for the held-out week (never imported)
    changes: pd.DataFrame  # change events as imported
    change_truth: pd.DataFrame  # per change: entity_type, entity_id, change_date, change_type, effect, truth
    anomalies: pd.DataFrame  # entity_type, entity_id, metric, kind (all on the last imported day)
    true_cpl: pd.DataFrame  # ad_id × date: the true expected CPL (held-out days included)
    expected_leads: pd.DataFrame  # ad_id × date: the true expected leads (with the changes' effects)
    leads_effect: pd.DataFrame  # ad_id × date: expected leads ÷ what they would be without the changes
    ads: pd.DataFrame  # ad_id, adset_id, campaign_id, start_day, stop_day
    adsets: pd.DataFrame  # adset_id, campaign_id, daily_budget (at the end)
    last_day: pd.Timestamp
    shift_day: pd.Timestamp
    #: the hidden wander: per name of WANDER its AR(1) states (ads × days; adsets × days for spend),
    #: plus "preference" (each ad's pull on its adset's spend), "alive" (ads × days) and "ad_adset"
    wander: dict


def _ar1(rng: np.random.Generator, shape: tuple[int, int], sd: float, phi: float = 0.7) -> np.ndarray:
    """AR(1) noise along the last axis with innovation sd ``sd`` (stationary start)."""
    out = np.empty(shape)
    out[:, 0] = rng.normal(0, sd / np.sqrt(1 - phi**2), shape[0])
    for t in range(1, shape[1]):
        out[:, t] = phi * out[:, t - 1] + rng.normal(0, sd, shape[0])
    return out


def generate(
    seed: int,
    volume: str = "small",
    *,
    n_campaigns: int = 4,
    adsets_per_campaign: int = 4,
    ads_per_adset: int = 5,
    days: int = 120,
    last_day: str = "2026-10-31",
) -> TruthAccount:
    """An account of ``n_campaigns × adsets_per_campaign × ads_per_adset`` ads over ``days``
    imported days ending at ``last_day``, plus a held-out week."""
    rng = np.random.default_rng(seed)
    total = days + HOLDOUT_DAYS
    end = pd.Timestamp(last_day)
    dates = pd.date_range(end=end + pd.Timedelta(days=HOLDOUT_DAYS), periods=total, freq="D")
    D = days - 1  # index of the last imported day
    n_adsets = n_campaigns * adsets_per_campaign
    n_ads = n_adsets * ads_per_adset
    campaign_ids = np.array([f"23851{seed:02d}{c:04d}" for c in range(n_campaigns)])
    adset_ids = np.array([f"23861{seed:02d}{s:04d}" for s in range(n_adsets)])
    ad_ids = np.array([f"23871{seed:02d}{a:04d}" for a in range(n_ads)])
    adset_campaign = np.repeat(np.arange(n_campaigns), adsets_per_campaign)
    ad_adset = np.repeat(np.arange(n_adsets), ads_per_adset)

    # --- hidden quality -------------------------------------------------------------------------
    account_cpl = rng.uniform(12.0, 30.0)
    adset_cpl = account_cpl * rng.lognormal(0.0, 0.3, n_adsets)
    low, high = VOLUMES[volume]
    adset_leads = np.exp(rng.uniform(np.log(low), np.log(high), n_adsets))
    budget = np.round(adset_leads * adset_cpl, 0)
    ad_cpl_mult = rng.lognormal(0.0, 0.35, n_ads)
    cpm = rng.uniform(6.0, 16.0, n_ads)
    # CPL = CPM / (1000 · CTR · CVR): split each ad's CPL multiplier between CTR and CVR
    split = rng.uniform(0.3, 0.7, n_ads)
    ctr0 = np.clip(rng.normal(0.012, 0.003, n_ads), 0.004, 0.03) * ad_cpl_mult ** (-split)
    cvr0 = (cpm / 1000.0) / (ctr0 * adset_cpl[ad_adset] * ad_cpl_mult)
    fatigue = rng.random(n_ads) < 0.3

    # --- lifetimes (days are indices 0 .. total-1) ---------------------------------------------------
    start = np.zeros(n_ads, dtype=int)
    late = rng.random(n_ads) < 0.15
    start[late] = rng.integers(30, D - 20, late.sum())
    stop = np.full(n_ads, total)
    stopped = rng.random(n_ads) < 0.10
    stop[stopped] = rng.integers(50, D - 14, stopped.sum())  # long-stopped: weeks before the end
    for s in range(n_adsets):  # every adset keeps two ads delivering at the end
        members = np.flatnonzero(ad_adset == s)
        alive_end = members[(stop[members] > D) & (start[members] <= D - 20)]
        if len(alive_end) < 2:
            chosen = members[:2]
            stop[chosen], start[chosen] = total, 0
    new_ads = rng.choice(n_ads, size=max(1, n_ads // 25), replace=False)
    keep_two = {s: np.flatnonzero((ad_adset == s) & (stop > D) & (start <= D - 20))[:2] for s in range(n_adsets)}
    protected = np.concatenate(list(keep_two.values()))
    new_ads = np.setdiff1d(new_ads, protected)
    start[new_ads] = D - rng.integers(1, 5, len(new_ads))
    stop[new_ads] = total
    day = np.arange(total)
    alive = (day[None, :] >= start[:, None]) & (day[None, :] < stop[:, None])
    age = np.clip(day[None, :] - start[:, None], 0, None)

    # --- the account-wide conversion shift (not logged) ----------------------------------------
    shift_day = int(rng.integers(D - 45, D - 20))
    shift = rng.choice([0.8, 1.25])
    cvr_shift = np.where(day >= shift_day, 1.0 / shift, 1.0)

    # --- change events -------------------------------------------------------------------------
    change_rows: list[dict] = []
    spend_mult = np.ones((n_ads, total))
    cpl_mult = np.ones((n_ads, total))
    window_days = range(45, D - 14)
    used_adsets: set[int] = set()

    def pick_adset() -> int:
        free = [s for s in range(n_adsets) if s not in used_adsets]
        s = int(rng.choice(free))
        used_adsets.add(s)
        return s

    def log(entity_type: str, index: int, when: int, change_type: str, old: str, new: str, effect: str, truth: str) -> None:
        ids = adset_ids if entity_type == "adset" else ad_ids
        change_rows.append({"entity_type": entity_type, "entity_id": ids[index], "change_date": dates[when],
                            "change_type": change_type, "old_value": old, "new_value": new,
                            "effect": effect, "truth": truth})

    for _ in range(2):  # real budget increases: +35 % spend at the same CPL → more leads
        s, when = pick_adset(), int(rng.choice(window_days))
        spend_mult[ad_adset == s, when:] *= 1.35
        log("adset", s, when, "budget_change", f"{budget[s]:.0f}", f"{budget[s] * 1.35:.0f}", "spend x1.35", "positive")
        budget[s] = round(budget[s] * 1.35)
    for _ in range(2):  # real audience changes that made leads dearer
        s, when = pick_adset(), int(rng.choice(window_days))
        cpl_mult[ad_adset == s, when:] *= 1.67
        log("adset", s, when, "audience_change", "lookalike 1%", "interest stack", "cpl x1.67", "negative")
    for _ in range(3):  # real creative changes on a live ad: CPL × 0.7
        s, when = pick_adset(), int(rng.choice(window_days))
        members = np.flatnonzero((ad_adset == s) & (start == 0) & (stop > D))
        a = int(members[0]) if len(members) else int(np.flatnonzero(ad_adset == s)[0])
        start[a], stop[a] = 0, total
        cpl_mult[a, when:] *= 0.7
        log("ad", a, when, "creative_change", "video v1", "video v2", "cpl x0.7", "positive")
    # null changes: logged, nothing moved (a raised budget the adset never spends, a copy edit)
    null_days = [shift_day, shift_day, *[int(rng.choice(window_days)) for _ in range(3)]]
    for k, when in enumerate(null_days):
        s = pick_adset()
        if k == 2:  # an adset whose ads start / stop around the change
            members = np.flatnonzero(ad_adset == s)
            extra = members[-1]
            if extra not in protected:
                start[extra], stop[extra] = when - 3, when + 4
        log("adset", s, when, "budget_change", f"{budget[s]:.0f}", f"{budget[s] * 1.2:.0f}", "none", "neutral")
    for _ in range(2):
        s, when = pick_adset(), int(rng.choice(window_days))
        a = int(np.flatnonzero(ad_adset == s)[0])
        start[a], stop[a] = 0, total
        log("ad", a, when, "creative_change", "headline A", "headline B", "none", "neutral")
    alive = (day[None, :] >= start[:, None]) & (day[None, :] < stop[:, None])
    age = np.clip(day[None, :] - start[:, None], 0, None)

    # --- delivery ------------------------------------------------------------------------------
    weekday = dates.day_of_week.to_numpy()
    preference = ad_cpl_mult ** (-1.0) * rng.lognormal(0.0, 0.3, n_ads)
    wander = {name: (sd, phi) for name, sd, phi in WANDER}
    states = {"share": _ar1(rng, (n_ads, total), *wander["share"])}
    weights = np.where(alive, preference[:, None] * np.exp(states["share"]), 0.0)
    adset_weight = np.zeros((n_adsets, total))
    np.add.at(adset_weight, ad_adset, weights)
    share = np.divide(weights, adset_weight[ad_adset], out=np.zeros_like(weights), where=adset_weight[ad_adset] > 0)
    base_budget = budget.copy()
    for row in change_rows:  # budgets before the real increases
        if row["effect"] == "spend x1.35":
            s = int(np.flatnonzero(adset_ids == row["entity_id"])[0])
            base_budget[s] = float(row["old_value"])
    states["spend"] = _ar1(rng, (n_adsets, total), *wander["spend"])
    adset_spend = base_budget[:, None] * WEEKDAY_DELIVERY[weekday][None, :] * np.exp(states["spend"]) * 0.97
    spend_exp = adset_spend[ad_adset] * share * spend_mult
    states["cpm"] = _ar1(rng, (n_ads, total), *wander["cpm"])
    cpm_t = cpm[:, None] * np.exp(states["cpm"])
    fatigue_ctr = np.where(fatigue[:, None], np.exp(-age / 70.0), 1.0)
    states["ctr"] = _ar1(rng, (n_ads, total), *wander["ctr"])
    ctr_t = np.clip(ctr0[:, None] * fatigue_ctr * np.exp(states["ctr"]), 1e-4, 0.5)
    states["cvr"] = _ar1(rng, (n_ads, total), *wander["cvr"])
    cvr_t = (cvr0[:, None] * WEEKDAY_CONVERSION[weekday][None, :] * cvr_shift[None, :] / cpl_mult
             * np.exp(states["cvr"]))
    cvr_t = np.clip(cvr_t, 1e-4, 0.9)
    frequency = 1.0 + age / np.where(fatigue[:, None], 30.0, 90.0)

    spend = np.where(alive, spend_exp * rng.lognormal(0.0, 0.03, (n_ads, total)), 0.0)
    impressions = rng.poisson(np.where(alive, spend / cpm_t * 1000.0, 0.0)).astype(np.int64)
    clicks = rng.binomial(impressions, ctr_t).astype(np.int64)
    leads = rng.binomial(clicks, cvr_t).astype(np.int64)
    true_cpl = cpm_t / (1000.0 * ctr_t * cvr_t)

    # --- last-day anomalies --------------------------------------------------------------------
    anomalies: list[dict] = []
    steady = np.flatnonzero(alive[:, D - 28:D + 1].all(axis=1))
    changed_entities = {r["entity_id"] for r in change_rows}
    steady = np.array([a for a in steady if ad_ids[a] not in changed_entities and adset_ids[ad_adset[a]] not in changed_entities])
    expected_leads = spend_exp[:, D] / true_cpl[:, D]
    order = rng.permutation(steady)
    # a single day without a lead only means something where several were expected
    # (P(0 | 7 expected) < 0.1 %); quieter ads cannot tell it from chance, their adset can
    busy = [a for a in order if expected_leads[a] >= 7.0]
    taken_adsets: set[int] = set()

    def take(candidates) -> int | None:  # noqa: ANN001
        for a in candidates:
            if ad_adset[a] not in taken_adsets:
                taken_adsets.add(int(ad_adset[a]))
                return int(a)
        return None

    a = take(busy)
    if a is not None:  # a leads drop on a busy ad (the pixel of that ad's form broke)
        leads[a, D] = 0
        anomalies.append({"entity_type": "ad", "entity_id": ad_ids[a], "metric": "leads", "kind": "leads_drop"})
    for kind in ("spend_spike", "cpm_spike", "ctr_drop", "delivery_stopped"):
        a = take(order)
        if a is None:
            continue
        if kind == "spend_spike":
            spend[a, D] *= 3.0
            impressions[a, D] *= 3
            clicks[a, D] = rng.binomial(impressions[a, D], ctr_t[a, D])
            leads[a, D] = rng.binomial(clicks[a, D], cvr_t[a, D])
            metric = "spend"
        elif kind == "cpm_spike":
            impressions[a, D] = int(impressions[a, D] / 2.5)
            clicks[a, D] = rng.binomial(impressions[a, D], ctr_t[a, D])
            leads[a, D] = rng.binomial(clicks[a, D], cvr_t[a, D])
            metric = "cpm"
        elif kind == "ctr_drop":
            clicks[a, D] = rng.binomial(impressions[a, D], ctr_t[a, D] / 5.0)
            leads[a, D] = rng.binomial(clicks[a, D], cvr_t[a, D])
            metric = "ctr"
        else:
            spend[a, D], impressions[a, D], clicks[a, D], leads[a, D] = 0.0, 0, 0, 0
            metric = "spend"
        anomalies.append({"entity_type": "ad", "entity_id": ad_ids[a], "metric": metric, "kind": kind})
    free = [s for s in rng.permutation(n_adsets) if s not in taken_adsets and adset_ids[s] not in changed_entities]
    adset_expected = np.zeros(n_adsets)
    np.add.at(adset_expected, ad_adset, np.where(alive[:, D], expected_leads, 0.0))
    if len(free) >= 2:
        lost = max(free, key=lambda s: adset_expected[s])  # lost tracking where the adset can tell
        over = next(int(s) for s in free if s != lost)
        leads[ad_adset == lost, D] = 0
        anomalies.append({"entity_type": "adset", "entity_id": adset_ids[lost], "metric": "leads", "kind": "tracking_lost"})
        members = ad_adset == over
        spend[members, D] *= 2.4
        impressions[members, D] = (impressions[members, D] * 2.4).astype(np.int64)
        clicks[members, D] = rng.binomial(impressions[members, D], ctr_t[members, D])
        leads[members, D] = rng.binomial(clicks[members, D], cvr_t[members, D])
        anomalies.append({"entity_type": "adset", "entity_id": adset_ids[over], "metric": "spend", "kind": "overspend"})

    # --- the export ----------------------------------------------------------------------------
    reach = np.floor(impressions / frequency).astype(np.int64)
    spend = np.round(spend, 2)
    a_idx, d_idx = np.nonzero(impressions > 0)
    rows = pd.DataFrame({
        "date": dates[d_idx].strftime("%Y-%m-%d"),
        "campaign_id": campaign_ids[adset_campaign[ad_adset[a_idx]]],
        "campaign_name": [f"Campaign {c + 1}" for c in adset_campaign[ad_adset[a_idx]]],
        "adset_id": adset_ids[ad_adset[a_idx]],
        "adset_name": [f"Adset {s + 1}" for s in ad_adset[a_idx]],
        "ad_id": ad_ids[a_idx],
        "ad_name": [f"Ad {a + 1}" for a in a_idx],
        "impressions": impressions[a_idx, d_idx],
        "reach": np.maximum(reach[a_idx, d_idx], 1),
        "clicks": clicks[a_idx, d_idx],
        "spend": spend[a_idx, d_idx],
        "leads": leads[a_idx, d_idx],
        "adset_daily_budget": budget[ad_adset[a_idx]],
        "_day": d_idx,
    })
    imported = rows.loc[rows["_day"] <= D].drop(columns="_day").reset_index(drop=True)
    holdout = rows.loc[rows["_day"] > D].drop(columns="_day").reset_index(drop=True)
    changes = pd.DataFrame(change_rows)
    changes["change_date"] = pd.to_datetime(changes["change_date"]).dt.strftime("%Y-%m-%d")
    truth_frame = pd.DataFrame(true_cpl, index=ad_ids, columns=dates)
    return TruthAccount(
        seed=seed, volume=volume,
        insights=imported, holdout=holdout,
        changes=changes[["entity_type", "entity_id", "change_date", "change_type", "old_value", "new_value"]],
        change_truth=changes,
        anomalies=pd.DataFrame(anomalies, columns=["entity_type", "entity_id", "metric", "kind"]),
        true_cpl=truth_frame,
        expected_leads=pd.DataFrame(np.where(alive, spend_exp / true_cpl, 0.0), index=ad_ids, columns=dates),
        leads_effect=pd.DataFrame(spend_mult / cpl_mult, index=ad_ids, columns=dates),
        ads=pd.DataFrame({"ad_id": ad_ids, "adset_id": adset_ids[ad_adset],
                          "campaign_id": campaign_ids[adset_campaign[ad_adset]], "start_day": start, "stop_day": stop,
                          "expected_spend_next_week": spend_exp[:, D + 1:].sum(axis=1),
                          "expected_leads_next_week": (spend_exp[:, D + 1:] / true_cpl[:, D + 1:]).sum(axis=1)}),
        adsets=pd.DataFrame({"adset_id": adset_ids, "campaign_id": campaign_ids[adset_campaign], "daily_budget": budget}),
        last_day=dates[D], shift_day=dates[shift_day],
        wander={**states, "preference": preference, "alive": alive, "ad_adset": ad_adset},
    )
