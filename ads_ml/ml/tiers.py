"""Performance tiers: training labels, the XGBoost tier classifier, calibration and metrics.

Pure code: frames in, frames / small dataclasses out. Tiers, best first: HIGH_PERFORMER, MODERATE,
LOW, UNDERPERFORMER (and INSUFFICIENT_DATA where there is too little evidence for any).

Labels, in order of precedence:

1. **feedback** — a tier a person confirmed (``tier_feedback``) labels the entity's snapshot whose
   outcome window holds the feedback date (or a snapshot at that date);
2. **outcome** — for a feature snapshot at date ``t``, the rule tier the entity *earned over the next
   7 days* ``(t, t+7]``: the classifier learns where an entity is heading, not where it is;
3. **rule** — when history allows too few outcome labels, the rule tier of the snapshot's own last
   7 days.

Rule tier: quantiles of the recency-weighted CPL shrunk toward the level's pooled CPL (lead volume
is the guard; thresholds in :mod:`ads_ml.settings`); outcome labels apply the same rule to the
next 7 days' spend and leads. Validation is time-based: train on snapshots whose outcome windows end
before the first validation snapshot, validate on the most recent ones. Probabilities are
calibrated by temperature scaling fitted on out-of-fold predictions (folds by snapshot date), so the
confidence of a prediction is a probability one can read as such.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy.optimize import minimize_scalar
from scipy.special import log_softmax, softmax
from scipy.stats import rankdata, spearmanr
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GroupKFold
from xgboost import XGBClassifier

from ads_ml import settings
from ads_ml.ml.features import FEATURE_COLUMNS, compute_entity_features
from ads_ml.ml.metrics import cpl, shrunk_cpl

TIERS = settings.TIERS
TIER_RANK = {tier: rank for rank, tier in enumerate(reversed(TIERS))}  # UNDERPERFORMER 0 .. HIGH 3

#: Scale-free features: a model trained on campaigns can read adsets and ads with them.
TRANSFER_FEATURE_COLUMNS: tuple[str, ...] = (
    "cpl_7d", "ctr_7d", "cpc_7d", "conversion_rate_7d",
    "cpl_trend_7d", "leads_trend_7d", "spend_trend_7d", "ctr_trend_7d",
    "cpl_14d", "cpl_30d", "cpl_std_7d", "frequency_7d",
    "days_with_leads_7d", "days_active", "age_days", "cpl_vs_siblings_7d",
    "cpl_vs_account_7d", "cpl_vs_account_30d", "cpl_weighted_vs_account",
)

#: What a tier classifier reads: every feature known at the snapshot's date. Status and budget are
#: stored as they are *today*; a past snapshot reading them would learn from the future (an ad
#: paused since is "inactive" in a week it was delivering), so they are left out.
LOOK_AHEAD_COLUMNS = ("is_active", "has_budget")
TIER_FEATURE_COLUMNS: tuple[str, ...] = tuple(c for c in FEATURE_COLUMNS if c not in LOOK_AHEAD_COLUMNS)


# --- rule tiers ----------------------------------------------------------------------------------


def tiers_from_cost(cost, eligible=None) -> np.ndarray:  # noqa: ANN001
    """Tiers by quantile of a cost (lower is better) among the ``eligible`` entities
    (TIER_QUANTILES); the others are INSUFFICIENT_DATA. Ties share a tier."""
    cost = np.asarray(cost, dtype="float64")
    eligible = np.ones(len(cost), dtype=bool) if eligible is None else np.asarray(eligible, dtype=bool)
    out = np.full(len(cost), settings.TIER_INSUFFICIENT, dtype=object)
    if not eligible.any():
        return out
    out[eligible] = np.asarray(TIERS, dtype=object)[_quantile_tier_index(cost[eligible][None, :])[0]]
    return out


def _quantile_tier_index(cost: np.ndarray) -> np.ndarray:
    """Per row of ``cost`` (rows × entities, lower is better), each entity's tier as an index of
    TIERS by its quantile in the row (TIER_QUANTILES); ties share a tier."""
    ranks = pd.DataFrame(cost).rank(axis=1, method="average").to_numpy()
    position = (ranks - 0.5) / cost.shape[1]  # midpoint: one entity alone is in the middle
    q_high, q_moderate, q_low = settings.TIER_QUANTILES
    return np.select([position < q_high, position < q_moderate, position < q_low], [0, 1, 2], default=3)


def rule_tiers(spend, leads, account_cpl: float, delivering=None) -> np.ndarray:  # noqa: ANN001
    """Rule tier per entity from its spend and leads (over a window, or recency-weighted) and the
    level's pooled CPL over the same: quantiles of the shrunk CPL (see TIER_QUANTILES). No lead
    and less spend than half an average CPL (or none), or not ``delivering`` (when given), is
    INSUFFICIENT_DATA."""
    spend = np.asarray(spend, dtype="float64")
    leads = np.asarray(leads, dtype="float64")
    reference = account_cpl if np.isfinite(account_cpl) and account_cpl > 0 else np.nan
    no_lead = ~(leads > 0)
    min_spend = settings.TIER_INSUFFICIENT_SPEND_SHARE_OF_CPL * (reference if np.isfinite(reference) else 0.0)
    insufficient = no_lead & ((spend < min_spend) | ~(spend > 0))
    if delivering is not None:
        insufficient |= ~np.asarray(delivering, dtype=bool)
    if not np.isfinite(reference):  # no lead anywhere: nothing to rank by
        return np.where(insufficient, settings.TIER_INSUFFICIENT, settings.TIER_UNDER).astype(object)
    return tiers_from_cost(shrunk_cpl(spend, leads, reference), ~insufficient)


def rule_tiers_from_features(features: pd.DataFrame) -> np.ndarray:
    """Rule tiers of a feature frame: quantiles of the recency-weighted CPL (``spend_weighted`` /
    ``leads_weighted``, shrunk toward the level's pooled weighted CPL) of the entities that spent
    in the last 7 days; the others are INSUFFICIENT_DATA."""
    pooled = cpl(features["spend_weighted"].sum(), features["leads_weighted"].sum())
    return rule_tiers(features["spend_weighted"], features["leads_weighted"], pooled,
                      delivering=(features["spend_7d"] > 0).to_numpy())


def rule_confidence(features: pd.DataFrame, tiers, draws: int = settings.TIER_RULE_CONFIDENCE_DRAWS) -> np.ndarray:  # noqa: ANN001
    """The probability that a rule tier is the tier the entity earns over the next 7 days, as the
    classifier's confidence is: per entity, its rate of leads per unit spent drawn from its
    posterior (Gamma: the TIER_PRIOR_LEADS pseudo-leads at the pooled weighted CPL plus its weighted
    spend and leads), next week's leads drawn (Poisson) at its last 7 days' spend, every eligible
    entity re-tiered on each draw; the share of draws that give it its tier. Missing where the tier
    is INSUFFICIENT_DATA. Deterministic (a fixed seed)."""
    tiers = np.asarray(tiers, dtype=object)
    out = np.full(len(tiers), np.nan)
    eligible = pd.Series(tiers).isin(TIERS).to_numpy()
    pooled = cpl(features["spend_weighted"].sum(), features["leads_weighted"].sum())
    if not eligible.any() or not (np.isfinite(pooled) and pooled > 0):
        return out
    prior = settings.TIER_PRIOR_LEADS
    spend_w = features["spend_weighted"].to_numpy(dtype="float64")[eligible]
    leads_w = features["leads_weighted"].to_numpy(dtype="float64")[eligible]
    spend_next = features["spend_7d"].to_numpy(dtype="float64")[eligible]
    rng = np.random.default_rng(0)
    rate = rng.gamma(prior + leads_w, 1.0 / (prior * pooled + spend_w), size=(draws, eligible.sum()))
    leads = rng.poisson(rate * spend_next)
    pooled_next = spend_next.sum() / np.maximum(leads.sum(axis=1, keepdims=True), 1)
    cost = (spend_next + prior * pooled_next) / (leads + prior)
    drawn = _quantile_tier_index(cost)
    assigned = np.array([TIERS.index(t) for t in tiers[eligible]])
    out[eligible] = (drawn == assigned).mean(axis=0)
    return out


def tier_direction(previous, current) -> np.ndarray:  # noqa: ANN001
    """improved / declined / stable between two tiers: the same tier (INSUFFICIENT_DATA included) is
    stable; None when there is no previous tier or one side is INSUFFICIENT_DATA and the other not."""
    previous = pd.Series(previous, dtype="object").reset_index(drop=True)
    current = pd.Series(current, dtype="object").reset_index(drop=True)
    prev, cur = previous.map(TIER_RANK), current.map(TIER_RANK)
    out = np.where(cur > prev, "improved", np.where(cur < prev, "declined", "stable")).astype(object)
    out[(prev.isna() | cur.isna()).to_numpy()] = None
    out[(previous.notna() & (previous == current)).to_numpy()] = "stable"
    return out


# --- training data -------------------------------------------------------------------------------


@dataclass
class TrainingSet:
    X: pd.DataFrame  # feature columns
    y: pd.Series  # tier labels
    snapshot: pd.Series  # feature date of each sample (datetime64)
    entity_id: pd.Series
    label_source: pd.Series  # feedback / outcome / rule
    outcome_cost: pd.Series | None = None  # next-week CPL ÷ pooled, inf if it spent without a lead (outcome samples; else NaN)

    def __len__(self) -> int:
        return len(self.y)


def _outcome(daily: pd.DataFrame, start: pd.Timestamp, horizon: int) -> pd.DataFrame:
    window = daily.loc[(daily["date"] > start) & (daily["date"] <= start + pd.Timedelta(days=horizon))]
    return window.groupby("entity_id")[["spend", "leads"]].sum()


def build_training_set(
    daily: pd.DataFrame,
    entities: pd.DataFrame,
    reference_date: dt.date | pd.Timestamp,
    feedback: pd.DataFrame | None = None,
    *,
    horizon: int = settings.TIER_HORIZON_DAYS,
    max_snapshots: int = settings.TIER_MAX_SNAPSHOTS,
    min_samples: int = settings.TIER_MIN_TRAINING_SAMPLES,
) -> TrainingSet:
    """Labelled feature snapshots of one level (see the module docstring for the labels).

    ``feedback``: optional frame ``entity_id, tier, feedback_date`` (date may be missing)."""
    ref = pd.Timestamp(reference_date).normalize()
    daily = daily.assign(date=pd.to_datetime(daily["date"]).dt.normalize(), entity_id=daily["entity_id"].astype(str))
    daily = daily.loc[daily["date"] <= ref]
    parts: list[pd.DataFrame] = []
    features_at: dict[pd.Timestamp, pd.DataFrame] = {}

    def features(t: pd.Timestamp) -> pd.DataFrame:
        if t not in features_at:
            features_at[t] = compute_entity_features(daily, entities, t)
        return features_at[t]

    first_day = daily["date"].min() if len(daily) else ref
    for k in range(max_snapshots):
        t = ref - pd.Timedelta(days=horizon * (k + 1))
        if t < first_day + pd.Timedelta(days=horizon - 1):
            break
        snap = features(t)
        delivering = snap.loc[snap["age_days"].notna()]
        outcome = _outcome(daily, t, horizon).reindex(delivering.index).fillna(0.0)
        pooled = cpl(outcome["spend"].sum(), outcome["leads"].sum())
        labels = rule_tiers(outcome["spend"], outcome["leads"], pooled)
        # what the tiers are judged on: the CPL realised next (a spender without a lead the dearest)
        cost = (np.where(outcome["leads"] > 0, outcome["spend"] / outcome["leads"].where(outcome["leads"] > 0), np.inf) / pooled
                if np.isfinite(pooled) and pooled > 0 else np.nan)
        part = _samples(delivering, labels, t, "outcome")
        part["outcome_cost"] = np.where(labels != settings.TIER_INSUFFICIENT, cost, np.nan)
        parts.append(part)
    labelled = sum(int((p["label"] != settings.TIER_INSUFFICIENT).sum()) for p in parts)
    if labelled < min_samples:
        snap = features(ref)
        delivering = snap.loc[snap["age_days"].notna()]
        parts.append(_samples(delivering, rule_tiers_from_features(delivering), ref, "rule"))

    samples = pd.concat(parts) if parts else _samples(features(ref).iloc[:0], np.array([]), ref, "rule")
    if feedback is not None and len(feedback):
        samples = _apply_feedback(samples, feedback, ref, horizon, features)
    samples = samples.loc[samples["label"].isin(TIERS)].sort_values(["snapshot", "entity_id"], kind="stable")
    samples = samples.reset_index(drop=True)
    return TrainingSet(
        X=samples[list(FEATURE_COLUMNS)].astype("float64"),  # every feature; a model picks its own
        y=samples["label"],
        snapshot=samples["snapshot"],
        entity_id=samples["entity_id"],
        label_source=samples["source"],
        outcome_cost=samples["outcome_cost"].astype("float64") if "outcome_cost" in samples else pd.Series(np.nan, index=samples.index),
    )


def _samples(features: pd.DataFrame, labels: np.ndarray, t: pd.Timestamp, source: str) -> pd.DataFrame:
    out = features.drop(columns=["parent_id"], errors="ignore").copy()
    out["entity_id"] = out.index.astype(str)
    out["label"] = labels
    out["snapshot"] = t
    out["source"] = source
    return out.reset_index(drop=True)


def _apply_feedback(samples: pd.DataFrame, feedback: pd.DataFrame, ref: pd.Timestamp, horizon: int, features) -> pd.DataFrame:  # noqa: ANN001
    fb = feedback.copy()
    fb["entity_id"] = fb["entity_id"].astype(str)
    fb["tier"] = fb["tier"].astype(str).str.upper()
    fb = fb.loc[fb["tier"].isin(TIERS)]
    dates = pd.to_datetime(fb.get("feedback_date"), errors="coerce") if "feedback_date" in fb else pd.Series(pd.NaT, index=fb.index)
    fb["date"] = dates.fillna(ref).clip(upper=ref).dt.normalize()
    extra = []
    for row in fb.itertuples():
        # the sample whose outcome window (t, t+h] holds the feedback date, or the rule snapshot at t = date
        covers = (samples["entity_id"] == row.entity_id) & (
            ((samples["snapshot"] < row.date) & (samples["snapshot"] + pd.Timedelta(days=horizon) >= row.date))
            | (samples["snapshot"] == row.date)
        )
        if covers.any():
            samples.loc[covers, "label"] = row.tier
            samples.loc[covers, "source"] = "feedback"
            continue
        snap = features(row.date)
        if row.entity_id in snap.index:
            extra.append(_samples(snap.loc[[row.entity_id]], np.array([row.tier]), row.date, "feedback"))
    return pd.concat([samples, *extra], ignore_index=True) if extra else samples


# --- the classifier ------------------------------------------------------------------------------


class TierClassifier:
    """XGBoost (hist) over tier classes with temperature-scaled probabilities.

    ``fit(X, y, groups)``: ``groups`` (e.g. snapshot dates) define the folds of the out-of-fold
    predictions the temperature is fitted on. Learned: ``classes_``, ``model_``, ``temperature_``,
    ``feature_importances_`` (gain, summing to 1)."""

    def __init__(self, feature_columns: tuple[str, ...] = TIER_FEATURE_COLUMNS, xgb_params: dict | None = None,
                 random_state: int = 0):
        self.feature_columns = tuple(feature_columns)
        self.xgb_params = dict(settings.TIER_XGB_PARAMS if xgb_params is None else xgb_params)
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y, groups=None) -> "TierClassifier":  # noqa: ANN001
        X = self._matrix(X)
        labels = pd.Series(y, dtype="object").to_numpy()
        self.classes_ = [t for t in TIERS if t in set(labels)]
        index = {t: i for i, t in enumerate(self.classes_)}
        encoded = np.array([index[v] for v in labels])
        self.temperature_ = 1.0
        if len(self.classes_) > 1 and groups is not None:
            oof = self._out_of_fold(X, encoded, np.asarray(groups))
            if oof is not None:
                self.temperature_ = fit_temperature(oof, encoded)
        self.model_ = _FittedBooster(X, encoded, len(self.classes_), self.xgb_params, self.random_state)
        gains = self.model_.importances(len(self.feature_columns))
        total = gains.sum()
        self.feature_importances_ = {
            c: float(g / total) if total > 0 else 0.0 for c, g in zip(self.feature_columns, gains)
        }
        return self

    def to_files(self) -> dict[str, bytes]:
        """The fitted classifier as files: its state in JSON and the booster in XGBoost's own UBJ
        format (no pickle)."""
        state = {
            "feature_columns": list(self.feature_columns), "xgb_params": self.xgb_params,
            "random_state": self.random_state, "classes": list(self.classes_), "temperature": self.temperature_,
            "feature_importances": self.feature_importances_, "beats_rules": getattr(self, "beats_rules_", None),
            "n_classes": int(self.model_.n_classes), "present": [int(c) for c in self.model_.present],
        }
        files = {"state.json": json.dumps(state).encode()}
        if self.model_.model is not None:
            files["booster.ubj"] = bytes(self.model_.model.get_booster().save_raw("ubj"))
        return files

    @classmethod
    def from_files(cls, files: dict[str, bytes]) -> "TierClassifier":
        state = json.loads(files["state.json"])
        model = cls(tuple(state["feature_columns"]), state["xgb_params"], state["random_state"])
        model.classes_ = list(state["classes"])
        model.temperature_ = float(state["temperature"])
        model.feature_importances_ = dict(state["feature_importances"])
        if state["beats_rules"] is not None:
            model.beats_rules_ = bool(state["beats_rules"])
        model.model_ = _FittedBooster.restore(state["n_classes"], state["present"], files.get("booster.ubj"))
        return model

    def predict_proba(self, X: pd.DataFrame) -> np.ndarray:
        raw = self.model_.predict_proba(self._matrix(X))
        return apply_temperature(raw, self.temperature_)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        return np.asarray(self.classes_, dtype=object)[self.predict_proba(X).argmax(axis=1)]

    def top_features(self, X: pd.DataFrame, top: int = 3) -> list[dict[str, float]]:
        """Per row, the features pushing hardest toward the predicted tier (XGBoost SHAP values)."""
        matrix = self._matrix(X)
        contributions = self.model_.contributions(matrix)  # (n, classes, features)
        predicted = self.predict_proba(X).argmax(axis=1)
        out = []
        for row, cls in enumerate(predicted):
            values = contributions[row, cls]
            order = np.argsort(-np.abs(values))[:top]
            out.append({self.feature_columns[i]: round(float(values[i]), 4) for i in order if values[i] != 0})
        return out

    def _matrix(self, X: pd.DataFrame) -> np.ndarray:
        missing = [c for c in self.feature_columns if c not in X.columns]
        if missing:
            raise ValueError(f"feature frame lacks column(s): {', '.join(missing)}")
        return X[list(self.feature_columns)].to_numpy(dtype="float64")

    def _out_of_fold(self, X: np.ndarray, y: np.ndarray, groups: np.ndarray) -> np.ndarray | None:
        n_groups = len(np.unique(groups))
        if n_groups < 2:
            return None
        oof = np.zeros((len(y), len(self.classes_)))
        for train, test in GroupKFold(n_splits=min(3, n_groups)).split(X, y, groups):
            fold = _FittedBooster(X[train], y[train], len(self.classes_), self.xgb_params, self.random_state)
            oof[test] = fold.predict_proba(X[test])
        return oof


class _FittedBooster:
    """An XGBClassifier on encoded classes 0..k-1 that tolerates classes missing from a fold and a
    single class; probabilities always have k columns."""

    def __init__(self, X: np.ndarray, y: np.ndarray, n_classes: int, params: dict, seed: int):
        self.n_classes = n_classes
        self.present = np.unique(y)
        self.model = None
        if len(self.present) > 1:
            remap = {c: i for i, c in enumerate(self.present)}
            self.model = XGBClassifier(**params, random_state=seed, n_jobs=1, verbosity=0)
            self.model.fit(X, np.array([remap[v] for v in y]))

    @classmethod
    def restore(cls, n_classes: int, present: list[int], booster: bytes | None) -> "_FittedBooster":
        fitted = cls.__new__(cls)
        fitted.n_classes, fitted.present, fitted.model = int(n_classes), np.asarray(present, dtype=int), None
        if booster is not None:
            fitted.model = XGBClassifier()
            fitted.model.load_model(bytearray(booster))
        return fitted

    def predict_proba(self, X: np.ndarray) -> np.ndarray:
        out = np.zeros((len(X), self.n_classes))
        if self.model is None:
            out[:, self.present[0]] = 1.0
            return out
        out[:, self.present] = self.model.predict_proba(X)
        return out

    def contributions(self, X: np.ndarray) -> np.ndarray:
        n, f = X.shape
        out = np.zeros((n, self.n_classes, f))
        if self.model is None:
            return out
        import xgboost as xgb

        values = self.model.get_booster().predict(xgb.DMatrix(X, missing=np.nan), pred_contribs=True)
        if values.ndim == 2:  # binary: one margin for the second present class
            out[:, self.present[1], :] = values[:, :f]
            out[:, self.present[0], :] = -values[:, :f]
        else:
            out[:, self.present, :] = values[:, :, :f]
        return out

    def importances(self, n_features: int) -> np.ndarray:
        if self.model is None:
            return np.zeros(n_features)
        scores = self.model.get_booster().get_score(importance_type="gain")
        return np.array([scores.get(f"f{i}", 0.0) for i in range(n_features)])


def apply_temperature(probabilities: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probabilities, 1e-12, 1.0))
    return softmax(logits / temperature, axis=1)


def fit_temperature(probabilities: np.ndarray, y: np.ndarray) -> float:
    """The temperature minimising the log loss of ``probabilities`` on labels ``y``."""
    logits = np.log(np.clip(probabilities, 1e-12, 1.0))

    def nll(log_t: float) -> float:
        scaled = log_softmax(logits / np.exp(log_t), axis=1)
        return -float(scaled[np.arange(len(y)), y].mean())

    best = minimize_scalar(nll, bounds=(np.log(0.05), np.log(20.0)), method="bounded")
    return float(np.exp(best.x))


# --- metrics -------------------------------------------------------------------------------------


def expected_calibration_error(probabilities: np.ndarray, y: np.ndarray, bins: int = 10) -> float:
    """Top-label ECE: |accuracy − confidence| averaged over confidence bins, weighted by size."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == y
    edges = np.linspace(0.0, 1.0, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    ece = 0.0
    for b in range(bins):
        mask = which == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


def classification_metrics(probabilities: np.ndarray, classes: list[str], y_true) -> dict[str, float]:  # noqa: ANN001
    labels = pd.Series(y_true, dtype="object").to_numpy()
    index = {t: i for i, t in enumerate(classes)}
    # A validation label the model never saw gets probability ~0: it counts fully against log loss.
    encoded = np.array([index.get(v, -1) for v in labels])
    predicted = np.asarray(classes, dtype=object)[probabilities.argmax(axis=1)]
    p_true = np.where(encoded >= 0, probabilities[np.arange(len(labels)), np.maximum(encoded, 0)], 0.0)
    return {
        "accuracy": float(accuracy_score(labels, predicted)),
        "f1_weighted": float(f1_score(labels, predicted, average="weighted", zero_division=0)),
        "log_loss": float(-np.mean(np.log(np.clip(p_true, 1e-15, 1.0)))),
        "ece": expected_calibration_error(probabilities, encoded),
    }


# --- training ------------------------------------------------------------------------------------


@dataclass
class TierTrainingResult:
    status: str  # "trained" or "insufficient_data"
    reason: str = ""
    model: TierClassifier | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    n_samples: int = 0
    label_sources: dict[str, int] = field(default_factory=dict)
    tier_counts: dict[str, int] = field(default_factory=dict)


def expected_cost(model: "TierClassifier", X: pd.DataFrame) -> np.ndarray:
    """The model's expected tier position per row (0 = HIGH … 3 = UNDERPERFORMER): the
    probability-weighted mean, a finer order than the most likely tier."""
    position = np.array([TIERS.index(c) for c in model.classes_], dtype="float64")
    return model.predict_proba(X) @ position


def _tier_spearman(tiers: np.ndarray, cost: np.ndarray) -> float:
    """−Spearman between tier order (HIGH best) and a realised cost: 1 is a perfect order."""
    ok = ~np.isnan(cost) & pd.Series(tiers).isin(TIERS).to_numpy()
    rank = pd.Series(tiers[ok]).map(TIER_RANK).to_numpy(dtype="float64")
    if ok.sum() < 5 or np.all(rank == rank[0]) or np.all(cost[ok] == cost[ok][0]):
        return float("nan")
    return float(spearmanr(rank, -rankdata(cost[ok])).statistic)  # ranks: an inf cost is the dearest


def validation_orders(model: "TierClassifier", training: TrainingSet, mask: np.ndarray,
                      draws: int = settings.TIER_GATE_BOOTSTRAP_DRAWS) -> dict[str, float]:
    """On the validation snapshots (``mask``): how well the model's tiers and the rule tiers order
    the entities by the CPL they realised next (mean over snapshots of −Spearman), and the lower
    bound of the model's gain over the rules: the TIER_GATE_CONFIDENCE lower quantile of that gain
    over ``draws`` bootstrap resamples of the entities. An entity is drawn with all its snapshots
    (the weeks of one entity are not independent evidence). The model is used only where the bound
    is above 0: a classifier is trusted over the rules when the validation weeks show it orders
    better by more than their noise, not when it is ahead by luck."""
    snapshots = []
    codes = pd.Index(training.entity_id[mask].astype(str).unique())
    for snap in np.unique(training.snapshot[mask]):
        rows = mask & (training.snapshot == snap).to_numpy() & training.outcome_cost.notna().to_numpy()
        if rows.sum() < 5:
            continue
        X = training.X.loc[rows]
        snapshots.append((tiers_from_cost(expected_cost(model, X)), rule_tiers_from_features(X),
                          training.outcome_cost.loc[rows].to_numpy(),
                          codes.get_indexer(training.entity_id.loc[rows].astype(str))))
    model_scores = np.array([_tier_spearman(m, c) for m, _, c, _ in snapshots])
    rule_scores = np.array([_tier_spearman(r, c) for _, r, c, _ in snapshots])
    both = np.isfinite(model_scores) & np.isfinite(rule_scores)
    out = {"model_order": float(np.nanmean(model_scores)) if np.isfinite(model_scores).any() else float("nan"),
           "rule_order": float(np.nanmean(rule_scores)) if np.isfinite(rule_scores).any() else float("nan"),
           "order_gain_lower": float("nan")}
    if both.any():
        rng = np.random.default_rng(0)
        kept = [s for s, ok in zip(snapshots, both) if ok]
        gains = np.zeros(draws)
        for d in range(draws):
            weight = np.bincount(rng.integers(0, len(codes), len(codes)), minlength=len(codes))
            for m, r, c, entity in kept:
                pick = np.repeat(np.arange(len(c)), weight[entity])
                gain = _tier_spearman(m[pick], c[pick]) - _tier_spearman(r[pick], c[pick])
                gains[d] += (gain if np.isfinite(gain) else 0.0) / len(kept)
        out["order_gain_lower"] = float(np.quantile(gains, 1.0 - settings.TIER_GATE_CONFIDENCE))
    return out


def train_tier_classifier(
    training: TrainingSet,
    *,
    feature_columns: tuple[str, ...] = TIER_FEATURE_COLUMNS,
    min_samples: int = settings.TIER_MIN_TRAINING_SAMPLES,
    validation_share: float = settings.TIER_VALIDATION_SHARE,
    horizon: int = settings.TIER_HORIZON_DAYS,
) -> TierTrainingResult:
    """Validate on the most recent snapshots, then fit the final model on every sample."""
    n = len(training)
    sources = training.label_source.value_counts().to_dict()
    counts = training.y.value_counts().to_dict()
    if n < min_samples:
        return TierTrainingResult(
            status="insufficient_data",
            reason=f"{n} labelled samples, at least {min_samples} needed",
            n_samples=n, label_sources=sources, tier_counts=counts,
        )
    snapshots = np.sort(training.snapshot.unique())[::-1]
    taken, cutoff = 0, snapshots[0]
    for snap in snapshots:
        taken += int((training.snapshot == snap).sum())
        cutoff = snap
        if taken >= validation_share * n:
            break
    val = (training.snapshot >= cutoff).to_numpy()
    # purge: a training label window must end before the first validation snapshot
    train = (training.snapshot <= cutoff - pd.Timedelta(days=horizon)).to_numpy()
    metrics: dict[str, Any] = {"n_train": int(train.sum()), "n_validation": int(val.sum()),
                               "validation_from": pd.Timestamp(cutoff).date().isoformat()}
    if train.sum() >= 2 and val.sum() >= 1:
        model = TierClassifier(feature_columns).fit(
            training.X.loc[train], training.y.loc[train], groups=training.snapshot.loc[train].astype("int64")
        )
        probabilities = model.predict_proba(training.X.loc[val])
        metrics.update(classification_metrics(probabilities, model.classes_, training.y.loc[val]))
        rules = np.concatenate([rule_tiers_from_features(training.X.loc[val & (training.snapshot == snap).to_numpy()])
                                for snap in np.sort(training.snapshot[val].unique())])
        ordered = training.y.loc[val].iloc[np.argsort(training.snapshot[val].to_numpy(), kind="stable")]
        metrics["rule_accuracy"] = float(accuracy_score(ordered.to_numpy(), rules))
        metrics.update(validation_orders(model, training, val))
    else:
        metrics["validation"] = "skipped: every sample is in the most recent snapshot"
    final = TierClassifier(feature_columns).fit(training.X, training.y, groups=training.snapshot.astype("int64"))
    metrics["temperature"] = final.temperature_
    model_order, rule_order = metrics.get("model_order", np.nan), metrics.get("rule_order", np.nan)
    gain_lower = metrics.get("order_gain_lower", np.nan)
    # used only when it orders the validation weeks' outcomes better than the rules, beyond their noise
    final.beats_rules_ = bool(np.isfinite(model_order) and (not np.isfinite(rule_order) or gain_lower > 0))
    metrics["beats_rules"] = final.beats_rules_
    confidence = f"{settings.TIER_GATE_CONFIDENCE:.0%}"
    metrics["use"] = "model" if final.beats_rules_ else (
        f"rules: the classifier's validation order {model_order:.3f} does not beat the rule tiers' {rule_order:.3f} "
        f"with {confidence} confidence (lower bound of its gain {gain_lower:+.3f})"
        if np.isfinite(model_order) else "rules: no validation of the classifier against the rule tiers")
    return TierTrainingResult(
        status="trained", model=final, metrics=metrics, n_samples=n, label_sources=sources, tier_counts=counts
    )


# --- classifying ---------------------------------------------------------------------------------


def _usable(model: "TierClassifier | None") -> bool:
    """A classifier tiers entities only if it beat the rule tiers on its own validation weeks."""
    return model is not None and bool(getattr(model, "beats_rules_", True))


def method_reasons(result: pd.DataFrame, features: pd.DataFrame, model: "TierClassifier | None",
                   transfer_model: "TierClassifier | None", *,
                   min_history_days: int = settings.TIER_MIN_HISTORY_DAYS) -> dict[str, dict]:
    """Per method of a :func:`classify_entities` result: how many entities and why, e.g.
    ``{"rules": {"entities": 40, "why": "..."}}``. Rule tiers are split by reason."""
    insufficient = result["tier"] == settings.TIER_INSUFFICIENT
    young = (features["age_days"].reindex(result.index) < min_history_days).to_numpy()
    rules = (result["method"] == "rules").to_numpy() & ~insufficient.to_numpy()

    def model_state(clf: "TierClassifier | None", what: str) -> str:
        if clf is None:
            return f"no {what} was trained"
        return f"the {what} did not beat the rule tiers on its validation weeks"

    groups = {
        "model": ((result["method"] == "model").to_numpy(),
                  f"{min_history_days}+ days of history; the level's classifier beat the rule tiers on its validation weeks"),
        "transfer": ((result["method"] == "transfer").to_numpy(),
                     f"under {min_history_days} days of history; the transfer model beat the rule tiers on its validation"),
        "rules (history)": (rules & ~young, f"{min_history_days}+ days of history; "
                            + (model_state(model, "level's classifier") if not _usable(model) else "rule tier")),
        "rules (young)": (rules & young, f"under {min_history_days} days of history; "
                          + (model_state(transfer_model, "transfer model") if not _usable(transfer_model) else "rule tier")),
        "insufficient data": (insufficient.to_numpy(), "too little spend or delivery in the last days to tier"),
    }
    return {name: {"entities": int(mask.sum()), "why": why} for name, (mask, why) in groups.items() if mask.any()}


def classify_entities(
    features: pd.DataFrame,
    model: TierClassifier | None,
    transfer_model: TierClassifier | None = None,
    *,
    min_history_days: int = settings.TIER_MIN_HISTORY_DAYS,
    transfer_penalty: float = settings.TRANSFER_CONFIDENCE_PENALTY,
) -> pd.DataFrame:
    """Tier of every entity of a feature frame (index entity_id).

    Columns: ``tier``, ``confidence`` (calibrated probability; for rule tiers
    :func:`rule_confidence`; missing for INSUFFICIENT_DATA), ``method``
    (model / transfer / rules), ``is_transfer``, ``top_features`` (dict), ``rule_tier``.
    Entities with ``min_history_days`` of history or more use the level's classifier when it beat
    the rule tiers on its validation weeks, else the rule tier. Younger ones use the transfer model
    (confidence × ``transfer_penalty``) when it beat the rule tiers on its own validation, else the
    rule tier: a model that lost to the rules never tiers anything (:func:`method_reasons` says why
    each entity got its method)."""
    rules = rule_tiers_from_features(features)
    out = pd.DataFrame(index=features.index)
    out["rule_tier"] = rules
    out["tier"] = rules
    out["confidence"] = rule_confidence(features, rules)
    out["method"] = "rules"
    out["is_transfer"] = False
    # the evidence a rule tier ranks by: the entity's recency-weighted CPL against the level's
    evidence = features["cpl_weighted_vs_account"].to_numpy(dtype="float64")
    out["top_features"] = [{"cpl_weighted_vs_account": round(float(v), 4)} if t in TIERS and np.isfinite(v) else {}
                           for t, v in zip(rules, evidence)]
    classifiable = rules != settings.TIER_INSUFFICIENT
    own_history = (features["age_days"] >= min_history_days).to_numpy()

    # a classifier that did not beat the rule tiers on its validation weeks is not used
    if not _usable(model):
        model = None
    if not _usable(transfer_model):
        transfer_model = None
    use_model = classifiable & own_history & (model is not None)
    use_transfer = classifiable & ~own_history & (transfer_model is not None)
    for mask, clf, method, factor in (
        (use_model, model, "model", 1.0),
        (use_transfer, transfer_model, "transfer", transfer_penalty),
    ):
        if not mask.any():
            continue
        rows = features.loc[mask]
        probabilities = clf.predict_proba(rows)
        if method == "model" and mask.sum() >= 4:
            # quantiles of the expected tier position: balanced tiers in the model's order
            tiers = tiers_from_cost(expected_cost(clf, rows))
        else:  # a few young entities read by the transfer model: its most likely tier
            tiers = np.asarray(clf.classes_, dtype=object)[probabilities.argmax(axis=1)]
        column = {t: i for i, t in enumerate(clf.classes_)}
        chosen = np.array([column.get(t, -1) for t in tiers])
        out.loc[mask, "tier"] = tiers
        out.loc[mask, "confidence"] = np.where(chosen >= 0, probabilities[np.arange(len(rows)), np.maximum(chosen, 0)], 0.0) * factor
        out.loc[mask, "method"] = method
        out.loc[mask, "is_transfer"] = method == "transfer"
        out.loc[mask, "top_features"] = pd.Series(clf.top_features(rows), index=rows.index)
    return out
