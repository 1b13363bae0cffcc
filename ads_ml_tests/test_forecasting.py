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
    assert cpl.index[0] == pd.Timestamp("2026-03-03")  # a CPL's history begins with its first lead
    assert cpl.iloc[0] == pytest.approx(15.0)  # 30 spent over the 3 days, 2 leads
    assert cpl.iloc[6] == pytest.approx(35.0)  # 70 over the last 7 days, still the 2 leads
    assert np.isnan(cpl.iloc[7])  # the lead has left the 7-day window
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


# --- one pass over a level equals the per-entity reading ----------------------------------------


def _level_daily(entities: int = 24, seed: int = 1) -> tuple[pd.DataFrame, pd.Timestamp]:
    """Entities with late starts, stops, paused days, quiet and busy volumes and one-off spikes."""
    rng = np.random.default_rng(seed)
    end = pd.Timestamp("2026-06-30")
    rows = []
    for e in range(entities):
        start = int(rng.integers(0, 80)) if e % 3 else 0
        stop = 90 if e % 5 else int(rng.integers(start + 1, 90))
        rate = [0.3, 2.0, 8.0, 40.0][e % 4]
        for d in range(start, 90):
            spend = float(rng.gamma(3, 10)) if d < stop and rng.random() > 0.05 else 0.0
            if e % 7 == 0 and d == 60:
                spend *= 8
            rows.append({"entity_id": f"e{e}", "date": end - pd.Timedelta(days=89 - d), "spend": spend,
                         "leads": float(rng.poisson(rate)) if spend > 0 else 0.0})
    return pd.DataFrame(rows), end


@pytest.mark.parametrize("metric", ["spend", "leads", "cpl"])
def test_the_level_matrix_and_its_vectorised_methods_equal_the_per_entity_ones(metric):
    from ads_ml.ml import forecasting as F

    daily, end = _level_daily(60)
    matrix = F.series_matrix(daily, metric, end)
    series = {e: metric_series(rows, metric, end) for e, rows in daily.groupby("entity_id")}
    assert set(matrix.index) == {e for e, s in series.items() if len(s)}
    for entity in matrix.index:
        np.testing.assert_allclose(F.row_series(matrix, entity).to_numpy(), series[entity].to_numpy(), rtol=1e-9)
    enough = [e for e in matrix.index if series[e].notna().sum() >= 7]
    clean = F.clean_outliers_matrix(matrix.loc[enough])
    pairs = [(F.ema_matrix, F.forecast_ema), (F.linear_matrix, F.forecast_linear),
             (F.seasonal_window_average_matrix, forecast_seasonal_window_average)]
    for vectorised, per_entity in pairs:
        level = vectorised(clean, 7)
        for i, entity in enumerate(enough):
            cleaned = clean_outliers(series[entity])
            np.testing.assert_allclose(F.row_series(clean, entity).to_numpy(), cleaned.to_numpy(), rtol=1e-9)
            one = per_entity(cleaned, 7)
            for part in ("value", "lower", "upper"):
                np.testing.assert_allclose(getattr(level.row(i), part), getattr(one, part), rtol=1e-7, atol=1e-9,
                                           err_msg=f"{per_entity.__name__} {entity} {part}")
    naive = F.seasonal_naive_matrix(matrix.loc[enough], 7)
    for i, entity in enumerate(enough):
        one = F.forecast_seasonal_naive(series[entity], 7)
        np.testing.assert_allclose(naive.row(i).value, one.value, rtol=1e-9)
        np.testing.assert_allclose(naive.row(i).upper, one.upper, rtol=1e-7)


@pytest.mark.parametrize("metric", ["spend", "cpl"])
def test_level_validation_weights_and_forecasts_equal_the_per_entity_path(metric):
    """Every method (Prophet, ETS and Theta row by row included), the pooled weights, each entity's
    validation and its ensemble forecast: as the per-entity functions compute them."""
    from ads_ml.ml import forecasting as F

    daily, end = _level_daily(16, seed=2)
    matrix = F.series_matrix(daily, metric, end)
    series = {e: metric_series(rows, metric, end) for e, rows in daily.groupby("entity_id")}
    actual, predicted = F.level_validation(matrix)
    calibration = F.calibrate(actual, predicted, int(F.history_days(matrix).max()))
    validated = {e: v for e in matrix.index if (v := validation_forecasts(series[e])) is not None}
    assert set(validated) == set(actual.index) and len(validated) >= 8
    name = "mape" if all(error_metric_for(a) == "mape" for a, _p in validated.values()) else "mae"
    assert calibration.error_metric == name
    methods = ["ema", "linear", "prophet", "ets", "theta", "swa"]
    mean_errors = {m: np.mean([forecast_error(a, p[m], name) for a, p in validated.values() if m in p]) for m in methods}
    expected = inverse_error_weights(mean_errors)
    assert calibration.weights == pytest.approx(expected, rel=1e-6)  # ETS / Prophet optimiser noise
    checks = calibration.per_entity.set_index("entity_id")
    for entity, (a, p) in validated.items():
        assert checks.loc[entity, "ensemble_error"] == pytest.approx(
            forecast_error(a, ensemble_prediction(p, expected), error_metric_for(a)), rel=1e-6)
        assert checks.loc[entity, "baseline_error"] == pytest.approx(forecast_error(a, p[BASELINE], error_metric_for(a)), rel=1e-6)

    level = F.level_forecasts(matrix, calibration.weights)
    one_by_one = {e: out[metric] for e in matrix.index
                  if metric in (out := forecast_task({metric: (series[e], None, calibration.weights)}))}
    assert list(level["ensemble"].entities) == sorted(one_by_one) and len(one_by_one) >= 8
    for i, entity in enumerate(level["ensemble"].entities):
        for method in ("ensemble", BASELINE):
            np.testing.assert_allclose(level[method].row(i).value, one_by_one[entity][method].value, rtol=1e-6)
            # Prophet's interval is a simulation (same seed): equal up to its float noise
            np.testing.assert_allclose(level[method].row(i).upper, one_by_one[entity][method].upper, rtol=1e-6)


def test_a_level_forecast_runs_only_the_methods_asked_for(monkeypatch):
    from ads_ml import settings
    from ads_ml.ml import forecasting as F

    daily, end = _level_daily(8, seed=3)
    matrix = F.series_matrix(daily, "spend", end)
    calls = []
    level = F.level_method_forecasts(matrix, 7, methods=("ema", "prophet"),
                                     map_rows=lambda fn, items: calls.append(len(items)) or {k: fn(p) for k, p in items})
    assert set(level) == {"ema", "prophet", BASELINE} and calls == [int((matrix.notna().sum(axis=1) >= 14).sum())]
    assert F.level_method_forecasts(matrix, 7, methods=("ema", "swa"), map_rows=lambda fn, items: pytest.fail("no row method"))
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_AD", "ema, Prophet,ema")
    assert settings.forecast_methods("ad") == ("ema", "prophet")
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_AD", "ema,arima")
    with pytest.raises(ValueError, match="ADS_ML_FORECAST_METHODS_AD.*arima"):
        settings.forecast_methods("ad")
