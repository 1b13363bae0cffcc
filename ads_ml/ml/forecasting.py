"""7-day forecasts of CPL, leads and spend per entity: EMA, linear trend, Prophet, statsforecast's
AutoETS, AutoTheta (weekly season) and SeasonalWindowAverage, their weighted ensemble, and a
seasonal-naive baseline. Pure code: series in, small frames out.

- Series: daily, from the entity's first delivery to the reference date, missing days as zero
  spend and leads; CPL is the trailing 7-day CPL (daily CPL is undefined on days without a lead)
  and missing while those 7 days have no lead.
- Every method returns a :class:`Forecast` (value, 95 % interval) clipped at zero, fitted on the
  series without its one-off outliers (:func:`clean_outliers`: a spend spike on the last day is
  not a new level); the seasonal-naive baseline sees the series as it is.
- Prophet runs in-process (:class:`~ads_ml.ml.prophet_fast.FastProphet`: Prophet's model and
  optimiser path, the same forecast without a CmdStan process per fit).
- One pass over a level: every entity a row of one entity × day matrix (:func:`series_matrix`),
  the vectorisable methods computed for all rows at once, ETS and Theta in statsforecast's own
  long-frame call, Prophet batched by the fan-out. The per-entity functions (:func:`method_forecasts`)
  state the same rules one series at a time; tests assert both agree.
- The ensemble (:func:`calibrate_stack` → :func:`stacked_forecasts`): weights learnt on rolling-origin
  validation over several weeks (stacked, shrunk half-way to equal), a conformal 95 % interval from
  the same validation's errors, stopped entities forecast as stopped. Which members each level
  uses: ``settings.forecast_methods(level)``; what it gains is measured by
  ``benchmarks/forecasts_real.py`` on real data and two generators.
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


#: ETS and Theta fit a weekly season from two seasons and two days of values; shorter, none.
SEASONAL_MIN_POINTS = 2 * 7 + 2


def _statsforecast(model_class, series: pd.Series, horizon: int) -> Forecast:  # noqa: ANN001
    """A statsforecast model with a weekly season (7) on the series, its 95 % interval; a series
    too short for the season gets the model without one."""
    y = series.dropna().to_numpy(dtype="float64")
    season = 7 if len(y) >= SEASONAL_MIN_POINTS else 1
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
    if "snaive" in methods:  # seasonal naive as a member: on the cleaned series, like the others
        out["snaive"] = forecast_seasonal_naive(clean, horizon)
    out[BASELINE] = forecast_seasonal_naive(series, horizon)
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


#: Methods fitted one series at a time (the rest run on the whole matrix at once): Prophet by the
#: fan-out; ETS and Theta in statsforecast's own long-frame call (:func:`statsforecast_matrix`).
ROW_METHODS = ("prophet", "ets", "theta")
STATSFORECAST_METHODS = ("ets", "theta")


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


#: Rows per statsforecast task: one long-frame call over this many series at a time, fanned out.
STATSFORECAST_CHUNK = 256


def statsforecast_task(payload: tuple) -> dict[str, np.ndarray]:
    """Fan-out task: ``(values, horizon, methods, season)`` — a block of rows, each a series with NaN
    where it has no value — → ``{method: value, method-lo, method-hi}`` arrays (rows × horizon) from
    one long-frame ``StatsForecast.forecast`` call (missing values left out of each series)."""
    from statsforecast import StatsForecast
    from statsforecast.models import AutoETS, AutoTheta, Naive, SeasonalNaive

    values, horizon, methods, season = payload
    classes = {"ets": AutoETS, "theta": AutoTheta}
    level = int(settings.FORECAST_INTERVAL_WIDTH * 100)
    r, c = np.nonzero(~np.isnan(values))
    position = np.cumsum(~np.isnan(values), axis=1)[r, c]  # each value's place in its row's series
    long = pd.DataFrame({"unique_id": r, "ds": position, "y": values[r, c]})
    models = [classes[m](season_length=season, alias=m) for m in methods]
    fallback = SeasonalNaive(season_length=season) if season > 1 else Naive()
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")
        out = StatsForecast(models=models, freq=1, n_jobs=1, fallback_model=fallback).forecast(
            df=long, h=horizon, level=[level])
    out = out.reset_index() if "unique_id" not in out.columns else out
    ids = out["unique_id"].to_numpy(dtype=int)
    step = out.groupby("unique_id").cumcount().to_numpy()
    result = {}
    for method in methods:
        for column in (method, f"{method}-lo-{level}", f"{method}-hi-{level}"):
            array = np.full((len(values), horizon), np.nan)
            array[ids, step] = out[column].to_numpy(dtype="float64")
            result[column] = array
    return result


def statsforecast_matrix(matrix: pd.DataFrame, horizon: int, methods: tuple[str, ...] = STATSFORECAST_METHODS,
                         map_rows=None) -> dict[str, LevelForecast]:  # noqa: ANN001
    """statsforecast's AutoETS / AutoTheta of every row with at least ``FORECAST_MIN_POINTS_PROPHET``
    values, by statsforecast's own long-frame call over blocks of rows (:func:`statsforecast_task`,
    sent to ``map_rows`` — the fan-out — like the other per-series fits); weekly season from two
    seasons and two days of values, none below, as :func:`forecast_ets` / :func:`forecast_theta`.
    Rows too short: NaN. A series a model cannot fit gets statsforecast's fallback, seasonal naive."""
    methods = tuple(m for m in methods if m in STATSFORECAST_METHODS)
    if not methods:
        return {}
    level = int(settings.FORECAST_INTERVAL_WIDTH * 100)
    values = matrix.to_numpy(dtype="float64")
    counts = (~np.isnan(values)).sum(axis=1)
    groups = ((7, np.flatnonzero(counts >= SEASONAL_MIN_POINTS)),
              (1, np.flatnonzero((counts >= settings.FORECAST_MIN_POINTS_PROPHET) & (counts < SEASONAL_MIN_POINTS))))
    blocks = {f"{season}:{i}": rows[i:i + STATSFORECAST_CHUNK]
              for season, rows in groups for i in range(0, len(rows), STATSFORECAST_CHUNK)}
    items = [(key, (values[rows], horizon, methods, int(key.split(":")[0]))) for key, rows in blocks.items()]
    results = (map_rows or _sequential)(statsforecast_task, items) if items else {}
    arrays = {m: [np.full((len(matrix), horizon), np.nan) for _ in range(3)] for m in methods}
    for key, result in results.items():
        if result is None:  # the block failed (the fan-out counts and logs it): its rows stay NaN
            continue
        for method, parts in arrays.items():
            for array, column in zip(parts, (method, f"{method}-lo-{level}", f"{method}-hi-{level}")):
                array[blocks[key]] = result[column]
    dates = pd.date_range(matrix.columns.max() + pd.Timedelta(days=1), periods=horizon, freq="D")
    return {m: LevelForecast(matrix.index, dates, *a).clipped() for m, a in arrays.items()}


def level_method_forecasts(matrix: pd.DataFrame, horizon: int, params: dict | None = None, *,
                           methods: tuple[str, ...] = settings.FORECAST_METHODS, intervals: bool = True,
                           map_rows=None, clean: bool = True) -> dict[str, LevelForecast]:  # noqa: ANN001
    """:func:`method_forecasts` of every row of ``matrix``: ``{method: LevelForecast}`` with a row per
    entity, NaN where the method did not run on (or failed for) that entity. ``params`` maps an
    entity to its Prophet params. ``map_rows(fn, [(entity, payload)]) → {entity: result}`` runs the
    per-series fits (default: in this process; the assets pass the fan-out, which sends them in a
    few large batches per worker): Prophet one row per task, ETS and Theta statsforecast's
    long-frame call over blocks of rows. ``clean=False`` fits the members on the series as they are
    (counts: see :func:`cleaned`)."""
    clean = clean_outliers_matrix(matrix) if clean else matrix
    vectorised = {"ema": ema_matrix, "linear": linear_matrix, "swa": seasonal_window_average_matrix,
                  "snaive": seasonal_naive_matrix}
    out = {m: fn(clean, horizon) for m, fn in vectorised.items() if m in methods}
    out.update(statsforecast_matrix(clean, horizon, methods, map_rows=map_rows))
    if "prophet" in methods:
        enough = clean.index[matrix.notna().sum(axis=1).to_numpy() >= settings.FORECAST_MIN_POINTS_PROPHET]
        items = [(e, (row_series(clean, e), horizon, (params or {}).get(e), ("prophet",), intervals)) for e in enough]
        results = (map_rows or _sequential)(row_models_task, items)
        dates = pd.date_range(matrix.columns.max() + pd.Timedelta(days=1), periods=horizon, freq="D")
        position = {e: i for i, e in enumerate(matrix.index)}
        arrays = [np.full((len(matrix), horizon), np.nan) for _ in range(3)]
        for entity, forecasts in results.items():
            if forecasts is not None and "prophet" in forecasts:
                f = forecasts["prophet"]
                for array, part in zip(arrays, (f.value, f.lower, f.upper)):
                    array[position[entity]] = part
        out["prophet"] = LevelForecast(matrix.index, dates, *arrays)
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


def history_days(matrix: pd.DataFrame) -> np.ndarray:
    """Each row's series length: days from its first value to the last column."""
    present = matrix.notna().to_numpy()
    return np.where(present.any(axis=1), matrix.shape[1] - present.argmax(axis=1), 0)


# --- the stacked ensemble: what the assets run ---------------------------------------------------
# The members' weights are learnt on rolling-origin validation (the last FORECAST_VALIDATION_WINDOWS
# weeks, each forecast from the days before it), pooled over a level's entities: the weights on the
# simplex (w ≥ 0, Σ w = 1) with the least absolute error of the weighted forecast — a member that
# does not help gets 0. Seasonal naive is a member too ("snaive", on the cleaned series; the raw
# one stays the baseline). The 95 %
# interval is conformal: the quantiles of the same validation's errors of the ensemble, each divided
# by its entity's scale (its mean absolute day-to-day change). An entity without spend on its last
# FORECAST_STOPPED_DAYS days is stopped: forecast as zero spend and leads, its CPL not forecast.

STOPPED = "stopped"


def cleaned(metric: str) -> bool:
    """Whether the members are fitted on the series without its one-off outliers: spend and CPL (a
    day of overspend is not a new level), not counts — a day of many leads or clicks is what
    happened, and on the real data fitting the raw counts did better (leads 0.802 → 0.785 of
    seasonal naive's error, the generators unchanged)."""
    return metric in settings.FORECAST_CLEANED_METRICS


def stopped_rows(spend: pd.DataFrame, days: int = settings.FORECAST_STOPPED_DAYS) -> np.ndarray:
    """Rows of an entity × day spend matrix without spend on their last ``days`` days."""
    if spend.shape[1] < days:
        return np.zeros(len(spend), dtype=bool)
    return (np.nan_to_num(spend.to_numpy(dtype="float64")[:, -days:], nan=0.0) <= 0).all(axis=1)


def series_scale(values: np.ndarray, days: int = 28) -> np.ndarray:
    """Each row's scale for the interval: the mean absolute day-to-day change over its last ``days``
    days; the mean absolute value where that is zero (a flat series); 1 where both are. (Measured
    against the weekly change and the level on the real data: the day-to-day change gives 95–96 %
    coverage on every metric, the weekly change 98 % on spend.)"""
    recent = values[:, -days:]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        daily = np.nanmean(np.abs(np.diff(recent, axis=1)), axis=1) if recent.shape[1] > 1 else np.full(len(values), np.nan)
        level = np.nanmean(np.abs(recent), axis=1)
    scale = np.where(np.isfinite(daily) & (daily > 0), daily, level)
    return np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)


@dataclass
class Validation:
    """Rolling-origin validation of one metric over a level: every (entity, origin) that had a
    forecast, stacked as rows. ``members`` holds each member's predictions (NaN where it did not run)."""
    entities: np.ndarray  # row -> entity id
    origins: np.ndarray  # row -> the number of days its forecast was made from (the matrix' first columns)
    actual: np.ndarray  # row × horizon (NaN where there is no actual)
    scale: np.ndarray  # row
    members: dict[str, np.ndarray]  # member -> row × horizon


def rolling_validation(matrix: pd.DataFrame, spend: pd.DataFrame, members: tuple[str, ...], params: dict | None = None, *,
                       windows: int = settings.FORECAST_VALIDATION_WINDOWS, horizon: int = settings.FORECAST_HORIZON_DAYS,
                       metric: str = "spend", map_rows=None) -> Validation:  # noqa: ANN001
    """Forecast each of the last ``windows`` weeks of ``matrix`` from the days before it with every
    member (the baseline included), for the entities that would have been forecast then (enough
    history, a last value, not stopped). ``spend`` is the same entities' spend matrix."""
    spend = spend.reindex(index=matrix.index, columns=matrix.columns)
    methods = tuple(m for m in members if m != BASELINE)
    parts = []
    for k in range(windows, 0, -1):
        cut = matrix.shape[1] - k * horizon
        if cut < settings.FORECAST_MIN_POINTS:
            continue
        train, test = matrix.iloc[:, :cut], matrix.iloc[:, cut:cut + horizon]
        values = train.to_numpy(dtype="float64")
        ok = (((~np.isnan(values)).sum(axis=1) >= settings.FORECAST_MIN_POINTS) & ~np.isnan(values[:, -1])
              & test.notna().any(axis=1).to_numpy() & ~stopped_rows(spend.iloc[:, :cut]))
        if not ok.any():
            continue
        forecasts = level_method_forecasts(train.loc[ok], horizon, params, methods=methods, intervals=False,
                                           map_rows=map_rows, clean=cleaned(metric))
        parts.append((train.index[ok].to_numpy(), test.loc[ok].to_numpy(dtype="float64"), series_scale(values[ok]),
                      {m: f.value for m, f in forecasts.items()}, np.full(int(ok.sum()), cut)))
    if not parts:
        empty = np.empty((0, horizon))
        return Validation(np.array([], dtype=object), np.array([], dtype=int), empty, np.array([]), {m: empty for m in members})
    return Validation(np.concatenate([p[0] for p in parts]), np.concatenate([p[4] for p in parts]),
                      np.concatenate([p[1] for p in parts]),
                      np.concatenate([p[2] for p in parts]),
                      {m: np.concatenate([p[3].get(m, np.full(p[1].shape, np.nan)) for p in parts]) for m in members})


def stack_weights(validation: Validation, members: tuple[str, ...],
                  shrink: float = settings.FORECAST_STACK_SHRINK,
                  drop_ratio: float = settings.FORECAST_DROP_RATIO) -> dict[str, float]:
    """The members' weights: ``(1 − shrink) ·`` the stacked weights ``+ shrink ·`` equal weights over
    the members that did not lose badly to seasonal naive (validation MAE at most ``drop_ratio`` ×
    the baseline's, when the validation has the baseline). A member gets 0 when the stacked weights
    give it nothing and it lost that badly.

    The stacked weights are those on the simplex (w ≥ 0, Σ w = 1) with the least total absolute
    error of the weighted forecast over the validation's days (a linear programme, HiGHS): a member
    that adds nothing gets 0. Only the members that ran for at least half the rows take part, over
    the rows where all of them ran. Shrinking half-way to equal weights is what held on data the
    weights were not learnt on (``benchmarks/forecasts_real.py``: on the real data the weeks after
    the validation differ from it, and the plain stacked weights lost to AutoETS on spend while the
    half-way mix beat it on every generator and on real spend and clicks). Equal weights over the
    members that ran when there is too little to learn from."""
    from scipy.optimize import linprog
    from scipy.sparse import csr_matrix, hstack, identity, vstack

    ran = {m: ~np.isnan(validation.members[m]).any(axis=1) for m in members}
    used = [m for m in members if len(validation.actual) and ran[m].mean() >= 0.5]
    rows = np.logical_and.reduce([ran[m] for m in used]) if used else np.array([], dtype=bool)
    if len(used) < 2 or rows.sum() < 3:
        fallback = used or [m for m in members if m in ("ema", "linear", "swa")] or list(members)
        return {m: (1.0 / len(fallback) if m in fallback else 0.0) for m in members}
    actual = validation.actual[rows]
    present = ~np.isnan(actual)
    y = actual[present]
    x = np.column_stack([validation.members[m][rows][present] for m in used])
    n, k = x.shape
    scale = max(float(np.mean(np.abs(y))), 1e-9)  # a well-conditioned programme; the same optimum
    x, y = x / scale, y / scale
    ones = identity(n, format="csr")
    a_ub = vstack([hstack([csr_matrix(x), -ones]), hstack([csr_matrix(-x), -ones])], format="csr")
    b_ub = np.concatenate([y, -y])
    a_eq = csr_matrix(np.concatenate([np.ones(k), np.zeros(n)])[None, :])
    cost = np.concatenate([np.zeros(k), np.ones(n)])
    result = linprog(cost, A_ub=a_ub, b_ub=b_ub, A_eq=a_eq, b_eq=[1.0], bounds=[(0, None)] * (k + n), method="highs")
    stacked = np.where(result.x[:k] < 0.01, 0.0, result.x[:k]) if result.success else np.ones(k)
    stacked = stacked / stacked.sum()
    keep = np.ones(k, dtype=bool)
    if BASELINE in validation.members:
        naive = np.abs(validation.members[BASELINE][rows][present] - y * scale)  # x and y are ÷ scale
        errors = np.abs(x - y[:, None]).mean(axis=0) * scale
        if np.isfinite(naive).all() and naive.mean() > 0:
            keep = errors <= drop_ratio * naive.mean()
    keep = keep if keep.any() else np.ones(k, dtype=bool)
    w = (1 - shrink) * stacked + shrink * keep / keep.sum()
    chosen = dict(zip(used, w))
    return {m: float(chosen.get(m, 0.0)) for m in members}


def stacked_prediction(predictions: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """Row × day weighted sum of the members, the weights renormalised per row over the members
    that ran for it (equal weights over those present when none of them is weighted); never negative."""
    names = [m for m in predictions if weights.get(m, 0.0) > 0] or list(predictions)
    stacked = np.stack([predictions[m] for m in names])
    present = ~np.isnan(stacked[:, :, 0])
    w = np.array([max(weights.get(m, 0.0), 0.0) for m in names])[:, None] * present
    none = w.sum(axis=0) <= 0
    w[:, none] = present[:, none]
    total = w.sum(axis=0)
    with np.errstate(all="ignore"):
        combined = np.nansum(stacked * (w / np.where(total > 0, total, np.nan))[:, :, None], axis=0)
    combined[total <= 0] = np.nan
    return np.clip(combined, 0, None)


def conformal_bounds(validation: Validation, weights: dict[str, float],
                     width: float = settings.FORECAST_INTERVAL_WIDTH) -> tuple[float, float]:
    """Quantiles (α/2 and 1 − α/2, finite-sample corrected) of the ensemble's validation errors
    ``(actual − forecast) / scale``: the interval is ``forecast + q · scale`` for each. Without
    validation errors: ± the normal quantile (one scale is one typical weekly change)."""
    predicted = (stacked_prediction({m: p for m, p in validation.members.items() if m in weights}, weights)
                 if len(validation.actual) else validation.actual)
    scores = ((validation.actual - predicted) / validation.scale[:, None]).ravel()
    scores = scores[np.isfinite(scores)]
    if len(scores) < 20:
        return -Z, Z
    alpha = 1 - width
    n = len(scores)
    low = float(np.quantile(scores, max(0.0, np.floor((n + 1) * alpha / 2) / n), method="lower"))
    high = float(np.quantile(scores, min(1.0, np.ceil((n + 1) * (1 - alpha / 2)) / n), method="higher"))
    return min(low, 0.0), max(high, 0.0)


@dataclass
class StackCalibration:
    """One metric's ensemble over a level: member weights, the conformal interval, what validation showed."""
    weights: dict[str, float]
    interval: tuple[float, float]
    member_errors: dict[str, float | None]  # member (and the baseline) -> MAE over the validation days
    per_entity: pd.DataFrame  # entity_id, error_metric, ensemble_error, baseline_error, beat_baseline
    rows: int  # (entity, origin) pairs validated


def calibrate_stack(matrix: pd.DataFrame, spend: pd.DataFrame, members: tuple[str, ...], params: dict | None = None,
                    *, windows: int = settings.FORECAST_VALIDATION_WINDOWS, metric: str = "spend",
                    map_rows=None) -> StackCalibration:  # noqa: ANN001
    """Rolling-origin validation, then the members' weights (:func:`stack_weights`), the interval
    (:func:`conformal_bounds`) and per entity the ensemble's and the baseline's error over the
    validation days (MAPE, or MAE where that entity's actuals have a zero)."""
    members = tuple(m for m in members if m != BASELINE)
    validation = rolling_validation(matrix, spend, (*members, BASELINE), params, windows=windows, metric=metric, map_rows=map_rows)
    weights = stack_weights(validation, members)
    interval = conformal_bounds(validation, weights)
    errors = {}
    for m in (*members, BASELINE):
        e = np.abs(validation.members[m] - validation.actual)
        errors[m] = float(np.nanmean(e)) if np.isfinite(e).any() else None
    per_entity = pd.DataFrame(columns=["entity_id", "error_metric", "ensemble_error", "baseline_error", "beat_baseline"])
    if len(validation.actual):
        ensemble = stacked_prediction({m: validation.members[m] for m in members}, weights)
        frame = pd.DataFrame({"entity_id": np.repeat(validation.entities.astype(str), validation.actual.shape[1]),
                              "actual": validation.actual.ravel(), "ensemble": ensemble.ravel(),
                              "baseline": validation.members[BASELINE].ravel()}).dropna()
        rows = []
        for entity, group in frame.groupby("entity_id", sort=True):
            actual = group["actual"].to_numpy()
            metric = error_metric_for(actual)
            rows.append({"entity_id": entity, "error_metric": metric,
                         "ensemble_error": forecast_error(actual, group["ensemble"].to_numpy(), metric),
                         "baseline_error": forecast_error(actual, group["baseline"].to_numpy(), metric)})
        if rows:
            per_entity = pd.DataFrame(rows)
            per_entity["beat_baseline"] = per_entity["ensemble_error"] < per_entity["baseline_error"]
    return StackCalibration(weights, interval, errors, per_entity, len(validation.actual))


def stacked_forecasts(matrix: pd.DataFrame, spend: pd.DataFrame, weights: dict[str, float], interval: tuple[float, float],
                      members: tuple[str, ...], params: dict | None = None, *, metric: str = "spend",
                      horizon: int = settings.FORECAST_HORIZON_DAYS, map_rows=None) -> dict[str, LevelForecast]:  # noqa: ANN001
    """``{"ensemble": …, BASELINE: …, STOPPED: …}`` for the level's entities: the weighted members
    with the conformal interval for those with enough history and a last value; the stopped ones
    (no spend on their last days) as zero — their CPL (``metric="cpl"``) is not forecast; the
    seasonal-naive baseline for every entity forecast either way."""
    members = tuple(m for m in members if m != BASELINE)
    spend = spend.reindex(index=matrix.index, columns=matrix.columns)
    values = matrix.to_numpy(dtype="float64")
    ok = ((~np.isnan(values)).sum(axis=1) >= settings.FORECAST_MIN_POINTS)
    ok &= ~np.isnan(values[:, -1]) if values.shape[1] else ok
    stopped = stopped_rows(spend) & ok
    live = ok & ~stopped
    dates = pd.date_range(matrix.columns.max() + pd.Timedelta(days=1), periods=horizon, freq="D") if matrix.shape[1] else None
    out = {}
    if live.any():
        rows = matrix.loc[live]
        forecasts = level_method_forecasts(rows, horizon, params, methods=members,
                                           intervals=False, map_rows=map_rows, clean=cleaned(metric))
        value = stacked_prediction({m: f.value for m, f in forecasts.items() if m in members}, weights)
        scale = series_scale(rows.to_numpy(dtype="float64"))[:, None]
        low, high = interval
        keep = np.flatnonzero(np.isfinite(value).all(axis=1))
        ensemble = LevelForecast(rows.index, dates, value, value + low * scale, value + high * scale).clipped()
        out["ensemble"] = ensemble.take(keep)
        out[BASELINE] = forecasts[BASELINE].take(keep)
    if stopped.any():
        rows = matrix.loc[stopped]
        if metric != "cpl":  # a stopped entity's CPL: no delivery, nothing to forecast
            zero = np.zeros((len(rows), horizon))
            out[STOPPED] = LevelForecast(rows.index, dates, zero, zero.copy(), zero.copy())
            out[BASELINE] = _concat(out.get(BASELINE), seasonal_naive_matrix(rows, horizon))
    return out


def _concat(a: LevelForecast | None, b: LevelForecast) -> LevelForecast:
    if a is None:
        return b
    return LevelForecast(a.entities.append(b.entities), a.dates, *(np.concatenate([getattr(a, p), getattr(b, p)])
                                                                  for p in ("value", "lower", "upper")))


@dataclass
class LevelResult:
    calibration: StackCalibration
    forecasts: dict[str, LevelForecast]

    @property
    def ensemble(self) -> LevelForecast:
        """The ensemble's and the stopped entities' forecasts together (what a reader of the level sees)."""
        parts = [self.forecasts[k] for k in ("ensemble", STOPPED) if k in self.forecasts]
        if not parts:
            return LevelForecast(pd.Index([]), pd.DatetimeIndex([]), *(np.empty((0, 0)) for _ in range(3)))
        return parts[0] if len(parts) == 1 else _concat(*parts)


def forecast_level(matrix: pd.DataFrame, spend: pd.DataFrame, members: tuple[str, ...], params: dict | None = None, *,
                   metric: str = "spend", map_rows=None) -> LevelResult:  # noqa: ANN001
    """:func:`calibrate_stack` then :func:`stacked_forecasts` (the two assets' work, in one call)."""
    calibration = calibrate_stack(matrix, spend, members, params, metric=metric, map_rows=map_rows)
    return LevelResult(calibration, stacked_forecasts(matrix, spend, calibration.weights, calibration.interval, members,
                                                      params, metric=metric, map_rows=map_rows))
