"""Forecasting methods, the ensemble, and the edge cases (pure ML)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ads_ml.ml import forecasting as F
from ads_ml.ml.forecasting import (
    BASELINE,
    STOPPED,
    clean_outliers,
    error_metric_for,
    forecast_error,
    forecast_prophet,
    forecast_seasonal_window_average,
    method_forecasts,
    metric_series,
    stacked_prediction,
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
    ensemble = stacked_prediction({m: forecasts[m].value[None, :] for m in ("ema", "linear", "prophet")}, {})[0]
    prophet_error = forecast_error(actual, forecasts["prophet"].value, "mape")
    naive_error = forecast_error(actual, forecasts[BASELINE].value, "mape")
    # stated bounds: Prophet within 5 % MAPE on these series, and better than seasonal naive
    assert prophet_error < 5.0
    assert prophet_error < naive_error
    assert ((forecasts["prophet"].lower <= actual) & (actual <= forecasts["prophet"].upper)).mean() >= 5 / 7
    if kind == "trend":  # the linear trend follows a trend, the naive lags it by a week
        assert forecast_error(actual, forecasts["linear"].value, "mape") < naive_error
    assert (ensemble >= 0).all()
    np.testing.assert_allclose(ensemble, np.mean([forecasts[m].value for m in ("ema", "linear", "prophet")], axis=0))


def test_in_process_prophet_gives_prophets_forecast():
    series = _known("weekly", seed=3).iloc[:50]
    params = {"changepoint_prior_scale": 0.1, "seasonality_prior_scale": 1.0}
    ours = forecast_prophet(series, 7, params)
    theirs = forecast_prophet(series, 7, params, engine="prophet")
    np.testing.assert_allclose(ours.value, theirs.value, rtol=1e-6)
    # intervals are Monte-Carlo on both sides: close, not equal
    np.testing.assert_allclose(ours.upper - ours.lower, theirs.upper - theirs.lower, rtol=0.25)


def _validation(actual: np.ndarray, **members: np.ndarray) -> F.Validation:
    return F.Validation(np.array([f"e{i}" for i in range(len(actual))], dtype=object), np.zeros(len(actual), dtype=int), actual,
                        np.ones(len(actual)), members)


def test_stacked_weights_drop_a_member_that_loses_to_naive_and_sum_to_one():
    rng = np.random.default_rng(0)
    actual = rng.gamma(4, 10, (40, 7))
    good = actual + rng.normal(0, 2, actual.shape)  # close to what happened
    naive = actual + rng.normal(0, 8, actual.shape)  # the baseline, worse
    bad = actual * 2.5 + 30  # loses to naive on every day
    validation = _validation(actual, good=good, bad=bad, snaive=naive, seasonal_naive=naive)
    members = ("good", "bad", "snaive")
    stacked = F.stack_weights(validation, members, shrink=0.0)
    assert stacked["bad"] == 0.0 and stacked["good"] > 0.8
    assert sum(stacked.values()) == pytest.approx(1.0)
    # the default, half-way to equal weights over the members that did not lose badly to the baseline:
    # "bad" (over twice seasonal naive's error) stays out
    shrunk = F.stack_weights(validation, members)
    assert shrunk["bad"] == 0.0 and shrunk["good"] > shrunk["snaive"] >= 0.25
    assert sum(shrunk.values()) == pytest.approx(1.0)
    # a member that loses, but not badly, keeps a share: on unseen data the mix did better with it
    meh = actual + rng.normal(0, 12, actual.shape)
    mixed = F.stack_weights(_validation(actual, good=good, meh=meh, seasonal_naive=naive), ("good", "meh"))
    assert 0.25 <= mixed["meh"] < 0.3 and mixed["good"] == pytest.approx(1 - mixed["meh"])
    # a member that ran for under half the rows takes no part; too little to learn from: equal weights
    sparse = np.where(np.arange(40)[:, None] < 10, good, np.nan)
    assert F.stack_weights(_validation(actual, sparse=sparse, bad=bad, snaive=naive),
                           ("sparse", "bad", "snaive"), shrink=0.0)["sparse"] == 0.0
    assert F.stack_weights(_validation(actual[:1], good=good[:1], snaive=naive[:1]), ("good", "snaive")) == {
        "good": 0.5, "snaive": 0.5}


def test_conformal_interval_is_the_quantiles_of_the_validation_errors():
    rng = np.random.default_rng(1)
    actual = rng.normal(100, 10, (300, 7))
    validation = _validation(actual, flat=np.full(actual.shape, 100.0))
    low, high = F.conformal_bounds(validation, {"flat": 1.0})
    assert low == pytest.approx(-19.6, abs=1.5) and high == pytest.approx(19.6, abs=1.5)  # N(0, 10): ± 1.96 σ
    fresh = rng.normal(100, 10, 20000)
    assert 0.94 <= ((fresh >= 100 + low) & (fresh <= 100 + high)).mean() <= 0.96


def test_error_metric_is_mae_where_actuals_have_zeros():
    assert error_metric_for(np.array([1.0, 2.0])) == "mape"
    assert error_metric_for(np.array([1.0, 0.0])) == "mae"
    assert forecast_error(np.array([2.0, 4.0]), np.array([1.0, 5.0]), "mape") == pytest.approx(37.5)
    assert forecast_error(np.array([0.0, 4.0]), np.array([1.0, 5.0]), "mae") == pytest.approx(1.0)


def _one(values, spend=None, metric: str = "leads"):  # noqa: ANN001, ANN202
    """A one-entity level through the ensemble as the assets run it."""
    matrix = pd.DataFrame([np.asarray(values, dtype=float)], index=pd.Index(["e"], name="entity_id"), columns=DAYS[: len(values)])
    spend = matrix if spend is None else pd.DataFrame([np.asarray(spend, dtype=float)], index=matrix.index, columns=matrix.columns)
    return F.forecast_level(matrix, spend, ("ema", "linear", "swa", "ets", "theta", "snaive"), metric=metric)


def test_ten_points():
    series = _series([5, 6, 5, 7, 6, 8, 7, 6, 7, 8])
    forecasts = method_forecasts(series, 7)
    assert "prophet" not in forecasts and "ets" not in forecasts  # the model fits need 14 points
    result = _one(series.to_numpy())
    assert result.calibration.rows == 0  # nothing to validate on: equal weights over what ran
    ensemble = result.forecasts["ensemble"]
    assert ensemble.value.shape == (1, 7) and (ensemble.value > 3).all() and (ensemble.value < 12).all()
    assert (ensemble.lower <= ensemble.value).all() and (ensemble.value <= ensemble.upper).all()


def test_all_zeros():
    leads = _one(np.zeros(40), spend=np.full(40, 10.0))  # spent, never a lead
    ensemble = leads.forecasts["ensemble"]
    assert (ensemble.value == 0).all() and (ensemble.lower == 0).all() and (ensemble.upper >= 0).all()
    assert leads.calibration.member_errors["ema"] == 0 and leads.calibration.member_errors[BASELINE] == 0
    assert set(leads.calibration.member_errors) == {"ema", "linear", "swa", "ets", "theta", "snaive", BASELINE}


def test_forecasts_are_never_negative():
    falling = _series(np.linspace(20, 1, 40))
    for forecast in method_forecasts(falling, 7).values():
        assert (forecast.value >= 0).all() and (forecast.lower >= 0).all()
    assert (stacked_prediction({"ema": np.array([[-1.0]]), "linear": np.array([[-3.0]])}, {"ema": 0.5, "linear": 0.5}) >= 0).all()
    result = _one(falling.to_numpy())
    assert (result.ensemble.value >= 0).all() and (result.ensemble.lower >= 0).all()


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
    matrix = F.series_matrix(daily.assign(entity_id="e"), "cpl")
    spend = F.series_matrix(daily.assign(entity_id="e"), "spend")
    assert F.forecast_level(matrix, spend, ("ema", "linear"), metric="cpl").forecasts == {}  # no lead in the last week


def test_a_stopped_entity_is_forecast_as_stopped_and_a_restarted_one_resumes():
    rng = np.random.default_rng(5)
    spend = rng.gamma(5, 20, 60)
    leads = rng.poisson(4, 60).astype(float)
    paused = spend.copy()
    paused[-1] = 0.0  # no delivery on the last day
    paused_leads = np.where(paused > 0, leads, 0.0)
    for metric, values in (("spend", paused), ("leads", paused_leads)):
        result = _one(values, spend=paused, metric=metric)
        assert "ensemble" not in result.forecasts
        stopped = result.forecasts[STOPPED]
        assert list(stopped.entities) == ["e"] and (stopped.value == 0).all() and (stopped.upper == 0).all()
        assert BASELINE in result.forecasts  # the baseline is still recorded beside it
    assert _one(np.full(60, 30.0), spend=paused, metric="cpl").forecasts == {}  # a stopped entity's CPL: none
    restarted = paused.copy()
    restarted[-8:-1] = 0.0  # a week off
    restarted[-1] = spend[-1]  # and back on the last day
    result = _one(restarted, metric="spend")
    assert STOPPED not in result.forecasts and (result.forecasts["ensemble"].value > 0).all()


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


def test_counts_are_fitted_as_they_are_spend_without_its_outliers():
    series = _known("weekly", seed=3).to_numpy()
    spiked = series.copy()
    spiked[-1] *= 3.0
    plain = _one(series, spend=series, metric="spend").forecasts["ensemble"].value[0]
    spend_spiked = _one(spiked, spend=series, metric="spend").forecasts["ensemble"].value[0]
    leads_spiked = _one(spiked, spend=series, metric="leads").forecasts["ensemble"].value[0]
    assert np.abs(spend_spiked - plain).max() < 0.05 * series.mean()  # the spike is cleaned away
    assert leads_spiked.mean() > spend_spiked.mean() + 1.0  # a day of many leads is what happened


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
def test_rolling_validation_and_forecasts_equal_the_per_entity_path(metric):
    """Every member at every origin of the rolling validation (ETS and Theta in statsforecast's long
    frame, Prophet row by row), and the ensemble forecast: as the per-entity functions compute them."""
    daily, end = _level_daily(16, seed=2)
    matrix = F.series_matrix(daily, metric, end)
    spend = F.series_matrix(daily, "spend", end).reindex(index=matrix.index, columns=matrix.columns)
    series = {e: metric_series(rows, metric, end) for e, rows in daily.groupby("entity_id")}
    members = ("ema", "linear", "prophet", "ets", "theta", "swa", "snaive")
    validation = F.rolling_validation(matrix, spend, (*members, BASELINE), windows=2, metric=metric)
    assert len(validation.entities) >= 12
    assert set(validation.origins) == {matrix.shape[1] - 14, matrix.shape[1] - 7}
    for i, (entity, origin) in enumerate(zip(validation.entities, validation.origins)):
        one = method_forecasts(series[entity].loc[: matrix.columns[origin - 1]], 7, methods=members)
        for member in (*members, BASELINE):
            expected = one[member].value if member in one else np.full(7, np.nan)
            np.testing.assert_allclose(validation.members[member][i], expected, rtol=1e-6, err_msg=f"{entity} {member}")
    weights = F.stack_weights(validation, members)
    result = F.stacked_forecasts(matrix, spend, weights, (-2.0, 3.0), members, metric=metric)
    for i, entity in enumerate(result["ensemble"].entities):
        one = method_forecasts(series[entity], 7, methods=members)
        expected = stacked_prediction({m: one[m].value[None, :] for m in members if m in one}, weights)[0]
        np.testing.assert_allclose(result["ensemble"].value[i], expected, rtol=1e-6)
        np.testing.assert_allclose(result[BASELINE].row(i).value, one[BASELINE].value, rtol=1e-9)
        scale = F.series_scale(series[entity].to_numpy()[None, :])[0]
        np.testing.assert_allclose(result["ensemble"].upper[i], expected + 3.0 * scale, rtol=1e-6)
    assert len(result["ensemble"].entities) >= 8


def test_the_ensemble_interval_covers_95_percent_of_unseen_days():
    """Conformal on validation: on series it never saw, about 95 % of the held-out days fall inside."""
    daily, end = _level_daily(120, seed=7)
    holdout_end = end - pd.Timedelta(days=7)
    inside = []
    for metric in ("spend", "leads"):
        history = daily.loc[daily["date"] <= holdout_end]
        matrix = F.series_matrix(history, metric, holdout_end)
        result = F.forecast_level(matrix, F.series_matrix(history, "spend", holdout_end), ("ema", "linear", "swa"), metric=metric)
        ensemble = result.forecasts["ensemble"]
        truth = (daily.loc[daily["date"] > holdout_end].pivot_table(index="entity_id", columns="date", values=metric)
                 .reindex(index=ensemble.entities, columns=ensemble.dates).fillna(0.0).to_numpy())
        inside.append(((truth >= ensemble.lower - 1e-9) & (truth <= ensemble.upper + 1e-9)).ravel())
    assert 0.9 <= np.concatenate(inside).mean() <= 0.99


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
    # ETS and Theta: statsforecast's long-frame call over blocks of rows, through the same fan-out
    tasks = []
    fitted = F.level_method_forecasts(matrix, 7, methods=("ets", "theta"), map_rows=lambda fn, items: tasks.append(
        (fn, len(items))) or {k: fn(p) for k, p in items})
    assert tasks == [(F.statsforecast_task, 1)] and set(fitted) == {"ets", "theta", BASELINE}
    assert np.isfinite(fitted["ets"].value).all(axis=1).sum() == (matrix.notna().sum(axis=1) >= 14).sum()
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_AD", "ema, Prophet,ema")
    assert settings.forecast_methods("ad") == ("ema", "prophet")
    monkeypatch.setenv("ADS_ML_FORECAST_METHODS_AD", "ema,arima")
    with pytest.raises(ValueError, match="ADS_ML_FORECAST_METHODS_AD.*arima"):
        settings.forecast_methods("ad")
