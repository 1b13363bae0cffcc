"""The old way of tuning Prophet, kept as the benchmark's baseline: for each of the 9 combinations,
a full Prophet fit, then ``prophet.diagnostics.cross_validation`` + ``performance_metrics``, one
entity after another."""

from __future__ import annotations

import itertools
import logging

import numpy as np
import pandas as pd

from ads_ml import settings


def quiet_prophet() -> None:
    for name in ("cmdstanpy", "prophet", "prophet.plot"):
        logging.getLogger(name).setLevel(logging.ERROR)


def old_way_cv_errors(ds, y) -> tuple[dict[str, float], str]:  # noqa: ANN001
    """CV error of every grid combination, the old way. Returns (errors by "cps|sps", metric)."""
    from prophet import Prophet
    from prophet.diagnostics import cross_validation, performance_metrics

    quiet_prophet()
    df = pd.DataFrame({"ds": pd.to_datetime(pd.Series(ds)).to_numpy(), "y": np.asarray(y, dtype=float)}).dropna()
    df = df.loc[df["ds"] > df["ds"].max() - pd.Timedelta(days=settings.PROPHET_CV_WINDOW_DAYS)]
    errors, metric = {}, "mape"
    for cps, sps in itertools.product(settings.PROPHET_CHANGEPOINT_PRIOR_SCALES, settings.PROPHET_SEASONALITY_PRIOR_SCALES):
        model = Prophet(changepoint_prior_scale=cps, seasonality_prior_scale=sps).fit(df)
        df_cv = cross_validation(model, initial="30 days", period="7 days", horizon="7 days", disable_tqdm=True)
        df_p = performance_metrics(df_cv, rolling_window=1)
        metric = "mape" if "mape" in df_p.columns else "mae"
        errors[f"{cps}|{sps}"] = float(df_p[metric].values[0])
    return errors, metric
