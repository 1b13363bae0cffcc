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
of the typical value (settings), so a steady history does not make every wobble an alarm.
Expected value = median × that weekday's factor. Counts are judged by their tail probability
instead (:func:`count_z`): leads, CPL as the leads the day's spend should have bought, CTR as the
clicks its impressions should have brought — Poisson, or negative binomial with the extra variation
the recent weeks show (:func:`count_dispersion`).
|z| ≥ ANOMALY_Z_THRESHOLD is an anomaly, or ≥ ANOMALY_Z_THRESHOLD_WITH_MODEL when the entity's
Isolation Forest also scores the day as an outlier; severity grows with |z|, and
``deviation_score`` is that z. Structural findings — spend above 1.5× the daily budget, an active
entity that stopped delivering, a day of spend without a lead where the history makes that very
unlikely (tracking or form broken) — carry the relative deviation (observed − expected) / expected.
"""

from __future__ import annotations

import io
import json

import numpy as np
import pandas as pd
from isotree import IsolationForest
from scipy.stats import nbinom, norm, poisson

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


class EntityForest:
    """A fitted Isolation Forest of one entity with what it was trained on.

    The forest is isotree's (a C++ implementation of the same algorithm: random feature, random
    split, average depth over 100 trees with the c(n) correction): measured in
    ``benchmarks/scale.py`` it fits 100 trees on 60 days in well under a millisecond where
    scikit-learn's spends about a tenth of a second in per-tree Python, which made forests the
    slowest step of a large account. A day is an outlier when its score is above the training
    scores' (1 − contamination) quantile — scikit-learn's ``contamination`` rule.

    Stored as its training matrix and parameters (``to_files``), never as a pickle or a library
    dump: refitted with the same seed on the same rows it is the same forest (tested), the files
    are 3 KB, no stored code runs, and a file written by an earlier version (scikit-learn's forest
    on the same rows) still loads. Pickling it (to and from fan-out workers) carries only the rows;
    the forest is rebuilt where it is used."""

    def __init__(self, training: np.ndarray, samples: int, first_date: str, last_date: str, random_state: int = 0,
                 n_estimators: int = settings.ANOMALY_N_ESTIMATORS, contamination: float = settings.ANOMALY_CONTAMINATION):
        self.training = np.ascontiguousarray(training, dtype="float64")
        self.samples, self.first_date, self.last_date = samples, first_date, last_date
        self.random_state, self.n_estimators, self.contamination = random_state, n_estimators, contamination
        self._model = None
        self._threshold = np.nan

    @property
    def n_features(self) -> int:
        return self.training.shape[1]

    def _fitted(self) -> IsolationForest:
        if self._model is None:
            self._model = IsolationForest(
                ntrees=self.n_estimators, ndim=1, sample_size=min(256, len(self.training)), max_depth="auto",
                prob_pick_pooled_gain=0.0, prob_pick_avg_gain=0.0, penalize_range=False, missing_action="fail",
                scoring_metric="depth", nthreads=1, random_seed=self.random_state,
            ).fit(self.training)
            self._threshold = float(np.percentile(self._model.predict(self.training), 100.0 * (1.0 - self.contamination)))
        return self._model

    def score(self, X: np.ndarray) -> np.ndarray:
        """Outlier score of each row (higher = more isolated; about 0.5 for a typical row)."""
        return self._fitted().predict(np.ascontiguousarray(X, dtype="float64"))

    def is_outlier(self, X: np.ndarray) -> np.ndarray:
        scores = self.score(X)
        return scores > self._threshold

    def release(self) -> None:
        """Drop the fitted trees (about 0.4 MB; the training rows are 3 KB): a level's forests are
        used once per run, and 2,000 fitted ones held to the end took 0.9 GB. The next
        :meth:`score` refits the same forest."""
        self._model, self._threshold = None, np.nan

    def __getstate__(self) -> dict:
        return {k: v for k, v in self.__dict__.items() if k not in ("_model", "_threshold")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state, _model=None, _threshold=np.nan)

    def to_files(self) -> dict[str, bytes]:
        state = {"samples": self.samples, "first_date": self.first_date, "last_date": self.last_date,
                 "random_state": self.random_state, "n_estimators": self.n_estimators,
                 "contamination": self.contamination, "library": "isotree"}
        buffer = io.BytesIO()
        np.save(buffer, self.training, allow_pickle=False)
        return {"state.json": json.dumps(state).encode(), "training.npy": buffer.getvalue()}

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "EntityForest":
        state = json.loads(files["state.json"])
        training = np.load(io.BytesIO(files["training.npy"]), allow_pickle=False)
        contamination = state["contamination"]
        return cls(training, int(state["samples"]), state["first_date"], state["last_date"], int(state["random_state"]),
                   int(state["n_estimators"]), settings.ANOMALY_CONTAMINATION if contamination == "auto" else float(contamination))


def fit_entity_forest(metrics: pd.DataFrame, random_state: int = 0) -> EntityForest:
    """Fit on one entity's daily metrics — the same history window detection compares with
    (:func:`history_window`), never the analysed days. Raises ValueError when fewer than
    ANOMALY_MIN_SAMPLES days."""
    if len(metrics) < settings.ANOMALY_MIN_SAMPLES:
        raise ValueError(f"{len(metrics)} days of history, at least {settings.ANOMALY_MIN_SAMPLES} needed")
    forest = EntityForest(model_matrix(metrics), len(metrics), str(metrics["date"].min().date()),
                          str(metrics["date"].max().date()), random_state)
    forest.score(forest.training[:1])  # fitted here, so a bad matrix fails in training, not in detection
    forest.release()  # stored and shipped as its rows; detection fits it where it scores
    return forest


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


def count_dispersion(observed: np.ndarray, expected: np.ndarray) -> float:
    """Extra-Poisson variation of a daily count (the negative binomial's 1/size): day-to-day
    movement of the rate itself (AR(1) drift of CTR or conversion, delivery shifts) that the
    Poisson noise of the count does not explain. Estimated robustly on log ratios of observed to
    expected over the history: ``var(log ratio) − mean(1/expected)``, at least 0. Large entities
    need it most: with thousands of clicks a day the Poisson spread is far smaller than a CTR's
    natural wobble."""
    keep = np.isfinite(observed) & np.isfinite(expected) & (expected > 0)
    if keep.sum() < 7:
        return 0.0
    obs, exp = observed[keep], expected[keep]
    ratio = np.log((obs + 0.5) / (exp + 0.5))
    spread = 1.4826 * float(np.median(np.abs(ratio - np.median(ratio))))
    return max(0.0, spread ** 2 - float(np.mean(1.0 / (exp + 0.5))))


def count_z(observed: np.ndarray, expected: np.ndarray, dispersion: float | np.ndarray = 0.0) -> np.ndarray:
    """Signed normal equivalent of the tail probability of each observed count: Poisson around
    ``expected``, or negative binomial (variance λ + dispersion·λ²) when the history showed extra
    variation. Positive when more than expected."""
    lam = np.maximum(np.asarray(expected, dtype="float64"), 1e-9)
    observed = np.asarray(observed, dtype="float64")
    dispersion = np.broadcast_to(np.asarray(dispersion, dtype="float64"), lam.shape)
    upper, lower = poisson.sf(observed - 1, lam), poisson.cdf(observed, lam)
    wide = dispersion > 0
    if wide.any():
        size = 1.0 / dispersion[wide]
        prob = size / (size + lam[wide])
        upper, lower = upper.copy(), lower.copy()
        upper[wide], lower[wide] = nbinom.sf(observed[wide] - 1, size, prob), nbinom.cdf(observed[wide], size, prob)
    return np.where(observed >= lam, norm.isf(np.clip(upper, 1e-300, 0.5)), -norm.isf(np.clip(lower, 1e-300, 0.5)))


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
        past = factors.loc[hist["date"].dt.day_of_week].to_numpy() * rate
        z = count_z(observed, expected, count_dispersion(hist[metric].to_numpy(dtype="float64")[-settings.ANOMALY_BASELINE_DAYS:],
                                                         past[-settings.ANOMALY_BASELINE_DAYS:]))
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
    past = recent["impressions"].to_numpy(dtype="float64") * clicks / impressions \
        * factors.loc[recent["date"].dt.day_of_week].to_numpy()
    z = count_z(observed, expected_clicks, count_dispersion(recent["clicks"].to_numpy(dtype="float64"), past))
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
    recent = history.tail(settings.ANOMALY_BASELINE_DAYS)
    dispersion = count_dispersion(recent["leads"].to_numpy(dtype="float64"), recent["spend"].to_numpy(dtype="float64") * rate)
    z = -count_z(observed, expected_leads, dispersion)  # fewer leads for the spend: dearer
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
            model_flags[delivered] = forest.is_outlier(model_matrix(analysed.loc[delivered]))
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
    return forest.n_features == len(settings.ANOMALY_FEATURES)


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


# --- one pass over a whole level -------------------------------------------------------------------
#
# detect_level applies detect_entity's rules to every entity of a level at once, on the long frame
# (entity_id, date, metrics) with group-wise statistics instead of one pandas pass per entity; only
# the Isolation Forests (one per entity) and the rare structural candidates stay per entity.
# detect_entity is kept as the plain per-entity reading of the rules; tests assert both agree.


def detect_level(
    metrics: pd.DataFrame,
    reference_date,  # noqa: ANN001
    *,
    forests: dict[str, EntityForest] | None = None,
    statuses: dict[str, str] | None = None,
    budgets: dict[str, float | None] | None = None,
    days_to_analyze: int = settings.ANOMALY_DAYS_TO_ANALYZE,
    in_progress_from=None,  # noqa: ANN001
) -> pd.DataFrame:
    """Anomalies of every entity in ``metrics`` (:func:`daily_metrics` rows of one level): the same
    findings as :func:`detect_entity` called for each entity with its forest, status and budget."""
    forests, statuses, budgets = forests or {}, statuses or {}, budgets or {}
    metrics = metrics.assign(entity_id=metrics["entity_id"].astype(str)).sort_values(["entity_id", "date"], ignore_index=True)
    ref = pd.Timestamp(reference_date).normalize()
    window_start = ref - pd.Timedelta(days=days_to_analyze - 1)
    history = metrics.loc[(metrics["date"] >= window_start - pd.Timedelta(days=settings.ANOMALY_HISTORY_DAYS))
                          & (metrics["date"] < window_start)].reset_index(drop=True)
    entities = pd.Index(metrics["entity_id"].unique())
    hist_days = history.groupby("entity_id").size().reindex(entities, fill_value=0)
    window = pd.date_range(window_start, ref, freq="D")
    grid = pd.MultiIndex.from_product([entities, window], names=["entity_id", "date"])
    analysed = metrics.set_index(["entity_id", "date"]).reindex(grid).reset_index()
    for column in ("spend", "leads", "clicks", "impressions"):
        analysed[column] = analysed[column].fillna(0.0)
    partial = np.zeros(len(analysed), dtype=bool)
    if in_progress_from is not None:
        partial = (analysed["date"] >= pd.Timestamp(in_progress_from).normalize()).to_numpy()
    checked = analysed["entity_id"].map(hist_days).to_numpy() >= 7
    delivered = (analysed["impressions"] > 0).to_numpy()
    model_flags = _forest_flags(analysed, forests, checked & delivered)

    found = []
    for metric in ("spend", "cpm", "cpl", "ctr", "frequency", "leads"):
        expected, z = _level_scores(history, analysed, metric)
        keep = checked & np.isfinite(z) & (delivered | (metric == "spend"))
        keep &= ~(partial & ((z < 0) | (metric in ("cpl", "leads", "ctr"))))
        keep &= np.abs(z) >= np.where(model_flags, settings.ANOMALY_Z_THRESHOLD_WITH_MODEL, settings.ANOMALY_Z_THRESHOLD)
        keep &= delivered | (metric != "spend")
        if not keep.any():
            continue
        rows = analysed.loc[keep, ["entity_id", "date", metric]]
        observed = rows[metric].to_numpy(dtype="float64")
        exp, zs = expected[keep], z[keep]
        found.append(pd.DataFrame({
            "entity_id": rows["entity_id"].to_numpy(), "anomaly_date": rows["date"].dt.date.to_numpy(), "metric": metric,
            "observed_value": observed, "expected_value": np.where(np.isfinite(exp), exp, np.nan), "deviation_score": zs,
            "direction": np.where(~np.isfinite(exp) | (observed >= exp), "up", "down"),
            "severity": [_severity(v) for v in zs],
            "method": np.where(model_flags[keep], "robust_z+isolation_forest", "robust_z"), "kind": "statistical",
        }))
    found += _level_structural(history, analysed, hist_days, partial, statuses, budgets)
    frame = pd.concat([f for f in found if len(f)], ignore_index=True) if any(len(f) for f in found) else \
        pd.DataFrame(columns=ANOMALY_COLUMNS)
    frame["_rank"] = (frame["kind"] != "structural").astype(int)
    frame = frame.sort_values(["entity_id", "anomaly_date", "metric", "_rank"], kind="stable")
    frame = frame.drop_duplicates(["entity_id", "anomaly_date", "metric"], keep="first")
    return frame.drop(columns="_rank")[ANOMALY_COLUMNS].reset_index(drop=True)


def _forest_flags(analysed: pd.DataFrame, forests: dict[str, EntityForest], judged: np.ndarray) -> np.ndarray:
    """Whether each analysed row is an outlier for its entity's forest (one predict per entity)."""
    flags = np.zeros(len(analysed), dtype=bool)
    if not judged.any() or not forests:
        return flags
    X = model_matrix_level(analysed)
    positions = pd.Series(np.flatnonzero(judged)).groupby(analysed["entity_id"].to_numpy()[judged]).agg(list)
    for entity, rows in positions.items():
        forest = forests.get(entity)
        if forest is not None and _fits(forest):
            flags[rows] = forest.is_outlier(X[rows])
            forest.release()
    return flags


def model_matrix_level(analysed: pd.DataFrame) -> np.ndarray:
    """:func:`model_matrix` of each analysed row; gaps filled with the typical value of the row's
    entity among the analysed rows of that entity that :func:`detect_entity` would score (delivered)."""
    X = analysed[["spend", "model_cpl", "ctr", "frequency", "leads", "cpm"]].to_numpy(dtype="float64", copy=True)
    X[:, 2] = np.nan_to_num(X[:, 2], nan=0.0)
    delivered = analysed["impressions"].to_numpy() > 0
    for column in (3, 5):
        values = pd.Series(np.where(delivered, X[:, column], np.nan))
        typical = values.groupby(analysed["entity_id"].to_numpy()).transform("median").fillna(0.0).to_numpy()
        X[:, column] = np.where(np.isnan(X[:, column]), typical, X[:, column])
    return X


def _level_weekday_factors(history: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Per entity and weekday (0–6): the factor of :func:`_weekday_factors`."""
    how = "mean" if metric == "leads" else "median"
    values = history[["entity_id", "date", metric]].dropna()
    weekday = values["date"].dt.day_of_week
    overall = values.groupby("entity_id")[metric].agg([how, "size"])
    by_day = values.groupby([values["entity_id"], weekday.rename("weekday")])[metric].agg([how, "size"]).reset_index()
    by_day = by_day.merge(overall, left_on="entity_id", right_index=True, suffixes=("", "_all"))
    usable = (by_day["size"] >= 2) & (by_day["size_all"] >= 21) & (by_day[f"{how}_all"] > 0)
    by_day["factor"] = np.where(usable, (by_day[how] / by_day[f"{how}_all"]).clip(0.2, 5.0), 1.0)
    return by_day.set_index(["entity_id", "weekday"])["factor"]


def _factor_of(factors: pd.Series, frame: pd.DataFrame) -> np.ndarray:
    keys = pd.MultiIndex.from_arrays([frame["entity_id"], frame["date"].dt.day_of_week], names=["entity_id", "weekday"])
    return factors.reindex(keys).fillna(1.0).to_numpy()


def _tail_rows(frame: pd.DataFrame, n: int) -> pd.DataFrame:
    """The last ``n`` rows of each entity (frame sorted by entity and date)."""
    return frame.loc[frame.groupby("entity_id").cumcount(ascending=False) < n]


def _level_dispersion(frame: pd.DataFrame, observed: str, expected: np.ndarray) -> pd.Series:
    """:func:`count_dispersion` per entity of ``frame``."""
    obs = frame[observed].to_numpy(dtype="float64")
    keep = np.isfinite(obs) & np.isfinite(expected) & (expected > 0)
    parts = pd.DataFrame({"entity_id": frame["entity_id"].to_numpy()[keep], "obs": obs[keep], "exp": expected[keep]})
    parts["ratio"] = np.log((parts["obs"] + 0.5) / (parts["exp"] + 0.5))
    parts["inverse"] = 1.0 / (parts["exp"] + 0.5)
    groups = parts.groupby("entity_id")
    center = groups["ratio"].transform("median")
    parts["deviation"] = (parts["ratio"] - center).abs()
    stats = parts.groupby("entity_id").agg(n=("ratio", "size"), mad=("deviation", "median"), inverse=("inverse", "mean"))
    value = np.maximum(0.0, (1.4826 * stats["mad"]) ** 2 - stats["inverse"])
    return value.where(stats["n"] >= 7, 0.0)


def _level_scores(history: pd.DataFrame, analysed: pd.DataFrame, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """(expected, z) of ``metric`` for every analysed row, as :func:`robust_scores` per entity."""
    entity = analysed["entity_id"]
    nan = np.full(len(analysed), np.nan)
    if metric == "cpl":
        sums = history.groupby("entity_id")[["spend", "leads"]].sum()
        rate = (sums["leads"] / sums["spend"]).where((sums["leads"] > 0) & (sums["spend"] > 0))
        recent = _tail_rows(history, settings.ANOMALY_BASELINE_DAYS)
        dispersion = _level_dispersion(recent, "leads", recent["spend"].to_numpy() * recent["entity_id"].map(rate).to_numpy())
        r = entity.map(rate).to_numpy()
        observed = analysed["leads"].to_numpy(dtype="float64")
        z = -count_z(observed, analysed["spend"].to_numpy(dtype="float64") * r, entity.map(dispersion).fillna(0.0).to_numpy())
        return 1.0 / r, np.where(np.isfinite(r) & (observed > 0), z, nan)
    if metric == "ctr":
        recent = _tail_rows(history, settings.ANOMALY_BASELINE_DAYS)
        sums = recent.groupby("entity_id").agg(impressions=("impressions", "sum"), clicks=("clicks", "sum"), n=("date", "size"))
        ok = (sums["impressions"] > 0) & (sums["clicks"] / sums["n"].clip(lower=1) >= settings.ANOMALY_MIN_CLICKS_FOR_CTR)
        base = (sums["clicks"] / sums["impressions"]).where(ok)
        factors = _level_weekday_factors(history, "ctr")
        rate = entity.map(base).to_numpy() * _factor_of(factors, analysed)
        past = recent["impressions"].to_numpy(dtype="float64") * recent["entity_id"].map(base).to_numpy() * _factor_of(factors, recent)
        dispersion = _level_dispersion(recent, "clicks", past)
        impressions = analysed["impressions"].to_numpy(dtype="float64")
        z = count_z(analysed["clicks"].to_numpy(dtype="float64"), impressions * rate, entity.map(dispersion).fillna(0.0).to_numpy())
        return rate * 100.0, np.where(np.isfinite(rate) & (impressions > 0), z, nan)
    factors = _level_weekday_factors(history, metric)
    hist = history[["entity_id", "date", metric]].dropna()
    hist = hist.assign(adjusted=hist[metric].to_numpy() / _factor_of(factors, hist))
    factor = _factor_of(factors, analysed)
    observed = analysed[metric].to_numpy(dtype="float64")
    if metric == "leads":
        rate = hist.groupby("entity_id")["adjusted"].mean()
        recent = _tail_rows(hist, settings.ANOMALY_BASELINE_DAYS)
        dispersion = _level_dispersion(recent, metric, _factor_of(factors, recent) * recent["entity_id"].map(rate).to_numpy())
        expected = entity.map(rate).to_numpy() * factor
        z = count_z(observed, expected, entity.map(dispersion).fillna(0.0).to_numpy())
        return expected, np.where(np.isfinite(expected), z, nan)
    recent = _tail_rows(hist, settings.ANOMALY_BASELINE_DAYS)
    center = recent.groupby("entity_id")["adjusted"].median()
    deviation = (recent["adjusted"] - recent["entity_id"].map(center)).abs()
    mad = deviation.groupby(recent["entity_id"]).median() * 1.4826
    expected = entity.map(center).to_numpy() * factor
    relative = settings.ANOMALY_MIN_RELATIVE_SPREAD.get(metric, 0.1)
    spread = np.maximum(entity.map(mad).to_numpy() * factor, relative * np.abs(expected))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = (observed - expected) / spread
    return expected, np.where(spread > 0, z, nan)


def _level_structural(history, analysed, hist_days, partial, statuses, budgets) -> list[pd.DataFrame]:  # noqa: ANN001
    """Structural findings: a cheap vectorised screen for candidate entities (overspend, no
    delivery, spend without leads where leads are usual), then :func:`_structural` per candidate."""
    entity = analysed["entity_id"]
    budget = entity.map(lambda e: budgets.get(e) or 0.0).astype("float64").to_numpy()
    days = entity.map(hist_days).to_numpy()
    over = (budget > 0) & (analysed["spend"].to_numpy() > settings.ANOMALY_BUDGET_OVERSPEND * budget)
    recent = _tail_rows(history, settings.ANOMALY_BASELINE_DAYS)
    lead_share = (recent["leads"] > 0).groupby(recent["entity_id"]).mean()
    typical = history.groupby("entity_id")["spend"].median()
    full = (days >= 7) & ~partial
    stopped = full & (analysed["impressions"].to_numpy() == 0) & (entity.map(typical).fillna(0.0).to_numpy() > 0)
    dry = full & (analysed["leads"].to_numpy() == 0) & (analysed["spend"].to_numpy() > 0) \
        & (entity.map(lead_share).fillna(0.0).to_numpy() >= 0.5)
    candidates = pd.unique(entity[over | stopped | dry])
    if not len(candidates):
        return []
    found = []
    pick = analysed["entity_id"].isin(candidates).to_numpy()
    own_analysed = dict(iter(analysed.loc[pick].groupby("entity_id", sort=True)))
    histories = dict(iter(history.loc[history["entity_id"].isin(candidates)].groupby("entity_id")))
    empty = history.iloc[0:0]
    for entity_id, own in own_analysed.items():
        own_history = histories.get(entity_id, empty)
        status, daily_budget = statuses.get(entity_id, "ACTIVE"), budgets.get(entity_id)
        if len(own_history) >= 7:
            items = _structural(entity_id, own_history, own.reset_index(drop=True), status, daily_budget,
                                partial=partial[own.index.to_numpy()])  # analysed has a RangeIndex
        elif daily_budget:
            items = _structural(entity_id, own_history, own.reset_index(drop=True), status, daily_budget, budget_only=True)
        else:
            items = []
        found.append(pd.DataFrame(items, columns=ANOMALY_COLUMNS))
    return found
