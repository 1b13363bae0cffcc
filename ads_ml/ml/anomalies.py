"""Anomaly detection per entity: an Isolation Forest on the entity's own daily history, robust
weekday-aware statistical checks, and structural checks (broken tracking, stopped delivery,
overspend). Pure code: frames in, frames out.

A day still in progress (``in_progress_from``: today's row, refreshed during the day) is judged only
for excess — spend, CPM or frequency above what a whole day would bring, spend over budget — never
for "spend down", "delivery stopped", fewer leads or a lower CTR, which a partial day always shows.
"Delivery stopped" needs an entity that delivered on each of the ANOMALY_STOPPED_RECENT_DAYS days
before and whose status does not say it was paused or finished.

Daily metrics per entity: spend, CPM, leads, CTR (%), frequency, and CPL. CPL is undefined on a day
without leads; for the model it is ``spend / max(leads, 1)`` (a lead-less day costs all its spend),
for the statistical check it is only checked on days with leads.

Statistical check, per metric: the history (up to 60 days before the analysed days) is adjusted for
the day of week (value ÷ median of its weekday ÷ overall median), then
``z = (adjusted − median) / spread`` with ``spread = max(1.4826·MAD, floor)`` — a floor of a share
of the typical value (settings), or for leads the Poisson standard deviation √expected, so a steady
history does not make every wobble an alarm. Expected value = median × that weekday's factor.
|z| ≥ ANOMALY_Z_THRESHOLD is an anomaly, or ≥ ANOMALY_Z_THRESHOLD_WITH_MODEL when the entity's
Isolation Forest also scores the day as an outlier; severity grows with |z|, and
``deviation_score`` is that z. Structural findings — spend above 1.5× the daily budget, an active
entity that stopped delivering, a day of spend without a lead where the history makes that very
unlikely (tracking or form broken) — carry the relative deviation (observed − expected) / expected.
"""

from __future__ import annotations

import io
import json

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm, poisson
from sklearn.ensemble import IsolationForest

from ads_ml import settings
from ads_ml.ml.metrics import cpl, ctr, frequency

SEVERITIES = ("low", "medium", "high", "critical")
ANOMALY_COLUMNS = [
    "entity_id", "anomaly_date", "metric", "observed_value", "expected_value", "deviation_score",
    "direction", "severity", "method", "kind",
]


def daily_metrics(daily: pd.DataFrame) -> pd.DataFrame:
    """Per entity and day: spend, leads, clicks, impressions, ctr, frequency, cpl (NaN without
    leads) and model_cpl (spend / max(leads, 1)). Days without a row are days without delivery."""
    frame = daily.assign(date=pd.to_datetime(daily["date"]).dt.normalize(), entity_id=daily["entity_id"].astype(str))
    out = frame[["entity_id", "date", "spend", "leads", "clicks", "impressions"]].copy()
    out["ctr"] = ctr(frame["clicks"], frame["impressions"])
    with np.errstate(divide="ignore", invalid="ignore"):
        out["cpm"] = np.where(frame["impressions"] > 0, frame["spend"] / frame["impressions"].where(frame["impressions"] > 0) * 1000.0,
                              np.nan)
    reach = frame["reach"] if "reach" in frame else pd.Series(np.nan, index=frame.index)
    freq = frame["frequency"] if "frequency" in frame else pd.Series(np.nan, index=frame.index)
    out["frequency"] = freq.fillna(pd.Series(frequency(frame["impressions"], reach), index=frame.index))
    out["cpl"] = cpl(frame["spend"], frame["leads"])
    out["model_cpl"] = frame["spend"] / np.maximum(frame["leads"], 1)
    return out.sort_values(["entity_id", "date"], ignore_index=True)


def model_matrix(metrics: pd.DataFrame) -> np.ndarray:
    """The Isolation Forest's features (spend, cpl, ctr, frequency, leads, cpm), gaps filled."""
    X = metrics[["spend", "model_cpl", "ctr", "frequency", "leads", "cpm"]].to_numpy(dtype="float64", copy=True)
    X[:, 2] = np.nan_to_num(X[:, 2], nan=0.0)  # no impressions: CTR 0
    for column in (3, 5):  # no reach / no impressions: the entity's typical value
        values = X[:, column]
        X[:, column] = np.where(np.isnan(values), np.nanmedian(values) if np.isfinite(values).any() else 0.0, values)
    return X


@dataclass
class EntityForest:
    """A fitted Isolation Forest of one entity with what it was trained on.

    Stored as its training matrix and parameters (``to_files``), not as a pickle: an Isolation
    Forest refitted with the same seed on the same rows is the same forest. Measured
    (``benchmarks/model_files.py``, 60 days, 100 trees): 3 KB instead of 300 KB with skops or 480 KB
    pickled; reading (refitting) takes 0.11 s against skops' 0.09 s, and writing costs nothing
    against skops' 0.12 s, so a day of training plus detections costs about the same; no stored code
    runs and no list of trusted types has to follow scikit-learn's internals."""

    model: IsolationForest
    samples: int
    first_date: str
    last_date: str
    training: np.ndarray | None = None  # the rows it was fitted on (model_matrix)
    random_state: int = 0

    def to_files(self) -> dict[str, bytes]:
        if self.training is None:
            raise ValueError("this forest does not carry its training rows and cannot be stored")
        state = {"samples": self.samples, "first_date": self.first_date, "last_date": self.last_date,
                 "random_state": self.random_state, "n_estimators": self.model.n_estimators,
                 "contamination": self.model.contamination}
        buffer = io.BytesIO()
        np.save(buffer, np.ascontiguousarray(self.training, dtype="float64"), allow_pickle=False)
        return {"state.json": json.dumps(state).encode(), "training.npy": buffer.getvalue()}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "EntityForest":
        state = json.loads(files["state.json"])
        training = np.load(io.BytesIO(files["training.npy"]), allow_pickle=False)
        model = _forest(state["n_estimators"], state["contamination"], state["random_state"]).fit(training)
        return cls(model, int(state["samples"]), state["first_date"], state["last_date"], training,
                   int(state["random_state"]))


def _forest(n_estimators: int, contamination, random_state: int) -> IsolationForest:  # noqa: ANN001
    return IsolationForest(n_estimators=n_estimators, contamination=contamination, random_state=random_state,
                           n_jobs=1)


def fit_entity_forest(metrics: pd.DataFrame, random_state: int = 0) -> EntityForest:
    """Fit on one entity's daily metrics — the same history window detection compares with
    (:func:`history_window`), never the analysed days. Raises ValueError when fewer than
    ANOMALY_MIN_SAMPLES days."""
    if len(metrics) < settings.ANOMALY_MIN_SAMPLES:
        raise ValueError(f"{len(metrics)} days of history, at least {settings.ANOMALY_MIN_SAMPLES} needed")
    training = model_matrix(metrics)
    model = _forest(settings.ANOMALY_N_ESTIMATORS, settings.ANOMALY_CONTAMINATION, random_state).fit(training)
    return EntityForest(model, len(metrics), str(metrics["date"].min().date()), str(metrics["date"].max().date()),
                        training, random_state)


def fit_task(metrics: pd.DataFrame) -> EntityForest:
    """Fan-out task: one entity's history → its forest."""
    return fit_entity_forest(metrics)


def history_window(metrics: pd.DataFrame, reference_date, days_to_analyze: int) -> tuple[pd.DataFrame, pd.DataFrame]:  # noqa: ANN001
    """(history, analysed): the ANOMALY_HISTORY_DAYS days before the analysed window, and the
    last ``days_to_analyze`` days up to the reference date."""
    ref = pd.Timestamp(reference_date).normalize()
    window_start = ref - pd.Timedelta(days=days_to_analyze - 1)
    history_start = window_start - pd.Timedelta(days=settings.ANOMALY_HISTORY_DAYS)
    history = metrics.loc[(metrics["date"] >= history_start) & (metrics["date"] < window_start)]
    analysed = metrics.loc[(metrics["date"] >= window_start) & (metrics["date"] <= ref)]
    return history, analysed


def _severity(z: float) -> str:
    level = "low"
    for name in ("medium", "high", "critical"):
        if abs(z) >= settings.ANOMALY_SEVERITY_Z[name]:
            level = name
    return level


def _weekday_factors(history: pd.DataFrame, metric: str) -> tuple[pd.Series, float]:
    # counts are sparse (the median of a 0/1/2 series is 0): their weekday profile uses means
    how = "mean" if metric == "leads" else "median"
    values = history[["date", metric]].dropna()
    overall = float(values[metric].agg(how)) if len(values) else np.nan
    factors = pd.Series(1.0, index=range(7))
    if len(values) >= 21 and overall > 0:
        by_day = values.groupby(values["date"].dt.day_of_week)[metric].agg([how, "size"])
        usable = by_day.loc[by_day["size"] >= 2, how] / overall
        factors.loc[usable.index] = usable.clip(0.2, 5.0).to_numpy()
    return factors, overall


def robust_scores(history: pd.DataFrame, analysed: pd.DataFrame, metric: str) -> pd.DataFrame:
    """z-score and expected value of ``metric`` for each analysed day of one entity.

    Leads are counts: the expected value is the weekday-adjusted mean and the z-score is the
    normal equivalent of the Poisson tail probability of the observed count. CPL's spread is at
    least the sampling noise of a ratio over few leads (CPL × 1/√expected leads)."""
    if metric == "cpl":
        return _cpl_scores(history, analysed)
    if metric == "ctr":
        return _ctr_scores(history, analysed)
    factors, _overall = _weekday_factors(history, metric)
    hist = history[["date", metric]].dropna()
    adjusted = hist[metric].to_numpy() / factors.loc[hist["date"].dt.day_of_week].to_numpy()
    out = analysed[["date", metric]].copy()
    factor = factors.loc[out["date"].dt.day_of_week].to_numpy()
    observed = out[metric].to_numpy(dtype="float64")
    if metric == "leads":
        rate = float(np.mean(adjusted)) if len(adjusted) else np.nan
        expected = rate * factor
        upper = poisson.sf(observed - 1, np.maximum(expected, 1e-9))  # P(X ≥ observed)
        lower = poisson.cdf(observed, np.maximum(expected, 1e-9))  # P(X ≤ observed)
        z = np.where(observed >= expected, norm.isf(np.clip(upper, 1e-300, 0.5)), -norm.isf(np.clip(lower, 1e-300, 0.5)))
        out["expected"] = expected
        out["z"] = np.where(np.isfinite(expected), z, np.nan)
        return out
    # level and spread from the recent weeks (budgets move; a level shift weeks ago is not news),
    # weekday factors from the whole history
    recent = adjusted[-settings.ANOMALY_BASELINE_DAYS:]
    center = float(np.median(recent)) if len(recent) else np.nan
    mad = float(np.median(np.abs(recent - center))) * 1.4826 if len(recent) else np.nan
    expected = center * factor
    relative = np.full(len(out), settings.ANOMALY_MIN_RELATIVE_SPREAD.get(metric, 0.1))
    spread = np.maximum(mad * factor, relative * np.abs(expected))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (observed - expected) / spread
    out["expected"] = expected
    out["z"] = np.where(spread > 0, z, np.nan)
    return out


def _ctr_scores(history: pd.DataFrame, analysed: pd.DataFrame) -> pd.DataFrame:
    """CTR as clicks out of impressions: the clicks the day's impressions should have brought at
    the recent weeks' CTR, judged by the Poisson tail of the observed clicks (weekday-adjusted)."""
    out = analysed[["date", "ctr"]].copy()
    recent = history.tail(settings.ANOMALY_BASELINE_DAYS)
    impressions, clicks = recent["impressions"].sum(), recent["clicks"].sum()
    if impressions <= 0 or clicks / max(len(recent), 1) < settings.ANOMALY_MIN_CLICKS_FOR_CTR:
        out["expected"], out["z"] = np.nan, np.nan  # too few clicks for a CTR to mean anything
        return out
    factors, _overall = _weekday_factors(history, "ctr")
    factor = factors.loc[out["date"].dt.day_of_week].to_numpy()
    rate = clicks / impressions * factor
    expected_clicks = analysed["impressions"].to_numpy(dtype="float64") * rate
    observed = analysed["clicks"].to_numpy(dtype="float64")
    fewer = poisson.cdf(observed, np.maximum(expected_clicks, 1e-9))
    more = poisson.sf(observed - 1, np.maximum(expected_clicks, 1e-9))
    z = np.where(observed >= expected_clicks, norm.isf(np.clip(more, 1e-300, 0.5)), -norm.isf(np.clip(fewer, 1e-300, 0.5)))
    out["expected"] = rate * 100.0
    out["z"] = np.where(analysed["impressions"].to_numpy() > 0, z, np.nan)
    return out


def _cpl_scores(history: pd.DataFrame, analysed: pd.DataFrame) -> pd.DataFrame:
    """CPL is a ratio of few leads: judge it by the leads the day's spend should have bought at
    the history's cost per lead (Poisson), so one lead fewer on a small entity is no alarm. z > 0
    means dearer leads; a day without leads is the structural check's business."""
    out = analysed[["date", "cpl"]].copy()
    spent, leads = history["spend"].sum(), history["leads"].sum()
    if leads <= 0 or spent <= 0:
        out["expected"], out["z"] = np.nan, np.nan
        return out
    rate = leads / spent
    expected_leads = analysed["spend"].to_numpy(dtype="float64") * rate
    observed = analysed["leads"].to_numpy(dtype="float64")
    fewer = poisson.cdf(observed, np.maximum(expected_leads, 1e-9))
    more = poisson.sf(observed - 1, np.maximum(expected_leads, 1e-9))
    z = np.where(observed <= expected_leads, norm.isf(np.clip(fewer, 1e-300, 0.5)), -norm.isf(np.clip(more, 1e-300, 0.5)))
    out["expected"] = 1.0 / rate
    out["z"] = np.where(observed > 0, z, np.nan)
    return out


def detect_entity(
    entity_id: str,
    metrics: pd.DataFrame,
    reference_date,  # noqa: ANN001
    *,
    forest: EntityForest | None = None,
    status: str = "ACTIVE",
    daily_budget: float | None = None,
    days_to_analyze: int = settings.ANOMALY_DAYS_TO_ANALYZE,
    in_progress_from=None,  # noqa: ANN001
) -> pd.DataFrame:
    """Anomalies of one entity over the analysed days (ANOMALY_COLUMNS).

    ``metrics``: the entity's :func:`daily_metrics` rows. Days without a row in the analysed
    window count as zero delivery (for the delivery-stopped check). ``in_progress_from``: the
    first day not complete yet (today in the account's timezone); such days are judged only for
    excess (see the module docstring)."""
    ref = pd.Timestamp(reference_date).normalize()
    history, analysed = history_window(metrics, ref, days_to_analyze)
    window = pd.date_range(ref - pd.Timedelta(days=days_to_analyze - 1), ref, freq="D")
    analysed = analysed.set_index("date").reindex(window)
    analysed.index.name = "date"
    analysed = analysed.reset_index()
    analysed["entity_id"] = entity_id
    for column in ("spend", "leads", "clicks", "impressions"):
        analysed[column] = analysed[column].fillna(0.0)
    partial = np.zeros(len(analysed), dtype=bool)
    if in_progress_from is not None:
        partial = (analysed["date"] >= pd.Timestamp(in_progress_from).normalize()).to_numpy()
    found: list[dict] = []
    if len(history) >= 7:
        model_flags = np.zeros(len(analysed), dtype=bool)
        delivered = (analysed["impressions"] > 0).to_numpy()
        if forest is not None and delivered.any() and _fits(forest):
            model_flags[delivered] = forest.model.predict(model_matrix(analysed.loc[delivered])) == -1
        for metric in ("spend", "cpm", "cpl", "ctr", "frequency", "leads"):
            scores = robust_scores(history, analysed, metric)
            for i, row in enumerate(scores.itertuples(index=False)):
                z = row.z
                if not np.isfinite(z) or not delivered[i] and metric != "spend":
                    continue
                if partial[i] and (z < 0 or metric in ("cpl", "leads", "ctr")):
                    continue  # a day in progress: only excess spend / CPM / frequency means something
                threshold = settings.ANOMALY_Z_THRESHOLD_WITH_MODEL if model_flags[i] else settings.ANOMALY_Z_THRESHOLD
                if abs(z) < threshold:
                    continue
                if metric == "spend" and not delivered[i]:
                    continue  # a day without delivery is the structural check's business
                found.append(_anomaly(entity_id, row.date, metric, getattr(row, metric), row.expected, z,
                                      "robust_z+isolation_forest" if model_flags[i] else "robust_z", "statistical"))
        found += _structural(entity_id, history, analysed, status, daily_budget, partial=partial)
    elif daily_budget:
        found += _structural(entity_id, history, analysed, status, daily_budget, budget_only=True)
    frame = pd.DataFrame(found, columns=ANOMALY_COLUMNS)
    # one anomaly per day and metric: a structural finding outranks the statistical one
    frame["_rank"] = (frame["kind"] != "structural").astype(int)
    frame = frame.sort_values(["anomaly_date", "metric", "_rank"], kind="stable")
    frame = frame.drop_duplicates(["anomaly_date", "metric"], keep="first")
    return frame.drop(columns="_rank").reset_index(drop=True)


def _anomaly(entity_id, date, metric, observed, expected, z, method, kind, severity=None) -> dict:  # noqa: ANN001
    return {
        "entity_id": entity_id,
        "anomaly_date": pd.Timestamp(date).date(),
        "metric": metric,
        "observed_value": float(observed),
        "expected_value": float(expected) if expected is not None and np.isfinite(expected) else None,
        "deviation_score": float(z),
        "direction": "up" if expected is None or not np.isfinite(expected) or observed >= expected else "down",
        "severity": severity or _severity(z),
        "method": method,
        "kind": kind,
    }


def _fits(forest: EntityForest) -> bool:
    """A forest trained on the current features (one saved before a feature was added is not)."""
    return getattr(forest.model, "n_features_in_", len(settings.ANOMALY_FEATURES)) == len(settings.ANOMALY_FEATURES)


def _delivered_before(history: pd.DataFrame, analysed: pd.DataFrame, day, days: int) -> bool:  # noqa: ANN001
    """Whether the entity delivered on each of the ``days`` days before ``day``."""
    frame = pd.concat([history[["date", "impressions"]], analysed[["date", "impressions"]]])
    window = pd.date_range(pd.Timestamp(day) - pd.Timedelta(days=days), pd.Timestamp(day) - pd.Timedelta(days=1), freq="D")
    delivered = frame.loc[frame["impressions"] > 0, "date"]
    return bool(pd.Index(window).isin(delivered).all())


def _structural(entity_id, history, analysed, status, daily_budget, budget_only: bool = False, partial=None) -> list[dict]:  # noqa: ANN001
    out = []
    # no status in the export means unknown, not paused: only a status that says so stops the check
    active = str(status or "ACTIVE").upper() not in settings.ANOMALY_INACTIVE_STATUSES
    partial = np.zeros(len(analysed), dtype=bool) if partial is None else partial
    hist_days = max(len(history), 1)
    recent = history.tail(settings.ANOMALY_BASELINE_DAYS)
    lead_days_share = float((recent["leads"] > 0).mean()) if len(recent) else 0.0
    typical_spend = float(history["spend"].median()) if len(history) else 0.0
    leads_rate = float(history["leads"].sum() / max(history["spend"].sum(), 1e-9)) if len(history) else 0.0
    for i, row in enumerate(analysed.itertuples(index=False)):
        spend, leads, impressions = float(row.spend), float(row.leads), float(row.impressions)
        if daily_budget and daily_budget > 0 and spend > settings.ANOMALY_BUDGET_OVERSPEND * daily_budget:
            ratio = spend / daily_budget
            out.append(_anomaly(entity_id, row.date, "spend", spend, daily_budget, ratio - 1.0, "structural:overspend",
                                "structural", "critical" if ratio >= 2 else "high"))
        if budget_only or partial[i]:
            continue
        if (active and impressions == 0 and typical_spend > 0 and hist_days >= 7
                and _delivered_before(history, analysed, row.date, settings.ANOMALY_STOPPED_RECENT_DAYS)):
            out.append(_anomaly(entity_id, row.date, "spend", 0.0, typical_spend, -1.0,
                                "structural:delivery_stopped", "structural", "high"))
            continue
        # spend with no lead where the history makes that very unlikely: tracking / form broken.
        # A run of lead-less days counts together (two dry days in a row say more than one).
        if leads == 0 and spend > 0 and lead_days_share >= 0.5:
            run = _dry_run(history, analysed, row.date)
            before = history.loc[history["date"] < run["date"].min()]
            rate = float(before["leads"].sum() / max(before["spend"].sum(), 1e-9)) if len(before) else leads_rate
            expected_leads = rate * float(run["spend"].sum())
            p_zero = float(poisson.pmf(0, expected_leads)) if expected_leads > 0 else 1.0
            if p_zero < settings.ANOMALY_ZERO_LEADS_PROBABILITY:
                out.append(_anomaly(entity_id, row.date, "leads", 0.0, rate * spend, -1.0,
                                    "structural:tracking_broken", "structural",
                                    "critical" if p_zero < 1e-4 else "high"))
    return out


def _dry_run(history: pd.DataFrame, analysed: pd.DataFrame, day) -> pd.DataFrame:  # noqa: ANN001
    """The consecutive days up to ``day`` that spent without a lead."""
    days = pd.concat([history, analysed.loc[analysed["date"] <= day]])[["date", "spend", "leads"]]
    days = days.sort_values("date")
    dry = (days["leads"] == 0) & (days["spend"] > 0)
    if not dry.iloc[-1]:
        return days.iloc[0:0]
    breaks = np.flatnonzero(~dry.to_numpy())
    start = breaks[-1] + 1 if len(breaks) else 0
    return days.iloc[start:]


def detect_task(payload: tuple) -> pd.DataFrame:
    """Fan-out task: (entity_id, metrics, reference_date, forest, status, budget, days, in_progress_from)."""
    entity_id, metrics, ref, forest, status, budget, days, in_progress_from = payload
    return detect_entity(entity_id, metrics, ref, forest=forest, status=status, daily_budget=budget, days_to_analyze=days,
                         in_progress_from=in_progress_from)
