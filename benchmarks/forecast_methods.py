"""Which forecasting methods earn their place in each level's ensemble, and what each costs.

On the ground-truth accounts (:mod:`benchmarks.truth_accounts`: small and large volumes, several
seeds; the last 90 imported days as the pipeline loads them, the held-out week as truth), per
volume, level (adset, ad) and metric (spend, leads):

- each method alone and the ensembles of several method sets — the default of the level
  (``settings.FORECAST_METHODS_BY_LEVEL``), all six methods, and the SPEC's three — weighted as the
  pipeline weights them (validation on the last 14 days, ``w ∝ 1 / (error + 1)``), as MAE over the
  held-out week ÷ the seasonal-naive MAE (lower is better), and the ensembles' 95 % interval
  coverage;
- the peers: statsforecast's AutoETS and AutoTheta (and AutoARIMA with ``--arima``, slow) fitted
  on the same series by statsforecast itself;
- each method's milliseconds per series fit (one thread), the vectorised ones as their one pass over
  the whole matrix divided by its rows.

Uses the pipeline's own one-pass functions (:func:`ads_ml.ml.forecasting.level_validation`,
:func:`~ads_ml.ml.forecasting.level_method_forecasts`), so the figures are the assets' figures.

    .venv/bin/python -m benchmarks.forecast_methods [--seeds 1 2 3 4] [--volume small large] [--arima]
"""

from __future__ import annotations

import argparse
import time
import warnings
from collections import defaultdict

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from ads_ml import settings
from ads_ml.ml import forecasting as F
from benchmarks.ground_truth import level_daily
from benchmarks.truth_accounts import HOLDOUT_DAYS, generate

ALL = ("ema", "linear", "prophet", "ets", "theta", "swa")
VARIANTS = {
    "six methods": ALL,
    "SPEC (ema, linear, prophet)": ("ema", "linear", "prophet"),
    "ema, linear, swa": ("ema", "linear", "swa"),
    "ema, linear, prophet, swa": ("ema", "linear", "prophet", "swa"),
}


def _peers(matrix: pd.DataFrame, rows: pd.Index, arima: bool) -> dict[str, np.ndarray]:
    from statsforecast import StatsForecast
    from statsforecast.models import AutoARIMA, AutoETS, AutoTheta

    long = matrix.loc[rows].stack().rename("y").reset_index()
    long.columns = ["unique_id", "ds", "y"]
    models = [AutoETS(season_length=7), AutoTheta(season_length=7)] + ([AutoARIMA(season_length=7)] if arima else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = StatsForecast(models=models, freq="D", n_jobs=1).forecast(df=long, h=HOLDOUT_DAYS)
    out = out.reset_index() if "unique_id" not in out.columns else out
    return {str(m): out.pivot(index="unique_id", columns="ds", values=str(m)).reindex(rows).to_numpy() for m in models}


def _ensemble(forecasts: dict, weights: dict, short: np.ndarray, methods: tuple, part: str = "value") -> np.ndarray:
    subset = {m: f for m, f in forecasts.items() if m in methods}
    return np.where(short[:, None], F.level_ensemble(subset, F.equal_weights(methods), part),
                    F.level_ensemble(subset, weights, part))


def evaluate(volume: str, seed: int, arima: bool, seconds: dict) -> list[dict]:
    truth = generate(seed, volume)
    end = truth.last_day
    out = []
    for level in ("adset", "ad"):
        daily = level_daily(truth.insights, level)
        daily = daily.loc[daily["date"] > end - pd.Timedelta(days=settings.INSIGHTS_LOOKBACK_DAYS)]
        active = set(daily.loc[(daily["date"] > end - pd.Timedelta(days=7)) & (daily["spend"] > 0), "entity_id"])
        holdout = level_daily(truth.holdout, level)
        for metric in ("spend", "leads"):
            matrix = F.series_matrix(daily, metric, end)
            actual, predicted = F.level_validation(matrix.loc[matrix.index.isin(active)])
            # the entities the pipeline forecasts, with three weeks of history (the peers' season needs it)
            values = matrix.to_numpy()
            rows = matrix.index[((~np.isnan(values)).sum(axis=1) >= 21) & ~np.isnan(values[:, -1])]
            started = time.perf_counter()
            forecasts = F.level_method_forecasts(matrix.loc[rows], HOLDOUT_DAYS)
            seconds["all methods, one pass"] += time.perf_counter() - started
            future = forecasts[F.BASELINE].dates
            truth_matrix = (holdout.pivot_table(index="entity_id", columns="date", values=metric, aggfunc="sum")
                            .reindex(index=rows, columns=future).fillna(0.0).to_numpy())
            base = np.abs(forecasts[F.BASELINE].value - truth_matrix).sum()
            row = {"volume": volume, "seed": seed, "level": level, "metric": metric, "series": len(rows)}
            for method in ALL:
                predicted_values = forecasts[method].value
                fallback = np.isnan(predicted_values).any(axis=1)  # too short for the method: its level's SWA
                predicted_values = np.where(fallback[:, None], forecasts["swa"].value, predicted_values)
                row[method] = np.abs(predicted_values - truth_matrix).sum() / base
            for name, peer in _peers(matrix, rows, arima).items():
                row[name] = np.abs(np.clip(peer, 0, None) - truth_matrix).sum() / base
            short = F.history_days(matrix.loc[rows]) <= settings.ENSEMBLE_VALIDATION_DAYS + 7
            longest = int(F.history_days(matrix.loc[matrix.index.isin(active)]).max())
            variants = {**VARIANTS, "default of the level": settings.FORECAST_METHODS_BY_LEVEL[level]}
            for name, methods in variants.items():
                weights = F.calibrate(actual, {m: p for m, p in predicted.items() if m in (*methods, F.BASELINE)},
                                      longest, methods).weights
                value = _ensemble(forecasts, weights, short, methods)
                lower, upper = (_ensemble(forecasts, weights, short, methods, p) for p in ("lower", "upper"))
                row[f"E {name}"] = np.abs(value - truth_matrix).sum() / base
                row[f"C {name}"] = float(((truth_matrix >= lower) & (truth_matrix <= upper)).mean())
            out.append(row)
    return out


def method_costs(seeds: int = 1) -> dict[str, float]:
    """Milliseconds per series fit of each method on the ad-level spend series of one account."""
    truth = generate(seeds, "small")
    daily = level_daily(truth.insights, "ad")
    matrix = F.series_matrix(daily, "spend", truth.last_day)
    matrix = matrix.loc[matrix.notna().sum(axis=1) >= 21]
    clean = F.clean_outliers_matrix(matrix)
    costs = {}
    with threadpool_limits(limits=1):
        for name, fn in (("ema", F.ema_matrix), ("linear", F.linear_matrix), ("swa", F.seasonal_window_average_matrix)):
            started = time.perf_counter()
            fn(clean, 7)
            costs[name] = 1000 * (time.perf_counter() - started) / len(matrix)
        sample = [F.row_series(clean, e) for e in clean.index[:40]]
        for name, fn in (("prophet", lambda s: F.forecast_prophet(s, 7)), ("ets", lambda s: F.forecast_ets(s, 7)),
                         ("theta", lambda s: F.forecast_theta(s, 7))):
            fn(sample[0])  # compile / warm
            started = time.perf_counter()
            for series in sample:
                fn(series)
            costs[name] = 1000 * (time.perf_counter() - started) / len(sample)
    return costs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--volume", nargs="+", default=["small", "large"], choices=["small", "large"])
    parser.add_argument("--arima", action="store_true", help="also statsforecast's AutoARIMA (slow)")
    args = parser.parse_args()
    seconds: dict[str, float] = defaultdict(float)
    rows = []
    with threadpool_limits(limits=1):
        for volume in args.volume:
            for seed in args.seeds:
                rows += evaluate(volume, seed, args.arima, seconds)
                print(f"{volume} seed {seed} done", flush=True)
    frame = pd.DataFrame(rows)
    pd.set_option("display.width", 200)
    pd.set_option("display.max_columns", 30)
    keys = ["volume", "level", "metric"]
    singles = [c for c in frame.columns if c in ALL or c.startswith("Auto")]
    ratio = lambda prefix: [c for c in frame.columns if c.startswith(prefix)]  # noqa: E731
    print("\n# each method alone: MAE ÷ seasonal-naive MAE over the held-out week (mean over seeds; lower is better)")
    print(frame.groupby(keys)[["series", *singles]].mean().round(3).to_string())
    print("\n# ensembles, weighted as the pipeline weights them")
    table = frame.groupby(keys)[ratio("E ")].mean().round(3)
    table.columns = [c[2:] for c in table.columns]
    print(table.to_string())
    print("\n# 95 % interval coverage of the held-out days")
    table = frame.groupby(keys)[ratio("C ")].mean().round(3)
    table.columns = [c[2:] for c in table.columns]
    print(table.to_string())
    print("\n# milliseconds per series fit (one thread)")
    for name, ms in method_costs().items():
        print(f"{name:10} {ms:8.2f}")


if __name__ == "__main__":
    main()
