"""Forecasting methods, the ensemble, and the edge cases (pure ML)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ads_ml.ml.forecasting import (
    BASELINE,
    clean_outliers,
    combine,
    ensemble_prediction,
    equal_weights,
    error_metric_for,
    forecast_error,
    forecast_prophet,
    forecast_seasonal_window_average,
    forecast_task,
    inverse_error_weights,
    method_forecasts,
    metric_series,
    validation_forecasts,
)

DAYS = pd.date_range("2026-03-01", periods=84, freq="D")


def _series(values) -> pd.Series:  # noqa: ANN001
    return pd.Series(np.asarray(values, dtype=float), index=DAYS[: len(values)])


def _known(kind: str, seed: int = 0) -> pd.Series:
    rng = np.random.default_rng(seed)
    n = len(DAYS)
    base = 50 + 0.4 * np.arange(n) if kind == "trend" else np.full(n, 50.0)
    weekly = 12 * np.sin(2 * np.pi * DAYS.day_of_week.to_numpy() / 7) if kind == "weekly" else 0
    return _series(base + weekly + rng.normal(0, 1.5, n))


@pytest.mark.parametrize("kind", ["trend", "weekly"])
def test_known_series_are_forecast_within_bounds_and_beat_the_naive_baseline(kind):
    series = _known(kind)
    train, actual = series.iloc[:-7], series.iloc[-7:].to_numpy()
    forecasts = method_forecasts(train, 7)
    ensemble = combine(forecasts, equal_weights(["ema", "linear", "prophet"]))
    prophet_error = forecast_error(actual, forecasts["prophet"].value, "mape")
    naive_error = forecast_error(actual, forecasts[BASELINE].value, "mape")
    # stated bounds: Prophet within 5 % MAPE on these series, and better than seasonal naive
    assert prophet_error < 5.0
    assert prophet_error < naive_error
    assert ((forecasts["prophet"].lower <= actual) & (actual <= forecasts["prophet"].upper)).mean() >= 5 / 7
    if kind == "trend":  # the linear trend follows a trend, the naive lags it by a week
        assert forecast_error(actual, forecasts["linear"].value, "mape") < naive_error
    assert (ensemble.value >= 0).all() and (ensemble.lower <= ensemble.value).all() and (ensemble.value <= ensemble.upper).all()


def test_in_process_prophet_gives_prophets_forecast():
    series = _known("weekly", seed=3).iloc[:50]
    params = {"changepoint_prior_scale": 0.1, "seasonality_prior_scale": 1.0}
    ours = forecast_prophet(series, 7, params)
    theirs = forecast_prophet(series, 7, params, engine="prophet")
    np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-6)
    # intervals are Monte-Carlo on both sides: close, not equal
    np.testing.assert_allclose(ours.upper - ours.lower, theirs.upper - theirs.lower, rtol=0.25)


def test_weights_sum_to_one_and_favour_the_smaller_error():
    weights = inverse_error_weights({"ema": 10.0, "linear": 5.0, "prophet": 1.0})
    assert sum(weights.values()) == pytest.approx(1.0)
    assert weights["prophet"] > weights["linear"] > weights["ema"]
    assert weights["prophet"] / weights["ema"] == pytest.approx(11 / 2)  # (10 + 1) / (1 + 1)
    with_missing = inverse_error_weights({"ema": 2.0, "linear": None, "prophet": float("nan")})
    assert with_missing == {"ema": 1.0, "linear": 0.0, "prophet": 0.0}
    assert sum(equal_weights(["a", "b", "c"]).values()) == pytest.approx(1.0)


def test_error_metric_is_mae_where_actuals_have_zeros():
    assert error_metric_for(np.array([1.0, 2.0])) == "mape"
    assert error_metric_for(np.array([1.0, 0.0])) == "mae"
    assert forecast_error(np.array([2.0, 4.0]), np.array([1.0, 5.0]), "mape") == pytest.approx(37.5)
    assert forecast_error(np.array([0.0, 4.0]), np.array([1.0, 5.0]), "mae") == pytest.approx(1.0)


def test_ten_points():
    series = _series([5, 6, 5, 7, 6, 8, 7, 6, 7, 8])
    forecasts = method_forecasts(series, 7)
    assert "prophet" not in forecasts  # Prophet needs 14 points
    assert validation_forecasts(series) is None  # too short to hold out 14 days
    out = forecast_task({"leads": (series, None, {"ema": 0.2, "linear": 0.3, "prophet": 0.5})})
    ensemble = out["leads"]["ensemble"]
    assert len(ensemble.value) == 7 and (ensemble.value > 3).all() and (ensemble.value < 12).all()


def test_all_zeros():
    series = _series(np.zeros(40))
    out = forecast_task({"leads": (series, None, equal_weights(["ema", "linear", "prophet"]))})
    ensemble = out["leads"]["ensemble"]
    assert (ensemble.value == 0).all() and (ensemble.lower == 0).all() and (ensemble.upper >= 0).all()
    actual, predicted = validation_forecasts(series)
    assert error_metric_for(actual) == "mae"
    assert all(forecast_error(actual, p, "mae") == 0 for p in predicted.values())


def test_forecasts_are_never_negative():
    falling = _series(np.linspace(20, 1, 40))
    for forecast in method_forecasts(falling, 7).values():
        assert (forecast.value >= 0).all() and (forecast.lower >= 0).all()
    assert (ensemble_prediction({"ema": np.array([-1.0]), "linear": np.array([-3.0])}, {"ema": 0.5, "linear": 0.5}) >= 0).all()


def test_cpl_series_is_trailing_and_missing_without_leads():
    daily = pd.DataFrame({
        "date": pd.date_range("2026-03-01", periods=10, freq="D"),
        "spend": [10.0] * 10,
        "leads": [0, 0, 2, 0, 0, 0, 0, 0, 0, 0],
    })
    cpl = metric_series(daily, "cpl")
    assert np.isnan(cpl.iloc[0]) and np.isnan(cpl.iloc[1])
    assert cpl.iloc[2] == pytest.approx(15.0)  # 30 spent over the 3 days, 2 leads
    assert cpl.iloc[8] == pytest.approx(35.0)  # 70 over the last 7 days, still the 2 leads
    assert np.isnan(cpl.iloc[9])  # the lead has left the 7-day window
    assert metric_series(daily, "leads").sum() == 2
    out = forecast_task({"cpl": (cpl, None, equal_weights(["ema", "linear", "prophet"]))})
    assert out == {}  # no lead in the last week: no CPL to extend


def test_a_spike_on_the_last_day_is_not_extended_as_a_new_level():
    series = _known("weekly", seed=3)
    spiked = series.copy()
    spiked.iloc[-1] *= 3.0  # a day of overspend
    cleaned = clean_outliers(spiked)
    assert (cleaned != spiked).sum() == 1 and cleaned.iloc[-1] < 1.5 * series.iloc[-8:-1].max()
    assert (clean_outliers(series) == series).all()  # ordinary weekly wobble is kept
    with_spike = method_forecasts(spiked, 7)
    without = method_forecasts(series, 7)
    for method in ("ema", "ets", "linear", "swa"):  # methods that extend the last level
        assert np.abs(with_spike[method].value - without[method].value).max() < 0.1 * series.mean(), method
    # the baseline sees the data as it is: seasonal naive repeats the spike a week later
    assert with_spike[BASELINE].value[6] == pytest.approx(spiked.iloc[-1])


def test_zeros_are_kept_an_entity_that_stopped_has_stopped():
    series = _known("flat", seed=4)
    stopped = series.copy()
    stopped.iloc[-3:] = 0.0
    assert (clean_outliers(stopped).iloc[-3:] == 0).all()


def test_seasonal_window_average_averages_each_weekday_over_four_weeks():
    weekly = np.tile([10.0, 20, 30, 40, 50, 60, 70], 6)
    noise = np.tile([1.0, -1.0], 21)
    forecast = forecast_seasonal_window_average(_series(weekly + noise), 7)
    expected = [np.mean((weekly + noise)[len(weekly) - 28 + d::7]) for d in range(7)]
    np.testing.assert_allclose(forecast.value, expected)
    # its interval comes from the same average's one-day errors: ±1 noise, a narrow band
    assert ((forecast.upper - forecast.value) < 5).all() and ((forecast.value - forecast.lower) > 0).all()
