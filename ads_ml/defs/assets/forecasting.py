"""Forecasting: ``{level}_prophet_params`` (tuned weekly), ``{level}_ensemble_weights`` (calibrated
daily) and ``{level}_forecasts`` (7 days of CPL, leads and spend per entity, into ml_forecasts)."""

import base64
import io
import time

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ads_ml import settings
from ads_ml.db.model_registry import safe_component, write_json_atomically
from ads_ml.db.models import ForecastRow, ProphetParams
from ads_ml.db.queries import EnsembleCalibration, LevelInsights, account_currency, load_prophet_params, replace_calibration, replace_rows
from ads_ml.defs.automation import after, on_account_cron
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource, FanoutResource, ModelStoreResource
from ads_ml.ml.forecasting import (
    BASELINE,
    STOPPED,
    Z,
    calibrate_stack,
    metric_series,
    row_series,
    series_matrix,
    stacked_forecasts,
)
from ads_ml.ml.prophet_tuning import TuningResult, tune_or_skip


def entity_series(insights: LevelInsights, metric: str) -> dict[str, pd.Series]:
    """Each entity's daily ``metric`` series up to the reference date (entities that delivered)."""
    end = pd.Timestamp(insights.reference_date)
    return {
        str(entity_id): metric_series(rows, metric, end)
        for entity_id, rows in insights.daily.groupby("entity_id", sort=True)
    }


class ProphetTuningConfig(dg.Config):
    metrics: list[str] = Field(default=list(settings.PROPHET_TUNING_METRICS),
                               description="Metrics to tune: cpl and/or leads.")


def uses_prophet(level: str) -> bool:
    """Whether the level's ensemble includes Prophet (``ADS_ML_FORECAST_METHODS_<LEVEL>``)."""
    return "prophet" in settings.forecast_methods(level)


def prophet_deps(level: str) -> list[str]:
    """The tuned parameters feed the level's weights and forecasts only where Prophet is a member."""
    return [f"{level}_prophet_params"] if uses_prophet(level) else []


def build_prophet_params_asset(level: str) -> dg.AssetsDefinition:
    used = uses_prophet(level)
    @dg.asset(
        name=f"{level}_prophet_params",
        automation_condition=on_account_cron("prophet_tuning"),
        metadata=stored_as("table", level),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"prophet", "sql"} if used else {"sql"},
        owners=OWNERS,
        description=(
            f"Prophet hyperparameters per {level} and metric (cpl, leads) chosen from the 3×3 grid by "
            "time-series CV (initial 30 d, period 7, horizon 7, last 60 d); MAPE, or MAE where the "
            "series has zeros. Fanned out over cores / Dask. JSON file + ml_prophet_params row each."
            + ("" if used else f" Skipped while the {level} ensemble has no Prophet member "
               f"(ADS_ML_FORECAST_METHODS_{level.upper()}).")
        ),
    )
    @retry_transient
    def _prophet_params(
        context: dg.AssetExecutionContext,
        config: ProphetTuningConfig,
        insights: LevelInsights,
        database: DatabaseResource,
        model_store: ModelStoreResource,
        fanout: FanoutResource,
    ) -> pd.DataFrame:
        unknown = sorted(set(config.metrics) - set(settings.PROPHET_TUNING_METRICS))
        if unknown:
            raise dg.Failure(f"cannot tune {unknown}: choose from {list(settings.PROPHET_TUNING_METRICS)}")
        engine = database.engine()
        methods = settings.forecast_methods(level)
        if "prophet" not in methods:
            # nothing reads the parameters: the level's ensemble has no Prophet member
            note = (f"skipped: the {level} ensemble ({', '.join(methods)}) has no Prophet member, so no parameters "
                    f"are tuned (add prophet to ADS_ML_FORECAST_METHODS_{level.upper()} to use it)")
            context.log.info(note)
            context.add_output_metadata({**no_data_metadata(insights.has_data, insights.account_id),
                                         "skipped": True, "note": note, "tuned": 0})
            return pd.DataFrame(columns=["metric", "tuned"])
        folder = model_store.resolved_dir(database.resolved_url()) / safe_component(insights.account_id) / level / "prophet_params"
        summary = []
        for metric in config.metrics:
            series = entity_series(insights, metric)
            items = [((entity, metric), (s.index, s.to_numpy())) for entity, s in series.items()]
            result = fanout.run(tune_or_skip, items, label=f"{level} {metric} series", log=context.log)
            rows, skipped = [], {}
            for (entity, _metric), outcome in result.results.items():
                if isinstance(outcome, str):
                    skipped[entity] = outcome
                    continue
                tuned: TuningResult = outcome
                path = folder / f"{safe_component(entity)}-{metric}.json"
                write_json_atomically(path, {"entity_type": level, "entity_id": entity, "metric": metric,
                                             **tuned.params(), "cv_error": tuned.error,
                                             "error_metric": tuned.error_metric, "status": tuned.status})
                if tuned.warning:
                    context.log.warning(f"{entity} {metric}: {tuned.warning}")
                rows.append({
                    "account_id": insights.account_id, "entity_type": level, "entity_id": entity, "metric": metric,
                    "changepoint_prior_scale": tuned.changepoint_prior_scale,
                    "seasonality_prior_scale": tuned.seasonality_prior_scale,
                    "cv_error": tuned.error, "error_metric": tuned.error_metric, "cv_metrics": tuned.cv_errors,
                    "n_points": tuned.n_points, "n_folds": tuned.n_folds, "status": tuned.status,
                    "params_path": str(path), "reference_date": insights.reference_date,
                })
            replace_rows(engine, ProphetParams, {"account_id": insights.account_id, "entity_type": level, "metric": metric}, rows)
            for entity, error in result.errors.items():
                context.log.error(f"tuning {entity} failed: {error}")
            summary.append({
                "metric": metric, "tuned": len(rows), "fallback": sum(r["status"] == "fallback" for r in rows),
                "insufficient_data": len(skipped), "failed": len(result.errors),
                "seconds": round(result.seconds, 1), "backend": result.backend,
            })
            context.log.info(f"{level} {metric}: {summary[-1]}")
        frame = pd.DataFrame(summary)
        params = load_prophet_params(engine, insights.account_id, level)
        choices = pd.DataFrame(
            [{"metric": m, "changepoint_prior_scale": p["changepoint_prior_scale"],
              "seasonality_prior_scale": p["seasonality_prior_scale"]} for (_e, m), p in params.items()]
        )
        choice_table = (
            choices.value_counts().rename("entities").reset_index() if len(choices) else pd.DataFrame()
        )
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, insights.account_id),
            "summary": dg.MetadataValue.md(markdown_table(frame, decimals=1)),
            "tuned": int(frame["tuned"].sum()),
            "insufficient_data": int(frame["insufficient_data"].sum()),
            "failed": int(frame["failed"].sum()),
            "chosen_params": dg.MetadataValue.md(markdown_table(choice_table, max_rows=20)),
        })
        return frame

    return _prophet_params


def _params_for(params: dict, metric: str) -> dict:
    """``{entity: Prophet params}`` of one metric out of :func:`load_prophet_params`' rows."""
    return {entity: p for (entity, m), p in params.items() if m == metric}


def build_ensemble_weights_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_ensemble_weights",
        automation_condition=on_account_cron("ensemble_calibration"),
        metadata=stored_as("ensemble_weights", level),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        deps=prophet_deps(level),
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Ensemble weights ({', '.join(settings.FORECAST_METHODS_BY_LEVEL[level])} by "
            f"default; ADS_ML_FORECAST_METHODS_{level.upper()}) per metric for the account's {level}s, learnt on "
            f"rolling-origin validation: each of the last {settings.FORECAST_VALIDATION_WINDOWS} weeks forecast "
            "from the days before it, for all entities in one pass over the level's entity × day matrix; the "
            "weights with the least absolute error on the simplex, mixed half-way with equal weights; the "
            "95 % interval from the quantiles of the same validation's errors (conformal). Also each "
            "member's and the seasonal-naive baseline's validation error."
        ),
    )
    @retry_transient
    def _ensemble_weights(
        context: dg.AssetExecutionContext,
        insights: LevelInsights,
        database: DatabaseResource,
        fanout: FanoutResource,
    ) -> EnsembleCalibration:
        engine = database.engine()
        methods = settings.forecast_methods(level)
        params = load_prophet_params(engine, insights.account_id, level)
        end = pd.Timestamp(insights.reference_date)
        matrices = {m: series_matrix(insights.daily, m, end) for m in settings.FORECAST_METRICS}
        weights, metrics_used, pooled, per_entity, rows, failed, intervals = {}, {}, {}, [], [], {}, {}
        for metric, matrix in matrices.items():
            calibration = calibrate_stack(
                matrix, matrices["spend"], methods, _params_for(params, metric), metric=metric,
                map_rows=fanout.mapper(label=f"{level} {metric} validations", log=context.log, errors=failed))
            weights[metric], metrics_used[metric], pooled[metric] = calibration.weights, "mae", calibration.member_errors
            intervals[metric] = calibration.interval
            per_entity.append(calibration.per_entity.assign(metric=metric))
            validated = calibration.per_entity["entity_id"].nunique() if len(calibration.per_entity) else 0
            for method, weight in calibration.weights.items():
                rows.append({"account_id": insights.account_id, "entity_type": level, "metric": metric,
                             "method": method, "weight": weight,
                             "validation_error": calibration.member_errors.get(method),
                             "error_metric": "mae", "baseline_error": calibration.member_errors.get(BASELINE),
                             "n_entities": int(validated), "interval_low": calibration.interval[0],
                             "interval_high": calibration.interval[1], "reference_date": insights.reference_date})
        entity_frame = pd.concat(per_entity, ignore_index=True) if per_entity else pd.DataFrame()
        replace_calibration(engine, insights.account_id, level, rows, [
            {"account_id": insights.account_id, "entity_type": level, "reference_date": insights.reference_date, **r}
            for r in entity_frame.to_dict("records")
        ])
        table = pd.DataFrame(rows)[["metric", "method", "weight", "validation_error", "baseline_error", "n_entities"]]
        table = table.rename(columns={"validation_error": "validation MAE", "baseline_error": "seasonal-naive MAE"})
        beat = entity_frame.groupby("metric")["beat_baseline"].mean().to_dict() if len(entity_frame) else {}
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, insights.account_id),
            "weights": dg.MetadataValue.md(markdown_table(table, max_rows=len(table), decimals=3)),
            "methods": ", ".join(methods),
            "interval": dg.MetadataValue.json({m: [round(lo, 3), round(hi, 3)] for m, (lo, hi) in intervals.items()}),
            "share_beating_seasonal_naive": dg.MetadataValue.json({k: round(float(v), 3) for k, v in beat.items()}),
            "entities_validated": len(entity_frame["entity_id"].unique()) if len(entity_frame) else 0,
            "failed": len(failed),
        })
        return EnsembleCalibration(insights.reference_date, weights, metrics_used, pooled, entity_frame, intervals)

    return _ensemble_weights


def build_forecasts_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_forecasts",
        automation_condition=after(f"{level}_ensemble_weights"),
        deps=prophet_deps(level),
        metadata=stored_as("table", level),
        ins={"insights": dg.AssetIn(f"{level}_insights"), "calibration": dg.AssetIn(f"{level}_ensemble_weights")},
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"prophet", "sql"} if uses_prophet(level) else {"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"7-day forecasts of CPL, leads and spend per {level}: the weighted ensemble of "
            f"{', '.join(settings.FORECAST_METHODS_BY_LEVEL[level])} by default (snaive: seasonal naive; Prophet, "
            "when configured, with its tuned params), fitted without one-off outliers, for all entities in one "
            "pass over the level's entity × day matrix, with the conformal 95 % interval, never negative; an "
            f"entity without spend on its last {settings.FORECAST_STOPPED_DAYS} day(s) is forecast as stopped "
            "(zero spend and leads, method 'stopped', no CPL); the seasonal-naive baseline beside each, and "
            "whether the ensemble beat it on validation."
        ),
    )
    @retry_transient
    def _forecasts(
        context: dg.AssetExecutionContext,
        insights: LevelInsights,
        calibration: EnsembleCalibration,
        database: DatabaseResource,
        fanout: FanoutResource,
    ) -> pd.DataFrame:
        engine = database.engine()
        methods = settings.forecast_methods(level)
        params = load_prophet_params(engine, insights.account_id, level)
        end = pd.Timestamp(insights.reference_date)
        started = time.perf_counter()
        matrices = {m: series_matrix(insights.daily, m, end) for m in settings.FORECAST_METRICS}
        checks = calibration.per_entity.rename(columns={"ensemble_error": "ensemble_validation_error"})
        parts, failed, ensembles, stopped = [], {}, {}, set()
        for metric, matrix in matrices.items():
            weights = calibration.weights.get(metric) or {m: 1.0 / len(methods) for m in methods}
            forecasts = stacked_forecasts(matrix, matrices["spend"], weights, calibration.intervals.get(metric, (-Z, Z)),
                                          methods, _params_for(params, metric), metric=metric,
                                          map_rows=fanout.mapper(label=f"{level} {metric} forecasts", log=context.log, errors=failed))
            if "ensemble" in forecasts:
                ensembles[metric] = forecasts["ensemble"]
            if STOPPED in forecasts:
                stopped |= set(forecasts[STOPPED].entities.astype(str))
            for method, forecast in forecasts.items():
                n, horizon = forecast.value.shape
                parts.append(pd.DataFrame({
                    "entity_id": np.repeat(forecast.entities.astype(str).to_numpy(), horizon), "metric": metric,
                    "forecast_date": np.tile(forecast.dates.date, n), "predicted_value": forecast.value.ravel(),
                    "lower_bound": forecast.lower.ravel(), "upper_bound": forecast.upper.ravel(), "method": method,
                }))
        frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[
            "entity_id", "metric", "forecast_date", "predicted_value", "lower_bound", "upper_bound", "method"])
        if len(checks):
            frame = frame.merge(checks[["entity_id", "metric", "beat_baseline", "ensemble_validation_error", "baseline_error", "error_metric"]],
                                on=["entity_id", "metric"], how="left")
            frame["validation_error"] = frame["ensemble_validation_error"].where(frame["method"] == "ensemble", frame["baseline_error"])
            frame = frame.drop(columns="ensemble_validation_error")
        else:
            frame = frame.assign(beat_baseline=None, validation_error=None, baseline_error=None, error_metric=None)
        frame = frame.assign(account_id=insights.account_id, entity_type=level, reference_date=insights.reference_date)
        rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for row in rows:
            if row["beat_baseline"] is not None:
                row["beat_baseline"] = bool(row["beat_baseline"])
        replace_rows(engine, ForecastRow, {"account_id": insights.account_id, "entity_type": level}, rows)
        entities = matrices["spend"].index
        forecast_entities = set().union(*(set(f.entities) for f in ensembles.values())) if ensembles else set()
        metadata = {
            **no_data_metadata(insights.has_data, insights.account_id),
            "entities_forecast": len(forecast_entities),
            "failed": len(failed),
            "stopped": len(stopped),
            "skipped_too_little_history": int(len(set(entities) - forecast_entities - stopped)),
            "rows": len(frame),
            "methods": ", ".join(methods),
            "seconds": round(time.perf_counter() - started, 1),
            "reference_date": insights.reference_date.isoformat(),
        }
        if len(frame):
            spend = insights.daily.groupby("entity_id")["spend"].sum().sort_values(ascending=False)
            top = [str(e) for e in spend.index[:4] if str(e) in forecast_entities]
            names = entity_names(insights.entities)
            by_metric = {m: {e: row_series(matrix, e) for e in top if e in matrix.index} for m, matrix in matrices.items()}
            results = {e: {m: {"ensemble": f.row(list(f.entities).index(e))} for m, f in ensembles.items() if e in set(f.entities)}
                       for e in top}
            metadata["forecast_plot"] = dg.MetadataValue.md(_plot_markdown(by_metric, results, top, level, names))
            ensemble = frame.loc[frame["method"] == "ensemble"]
            preview = ensemble.loc[ensemble["entity_id"].isin(top)].pivot_table(
                index=["entity_id", "forecast_date"], columns="metric", values="predicted_value")
            shown = [e for e in top if e in set(preview.index.get_level_values("entity_id"))]
            metadata["top_entities"] = dg.MetadataValue.md(
                f"Ensemble forecasts of the {len(shown)} {level}s with the most spend over the insights window "
                f"(of {len(forecast_entities)} forecast; all in ml_forecasts):\n\n"
                + markdown_table(with_names(preview, names), max_rows=7 * len(shown),
                                 currency=account_currency(database.engine(), insights.account_id)))
        context.add_output_metadata(metadata)
        return frame

    return _forecasts


def _plot_markdown(by_metric: dict, results: dict, entities: list[str], level: str, names: pd.Series) -> str:
    """A PNG (inline) of the last 30 days and the 7-day ensemble forecast of the top entities."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["cpl", "leads"]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8, 5.5), sharex=True)
    for ax, metric in zip(axes, metrics):
        for entity in entities:
            history = by_metric[metric].get(entity)
            forecast = results.get(entity, {}).get(metric, {}).get("ensemble")
            if history is None or forecast is None:
                continue
            line, = ax.plot(history.index[-30:], history.to_numpy()[-30:], linewidth=1.2, label=f"{names.get(entity, level)} ({entity})")
            ax.plot(forecast.dates, forecast.value, linestyle="--", color=line.get_color())
            ax.fill_between(forecast.dates, forecast.lower, forecast.upper, color=line.get_color(), alpha=0.15)
        ax.set_ylabel(metric.upper() if metric == "cpl" else metric)
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7, loc="upper left")
    axes[0].set_title("last 30 days and 7-day ensemble forecast (95 % interval)")
    fig.autofmt_xdate()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=80, bbox_inches="tight")
    plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"![forecast](data:image/png;base64,{encoded})"


prophet_params_assets = [build_prophet_params_asset(level) for level in LEVELS]
ensemble_weights_assets = [build_ensemble_weights_asset(level) for level in LEVELS]
forecasts_assets = [build_forecasts_asset(level) for level in LEVELS]
forecasting_assets = [*prophet_params_assets, *ensemble_weights_assets, *forecasts_assets]
