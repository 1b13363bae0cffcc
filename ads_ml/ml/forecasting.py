"""7-day forecasts of CPL, leads and spend per entity: EMA, linear trend, Prophet, statsforecast's
AutoETS, AutoTheta (weekly season) and SeasonalWindowAverage, their weighted ensemble, and a
seasonal-naive baseline. Pure code: series in, small frames out.

- Series: daily, from the entity's first delivery to the reference date, missing days as zero
  spend and leads; CPL is the trailing 7-day CPL (daily CPL is undefined on days without a lead)
  and missing while those 7 days have no lead.
- Every method returns a :class:`Forecast` (value, 95 % interval) clipped at zero, fitted on the
  series without its one-off outliers (:func:`clean_outliers`: a spend spike on the last day is
  not a new level); the seasonal-naive baseline sees the series as it is.
- Validation: fit on the series without its last ``ENSEMBLE_VALIDATION_DAYS`` days, forecast them,
  score with MAPE in percent or — when an actual is zero — MAE (:func:`error_metric_for`).
- Prophet runs in-process (:class:`~ads_ml.ml.prophet_fast.FastProphet`: Prophet's model and
  optimiser path, the same forecast without a CmdStan process per fit).
- Ensemble: ``w ∝ 1 / (error + 1)``, weights summing to 1; equal when the history is at most
  validation + 7 days.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import norm

from ads_ml import settings
from ads_ml.ml.metrics import cpl
from ads_ml.ml.prophet_fast import FastProphet

Z = float(norm.ppf(0.5 + settings.FORECAST_INTERVAL_WIDTH / 2))
BASELINE = "seasonal_naive"


@dataclass
class Forecast:
    dates: pd.DatetimeIndex
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def clipped(self) -> "Forecast":
        return Forecast(self.dates, np.clip(self.value, 0, None), np.clip(self.lower, 0, None), np.clip(self.upper, 0, None))


def metric_series(daily: pd.DataFrame, metric: str, end: pd.Timestamp | None = None) -> pd.Series:
    """One entity's daily series of ``metric`` (cpl / leads / spend) from ``date, spend, leads``."""
    frame = daily.assign(date=pd.to_datetime(daily["date"]).dt.normalize()).groupby("date")[["spend", "leads"]].sum()
    delivered = frame.index[(frame["spend"] > 0) | (frame["leads"] > 0)]
    if len(delivered) == 0:
        return pd.Series(dtype="float64")
    last = pd.Timestamp(end).normalize() if end is not None else frame.index.max()
    index = pd.date_range(delivered.min(), last, freq="D")
    frame = frame.reindex(index, fill_value=0.0)
    if metric == "spend":
        return frame["spend"].astype("float64")
    if metric == "leads":
        return frame["leads"].astype("float64")
    if metric == "cpl":
        window = settings.CPL_SERIES_WINDOW_DAYS
        rolling = frame.rolling(window, min_periods=1).sum()
        return pd.Series(cpl(rolling["spend"], rolling["leads"]), index=index, dtype="float64")
    raise ValueError(f"unknown metric {metric!r}; expected cpl, leads or spend")


def clean_outliers(series: pd.Series, window: int = settings.FORECAST_OUTLIER_WINDOW_DAYS,
                   threshold: float = settings.FORECAST_OUTLIER_Z) -> pd.Series:
    """The series with one-off outliers replaced by the median of the ``window`` days before them:
    a day further than ``threshold`` robust standard deviations (inter-quartile range ÷ 1.349 of
    those days, at least 10 % of their median and at least √median — a count's Poisson spread,
    which keeps quiet lead series from flagging every busy day) from that median. A spend spike or a day of overspend is not a new level, so a method that extends the
    last level (EMA, ETS, the linear trend) must not extend it. Zeros are kept: an entity that
    stopped delivering has stopped. Days with fewer than half a window of history are kept."""
    past = series.shift(1).rolling(window, min_periods=window // 2)
    median = past.median()
    spread = (past.quantile(0.75) - past.quantile(0.25)) / 1.349
    floor = np.maximum(0.1 * median.abs(), np.sqrt(median.clip(lower=1.0)))
    scale = np.maximum(spread, floor)
    outlier = ((series - median).abs() > threshold * scale) & (series != 0) & median.notna()
    return series.where(~outlier, median)


def _future(series: pd.Series, horizon: int) -> pd.DatetimeIndex:
    return pd.date_range(series.index.max() + pd.Timedelta(days=1), periods=horizon, freq="D")


def _flat(series: pd.Series, y: np.ndarray, horizon: int) -> Forecast:
    """Too few points for a method's shape: their mean, ± z · their standard deviation."""
    value = np.full(horizon, float(np.mean(y)))
    spread = Z * (float(np.std(y, ddof=1)) if len(y) >= 2 else abs(value[0]) * 0.5)
    return Forecast(_future(series, horizon), value, value - spread, value + spread).clipped()


def forecast_ema(series: pd.Series, horizon: int, alpha: float = settings.EMA_ALPHA) -> Forecast:
    """Simple exponential smoothing: a flat forecast at the smoothed level; interval from the
    one-step errors, widening as SES's variance does (1 + (h−1)·α²)."""
    y = series.dropna().to_numpy()
    level, errors = y[0], []
    for value in y[1:]:
        errors.append(value - level)
        level = alpha * value + (1 - alpha) * level
    sigma = float(np.std(errors, ddof=1)) if len(errors) >= 2 else abs(level) * 0.5
    steps = np.arange(1, horizon + 1)
    spread = Z * sigma * np.sqrt(1 + (steps - 1) * alpha**2)
    value = np.full(horizon, level)
    return Forecast(_future(series, horizon), value, value - spread, value + spread).clipped()


def forecast_linear(series: pd.Series, horizon: int, window: int = settings.LINEAR_TREND_DAYS) -> Forecast:
    """Least-squares line over the last ``window`` days, extended; prediction interval of OLS."""
    recent = series.dropna().iloc[-window:]
    x = (recent.index - series.index.max()).days.to_numpy(dtype="float64")
    y = recent.to_numpy()
    future_x = np.arange(1, horizon + 1, dtype="float64")
    if len(y) < 3 or np.ptp(x) == 0:
        return _flat(series, y, horizon)
    slope, intercept = np.polyfit(x, y, 1)
    fitted = slope * x + intercept
    n = len(y)
    sigma = float(np.sqrt(np.sum((y - fitted) ** 2) / (n - 2)))
    sxx = np.sum((x - x.mean()) ** 2)
    spread = Z * sigma * np.sqrt(1 + 1 / n + (future_x - x.mean()) ** 2 / sxx)
    value = slope * future_x + intercept
    return Forecast(_future(series, horizon), value, value - spread, value + spread).clipped()


def forecast_seasonal_naive(series: pd.Series, horizon: int) -> Forecast:
    """The value of the same weekday a week earlier (the last known value where that is missing)."""
    filled = series.ffill().bfill()
    last_week = filled.iloc[-7:].to_numpy() if len(filled) >= 7 else np.resize(filled.to_numpy(), 7)
    value = np.array([last_week[h % 7] for h in range(horizon)], dtype="float64")
    diffs = (filled - filled.shift(7)).dropna()
    sigma = float(diffs.std(ddof=1)) if len(diffs) >= 2 else abs(float(np.nanmean(value))) * 0.5
    return Forecast(_future(series, horizon), value, value - Z * sigma, value + Z * sigma).clipped()


def forecast_prophet(series: pd.Series, horizon: int, params: dict | None = None, *,
                     engine: str = "inprocess", interval: bool = True) -> Forecast:
    """Prophet with the entity's tuned params (Prophet's defaults without), 95 % interval.

    ``engine="inprocess"`` (default) fits with :class:`FastProphet` — Prophet's model, initial
    values and optimiser path, so the same yhat — and simulates Prophet's interval (trend
    changepoints + noise); ``engine="prophet"`` runs the prophet package itself (a CmdStan process
    per fit). ``interval=False`` skips the simulation (validation needs the point forecast only)."""
    params = params or {}
    cps = params.get("changepoint_prior_scale", 0.05)
    sps = params.get("seasonality_prior_scale", 10.0)
    clean = series.dropna()
    future = _future(series, horizon)
    if engine == "inprocess":
        model = FastProphet(cps, sps).fit(clean.index, clean.to_numpy())
        value = model.predict(future)
        if not interval:
            return Forecast(future, value, value.copy(), value.copy()).clipped()
        lower, upper = model.predict_interval(future, settings.FORECAST_INTERVAL_WIDTH, samples=300)
        return Forecast(future, value, lower, upper).clipped()
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    from prophet import Prophet

    model = Prophet(changepoint_prior_scale=cps, seasonality_prior_scale=sps,
                    interval_width=settings.FORECAST_INTERVAL_WIDTH, uncertainty_samples=300)
    model.fit(pd.DataFrame({"ds": clean.index, "y": clean.to_numpy()}))
    predicted = model.predict(pd.DataFrame({"ds": future}))
    return Forecast(
        future, predicted["yhat"].to_numpy(), predicted["yhat_lower"].to_numpy(), predicted["yhat_upper"].to_numpy()
    ).clipped()


def _statsforecast(model_class, series: pd.Series, horizon: int) -> Forecast:  # noqa: ANN001
    """A statsforecast model with a weekly season (7) on the series, its 95 % interval; a series
    too short for the season gets the model without one."""
    y = series.dropna().to_numpy(dtype="float64")
    season = 7 if len(y) >= 2 * 7 + 2 else 1
    with np.errstate(all="ignore"):
        result = model_class(season_length=season).forecast(y=y, h=horizon, level=[int(settings.FORECAST_INTERVAL_WIDTH * 100)])
    level = int(settings.FORECAST_INTERVAL_WIDTH * 100)
    return Forecast(_future(series, horizon), np.asarray(result["mean"], dtype="float64"),
                    np.asarray(result[f"lo-{level}"], dtype="float64"), np.asarray(result[f"hi-{level}"], dtype="float64")).clipped()


def forecast_ets(series: pd.Series, horizon: int) -> Forecast:
    """statsforecast's AutoETS (error / trend / season chosen by AICc), weekly season."""
    from statsforecast.models import AutoETS

    return _statsforecast(AutoETS, series, horizon)


def forecast_theta(series: pd.Series, horizon: int) -> Forecast:
    """statsforecast's AutoTheta (the best of the theta models), weekly season."""
    from statsforecast.models import AutoTheta

    return _statsforecast(AutoTheta, series, horizon)


def forecast_seasonal_window_average(series: pd.Series, horizon: int,
                                     weeks: int = settings.SEASONAL_WINDOW_WEEKS) -> Forecast:
    """statsforecast's SeasonalWindowAverage: each weekday the mean of that weekday over the last
    ``weeks`` weeks (fewer while the history is shorter). Its interval: ± z · the standard deviation
    of the same average's one-step errors over the history (an error of one day, as each forecast
    day is one such average)."""
    from statsforecast.models import SeasonalWindowAverage

    y = series.dropna().to_numpy(dtype="float64")
    window = int(min(weeks, max(len(y) // 7, 1)))
    if len(y) < 7:
        return _flat(series, y, horizon)
    value = np.asarray(SeasonalWindowAverage(season_length=7, window_size=window).forecast(y=y, h=horizon)["mean"],
                       dtype="float64")
    start = 7 * window
    if len(y) - start >= 2:  # the same average one day at a time: y[t] against its last weeks' weekdays
        averaged = np.mean([y[start - 7 * (j + 1): len(y) - 7 * (j + 1)] for j in range(window)], axis=0)
        sigma = float(np.std(y[start:] - averaged, ddof=1))
    else:
        sigma = float(np.std(y, ddof=1))
    return Forecast(_future(series, horizon), value, value - Z * sigma, value + Z * sigma).clipped()


def error_metric_for(actual: np.ndarray) -> str:
    """MAPE is undefined when an actual is zero: then MAE."""
    return "mae" if (np.abs(np.asarray(actual, dtype="float64")) < 1e-12).any() else "mape"


def forecast_error(actual: np.ndarray, predicted: np.ndarray, metric: str) -> float:
    actual = np.asarray(actual, dtype="float64")
    predicted = np.asarray(predicted, dtype="float64")
    if metric == "mape":
        return float(np.mean(np.abs((actual - predicted) / actual)) * 100.0)
    return float(np.mean(np.abs(actual - predicted)))


def inverse_error_weights(errors: dict[str, float]) -> dict[str, float]:
    """``w ∝ 1 / (error + 1)`` over the methods with a finite error; sums to 1."""
    raw = {m: 1.0 / (e + 1.0) for m, e in errors.items() if e is not None and np.isfinite(e)}
    if not raw:
        return equal_weights(errors)
    total = sum(raw.values())
    return {m: raw.get(m, 0.0) / total for m in errors}


def equal_weights(methods) -> dict[str, float]:  # noqa: ANN001
    methods = list(methods)
    return {m: 1.0 / len(methods) for m in methods}


def method_forecasts(series: pd.Series, horizon: int, prophet_params: dict | None = None,
                     *, intervals: bool = True) -> dict[str, Forecast]:
    """Every method that the series' length allows (Prophet, ETS and Theta from
    FORECAST_MIN_POINTS_PROPHET points), fitted on the series without its one-off outliers
    (:func:`clean_outliers`); the seasonal-naive baseline on the series as it is."""
    clean = clean_outliers(series)
    out = {
        "ema": forecast_ema(clean, horizon),
        "linear": forecast_linear(clean, horizon),
    }
    if series.notna().sum() >= settings.FORECAST_MIN_POINTS_PROPHET:
        out["prophet"] = forecast_prophet(clean, horizon, prophet_params, interval=intervals)
        out["ets"] = forecast_ets(clean, horizon)
        out["theta"] = forecast_theta(clean, horizon)
    out["swa"] = forecast_seasonal_window_average(clean, horizon)
    out[BASELINE] = forecast_seasonal_naive(series, horizon)
    return out


def validation_forecasts(series: pd.Series, prophet_params: dict | None = None,
                         validation_days: int = settings.ENSEMBLE_VALIDATION_DAYS
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Hold out the last ``validation_days`` days, forecast them with every method (and the
    baseline) from the rest: ``(actual, {method: predicted})`` on the days with an actual, or None
    when the history is too short."""
    if series.notna().sum() < validation_days + settings.FORECAST_MIN_POINTS:
        return None
    train, test = series.iloc[:-validation_days], series.iloc[-validation_days:]
    if train.notna().sum() < settings.FORECAST_MIN_POINTS or test.notna().sum() == 0:
        return None
    forecasts = method_forecasts(train, validation_days, prophet_params, intervals=False)
    mask = test.notna().to_numpy()
    return test.to_numpy()[mask], {m: f.value[mask] for m, f in forecasts.items()}


def ensemble_prediction(predictions: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted ensemble of point predictions (weights renormalised over the methods present)."""
    present = {m: w for m, w in weights.items() if m in predictions and m != BASELINE}
    if not present or sum(present.values()) <= 0:
        present = equal_weights([m for m in predictions if m != BASELINE])
    total = sum(present.values())
    return np.clip(sum(w / total * predictions[m] for m, w in present.items()), 0, None)


def combine(forecasts: dict[str, Forecast], weights: dict[str, float]) -> Forecast:
    """Weighted ensemble of the methods present (value and interval bounds alike)."""
    first = next(iter(forecasts.values()))
    return Forecast(
        first.dates,
        ensemble_prediction({m: f.value for m, f in forecasts.items()}, weights),
        ensemble_prediction({m: f.lower for m, f in forecasts.items()}, weights),
        ensemble_prediction({m: f.upper for m, f in forecasts.items()}, weights),
    )


def validation_task(payload: tuple) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Fan-out task: ``(series, prophet_params)`` → :func:`validation_forecasts`."""
    series, params = payload
    return validation_forecasts(series, params)


def forecast_task(payload: dict) -> dict[str, dict[str, Forecast]]:
    """Fan-out task for one entity: ``{metric: (series, prophet_params, weights)}`` →
    ``{metric: {"ensemble": Forecast, BASELINE: Forecast}}`` (metrics with too little history
    are left out)."""
    out = {}
    for metric, (series, params, weights) in payload.items():
        if series.notna().sum() < settings.FORECAST_MIN_POINTS or np.isnan(series.iloc[-1]):
            continue  # too little history, or (trailing CPL) no lead in the last 7 days: nothing to extend
        horizon = settings.FORECAST_HORIZON_DAYS
        forecasts = {
            m: f for m, f in method_forecasts(series, horizon, params).items()
            if np.isfinite(f.value).all() and np.isfinite(f.lower).all() and np.isfinite(f.upper).all()
        }
        if BASELINE not in forecasts or len(forecasts) < 2:
            continue
        history_days = len(series)
        if history_days <= settings.ENSEMBLE_VALIDATION_DAYS + 7:
            weights = equal_weights(settings.FORECAST_METHODS)
        out[metric] = {"ensemble": combine(forecasts, weights), BASELINE: forecasts[BASELINE]}
    return out
