"""Prophet hyperparameter tuning by time-series cross-validation, one series at a time.

Same procedure and answer as Prophet's diagnostics (``cross_validation`` with initial 30 days,
period 7, horizon 7 over the last 60 days, then ``performance_metrics`` over all folds), but each
fold is fitted with :class:`ads_ml.ml.prophet_fast.FastProphet` in-process, the grid is walked with
warm starts, and the pointless full fit per combination is gone. Choose by MAPE, or by MAE when an
actual in the folds is zero (MAPE is undefined there — Prophet's performance_metrics drops it too).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.ml.prophet_fast import FastProphet


class InsufficientDataError(ValueError):
    """Too few points to cross-validate."""


@dataclass
class TuningResult:
    changepoint_prior_scale: float
    seasonality_prior_scale: float
    error: float | None
    error_metric: str  # "mape" (fraction, as Prophet reports it) or "mae"
    n_points: int
    n_folds: int
    status: str = "tuned"  # or "fallback"
    cv_errors: dict[str, float | None] = field(default_factory=dict)
    warning: str | None = None

    def params(self) -> dict[str, float]:
        return {
            "changepoint_prior_scale": self.changepoint_prior_scale,
            "seasonality_prior_scale": self.seasonality_prior_scale,
        }


def cv_cutoffs(ds: pd.Series, initial: pd.Timedelta, period: pd.Timedelta, horizon: pd.Timedelta) -> list[pd.Timestamp]:
    """Prophet's ``generate_cutoffs``: from ``max − horizon`` back by ``period`` while the training
    part keeps ``initial``, skipping cutoffs with no data in their horizon. Oldest first."""
    ds = pd.Series(pd.to_datetime(ds))
    cutoff = ds.max() - horizon
    if cutoff < ds.min():
        raise InsufficientDataError("less data than the horizon")
    result = [cutoff]
    while result[-1] >= ds.min() + initial:
        cutoff -= period
        if not ((ds > cutoff) & (ds <= cutoff + horizon)).any():
            if cutoff > ds.min():
                cutoff = ds[ds <= cutoff].max() - horizon
        result.append(cutoff)
    result = result[:-1]
    if not result:
        raise InsufficientDataError("less data than the horizon after the initial window")
    return list(reversed(result))


def tune_series(
    ds,  # noqa: ANN001
    y,  # noqa: ANN001
    *,
    changepoint_prior_scales=settings.PROPHET_CHANGEPOINT_PRIOR_SCALES,  # noqa: ANN001
    seasonality_prior_scales=settings.PROPHET_SEASONALITY_PRIOR_SCALES,  # noqa: ANN001
    window_days: int = settings.PROPHET_CV_WINDOW_DAYS,
    initial_days: int = settings.PROPHET_CV_INITIAL_DAYS,
    period_days: int = settings.PROPHET_CV_PERIOD_DAYS,
    horizon_days: int = settings.PROPHET_CV_HORIZON_DAYS,
    min_points: int = settings.PROPHET_MIN_POINTS,
) -> TuningResult:
    """Best (changepoint_prior_scale, seasonality_prior_scale) of the grid for one daily series.
    Raises InsufficientDataError with fewer than ``min_points`` points in the last window."""
    frame = pd.DataFrame({"ds": pd.to_datetime(pd.Series(ds)).to_numpy(), "y": np.asarray(y, dtype="float64")})
    frame = frame.dropna().sort_values("ds", ignore_index=True)
    if frame.empty:
        raise InsufficientDataError(f"0 points, at least {min_points} needed")
    frame = frame.loc[frame["ds"] > frame["ds"].max() - pd.Timedelta(days=window_days)].reset_index(drop=True)
    if len(frame) < min_points:
        raise InsufficientDataError(f"{len(frame)} points in the last {window_days} days, at least {min_points} needed")
    horizon = pd.Timedelta(days=horizon_days)
    cutoffs = cv_cutoffs(frame["ds"], pd.Timedelta(days=initial_days), pd.Timedelta(days=period_days), horizon)
    folds = []
    for cutoff in cutoffs:
        train = frame.loc[frame["ds"] <= cutoff]
        test = frame.loc[(frame["ds"] > cutoff) & (frame["ds"] <= cutoff + horizon)]
        if len(train) >= 2 and len(test):
            folds.append((train, test))
    actual = np.concatenate([test["y"].to_numpy() for _train, test in folds])
    metric = "mae" if (np.abs(actual) < 1e-8).any() else "mape"

    errors: dict[str, float | None] = {}
    best: tuple[float, float, float] | None = None
    warm: dict[int, np.ndarray] = {}
    failures = []
    for cps in changepoint_prior_scales:
        for sps in seasonality_prior_scales:
            key = f"{cps}|{sps}"
            try:
                predicted = []
                for i, (train, test) in enumerate(folds):
                    model = FastProphet(cps, sps).fit(train["ds"], train["y"], init=warm.get(i))
                    if model.solution_ is not None:
                        warm[i] = model.solution_
                    predicted.append(model.predict(test["ds"]))
                yhat = np.concatenate(predicted)
                error = _error(actual, yhat, metric)
                if not np.isfinite(error):
                    raise FloatingPointError("non-finite CV error")
            except Exception as exc:  # noqa: BLE001 - a failing combination is skipped, not fatal
                errors[key] = None
                failures.append(f"{key}: {exc}")
                continue
            errors[key] = float(error)
            if best is None or error < best[2]:
                best = (cps, sps, float(error))
    if best is None:
        cps, sps = settings.PROPHET_FALLBACK_PARAMS
        message = f"every grid combination failed ({'; '.join(failures[:3])}); using ({cps}, {sps})"
        warnings.warn(message, RuntimeWarning, stacklevel=2)
        return TuningResult(cps, sps, None, metric, len(frame), len(folds), "fallback", errors, message)
    return TuningResult(best[0], best[1], best[2], metric, len(frame), len(folds), "tuned", errors)


def _error(actual: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    if metric == "mape":
        return float(np.mean(np.abs((actual - predicted) / actual)))
    return float(np.mean(np.abs(actual - predicted)))


def tune_or_skip(payload: tuple) -> TuningResult | str:
    """Fan-out task: ``(dates, values)`` → TuningResult, or the insufficient-data reason (a skip,
    not a failure)."""
    ds, y = payload
    try:
        return tune_series(ds, y)
    except InsufficientDataError as exc:
        return f"insufficient data: {exc}"
