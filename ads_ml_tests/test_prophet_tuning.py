"""The Prophet tuner: Prophet's own answer, faster; edge cases; the fan-out on processes and Dask."""

from __future__ import annotations


import numpy as np
import pandas as pd
import pytest

from ads_ml.ml.fanout import fan_out
from ads_ml.ml.prophet_fast import FastProphet, _neg_log_density, _StanHessian, _FD_COEFFICIENTS, _FD_EPSILON, _FD_PERTURBATIONS
from ads_ml.ml.prophet_tuning import InsufficientDataError, cv_cutoffs, tune_or_skip, tune_series

DAYS = pd.date_range("2026-01-01", periods=60, freq="D")


def _noisy(seed: int, zeros: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if zeros:
        return rng.poisson(1.0, len(DAYS)).astype(float)
    return 40 + 0.1 * np.arange(len(DAYS)) + 5 * np.sin(2 * np.pi * np.arange(len(DAYS)) / 7) + rng.normal(0, 3, len(DAYS))


def test_fits_follow_prophet_exactly():
    from prophet import Prophet

    y = _noisy(1)[:45]
    for cps, sps in [(0.01, 10.0), (0.1, 0.1)]:
        theirs = Prophet(changepoint_prior_scale=cps, seasonality_prior_scale=sps, uncertainty_samples=0)
        theirs.fit(pd.DataFrame({"ds": DAYS[:45], "y": y}))
        expected = theirs.predict(pd.DataFrame({"ds": DAYS[45:52]}))["yhat"].to_numpy()
        ours = FastProphet(cps, sps).fit(DAYS[:45], y).predict(DAYS[45:52])
        np.testing.assert_allclose(ours, expected, rtol=1e-6, atol=1e-8)


def test_closed_form_hessian_is_stans_finite_difference():
    model = FastProphet(0.05, 1.0).fit(DAYS[:40], _noisy(2)[:40])
    t = model._t(pd.Series(DAYS[:40]))
    X = model._seasonal(pd.Series(DAYS[:40]))
    A = (t[:, None] >= model.t_change_[None, :]).astype(float)
    D = A * t[:, None] - A * model.t_change_[None, :]
    ys = _noisy(2)[:40] / model.y_scale_
    theta = model.solution_ + 0.01  # away from the optimum and from delta = 0
    P = len(theta)
    H = np.zeros((P, P))
    for d in range(P):  # grad_hess_log_prob, literally
        for p, c in zip(_FD_PERTURBATIONS, _FD_COEFFICIENTS):
            moved = theta.copy()
            moved[d] += p
            _f, g = _neg_log_density(moved[None, :], ys, t, D, X, 0.05, 1.0)
            increment = 0.5 * _FD_EPSILON * c * (-g[0])
            H[d] += increment
            H[:, d] += increment
    np.testing.assert_allclose(_StanHessian(ys, t, D, X, 0.05, 1.0)(theta), H, rtol=1e-6, atol=1e-12)


def test_tuner_chooses_as_the_old_way():
    from benchmarks.prophet_old_way import old_way_cv_errors

    for seed, zeros in [(4, False), (5, True)]:
        y = _noisy(seed, zeros)
        old, metric = old_way_cv_errors(DAYS, y)
        ours = tune_series(DAYS, y)
        assert ours.error_metric == metric == ("mae" if zeros else "mape")
        assert ours.n_folds == 4 and ours.n_points == 60
        for key, error in old.items():
            assert ours.cv_errors[key] == pytest.approx(error, rel=1e-4)
        best = min(old, key=old.get)
        assert f"{ours.changepoint_prior_scale}|{ours.seasonality_prior_scale}" == best


def test_cutoffs_are_prophets():
    cutoffs = cv_cutoffs(pd.Series(DAYS), pd.Timedelta(days=30), pd.Timedelta(days=7), pd.Timedelta(days=7))
    assert [c.strftime("%m-%d") for c in cutoffs] == ["02-01", "02-08", "02-15", "02-22"]


def test_too_few_points_is_a_clear_insufficient_data_error():
    with pytest.raises(InsufficientDataError, match="10 points in the last 60 days, at least 30 needed"):
        tune_series(DAYS[:10], np.ones(10))
    assert tune_or_skip((DAYS[:10], np.ones(10))).startswith("insufficient data: 10 points")
    sparse = np.where(np.arange(60) % 3 == 0, 5.0, np.nan)  # 20 points with a value
    with pytest.raises(InsufficientDataError, match="20 points"):
        tune_series(DAYS, sparse)


def test_every_combination_failing_falls_back_with_a_warning():
    with pytest.warns(RuntimeWarning, match="every grid combination failed"):
        result = tune_series(DAYS, _noisy(6), changepoint_prior_scales=(-1.0,), seasonality_prior_scales=(1.0,))
    assert result.status == "fallback" and result.params() == {"changepoint_prior_scale": 0.05, "seasonality_prior_scale": 1.0}


def _maybe_fail(payload):  # noqa: ANN001, ANN202
    if payload == "bad":
        raise ValueError("this entity is broken")
    return payload * 2


def test_fan_out_keeps_failures_apart_and_reports_progress():
    lines = []
    items = [(i, i) for i in range(20)] + [("x", "bad")]
    result = fan_out(_maybe_fail, items, n_jobs=2, progress=lines.append, progress_every_seconds=0)
    assert result.results == {i: 2 * i for i in range(20)}
    assert list(result.errors) == ["x"] and "this entity is broken" in result.errors["x"]
    assert lines[-1].startswith("21/21 entities done") and "ETA" in lines[-1] and "1 failed" in lines[-1]
    assert result.backend.startswith("loky")


@pytest.mark.slow
def test_fan_out_on_a_dask_cluster():
    from dask.distributed import LocalCluster

    y = [_noisy(s) for s in range(3)]
    items = [(s, (DAYS, y[s])) for s in range(3)] + [("short", (DAYS[:5], np.ones(5)))]
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        result = fan_out(tune_or_skip, items, dask_address=cluster.scheduler_address)
    assert result.backend.startswith("dask")
    assert not result.errors
    assert result.results["short"].startswith("insufficient data")
    local = {s: tune_series(DAYS, y[s]) for s in range(3)}
    for s in range(3):
        assert result.results[s].params() == local[s].params()


def _fan_out_in_a_child() -> None:
    result = fan_out(abs, [(i, -i) for i in range(40)], n_jobs=2)
    assert result.backend.startswith("loky") and result.results[39] == 39


def test_a_child_process_that_fanned_out_exits_at_once():
    """A multiprocessing child (as Dagster's multiprocess executor runs a step) joins its children on
    exit before loky's own hook stops the idle workers: without fan_out's finalizer the finished
    child was held for loky's 300-second idle timeout (seen in about half the runs)."""
    import multiprocessing as mp

    context = mp.get_context("spawn")
    for _ in range(3):
        child = context.Process(target=_fan_out_in_a_child)
        child.start()
        child.join(timeout=120)
        alive = child.is_alive()
        child.kill()
        assert not alive, "the child was still exiting 120 s after its fan-out finished"
        assert child.exitcode == 0
