"""Before/after impact of a change (budget, creative, audience, pause, reactivate) that does not
cry wolf. Pure code: daily frames in, a report dataclass out.

For each metric (cpl, leads, ctr, spend) the raw % change of the entity's mean is reported, but the
test is against a **counterfactual** built from controls — the entity's clean siblings
(:func:`choose_controls`: no change of their own, no ad starting or stopping around the change),
pooled; without a clean sibling, the level's other clean entities — so account-wide shifts and the
shared weekly pattern are not the change's doing:

- CPL, leads and CTR (:func:`counterfactual_shift`): the entity's daily log metric minus the
  controls'; its level from the IMPACT_COUNTERFACTUAL_PRE_DAYS days before the change, its noise
  (with AR(1) autocorrelation) from the whole pre-period; the after-window's level tested against
  it. Without a clean control they are not tested: a before/after comparison alone cannot tell the
  change from the market, and the report says so instead of guessing.
- spend: the log difference to the controls (or the entity's own series), a level shift against a
  pre-period of up to IMPACT_PRE_PERIOD_DAYS days whose window-length block means measure the noise
  (batch means) — a pause needs no control to show that spend stopped.

The pre-period starts where neither the entity nor a chosen control moved on its own (an earlier
change, an ad starting or stopping), never before the data or the entity's first delivery.
Welch's t-test on the entity's own windows is reported too (``p_value_unadjusted``), for
comparison. The verdict is decided by the metrics the change was made for
(IMPACT_DECISIVE_METRICS, Holm-corrected among themselves); the change type's other primary
metrics can only hold a positive verdict back. A change is significant at p < 0.05 and meaningful
from an effect size |d| ≥ 0.2 (the effect over its per-day noise).
Fewer than 3 days on either side: ``insufficient_data``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import stats

from ads_ml import settings

VERDICT_SENTENCES = {
    ("positive", "budget_change"): "The budget change paid off: keep the new budget and consider the next step.",
    ("negative", "budget_change"): "The budget change hurt efficiency: return to the previous budget.",
    ("neutral", "budget_change"): "The budget change made no measurable difference: keep it only if volume matters more than cost.",
    ("positive", "budget_cut"): "The budget cut made each lead cheaper: keep the lower budget.",
    ("negative", "budget_cut"): "The budget cut made each lead dearer: return to the previous budget.",
    ("neutral", "budget_cut"): "The budget cut saved spend at the same cost per lead (leads fell with it): keep it if the volume lost is acceptable.",
    ("positive", "creative_change"): "The new creative works better: keep it and retire the old one.",
    ("negative", "creative_change"): "The new creative underperforms: bring back the previous creative.",
    ("neutral", "creative_change"): "The new creative performs like the old one: test a more different concept.",
    ("positive", "audience_change"): "The new audience works better: keep it.",
    ("negative", "audience_change"): "The new audience performs worse: revert the targeting.",
    ("neutral", "audience_change"): "The audience change made no measurable difference.",
    ("positive", "pause"): "The pause stopped the spend as intended.",
    ("negative", "pause"): "Spend did not fall after the pause: check that the entity is really paused.",
    ("neutral", "pause"): "No measurable change in spend after the pause: check its delivery status.",
    ("positive", "reactivate"): "The reactivation brings leads at a good cost: keep it running.",
    ("negative", "reactivate"): "The reactivated entity performs worse than before: consider pausing it again.",
    ("neutral", "reactivate"): "The reactivation made no measurable difference yet.",
}
INCONCLUSIVE = "The data cannot tell yet whether the change helped: look again after a longer after-window."
NO_CONTROL = ("No comparable entity stayed unchanged around this change (each sibling had a change of its own or "
              "started or stopped), so an account-wide move cannot be told from the change's effect: judge it against "
              "a sibling you left alone.")
MOVED_INSIDE = ("The entity moved on its own inside the windows (one of its ads started or stopped, or another change was "
                "made), so the change's effect cannot be told from that: judge it on a window without such moves.")
INSUFFICIENT = "Too few days before or after the change to judge it: wait for more data."


@dataclass
class MetricChange:
    pct_change: float | None
    p_value: float | None
    is_significant: bool
    effect_size: float | None
    adjusted_pct_change: float | None = None
    p_value_unadjusted: float | None = None
    days_before: int = 0
    days_after: int = 0
    autocorrelation: float | None = None
    minimum_detectable_pct: float | None = None  # the smallest change this data would find (80 % power)
    reason: str | None = None  # why it was not tested, when it was not


@dataclass
class ImpactReport:
    status: str  # complete / insufficient_data
    overall_impact: str  # positive / negative / neutral / inconclusive
    metric_changes: dict[str, dict] = field(default_factory=dict)
    recommendation: str = ""
    counterfactual: str = "none"


def daily_values(daily: pd.DataFrame) -> pd.DataFrame:
    """Per day: spend, leads, ctr (%), cpl (missing without leads), from summed raw columns."""
    frame = daily.assign(date=pd.to_datetime(daily["date"]).dt.normalize())
    frame = frame.groupby("date")[["spend", "leads", "clicks", "impressions"]].sum()
    out = pd.DataFrame(index=frame.index)
    out["spend"] = frame["spend"]
    out["leads"] = frame["leads"]
    out["clicks"] = frame["clicks"]
    out["impressions"] = frame["impressions"]
    out["ctr"] = np.where(frame["impressions"] > 0, frame["clicks"] / frame["impressions"].where(frame["impressions"] > 0) * 100, np.nan)
    out["cpl"] = np.where(frame["leads"] > 0, frame["spend"] / frame["leads"].where(frame["leads"] > 0), np.nan)
    return out


def _log(values: pd.Series, metric: str) -> pd.Series:
    if metric in ("leads", "spend"):  # counts and money can be 0
        return np.log(values + (0.5 if metric == "leads" else 1.0))
    return np.log(values.where(values > 0))


def _lag1(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    if len(x) < 5 or np.std(x) == 0:
        return 0.0
    return float(np.clip(np.corrcoef(x[:-1], x[1:])[0, 1], 0.0, 0.95))


def welch_effective(before: np.ndarray, after: np.ndarray, rho: float) -> tuple[float, float]:
    """Welch's t-test of after − before with n·(1−ρ)/(1+ρ) effective observations: (t, p)."""
    factor = (1 - rho) / (1 + rho)
    n1, n2 = max(len(before) * factor, 1.0), max(len(after) * factor, 1.0)
    v1, v2 = np.var(before, ddof=1), np.var(after, ddof=1)
    se2 = v1 / n1 + v2 / n2
    if se2 <= 0 or not np.isfinite(se2):
        return 0.0, 1.0
    t = (np.mean(after) - np.mean(before)) / np.sqrt(se2)
    df = se2**2 / ((v1 / n1) ** 2 / max(n1 - 1, 1e-9) + (v2 / n2) ** 2 / max(n2 - 1, 1e-9))
    p = 2 * stats.t.sf(abs(t), max(df, 1.0))
    return float(t), float(p)


def batch_means_shift(pre: np.ndarray, after: np.ndarray) -> tuple[float, float, float, int]:
    """Level shift of ``after`` against the pre-period, with the noise of a window mean measured
    on the pre-period itself: the variance of its (overlapping) window-length block means carries
    whatever autocorrelation and weekly pattern the series has (batch means). Returns
    (shift, standard error, p, degrees of freedom); t with one df per non-overlapping block − 1."""
    pre = pre[np.isfinite(pre)]
    after = after[np.isfinite(after)]
    k = len(after)
    blocks = np.convolve(pre, np.ones(k) / k, mode="valid") if len(pre) >= k else np.array([])
    dof = max(len(pre) // k - 1, 1)
    if len(blocks) < 2:
        return float(after.mean() - pre.mean()), np.nan, 1.0, dof
    var_block = float(np.var(blocks, ddof=1))
    # the pre-period mean is itself noisy: about var_block·k/len(pre)
    se = float(np.sqrt(var_block * (1 + k / len(pre))))
    shift = float(after.mean() - pre.mean())
    if se == 0:
        return shift, 0.0, (0.0 if shift else 1.0), dof
    return shift, se, float(2 * stats.t.sf(abs(shift / se), dof)), dof


#: Metrics that are counts out of an exposure: (count column, exposure column) per day. They are
#: tested as a rate (quasi-Poisson) rather than as a daily log ratio, which at small volumes
#: drops every lead-less day and drowns the effect in day-to-day noise.
RATE_METRICS = {"cpl": ("leads", "spend"), "leads": ("leads", None), "ctr": ("clicks", "impressions")}


def regime_events(
    changes: pd.DataFrame, deliveries: dict[str, pd.DataFrame], parents: dict[str, pd.Series], data_start, data_end,  # noqa: ANN001
) -> pd.DataFrame:
    """Everything that moves an entity on its own, as (entity_type, entity_id, date, kind) with
    ``date`` the first day of the new regime: its own change events and those of its descendants
    (the day after the change — the change day is mixed; kind "change"), and a descendant starting
    (its first day) or stopping (the day after its last) inside the data (kind "delivery"). ``changes``: entity_type, entity_id,
    change_date; ``deliveries``: per level, entity_id → first, last day of delivery; ``parents``:
    per level, entity_id → parent id (adset → campaign, ad → adset)."""
    start, end = pd.Timestamp(data_start).normalize(), pd.Timestamp(data_end).normalize()
    rows = [pd.DataFrame({"entity_type": changes["entity_type"], "entity_id": changes["entity_id"].astype(str),
                          "date": pd.to_datetime(changes["change_date"]) + pd.Timedelta(days=1), "own": True,
                          "kind": "change"})]
    for level, frame in deliveries.items():
        starts = frame.loc[frame["first"] > start]
        stops = frame.loc[frame["last"] < end]
        moves = pd.concat([pd.DataFrame({"entity_id": starts.index.astype(str), "date": starts["first"].to_numpy()}),
                           pd.DataFrame({"entity_id": stops.index.astype(str), "date": stops["last"].to_numpy() + pd.Timedelta(days=1)})])
        rows.append(moves.assign(entity_type=level, own=False, kind="delivery"))  # an entity's own start/stop is not a regime of its own
    events = pd.concat(rows, ignore_index=True)
    out = [events.loc[events["own"]]]
    current = events
    for child, parent in (("ad", "adset"), ("adset", "campaign")):
        lifted = current.loc[current["entity_type"] == child]
        if child in parents and len(lifted):
            parent_ids = lifted["entity_id"].map(parents[child]).dropna().astype(str)
            up = lifted.loc[parent_ids.index].assign(entity_type=parent, entity_id=parent_ids, own=True)
            out.append(up)
            current = pd.concat([current, up], ignore_index=True)
    return pd.concat(out, ignore_index=True)[["entity_type", "entity_id", "date", "kind"]].drop_duplicates(ignore_index=True)


def clean_since(events: pd.Series | pd.DataFrame, change_date, window_before: int, window_after: int) -> tuple[pd.Timestamp | None, bool]:  # noqa: ANN001
    """(first day of the regime the before-window lies in, whether another regime starts inside
    the windows) from one entity's regime events (:func:`regime_events`: a frame with date and kind,
    or bare dates). Any event inside the windows counts; the regime before them starts at the last
    earlier event of the kinds in IMPACT_PRE_PERIOD_CUT_BY."""
    day = pd.Timestamp(change_date).normalize()
    if isinstance(events, pd.DataFrame):
        dates = pd.to_datetime(events["date"])
        cutting = dates.loc[events["kind"].isin(settings.IMPACT_PRE_PERIOD_CUT_BY).to_numpy()]
    else:
        dates = cutting = pd.to_datetime(pd.Series(events))
    first_before = day - pd.Timedelta(days=window_before)
    earlier = cutting.loc[cutting <= first_before]
    inside = bool(((dates > first_before) & (dates <= day + pd.Timedelta(days=window_after))).any())
    return (earlier.max() if len(earlier) else None), inside


def choose_controls(
    candidates: pd.DataFrame,
    events: pd.DataFrame,
    change_date,  # noqa: ANN001
    *,
    window_before: int,
    window_after: int,
    data_end,  # noqa: ANN001
    min_pre_days: int = settings.IMPACT_MIN_CONTROL_PRE_DAYS,
) -> tuple[list[str], pd.Timestamp | None]:
    """The clean controls of a change and the first day of the pre-period they allow.

    ``candidates``: the entity's siblings with their first and last day of delivery (index
    entity_id, columns first, last); ``events``: entity_id, date of :func:`regime_events` for them.
    A sibling qualifies when it delivered from the before-window to the end of the after-window and
    nothing of its own (its change events, its ads starting or stopping) moved it inside the
    windows; it is clean since its first delivery or its last such event before. A control that
    moved on its own inside the pre-period would make the entity seem to move against it, so the
    pre-period starts where all chosen controls are clean; siblings clean for ``min_pre_days``
    before the change are preferred, so one late starter does not cut the pre-period short."""
    day = pd.Timestamp(change_date).normalize()
    first_needed = day - pd.Timedelta(days=window_before)
    last_needed = min(day + pd.Timedelta(days=window_after), pd.Timestamp(data_end).normalize())
    since: dict[str, pd.Timestamp] = {}
    for entity, row in candidates.iterrows():
        if row["first"] > first_needed or row["last"] < last_needed - pd.Timedelta(days=1):
            continue
        moved_since, inside = clean_since(events.loc[events["entity_id"] == str(entity)], day, window_before, window_after)
        if inside:
            continue
        since[str(entity)] = max(row["first"], moved_since) if moved_since is not None else row["first"]
    if not since:
        return [], None
    long_clean = {e: s for e, s in since.items() if s <= day - pd.Timedelta(days=min_pre_days)}
    chosen = long_clean or since
    return sorted(chosen), max(chosen.values())


def minimum_detectable_pct(se: float, power: float = 0.8) -> float | None:
    """The smallest relative change (%) a test with this standard error (log scale) would find
    with the given power at IMPACT_SIGNIFICANCE (two-sided)."""
    if not np.isfinite(se) or se <= 0:
        return None
    z = stats.norm.isf(settings.IMPACT_SIGNIFICANCE / 2) + stats.norm.ppf(power)
    return float((np.exp(z * se) - 1) * 100)


def analyse_change(
    entity_daily: pd.DataFrame,
    change_date,  # noqa: ANN001
    change_type: str,
    *,
    control_daily: pd.DataFrame | None = None,
    window_before: int = settings.IMPACT_DEFAULT_WINDOW_DAYS,
    window_after: int = settings.IMPACT_DEFAULT_WINDOW_DAYS,
    data_end=None,  # noqa: ANN001
    data_start=None,  # noqa: ANN001
    moved_inside: str | None = None,
    budget_direction: int | None = None,
) -> ImpactReport:
    """Impact of a change on one entity. ``*_daily``: rows with date, spend, leads, clicks,
    impressions (control rows are pooled per day). The after-window starts the day after the
    change (the change day itself is mixed). ``data_end``: the last day the data covers (the
    account's reference date); days up to it without a row are days without delivery — after a
    pause, that is the point — and days after it are not there yet. ``data_start``: the first day
    the loaded data covers; the pre-period never reaches before it nor before the entity's first
    delivery (days that are not there are never counted as zero-delivery days). ``moved_inside``:
    why the entity moved on its own inside the windows (an ad of it starting or stopping), if it did
    — its rate metrics are then not tested, as that move cannot be told from the change's.
    ``budget_direction``: +1 a budget raised, −1 lowered (:func:`budget_direction`), None unknown.
    A raised budget is judged on leads and CPL (more leads at the same cost is positive); a lowered
    one on CPL alone — leads are expected to fall with the spend, so a cut that keeps the cost per
    lead is neutral (it saved money), one that makes leads cheaper positive, dearer negative."""
    if change_type not in settings.CHANGE_TYPES:
        raise ValueError(f"unknown change type {change_type!r}; expected one of {', '.join(settings.CHANGE_TYPES)}")
    for name, value in (("window_before", window_before), ("window_after", window_after)):
        if not settings.IMPACT_MIN_WINDOW_DAYS <= value <= settings.IMPACT_MAX_WINDOW_DAYS:
            raise ValueError(f"{name} must be {settings.IMPACT_MIN_WINDOW_DAYS}–{settings.IMPACT_MAX_WINDOW_DAYS} days, not {value}")
    day = pd.Timestamp(change_date).normalize()
    entity = daily_values(entity_daily) if len(entity_daily) else pd.DataFrame(columns=["spend", "leads", "ctr", "cpl"])
    before_idx = pd.date_range(day - pd.Timedelta(days=window_before), day - pd.Timedelta(days=1), freq="D")
    after_idx = pd.date_range(day + pd.Timedelta(days=1), day + pd.Timedelta(days=window_after), freq="D")
    pre_idx = pd.date_range(day - pd.Timedelta(days=max(settings.IMPACT_PRE_PERIOD_DAYS, window_before)), day - pd.Timedelta(days=1), freq="D")
    if len(entity):
        delivered = entity.index[(entity["spend"] > 0)]
        first = delivered.min() if len(delivered) else entity.index.min()
        if data_start is not None:
            first = max(first, pd.Timestamp(data_start).normalize())
        pre_idx = pre_idx[pre_idx >= first]
        before_idx = before_idx[before_idx >= first]
    if data_end is not None and len(entity):
        end = pd.Timestamp(data_end).normalize()
        has_before = int((before_idx <= end).sum())
        after_idx = after_idx[after_idx <= end]  # days past the data are not zero, just unknown
        has_after = len(after_idx)
    else:
        has_before = int(entity.index.isin(before_idx).sum())
        has_after = int(entity.index.isin(after_idx).sum())
    if has_before < settings.IMPACT_MIN_WINDOW_DAYS or has_after < settings.IMPACT_MIN_WINDOW_DAYS:
        return ImpactReport("insufficient_data", "inconclusive", {}, INSUFFICIENT)
    # days without a row had no delivery
    full = entity.reindex(pre_idx.union(after_idx))
    counted = ["spend", "leads", "clicks", "impressions"]
    full[counted] = full[counted].fillna(0.0)
    control = daily_values(control_daily).reindex(full.index) if control_daily is not None and len(control_daily) else None
    if control is not None:
        control[counted] = control[counted].fillna(0.0)
    counterfactual = "controls" if control is not None else "none"

    changes: dict[str, dict] = {}
    for metric in settings.IMPACT_METRICS:
        if metric in RATE_METRICS:
            changes[metric] = _rate_change(full, control, metric, pre_idx, before_idx, after_idx, moved_inside)
            continue
        raw_before = full.loc[before_idx, metric].dropna()
        raw_after = full.loc[after_idx, metric].dropna()
        if len(raw_before) < settings.IMPACT_MIN_WINDOW_DAYS or len(raw_after) < settings.IMPACT_MIN_WINDOW_DAYS:
            changes[metric] = vars(MetricChange(None, None, False, None, days_before=len(raw_before), days_after=len(raw_after)))
            continue
        mean_before = raw_before.mean()
        pct = float((raw_after.mean() - mean_before) / mean_before * 100) if mean_before else None
        series = _log(full[metric], metric)
        if control is not None:
            series = series - _log(control[metric], metric)
        pre = series.loc[pre_idx].to_numpy(dtype=float)
        before = series.loc[before_idx].dropna().to_numpy(dtype=float)
        after = series.loc[after_idx].dropna().to_numpy(dtype=float)
        if len(before) < settings.IMPACT_MIN_WINDOW_DAYS or len(after) < settings.IMPACT_MIN_WINDOW_DAYS:
            changes[metric] = vars(MetricChange(pct, None, False, None, days_before=len(before), days_after=len(after)))
            continue
        # a level shift of the difference series against the pre-period (batch means)
        effect, se, p, _dof = batch_means_shift(pre, after)
        rho = _lag1(pre)
        _t0, p_naive = welch_effective(before, after, 0.0)  # Welch on the windows, for reference
        pooled = np.sqrt((np.var(before, ddof=1) + np.var(after, ddof=1)) / 2)
        d = effect / pooled if pooled > 0 else (np.sign(effect) * np.inf if effect else 0.0)
        changes[metric] = vars(MetricChange(
            pct_change=pct,
            p_value=p,
            is_significant=bool(p < settings.IMPACT_SIGNIFICANCE),
            effect_size=float(d),
            adjusted_pct_change=float((np.exp(effect) - 1) * 100),
            p_value_unadjusted=p_naive,
            days_before=len(before), days_after=len(after), autocorrelation=rho,
            minimum_detectable_pct=minimum_detectable_pct(se),
        ))
    judged = "budget_cut" if change_type == "budget_change" and budget_direction is not None and budget_direction < 0 else change_type
    verdict = _verdict(changes, judged)
    sentence = INCONCLUSIVE if verdict == "inconclusive" else VERDICT_SENTENCES[(verdict, judged)]
    deciding = [changes.get(m) or {} for m in settings.IMPACT_DECISIVE_METRICS[judged]]
    if verdict == "inconclusive" and deciding and all(c.get("reason") for c in deciding):
        sentence = MOVED_INSIDE if moved_inside else NO_CONTROL
    if verdict in ("neutral", "inconclusive"):
        sentence += _power_sentence(changes, judged)
    return ImpactReport("complete", verdict, changes, sentence, counterfactual)


def counterfactual_shift(y: pd.Series, x: pd.Series, recent: np.ndarray, after: np.ndarray,
                         pre: np.ndarray) -> tuple[float, float, float]:
    """(effect, standard error, p) of the after-window against a counterfactual: ``y − x``, the
    entity's daily log metric minus its controls' (a market move shifts both alike and cancels),
    its level taken from the ``recent`` days before the change (a slow drift of the entity, such as
    creative fatigue, is not mistaken for the change's effect), its noise — standard deviation and
    AR(1) autocorrelation (ρ corrected for its small-sample bias) — from the whole pre-period, where
    many more days measure it. Both window means carry the autocorrelated noise; t with the
    pre-period's degrees of freedom. Days where either is missing are left out."""
    d = (y - x).replace([np.inf, -np.inf], np.nan).to_numpy(dtype=float)
    ok = np.isfinite(d)
    level_days, after_days, noise_days = d[recent & ok], d[after & ok], d[pre & ok]
    if (len(level_days) < settings.IMPACT_MIN_PRE_DAYS or len(after_days) < settings.IMPACT_MIN_WINDOW_DAYS - 1
            or len(noise_days) < settings.IMPACT_MIN_PRE_DAYS):
        return 0.0, float("nan"), 1.0
    resid = noise_days - noise_days.mean()
    raw = _lag1(resid)
    rho = float(np.clip(raw + (1 + 3 * raw) / len(resid), 0.0, 0.95))  # Kendall's bias correction
    # the exact variance of (after mean − level mean) of AR(1) noise on these very days: the two
    # windows' own autocorrelation, less their covariance (they lie days apart, not independent)
    days = np.arange(len(d), dtype=float)
    at = np.concatenate([days[recent & ok], days[after & ok]])
    weights = np.concatenate([np.full(len(level_days), -1.0 / len(level_days)), np.full(len(after_days), 1.0 / len(after_days))])
    correlation = rho ** np.abs(at[:, None] - at[None, :])
    se = float(np.std(resid, ddof=1)) * float(np.sqrt(max(weights @ correlation @ weights, 0.0)))
    effect = float(after_days.mean() - level_days.mean())
    if se <= 0:
        return effect, 0.0, (0.0 if effect else 1.0)
    return effect, se, float(2 * stats.t.sf(abs(effect / se), max(len(resid) - 2, 1)))


def wander_variogram(q: np.ndarray, mu: np.ndarray, max_lag: int) -> tuple[float, float]:
    """(a, b) of the variogram γ(h) = a + b·h (h ≥ 1 day) of an entity's multiplicative wander
    against its controls, from its relative deviation ``q`` = y/μ − 1 (NaN where unknown) with the
    count noise taken out: a pair of days h apart has E[½(q_{t+h} − q_t)²] = ½(1/μ_t + 1/μ_{t+h}) +
    γ(h) (Poisson part + wander). Each lag's excess is a precision-weighted mean over its pairs, and
    the line is fitted over lags 1..max_lag weighted by each lag's precision. ``a`` is the day-to-day
    multiplicative noise (overdispersion), ``b`` how much further apart the wander drifts per day of
    distance — a random walk's shows as b, an AR(1)'s as a slope that overstates its longest lags
    (erring on the safe side). Both are held ≥ 0."""
    lags, values, weights = [], [], []
    for h in range(1, max_lag + 1):
        d = q[h:] - q[:-h]
        poisson = 0.5 * (1.0 / mu[h:] + 1.0 / mu[:-h])
        ok = np.isfinite(d) & np.isfinite(poisson)
        if ok.sum() < 3:
            continue
        w = 1.0 / poisson[ok] ** 2
        lags.append(h)
        values.append(float(np.sum(w * (0.5 * d[ok] ** 2 - poisson[ok])) / np.sum(w)))
        weights.append(float(np.sum(w)))
    if not lags:
        return 0.0, 0.0
    if len(lags) < 3:
        return max(float(np.average(values, weights=weights)), 0.0), 0.0
    x, v, w = np.asarray(lags, float), np.asarray(values), np.asarray(weights)
    b, a = np.polyfit(x, v, 1, w=np.sqrt(w))
    if b < 0:  # no drift: flat
        return max(float(np.average(v, weights=w)), 0.0), 0.0
    if a < 0:  # through the origin
        return 0.0, max(float(np.sum(w * x * v) / np.sum(w * x * x)), 0.0)
    return float(a), float(b)


def count_shift(y: np.ndarray, m: np.ndarray, level: np.ndarray, after: np.ndarray, noise: np.ndarray,
                ) -> tuple[float, float, float, float, float]:
    """A count's shift against its counterfactual, on the counts themselves, so that days without a
    lead weigh what they are worth instead of being dropped.

    ``y``: the entity's daily count (leads, clicks); ``m``: what it is proportional to under no
    change — its exposure times the controls' rate (spend × the controls' leads per spend), or the
    controls' count itself — so the expected count is μ = k·m, with k the entity's own ratio taken
    from the ``level`` days just before the change. The statistic is O − k̂·M: the after-window's
    count against its expectation, a contrast Σ w_t y_t (w: +1 on the after days, −M_after/M_level
    on the level days). Its variance has two parts, both measured on the whole clean pre-period
    (``noise``): the counts' own Poisson noise, Σ w_t² μ_t, and the entity's multiplicative wander
    against its controls, −Σ_s Σ_t v_s v_t γ(|s−t|) with v = w·μ (Σv = 0) and γ its variogram
    (:func:`wander_variogram`) — day-to-day overdispersion and a drift that may or may not return;
    the estimated level's error and the two windows' distance are both in it. Returns (log effect,
    its standard error, p, expected count in the after-window, count in the level days); p 1 and
    se NaN when too few days can be used."""
    ok = np.isfinite(y) & np.isfinite(m) & (m > 0)
    lv, af, nz = level & ok, after & ok, noise & ok
    nan = float("nan")
    if lv.sum() < settings.IMPACT_MIN_PRE_DAYS or af.sum() < settings.IMPACT_MIN_WINDOW_DAYS - 1 or nz.sum() < settings.IMPACT_MIN_PRE_DAYS:
        return 0.0, nan, 1.0, nan, nan
    k_noise = y[nz].sum() / m[nz].sum()
    k = y[lv].sum() / m[lv].sum()
    expected = float(k * m[af].sum())
    observed = float(y[af].sum())
    level_count = float(y[lv].sum())
    if k_noise <= 0 or k <= 0:
        return 0.0, nan, 1.0, expected, level_count
    if nz.sum() < settings.IMPACT_MIN_NOISE_DAYS:  # too short a history to measure the wander
        return 0.0, nan, 1.0, expected, level_count
    mu_noise = np.where(nz, k_noise * np.where(ok, m, 1.0), np.nan)
    q = y / mu_noise - 1.0
    max_lag = min(int(nz.sum()) // 2, settings.IMPACT_VARIOGRAM_MAX_LAG)
    a, b = wander_variogram(q, mu_noise, max_lag)
    days = np.arange(len(y), dtype=float)
    at = np.concatenate([days[lv], days[af]])
    w = np.concatenate([np.full(lv.sum(), -m[af].sum() / m[lv].sum()), np.ones(af.sum())])
    mu = k * np.concatenate([m[lv], m[af]])
    v = w * mu
    # the wander as far as it was measured: no extrapolation of the drift past the longest lag
    distance = np.minimum(np.abs(at[:, None] - at[None, :]), max_lag)
    variance = float(np.sum(w**2 * mu) + a * np.sum(v**2) - b * (v @ distance @ v))
    sd = float(np.sqrt(max(variance, 0.0)))
    effect = float(np.log((observed + 0.5) / (expected + 0.5)))
    if not np.isfinite(sd) or sd <= 0:
        return effect, nan, 1.0, expected, level_count
    p = float(2 * stats.t.sf(abs(observed - expected) / sd, max(int(nz.sum()) - 2, 1)))
    return effect, sd / max(expected, 1.0), p, expected, level_count


def _smoothed(count: pd.Series, exposure: pd.Series | None, split: pd.Timestamp, days: int = 7) -> pd.Series:
    """The controls' rate (count per exposure) over ``days`` centred days, or their mean count, never
    mixing days before ``split`` with days from it on (an account-wide shift on the change day stays
    a step instead of leaking into the entity's counterfactual)."""
    parts = []
    for part in (count.index < split, count.index >= split):
        counts = count.loc[part].rolling(days, center=True, min_periods=1).sum()
        if exposure is None:
            parts.append(counts / count.loc[part].rolling(days, center=True, min_periods=1).count())
            continue
        total = exposure.loc[part].rolling(days, center=True, min_periods=1).sum()
        parts.append(counts / total.where(total > 0))
    return pd.concat(parts).reindex(count.index)


def _rate_change(full: pd.DataFrame, control: pd.DataFrame | None, metric: str, pre_idx, before_idx, after_idx,  # noqa: ANN001
                 moved_inside: str | None = None) -> dict:
    """A rate metric's change: raw % change of the pooled ratio of the windows, and the test of the
    entity's counts against the counterfactual its controls give (:func:`count_shift`), its level
    from the IMPACT_COUNTERFACTUAL_PRE_DAYS days (or the after-window's length, if longer) before the
    change; not tested without controls, when the entity moved on its own inside the windows
    (``moved_inside`` says how), nor when fewer than IMPACT_MIN_EVENTS leads or clicks would carry it."""
    count_col, exposure_col = RATE_METRICS[metric]
    exposed = full[exposure_col] > 0 if exposure_col else full["spend"] > 0
    days_before = int(exposed.loc[before_idx].sum())
    days_after = int(exposed.loc[after_idx].sum())
    if days_before < settings.IMPACT_MIN_WINDOW_DAYS or days_after < settings.IMPACT_MIN_WINDOW_DAYS:
        return vars(MetricChange(None, None, False, None, days_before=days_before, days_after=days_after))

    def pooled(index) -> float:  # noqa: ANN001
        window = full.loc[index]
        if metric == "leads":
            return float(window["leads"].mean())
        numerator, denominator = (window["spend"].sum(), window["leads"].sum()) if metric == "cpl" else (
            window["clicks"].sum() * 100, window["impressions"].sum())
        return float(numerator / denominator) if denominator > 0 else float("nan")

    before, after = pooled(before_idx), pooled(after_idx)
    pct = float((after - before) / before * 100) if np.isfinite(before) and before and np.isfinite(after) else None
    if moved_inside:  # the entity's own move inside the windows cannot be told from the change's
        return vars(MetricChange(pct, None, False, None, days_before=days_before, days_after=days_after, reason=moved_inside))
    if control is None:  # without a counterfactual the change cannot be told from the market's moves
        return vars(MetricChange(pct, None, False, None, days_before=days_before, days_after=days_after,
                                 reason="no clean control: an account-wide move could not be told from the change's"))
    days = full.index
    counts = full.loc[pre_idx, count_col].loc[exposed.loc[pre_idx]]
    if len(counts) and float((counts == 0).mean()) < settings.IMPACT_SPARSE_ZERO_SHARE:
        return _dense_rate_change(full, control, metric, pre_idx, before_idx, after_idx, pct, days_before, days_after)
    level_idx = pre_idx[pre_idx >= after_idx[0] - pd.Timedelta(days=max(settings.IMPACT_COUNTERFACTUAL_PRE_DAYS,
                                                                        len(after_idx), len(before_idx)) + 1)]
    rate = _smoothed(control[count_col], control[exposure_col] if exposure_col else None, after_idx[0])
    expected_unit = full[exposure_col] * rate if exposure_col else rate
    effect, se, p, expected, level_count = count_shift(
        full[count_col].to_numpy(dtype=float), expected_unit.to_numpy(dtype=float),
        days.isin(level_idx), days.isin(after_idx), days.isin(pre_idx))
    if metric == "cpl":  # more leads for the money is a lower cost per lead
        effect = -effect
    few = min(expected, level_count) if np.isfinite(expected) and np.isfinite(level_count) else 0.0
    clean = int((full.loc[pre_idx, exposure_col or "spend"] > 0).sum())
    if clean < settings.IMPACT_MIN_NOISE_DAYS:
        return vars(MetricChange(pct, None, False, None, days_before=days_before, days_after=days_after,
                                 reason=f"only {clean} clean days before the change (fewer than {settings.IMPACT_MIN_NOISE_DAYS}): "
                                        "too few to measure how much the entity wanders against its controls"))
    if few < settings.IMPACT_MIN_EVENTS:
        return vars(MetricChange(pct, None, False, None, days_before=days_before, days_after=days_after,
                                 reason=f"too few {count_col} to tell ({few:.0f} expected in a window, fewer than "
                                        f"{settings.IMPACT_MIN_EVENTS}): a handful of {count_col} can move it by chance"))
    return _tested(full, metric, before_idx, after_idx, pct, days_before, days_after, effect, se, p)


def _dense_rate_change(full: pd.DataFrame, control: pd.DataFrame, metric: str, pre_idx, before_idx, after_idx,  # noqa: ANN001
                       pct: float | None, days_before: int, days_after: int) -> dict:
    """A rate metric of an entity with a count on nearly every day: the daily log metric minus the
    controls' against its level of the IMPACT_COUNTERFACTUAL_PRE_DAYS days (or the after-window's
    length, if longer) before the change (:func:`counterfactual_shift`)."""
    days = full.index
    level_idx = pre_idx[pre_idx >= after_idx[0] - pd.Timedelta(days=max(settings.IMPACT_COUNTERFACTUAL_PRE_DAYS,
                                                                        len(after_idx), len(before_idx)) + 1)]
    effect, se, p = counterfactual_shift(_log(full[metric], metric), _log(control[metric], metric),
                                         days.isin(level_idx), days.isin(after_idx), days.isin(pre_idx))
    return _tested(full, metric, before_idx, after_idx, pct, days_before, days_after, effect, se, p)


def _tested(full: pd.DataFrame, metric: str, before_idx, after_idx, pct: float | None, days_before: int,  # noqa: ANN001
            days_after: int, effect: float, se: float, p: float) -> dict:
    """A tested rate metric's entry: the test's effect (log), its standard error and p, with plain
    Welch on the entity's own days beside it for comparison."""
    d = effect / (se * np.sqrt(days_after)) if np.isfinite(se) and se > 0 else 0.0
    own = _log(full[metric], metric)
    own_before, own_after = own.loc[before_idx].dropna().to_numpy(), own.loc[after_idx].dropna().to_numpy()
    p_naive = welch_effective(own_before, own_after, 0.0)[1] if min(len(own_before), len(own_after)) >= 2 else None
    return vars(MetricChange(
        pct_change=pct, p_value=p, is_significant=bool(p < settings.IMPACT_SIGNIFICANCE), effect_size=float(d),
        adjusted_pct_change=float((np.exp(effect) - 1) * 100), p_value_unadjusted=p_naive,
        days_before=days_before, days_after=days_after,
        minimum_detectable_pct=minimum_detectable_pct(se),
    ))


def _power_sentence(changes: dict[str, dict], change_type: str) -> str:
    parts = []
    for metric in settings.IMPACT_PRIMARY_METRICS[change_type]:
        mde = (changes.get(metric) or {}).get("minimum_detectable_pct")
        if mde is not None:
            parts.append(f"{metric} ±{mde:.0f} %")
    if not parts:
        return ""
    return " With this volume and window, only changes of about " + ", ".join(parts) + " or more are detectable."


def _holm(p_values: dict[str, float]) -> dict[str, bool]:
    """Holm's step-down at IMPACT_SIGNIFICANCE: which hypotheses are rejected."""
    ordered = sorted(p_values.items(), key=lambda item: item[1])
    rejected, k = {}, len(ordered)
    still = True
    for i, (metric, p) in enumerate(ordered):
        still = still and p < settings.IMPACT_SIGNIFICANCE / (k - i)
        rejected[metric] = still
    return rejected


def _verdict(changes: dict[str, dict], change_type: str) -> str:
    """The deciding metrics of the change type (IMPACT_DECISIVE_METRICS, Holm-corrected among
    themselves) decide: significant and meaningful in the good direction → positive, in the bad one
    → negative, both → inconclusive. The change's other primary metrics can only hold a verdict
    back: a positive one whose other primary metric got significantly worse is inconclusive (never
    the other way round: a metric the change was not made for does not make a verdict). Nothing
    significant: neutral, or inconclusive when a deciding estimate is large but the data too thin."""
    good_direction = {**settings.IMPACT_GOOD_DIRECTION, **settings.IMPACT_GOOD_DIRECTION_OVERRIDES.get(change_type, {})}
    tested = {m for m in settings.IMPACT_PRIMARY_METRICS[change_type] if changes.get(m) and changes[m]["p_value"] is not None}
    deciding = [m for m in settings.IMPACT_DECISIVE_METRICS[change_type] if m in tested]
    if not deciding:
        return "inconclusive"
    rejected = _holm({m: changes[m]["p_value"] for m in deciding})

    def direction(metric: str, significant: bool) -> int:
        d = changes[metric]["effect_size"]
        if significant and abs(d) >= settings.IMPACT_MIN_EFFECT_SIZE:
            return 1 if np.sign(d) == good_direction[metric] else -1
        return 0

    decided = {direction(m, rejected[m]) for m in deciding}
    worse_elsewhere = any(direction(m, changes[m]["p_value"] < settings.IMPACT_SIGNIFICANCE) == -1
                          for m in tested - set(deciding))
    if 1 in decided and -1 in decided:
        return "inconclusive"
    if 1 in decided:
        return "inconclusive" if worse_elsewhere else "positive"
    if -1 in decided:
        return "negative"
    large = any(abs(changes[m]["effect_size"]) >= 0.8 for m in deciding)
    return "inconclusive" if large else "neutral"


def verdict_of_record(reports: pd.DataFrame, key: list[str]) -> pd.DataFrame:
    """Each change's report of record (one row per ``key``) from its reports at several after-windows
    (columns status, overall_impact, window_after): the longest complete window that reached a
    verdict (positive / negative / neutral); without one, the longest complete window; without a
    complete one, the longest. A later window that cannot tell (the entity moved, too few leads)
    does not erase what an earlier one could."""
    if reports.empty:
        return reports
    rank = reports.assign(_complete=reports["status"] == "complete",
                          _decided=(reports["status"] == "complete") & (reports["overall_impact"] != "inconclusive"))
    rank = rank.sort_values(["_decided", "_complete", "window_after"], kind="stable")
    return rank.drop_duplicates(key, keep="last").drop(columns=["_complete", "_decided"])


def verdict_history(reports: pd.DataFrame) -> str:
    """How one change's verdict evolved over its complete reports (rows with window_after, status,
    overall_impact): "neutral at 7 days, positive at 28 days"."""
    done = reports.loc[reports["status"] == "complete"].sort_values("window_after")
    return ", ".join(f"{v} at {int(w)} days" for w, v in zip(done["window_after"], done["overall_impact"]))


def budget_direction(old_value, new_value) -> int | None:  # noqa: ANN001
    """+1 when a budget change raised the budget, −1 when it lowered it, None when the logged values
    do not say (missing or not numbers; "R$ 1.200,00" and "1,200.00" both read)."""
    def number(value) -> float | None:  # noqa: ANN001
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return None
        text = "".join(ch for ch in str(value) if ch.isdigit() or ch in ".,")
        if not any(ch.isdigit() for ch in text):
            return None
        last = max(text.rfind("."), text.rfind(","))
        if last >= 0 and len(text) - last - 1 in (1, 2):  # a decimal separator: 12,5 / 1.200,00 / 1,200.00
            text = text[:last].replace(".", "").replace(",", "") + "." + text[last + 1:]
        else:
            text = text.replace(".", "").replace(",", "")
        return float(text)

    old, new = number(old_value), number(new_value)
    if old is None or new is None or old == new:
        return None
    return 1 if new > old else -1


def delivery_spans(daily: pd.DataFrame) -> pd.DataFrame:
    """entity_id → first, last day with spend, from one level's daily rows."""
    delivered = daily.loc[daily["spend"] > 0]
    return delivered.groupby(delivered["entity_id"].astype(str))["date"].agg(first="min", last="max")


@dataclass
class LevelData:
    """One level of an account as the impact analysis needs it: daily rows (entity_id, date, spend,
    leads, clicks, impressions), entities (entity_id, parent_id) and the days the data covers."""

    daily: pd.DataFrame
    entities: pd.DataFrame
    start_date: object
    reference_date: object


def baseline(levels: dict[str, LevelData], events: pd.DataFrame, spans: dict[str, pd.DataFrame], entity_type: str,
             entity_id: str, change_date, window_before: int, window_after: int) -> tuple[pd.DataFrame | None, pd.Timestamp, str | None]:  # noqa: ANN001
    """(control rows, first day of the pre-period, why the entity moved on its own inside the windows
    or None) of one change: the entity's clean siblings (:func:`choose_controls`) pooled — without
    one, the level's other clean entities (40 ground-truth accounts: 62 real changes found instead
    of 59, the same 9 of 280 null ones called) — and a pre-period that starts after the last regime
    event of the entity or any chosen control of the kinds in IMPACT_PRE_PERIOD_CUT_BY (change events)."""
    level = levels[entity_type]
    entities = level.entities.assign(entity_id=level.entities["entity_id"].astype(str))
    day = pd.Timestamp(change_date)
    level_events = events.loc[events["entity_type"] == entity_type]
    own = level_events.loc[(level_events["entity_id"] == entity_id) & (level_events["date"] != day + pd.Timedelta(days=1))]
    start = pd.Timestamp(level.start_date)
    own_since, inside = clean_since(own, day, window_before, window_after)
    moved = None
    if inside:
        first, last = day - pd.Timedelta(days=window_before), day + pd.Timedelta(days=window_after)
        when = sorted(d.date().isoformat() for d in pd.to_datetime(own["date"]) if first < d <= last)
        moved = ("moved on its own inside the windows (a change of its own or of one of its ads, or an ad starting or "
                 f"stopping) on {', '.join(when)}")
    if own_since is not None:
        start = max(start, own_since)
    parent = entities.loc[entities["entity_id"] == entity_id, "parent_id"]
    if parent.empty:
        return None, start, moved
    siblings = set(entities.loc[(entities["parent_id"] == parent.iloc[0]) & (entities["entity_id"] != entity_id), "entity_id"])
    span = spans[entity_type]
    chosen, controls_since = choose_controls(span.loc[span.index.isin(siblings)], level_events, day,
                                             window_before=window_before, window_after=window_after,
                                             data_end=level.reference_date)
    if not chosen:  # no clean sibling: the level's other clean entities
        others = set(entities["entity_id"]) - {entity_id}
        chosen, controls_since = choose_controls(span.loc[span.index.isin(others)], level_events, day,
                                                 window_before=window_before, window_after=window_after,
                                                 data_end=level.reference_date)
    if controls_since is not None:
        start = max(start, controls_since)
    rows = level.daily.loc[level.daily["entity_id"].astype(str).isin(set(chosen))]
    return (rows if len(rows) else None), start, moved


def analyse_changes(levels: dict[str, LevelData], changes: pd.DataFrame, all_changes: pd.DataFrame,
                    window_before: int, window_after: int) -> list[tuple[object, ImpactReport]]:
    """Impact reports of ``changes`` (rows with entity_type, entity_id, change_date, change_type and,
    if known, old_value and new_value, which say whether a budget went up or down) of one account:
    each against its clean siblings (:func:`baseline`), with ``all_changes`` (the account's change
    events) telling which entities moved on their own. Returns (change row, report)."""
    spans = {name: delivery_spans(level.daily) for name, level in levels.items()}
    parents = {name: level.entities.set_index(level.entities["entity_id"].astype(str))["parent_id"]
               for name, level in levels.items() if name in ("adset", "ad")}
    first = min(pd.Timestamp(level.start_date) for level in levels.values())
    last = max(pd.Timestamp(level.reference_date) for level in levels.values())
    events = regime_events(all_changes, spans, parents, first, last)
    out = []
    for change in changes.itertuples(index=False):
        level = levels[change.entity_type]
        daily = level.daily.loc[level.daily["entity_id"].astype(str) == str(change.entity_id)]
        controls, pre_start, moved = baseline(levels, events, spans, change.entity_type, str(change.entity_id), change.change_date,
                                       window_before, window_after)
        direction = budget_direction(getattr(change, "old_value", None), getattr(change, "new_value", None))
        out.append((change, analyse_change(daily, change.change_date, change.change_type, control_daily=controls,
                                           window_before=window_before, window_after=window_after,
                                           data_end=level.reference_date, data_start=pre_start,
                                           moved_inside=moved, budget_direction=direction)))
    return out
