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
  validation + 7 days. Which methods each level uses: ``settings.forecast_methods(level)``.
- Two readings of the same computation: per entity (:func:`method_forecasts`,
  :func:`validation_forecasts`, :func:`forecast_task`: the plain statement of the rules) and one
  pass over a level (:func:`series_matrix` → :func:`level_validation` / :func:`calibrate` /
  :func:`level_forecasts`: every entity a row of one entity × day matrix, the vectorisable methods
  computed for all rows at once, the per-series fits batched). The assets use the second; tests
  assert both agree.
"""

from __future__ import annotations

import logging
import warnings
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
        series = pd.Series(cpl(rolling["spend"], rolling["leads"]), index=index, dtype="float64")
        first = series.first_valid_index()  # a CPL's history begins with its first lead
        return series.loc[first:] if first is not None else series.iloc[:0]
    raise ValueError(f"unknown metric {metric!r}; expected cpl, leads or spend")


def clean_outliers(series: pd.Series | pd.DataFrame, window: int = settings.FORECAST_OUTLIER_WINDOW_DAYS,
                   threshold: float = settings.FORECAST_OUTLIER_Z) -> pd.Series | pd.DataFrame:
    """The series with one-off outliers replaced by the median of the ``window`` days before them:
    a day further than ``threshold`` robust standard deviations (inter-quartile range ÷ 1.349 of
    those days, at least 10 % of their median and at least √median — a count's Poisson spread,
    which keeps quiet lead series from flagging every busy day) from that median. A spend spike or a day of overspend is not a new level, so a method that extends the
    last level (EMA, ETS, the linear trend) must not extend it. Zeros are kept: an entity that
    stopped delivering has stopped. Days with fewer than half a window of history are kept. A frame
    (one column per series) is cleaned column by column."""
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
                     *, intervals: bool = True, methods: tuple[str, ...] = settings.FORECAST_METHODS) -> dict[str, Forecast]:
    """Every method of ``methods`` that the series' length allows (Prophet, ETS and Theta from
    FORECAST_MIN_POINTS_PROPHET points), fitted on the series without its one-off outliers
    (:func:`clean_outliers`); the seasonal-naive baseline on the series as it is. The per-entity
    reading of :func:`level_method_forecasts`."""
    clean = clean_outliers(series)
    out = {}
    if "ema" in methods:
        out["ema"] = forecast_ema(clean, horizon)
    if "linear" in methods:
        out["linear"] = forecast_linear(clean, horizon)
    out.update(row_models_task((clean, horizon, prophet_params, methods, intervals)))
    if "swa" in methods:
        out["swa"] = forecast_seasonal_window_average(clean, horizon)
    out[BASELINE] = forecast_seasonal_naive(series, horizon)
    return out


def validation_forecasts(series: pd.Series, prophet_params: dict | None = None,
                         validation_days: int = settings.ENSEMBLE_VALIDATION_DAYS,
                         methods: tuple[str, ...] = settings.FORECAST_METHODS,
                         ) -> tuple[np.ndarray, dict[str, np.ndarray]] | None:
    """Hold out the last ``validation_days`` days, forecast them with every method (and the
    baseline) from the rest: ``(actual, {method: predicted})`` on the days with an actual, or None
    when the history is too short. The per-entity reading of :func:`level_validation`."""
    if series.notna().sum() < validation_days + settings.FORECAST_MIN_POINTS:
        return None
    train, test = series.iloc[:-validation_days], series.iloc[-validation_days:]
    if train.notna().sum() < settings.FORECAST_MIN_POINTS or test.notna().sum() == 0:
        return None
    forecasts = method_forecasts(train, validation_days, prophet_params, intervals=False, methods=methods)
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


def forecast_task(payload: dict, methods: tuple[str, ...] = settings.FORECAST_METHODS) -> dict[str, dict[str, Forecast]]:
    """One entity's forecasts: ``{metric: (series, prophet_params, weights)}`` →
    ``{metric: {"ensemble": Forecast, BASELINE: Forecast}}`` (metrics with too little history
    are left out). The per-entity reading of :func:`level_forecasts`."""
    out = {}
    for metric, (series, params, weights) in payload.items():
        if series.notna().sum() < settings.FORECAST_MIN_POINTS or np.isnan(series.iloc[-1]):
            continue  # too little history, or (trailing CPL) no lead in the last 7 days: nothing to extend
        horizon = settings.FORECAST_HORIZON_DAYS
        forecasts = {
            m: f for m, f in method_forecasts(series, horizon, params, methods=methods).items()
            if np.isfinite(f.value).all() and np.isfinite(f.lower).all() and np.isfinite(f.upper).all()
        }
        if BASELINE not in forecasts or len(forecasts) < 2:
            continue
        history_days = len(series)
        if history_days <= settings.ENSEMBLE_VALIDATION_DAYS + 7:
            weights = equal_weights(methods)
        out[metric] = {"ensemble": combine(forecasts, weights), BASELINE: forecasts[BASELINE]}
    return out


# --- one pass over a level ---------------------------------------------------------------------
# Every entity's series is one row of an entity × day matrix: NaN before the entity's first
# delivery (and where a trailing CPL is undefined). The methods whose arithmetic allows it (the
# outlier cleaning, EMA, the linear trend, the seasonal window average, seasonal naive) run on all
# rows at once; ETS, Theta and Prophet fit per series, on the matrix' rows (:func:`model_forecasts`),
# in batches of many rows per task. Each equals its per-entity function above on every row (tests).


@dataclass
class LevelForecast:
    """One method's forecasts for many entities: row ``i`` is entity ``entities[i]``'s."""
    entities: pd.Index
    dates: pd.DatetimeIndex
    value: np.ndarray
    lower: np.ndarray
    upper: np.ndarray

    def row(self, i: int) -> Forecast:
        return Forecast(self.dates, self.value[i], self.lower[i], self.upper[i])

    def clipped(self) -> "LevelForecast":
        return LevelForecast(self.entities, self.dates, *(np.clip(a, 0, None) for a in (self.value, self.lower, self.upper)))

    def take(self, rows: np.ndarray) -> "LevelForecast":
        return LevelForecast(self.entities[rows], self.dates, self.value[rows], self.lower[rows], self.upper[rows])


def series_matrix(daily: pd.DataFrame, metric: str, end: pd.Timestamp | None = None) -> pd.DataFrame:
    """:func:`metric_series` of every entity of ``daily`` (``entity_id, date, spend, leads``) at once:
    an entity × day frame, each row NaN before that entity's first delivery. Entities that never
    delivered up to ``end`` are left out."""
    if metric not in ("cpl", "leads", "spend"):
        raise ValueError(f"unknown metric {metric!r}; expected cpl, leads or spend")
    frame = (daily.assign(entity_id=daily["entity_id"].astype(str), date=pd.to_datetime(daily["date"]).dt.normalize())
             .groupby(["entity_id", "date"])[["spend", "leads"]].sum())
    empty = pd.DataFrame(index=pd.Index([], name="entity_id", dtype="object"), dtype="float64")
    if len(frame) == 0:
        return empty
    last = pd.Timestamp(end).normalize() if end is not None else frame.index.get_level_values("date").max()
    delivered = frame.loc[(frame["spend"] > 0) | (frame["leads"] > 0)].reset_index()
    first = delivered.groupby("entity_id")["date"].min()
    first = first.loc[first <= last]
    if len(first) == 0:
        return empty
    days = pd.date_range(first.min(), last, freq="D")
    wide = {c: frame[c].unstack("date").reindex(index=first.index, columns=days).fillna(0.0).to_numpy(dtype="float64")
            for c in ("spend", "leads")}
    if metric == "cpl":
        sums = {c: _rolling_sum(wide[c], settings.CPL_SERIES_WINDOW_DAYS) for c in wide}
        values = np.asarray(cpl(sums["spend"], sums["leads"]), dtype="float64")
    else:
        values = wide[metric]
    values = np.where(days.to_numpy()[None, :] < first.to_numpy()[:, None], np.nan, values)
    return pd.DataFrame(values, index=pd.Index(first.index, name="entity_id"), columns=days)


def _rolling_sum(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing sums over ``window`` columns (fewer at the start)."""
    total = np.cumsum(values, axis=1)
    total[:, window:] = total[:, window:] - total[:, :-window]
    return total


def clean_outliers_matrix(matrix: pd.DataFrame, window: int = settings.FORECAST_OUTLIER_WINDOW_DAYS,
                          threshold: float = settings.FORECAST_OUTLIER_Z) -> pd.DataFrame:
    """:func:`clean_outliers` of every row (its rolling windows run over the transposed frame's
    columns, all entities at once)."""
    return clean_outliers(matrix.T, window, threshold).T


def _packed(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row's non-missing values moved to its right end (order kept; NaN before them) and
    their count: the matrix form of ``series.dropna()``."""
    present = ~np.isnan(values)
    order = np.argsort(present, axis=1, kind="stable")
    return np.take_along_axis(values, order, axis=1), present.sum(axis=1)


def _level(matrix: pd.DataFrame, horizon: int, value: np.ndarray, spread: np.ndarray) -> LevelForecast:
    dates = pd.date_range(matrix.columns.max() + pd.Timedelta(days=1), periods=horizon, freq="D")
    return LevelForecast(matrix.index, dates, value, value - spread, value + spread).clipped()


def _flat_rows(y: np.ndarray, horizon: int) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_flat` of each row's non-missing values: their mean, ± z · their standard deviation."""
    count = (~np.isnan(y)).sum(axis=1)
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(y, axis=1)
        sd = np.where(count >= 2, np.nanstd(y, axis=1, ddof=1), np.abs(mean) * 0.5)
    return np.repeat(mean[:, None], horizon, axis=1), np.repeat((Z * sd)[:, None], horizon, axis=1)


def ema_matrix(matrix: pd.DataFrame, horizon: int, alpha: float = settings.EMA_ALPHA) -> LevelForecast:
    """:func:`forecast_ema` of every row."""
    values = matrix.to_numpy(dtype="float64")
    level = np.full(len(values), np.nan)
    errors = np.full(values.shape, np.nan)
    for t in range(values.shape[1]):
        y = values[:, t]
        seen, new = ~np.isnan(y) & ~np.isnan(level), ~np.isnan(y) & np.isnan(level)
        errors[seen, t] = y[seen] - level[seen]
        level[seen] = alpha * y[seen] + (1 - alpha) * level[seen]
        level[new] = y[new]
    count = (~np.isnan(errors)).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = np.where(count >= 2, np.nanstd(errors, axis=1, ddof=1), np.abs(level) * 0.5)
    steps = np.arange(1, horizon + 1)
    spread = Z * sigma[:, None] * np.sqrt(1 + (steps[None, :] - 1) * alpha**2)
    return _level(matrix, horizon, np.repeat(level[:, None], horizon, axis=1), spread)


def linear_matrix(matrix: pd.DataFrame, horizon: int, window: int = settings.LINEAR_TREND_DAYS) -> LevelForecast:
    """:func:`forecast_linear` of every row: least squares over each row's last ``window``
    non-missing days (x = days before the last column)."""
    values = matrix.to_numpy(dtype="float64")
    present = ~np.isnan(values)
    from_end = np.cumsum(present[:, ::-1], axis=1)[:, ::-1]
    use = present & (from_end <= window)
    x = np.broadcast_to(np.arange(values.shape[1], dtype="float64") - (values.shape[1] - 1), values.shape)
    n = use.sum(axis=1).astype("float64")
    y = np.where(use, values, 0.0)
    xs = np.where(use, x, 0.0)
    with np.errstate(all="ignore"):
        x_mean, y_mean = xs.sum(axis=1) / n, y.sum(axis=1) / n
        dx = np.where(use, x - x_mean[:, None], 0.0)
        sxx = (dx**2).sum(axis=1)
        slope = (dx * np.where(use, values - y_mean[:, None], 0.0)).sum(axis=1) / sxx
        intercept = y_mean - slope * x_mean
        residual = np.where(use, values - (slope[:, None] * x + intercept[:, None]), 0.0)
        sigma = np.sqrt((residual**2).sum(axis=1) / (n - 2))
        future_x = np.arange(1, horizon + 1, dtype="float64")
        value = slope[:, None] * future_x[None, :] + intercept[:, None]
        spread = Z * sigma[:, None] * np.sqrt(1 + 1 / n[:, None] + (future_x[None, :] - x_mean[:, None]) ** 2 / sxx[:, None])
    flat = (n < 3) | ~(sxx > 0)
    if flat.any():
        flat_value, flat_spread = _flat_rows(np.where(use, values, np.nan)[flat], horizon)
        value[flat], spread[flat] = flat_value, flat_spread
    return _level(matrix, horizon, value, spread)


def seasonal_naive_matrix(matrix: pd.DataFrame, horizon: int) -> LevelForecast:
    """:func:`forecast_seasonal_naive` of every row (a row's series begins at its first value)."""
    filled = matrix.ffill(axis=1).to_numpy(dtype="float64")
    value = filled[:, -7:][:, np.arange(horizon) % 7]
    diffs = filled[:, 7:] - filled[:, :-7]
    count = (~np.isnan(diffs)).sum(axis=1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        sigma = np.where(count >= 2, np.nanstd(diffs, axis=1, ddof=1), np.abs(np.nanmean(value, axis=1)) * 0.5)
    return _level(matrix, horizon, value, np.repeat((Z * sigma)[:, None], horizon, axis=1))


def seasonal_window_average_matrix(matrix: pd.DataFrame, horizon: int,
                                   weeks: int = settings.SEASONAL_WINDOW_WEEKS) -> LevelForecast:
    """:func:`forecast_seasonal_window_average` of every row."""
    packed, count = _packed(matrix.to_numpy(dtype="float64"))
    width = packed.shape[1]
    window = np.minimum(weeks, np.maximum(count // 7, 1))
    value = np.full((len(packed), horizon), np.nan)
    spread = np.full((len(packed), horizon), np.nan)
    for w in range(1, weeks + 1):
        rows = np.flatnonzero((window == w) & (count >= 7))
        if len(rows) == 0:
            continue
        p = packed[rows]
        profile = p[:, width - 7 * w:].reshape(len(rows), w, 7).mean(axis=1)
        value[rows] = profile[:, np.arange(horizon) % 7]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            averaged = np.mean([p[:, 7 * w - 7 * (j + 1): width - 7 * (j + 1)] for j in range(w)], axis=0)
            errors = p[:, 7 * w:] - averaged
            sigma = np.where(count[rows] - 7 * w >= 2, np.nanstd(errors, axis=1, ddof=1), np.nanstd(p, axis=1, ddof=1))
        spread[rows] = Z * sigma[:, None]
    short = np.flatnonzero(count < 7)
    if len(short):
        value[short], spread[short] = _flat_rows(packed[short], horizon)
    return _level(matrix, horizon, value, spread)


#: Methods fitted one series at a time (the rest run on the whole matrix at once).
ROW_METHODS = ("prophet", "ets", "theta")


def row_models_task(payload: tuple) -> dict[str, Forecast]:
    """Fan-out task for one entity's cleaned series: ``(series, horizon, prophet_params, methods,
    intervals)`` → the per-series methods of ``methods`` (:data:`ROW_METHODS`) that its length
    allows, as :func:`method_forecasts` fits them."""
    series, horizon, params, methods, intervals = payload
    out = {}
    if series.notna().sum() < settings.FORECAST_MIN_POINTS_PROPHET:
        return out
    if "prophet" in methods:
        out["prophet"] = forecast_prophet(series, horizon, params, interval=intervals)
    if "ets" in methods:
        out["ets"] = forecast_ets(series, horizon)
    if "theta" in methods:
        out["theta"] = forecast_theta(series, horizon)
    return out


def _sequential(fn, items):  # noqa: ANN001, ANN202
    return {key: fn(payload) for key, payload in items}


def level_method_forecasts(matrix: pd.DataFrame, horizon: int, params: dict | None = None, *,
                           methods: tuple[str, ...] = settings.FORECAST_METHODS, intervals: bool = True,
                           map_rows=None) -> dict[str, LevelForecast]:  # noqa: ANN001
    """:func:`method_forecasts` of every row of ``matrix``: ``{method: LevelForecast}`` with a row per
    entity, NaN where the method did not run on (or failed for) that entity. ``params`` maps an
    entity to its Prophet params. ``map_rows(fn, [(entity, payload)]) → {entity: result}`` runs the
    per-series methods (default: in this process; the assets pass the fan-out, which sends them in
    a few large batches per worker)."""
    clean = clean_outliers_matrix(matrix)
    vectorised = {"ema": ema_matrix, "linear": linear_matrix, "swa": seasonal_window_average_matrix}
    out = {m: fn(clean, horizon) for m, fn in vectorised.items() if m in methods}
    row_methods = tuple(m for m in methods if m in ROW_METHODS)
    if row_methods:
        enough = clean.index[matrix.notna().sum(axis=1).to_numpy() >= settings.FORECAST_MIN_POINTS_PROPHET]
        items = [(e, (row_series(clean, e), horizon, (params or {}).get(e), row_methods, intervals)) for e in enough]
        results = (map_rows or _sequential)(row_models_task, items)
        dates = pd.date_range(matrix.columns.max() + pd.Timedelta(days=1), periods=horizon, freq="D")
        position = {e: i for i, e in enumerate(matrix.index)}
        for method in row_methods:
            arrays = [np.full((len(matrix), horizon), np.nan) for _ in range(3)]
            for entity, forecasts in results.items():
                if forecasts is not None and method in forecasts:
                    f = forecasts[method]
                    for array, part in zip(arrays, (f.value, f.lower, f.upper)):
                        array[position[entity]] = part
            out[method] = LevelForecast(matrix.index, dates, *arrays)
    out[BASELINE] = seasonal_naive_matrix(matrix, horizon)
    for forecast in out.values():  # a method whose row is not finite did not run for that entity
        broken = ~(np.isfinite(forecast.value) & np.isfinite(forecast.lower) & np.isfinite(forecast.upper)).all(axis=1)
        forecast.value[broken] = forecast.lower[broken] = forecast.upper[broken] = np.nan
    return out


def row_series(matrix: pd.DataFrame, entity: str) -> pd.Series:
    """One entity's series (from its first value) out of the matrix."""
    row = matrix.loc[entity]
    first = row.first_valid_index()
    return row.loc[first:].rename(None) if first is not None else row.iloc[:0]


def level_ensemble(forecasts: dict[str, LevelForecast], weights: dict[str, float], part: str = "value") -> np.ndarray:
    """:func:`ensemble_prediction` of every row: the weighted mean of the methods present in that row
    (weights renormalised over them; equal weights when none of them is weighted), never negative."""
    methods = [m for m in forecasts if m != BASELINE]
    stacked = np.stack([getattr(forecasts[m], part) for m in methods])  # method × entity × day
    present = ~np.isnan(stacked[:, :, 0])
    w = np.array([max(weights.get(m, 0.0), 0.0) for m in methods])[:, None] * present
    total = w.sum(axis=0)
    unweighted = total <= 0
    w[:, unweighted] = present[:, unweighted]
    total = w.sum(axis=0)
    with np.errstate(all="ignore"):
        combined = np.nansum(stacked * (w / np.where(total > 0, total, np.nan))[:, :, None], axis=0)
    combined[total <= 0] = np.nan
    return np.clip(combined, 0, None)


def history_days(matrix: pd.DataFrame) -> np.ndarray:
    """Each row's series length: days from its first value to the last column."""
    present = matrix.notna().to_numpy()
    return np.where(present.any(axis=1), matrix.shape[1] - present.argmax(axis=1), 0)


def level_validation(matrix: pd.DataFrame, params: dict | None = None, *,
                     validation_days: int = settings.ENSEMBLE_VALIDATION_DAYS,
                     methods: tuple[str, ...] = settings.FORECAST_METHODS,
                     map_rows=None) -> tuple[pd.DataFrame, dict[str, LevelForecast]]:  # noqa: ANN001
    """:func:`validation_forecasts` of every row that allows one: the held-out actuals (entity × day,
    NaN where there is none) and each method's point forecasts of them from the days before."""
    counts = matrix.notna().sum(axis=1).to_numpy()
    train, test = matrix.iloc[:, :-validation_days], matrix.iloc[:, -validation_days:]
    ok = ((counts >= validation_days + settings.FORECAST_MIN_POINTS)
          & (train.notna().sum(axis=1).to_numpy() >= settings.FORECAST_MIN_POINTS)
          & (test.notna().sum(axis=1).to_numpy() > 0))
    if matrix.shape[1] <= validation_days or not ok.any():
        return test.iloc[:0], {}
    forecasts = level_method_forecasts(train.loc[ok], validation_days, params, methods=methods,
                                       intervals=False, map_rows=map_rows)
    return test.loc[ok], forecasts


def row_errors(actual: np.ndarray, predicted: np.ndarray, metric: str | np.ndarray) -> np.ndarray:
    """:func:`forecast_error` of every row over its days with an actual (NaN where ``predicted`` is
    missing); ``metric`` one name, or one per row."""
    metric = np.broadcast_to(np.asarray(metric), (len(actual),))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        absolute = np.abs(actual - predicted)
        out = np.where(metric == "mape", np.nanmean(absolute / np.abs(actual), axis=1) * 100.0, np.nanmean(absolute, axis=1))
    return np.where(np.isnan(predicted).all(axis=1), np.nan, out)


@dataclass
class Calibration:
    """Ensemble weights of one metric over a level's entities, and each entity's validation."""
    weights: dict[str, float]
    error_metric: str
    mean_errors: dict[str, float | None]
    per_entity: pd.DataFrame  # entity_id, error_metric, ensemble_error, baseline_error, beat_baseline


def calibrate(actual: pd.DataFrame, forecasts: dict[str, LevelForecast], longest_history: int,
              methods: tuple[str, ...] = settings.FORECAST_METHODS) -> Calibration:
    """Pooled weights from :func:`level_validation`'s output: each method's mean error over the
    entities (MAPE, or MAE when any actual is zero), ``w ∝ 1 / (error + 1)``; equal weights with no
    validated entity or a history of at most validation + 7 days. Per entity: the ensemble's and
    the baseline's error (MAPE, or MAE where that entity's actuals have a zero)."""
    values = actual.to_numpy(dtype="float64")
    zero = (np.abs(np.nan_to_num(values, nan=1.0)) < 1e-12).any(axis=1)
    name = "mape" if len(values) and not zero.any() else "mae"
    mean_errors: dict[str, float | None] = {}
    for method in (*methods, BASELINE):
        errors = row_errors(values, forecasts[method].value, name) if method in forecasts else np.array([])
        errors = errors[~np.isnan(errors)]
        mean_errors[method] = float(np.mean(errors)) if len(errors) else None
    if longest_history <= settings.ENSEMBLE_VALIDATION_DAYS + 7 or len(values) == 0:
        weights = equal_weights(methods)
    else:
        weights = inverse_error_weights({m: mean_errors[m] for m in methods})
    per_entity = pd.DataFrame(columns=["entity_id", "error_metric", "ensemble_error", "baseline_error", "beat_baseline"])
    if len(values):
        entity_metric = np.where(zero, "mae", "mape")
        ensemble = row_errors(values, level_ensemble(forecasts, weights), entity_metric)
        baseline = row_errors(values, forecasts[BASELINE].value, entity_metric)
        per_entity = pd.DataFrame({"entity_id": actual.index.astype(str), "error_metric": entity_metric,
                                   "ensemble_error": ensemble, "baseline_error": baseline,
                                   "beat_baseline": ensemble < baseline})
    return Calibration(weights, name, mean_errors, per_entity)


def level_forecasts(matrix: pd.DataFrame, weights: dict[str, float], params: dict | None = None, *,
                    horizon: int = settings.FORECAST_HORIZON_DAYS,
                    methods: tuple[str, ...] = settings.FORECAST_METHODS,
                    map_rows=None) -> dict[str, LevelForecast]:  # noqa: ANN001
    """:func:`forecast_task` of every row: ``{"ensemble": …, BASELINE: …}`` over the entities that
    get a forecast (enough history, a last value, the baseline and at least one method); entities
    with a history of at most validation + 7 days get equal weights."""
    values = matrix.to_numpy(dtype="float64")
    ok = (~np.isnan(values)).sum(axis=1) >= settings.FORECAST_MIN_POINTS
    ok &= ~np.isnan(values[:, -1]) if values.shape[1] else ok
    rows = matrix.loc[ok]
    if len(rows) == 0:
        return {}
    forecasts = level_method_forecasts(rows, horizon, params, methods=methods, map_rows=map_rows)
    present = np.stack([~np.isnan(f.value[:, 0]) for m, f in forecasts.items() if m != BASELINE]).sum(axis=0)
    keep = ~np.isnan(forecasts[BASELINE].value[:, 0]) & (present >= 1)
    short = history_days(rows) <= settings.ENSEMBLE_VALIDATION_DAYS + 7
    parts = {}
    for part in ("value", "lower", "upper"):
        parts[part] = np.where(short[:, None], level_ensemble(forecasts, equal_weights(methods), part),
                               level_ensemble(forecasts, weights, part))
    ensemble = LevelForecast(rows.index, forecasts[BASELINE].dates, parts["value"], parts["lower"], parts["upper"])
    return {"ensemble": ensemble.take(np.flatnonzero(keep)), BASELINE: forecasts[BASELINE].take(np.flatnonzero(keep))}
