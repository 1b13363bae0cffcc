"""Ensemble validation and forecasts at scale: one pass over a level's entity × day matrix (what the
assets run) beside the per-entity path they ran before, on the same data, equal results asserted.

- **before**: per entity, :func:`validation_forecasts` (weights) and :func:`forecast_task`
  (forecasts), each entity one payload fanned out over the cores (joblib processes, chunks);
- **now**: :func:`level_validation` + :func:`calibrate` and :func:`level_forecasts` over the level's
  matrix: EMA, linear trend, seasonal window average and seasonal naive vectorised over all rows,
  Prophet / ETS / Theta row by row in few large tasks (same fan-out).

Per level its default method set (``settings.FORECAST_METHODS_BY_LEVEL``: ads without Prophet,
adsets with it), spend and CPL, on generated accounts of 500 … 5,000 ads × 90 days.

    .venv/bin/python -m benchmarks.bench_forecasts [--ads 500 1000 2000] [--before-up-to 2000] [--n-jobs 2]
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.demo import generate_account
from ads_ml.ml import forecasting as F
from ads_ml.ml.fanout import fan_out

END = pd.Timestamp("2026-06-30")
METRICS = ("spend", "cpl")


def _mapper(n_jobs: int):  # noqa: ANN202
    def run(fn, items):  # noqa: ANN001, ANN202
        return fan_out(fn, items, n_jobs=n_jobs, label="rows").results
    return run


def validate_one(payload: tuple) -> tuple | None:
    series, methods = payload
    return F.validation_forecasts(series, methods=methods)


def forecast_one(payload: tuple) -> dict:
    series, metric, weights, methods = payload
    return F.forecast_task({metric: (series, None, weights)}, methods=methods)


def now(daily: pd.DataFrame, metric: str, methods: tuple, n_jobs: int) -> tuple[F.Calibration, dict, float, float]:
    started = time.perf_counter()
    matrix = F.series_matrix(daily, metric, END)
    actual, predicted = F.level_validation(matrix, methods=methods, map_rows=_mapper(n_jobs))
    calibration = F.calibrate(actual, predicted, int(F.history_days(matrix).max()), methods)
    validated = time.perf_counter()
    forecasts = F.level_forecasts(matrix, calibration.weights, methods=methods, map_rows=_mapper(n_jobs))
    return calibration, forecasts, validated - started, time.perf_counter() - validated


def before(daily: pd.DataFrame, metric: str, methods: tuple, weights: dict, n_jobs: int) -> tuple[dict, dict, float, float]:
    started = time.perf_counter()
    series = {str(e): F.metric_series(rows, metric, END) for e, rows in daily.groupby("entity_id")}
    validations = fan_out(validate_one, [(e, (s, methods)) for e, s in series.items()], n_jobs=n_jobs, label="validations")
    validated = time.perf_counter()
    forecasts = fan_out(forecast_one, [(e, (s, metric, weights, methods)) for e, s in series.items()],
                        n_jobs=n_jobs, label="forecasts")
    return ({e: v for e, v in validations.results.items() if v is not None}, forecasts.results,
            validated - started, time.perf_counter() - validated)


def assert_equal(calibration: F.Calibration, level: dict, validations: dict, forecasts: dict, metric: str) -> None:
    checks = calibration.per_entity.set_index("entity_id")
    assert set(checks.index) == set(validations), "validated entities differ"
    for entity, (actual, predicted) in validations.items():
        expected = F.forecast_error(actual, F.ensemble_prediction(predicted, calibration.weights), F.error_metric_for(actual))
        assert np.isclose(checks.loc[entity, "ensemble_error"], expected, rtol=1e-6), entity
    one_by_one = {e: out[metric] for e, out in forecasts.items() if metric in out}
    assert list(level["ensemble"].entities) == sorted(one_by_one), "forecast entities differ"
    for i, entity in enumerate(level["ensemble"].entities):
        for method in ("ensemble", F.BASELINE):
            np.testing.assert_allclose(level[method].row(i).value, one_by_one[entity][method].value, rtol=1e-6)
            np.testing.assert_allclose(level[method].row(i).upper, one_by_one[entity][method].upper, rtol=1e-6)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ads", type=int, nargs="+", default=[500, 1000, 2000])
    parser.add_argument("--before-up-to", type=int, default=2000, help="time the per-entity path up to this many ads")
    parser.add_argument("--n-jobs", type=int, default=os.cpu_count() or 2)
    args = parser.parse_args()
    print(f"# ensemble validation + forecasts, spend and CPL, 90 days, {args.n_jobs} cores; seconds")
    print(f"{'ads':>6} {'level':>7} {'entities':>9} {'methods':>26} {'before':>9} {'now':>8} {'×':>6} {'now ms/entity':>14}")
    for n_ads in args.ads:
        insights = generate_account(max(1, n_ads // 100), 10, 10, days=90, end_date=END.date(), seed=21, churn=True).insights
        insights["date"] = pd.to_datetime(insights["date"])
        for level, key in (("adset", "adset_id"), ("ad", "ad_id")):
            columns = ["spend", "impressions", "clicks", "leads"]
            daily = insights.groupby([key, "date"], as_index=False)[columns].sum().rename(columns={key: "entity_id"})
            methods = settings.FORECAST_METHODS_BY_LEVEL[level]
            took_now = took_before = 0.0
            for metric in METRICS:
                calibration, level_out, v_now, f_now = now(daily, metric, methods, args.n_jobs)
                took_now += v_now + f_now
                if n_ads <= args.before_up_to:
                    validations, forecasts, v_before, f_before = before(daily, metric, methods, calibration.weights, args.n_jobs)
                    took_before += v_before + f_before
                    assert_equal(calibration, level_out, validations, forecasts, metric)
            entities = daily["entity_id"].nunique()
            ratio = took_before / took_now if took_before else float("nan")
            print(f"{n_ads:6d} {level:>7} {entities:9d} {','.join(methods):>26} {took_before or float('nan'):9.1f} "
                  f"{took_now:8.2f} {ratio:6.1f} {1000 * took_now / entities:14.2f}"
                  + ("  (equal results asserted)" if took_before else ""), flush=True)


if __name__ == "__main__":
    main()
