"""Forecasting: ``{level}_prophet_params`` (tuned weekly), ``{level}_ensemble_weights`` (calibrated
daily) and ``{level}_forecasts`` (7 days of CPL, leads and spend per entity, into ml_forecasts)."""

import base64
import io

import dagster as dg
import numpy as np
import pandas as pd
from pydantic import Field

from ads_ml import settings
from ads_ml.db.model_registry import safe_component, write_json_atomically
from ads_ml.db.models import ForecastRow, ProphetParams
from ads_ml.db.queries import EnsembleCalibration, LevelInsights, load_prophet_params, replace_calibration, replace_rows
from ads_ml.defs.automation import after, on_account_cron
from ads_ml.defs.common import LEVELS, OWNERS, database_retry_policy, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource, FanoutResource, ModelStoreResource
from ads_ml.ml.forecasting import (
    BASELINE,
    equal_weights,
    ensemble_prediction,
    error_metric_for,
    forecast_error,
    forecast_task,
    inverse_error_weights,
    metric_series,
    validation_task,
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


def build_prophet_params_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        retry_policy=database_retry_policy(),
        name=f"{level}_prophet_params",
        automation_condition=on_account_cron("prophet_tuning"),
        metadata=stored_as("table", level),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"prophet", "sql"},
        owners=OWNERS,
        description=(
            f"Prophet hyperparameters per {level} and metric (cpl, leads) chosen from the 3×3 grid by "
            "time-series CV (initial 30 d, period 7, horizon 7, last 60 d); MAPE, or MAE where the "
            "series has zeros. Fanned out over cores / Dask. JSON file + ml_prophet_params row each."
        ),
    )
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


def build_ensemble_weights_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        retry_policy=database_retry_policy(),
        name=f"{level}_ensemble_weights",
        automation_condition=on_account_cron("ensemble_calibration"),
        metadata=stored_as("ensemble_weights", level),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        deps=[f"{level}_prophet_params"],
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Ensemble weights ({', '.join(settings.FORECAST_METHODS)}) per metric for the account's {level}s: each method "
            "forecasts the last 14 days from the rest; w ∝ 1/(error + 1) with MAPE, or MAE where actuals "
            "are zero; equal weights with ≤ 21 days of history. Also the seasonal-naive baseline's error."
        ),
    )
    def _ensemble_weights(
        context: dg.AssetExecutionContext,
        insights: LevelInsights,
        database: DatabaseResource,
        fanout: FanoutResource,
    ) -> EnsembleCalibration:
        engine = database.engine()
        params = load_prophet_params(engine, insights.account_id, level)
        recent = pd.Timestamp(insights.reference_date) - pd.Timedelta(days=7)
        active = set(insights.daily.loc[(insights.daily["date"] > recent) & (insights.daily["spend"] > 0), "entity_id"].astype(str))
        weights, metrics_used, pooled, per_entity, rows = {}, {}, {}, [], []
        for metric in settings.FORECAST_METRICS:
            series = {e: s for e, s in entity_series(insights, metric).items() if e in active}
            items = [(e, (s, params.get((e, metric)))) for e, s in series.items()]
            result = fanout.run(validation_task, items, label=f"{level} {metric} validations", log=context.log)
            validated = {e: v for e, v in result.results.items() if v is not None}
            history = max((len(s) for s in series.values()), default=0)
            # One error metric for the pooled weights: MAPE unless some actual is zero.
            metric_name = "mape" if validated and all(error_metric_for(a) == "mape" for a, _p in validated.values()) else "mae"
            methods = [*settings.FORECAST_METHODS, BASELINE]
            errors = {m: [] for m in methods}
            for actual, predicted in validated.values():
                for m in methods:
                    if m in predicted:
                        errors[m].append(forecast_error(actual, predicted[m], metric_name))
            mean_errors = {m: float(np.mean(v)) if v else None for m, v in errors.items()}
            if history <= settings.ENSEMBLE_VALIDATION_DAYS + 7 or not validated:
                w = equal_weights(settings.FORECAST_METHODS)
            else:
                w = inverse_error_weights({m: mean_errors[m] for m in settings.FORECAST_METHODS})
            weights[metric], metrics_used[metric], pooled[metric] = w, metric_name, mean_errors
            for entity, (actual, predicted) in validated.items():
                entity_metric = error_metric_for(actual)
                ensemble_error = forecast_error(actual, ensemble_prediction(predicted, w), entity_metric)
                baseline_error = forecast_error(actual, predicted[BASELINE], entity_metric)
                per_entity.append({"entity_id": entity, "metric": metric, "error_metric": entity_metric,
                                   "ensemble_error": ensemble_error, "baseline_error": baseline_error,
                                   "beat_baseline": ensemble_error < baseline_error})
            for method in settings.FORECAST_METHODS:
                rows.append({"account_id": insights.account_id, "entity_type": level, "metric": metric,
                             "method": method, "weight": w[method], "validation_error": mean_errors.get(method),
                             "error_metric": metric_name, "baseline_error": mean_errors.get(BASELINE),
                             "n_entities": len(validated), "reference_date": insights.reference_date})
            for entity, error in result.errors.items():
                context.log.error(f"validation of {entity} {metric} failed: {error}")
        replace_calibration(engine, insights.account_id, level, rows, [
            {"account_id": insights.account_id, "entity_type": level, "reference_date": insights.reference_date, **r}
            for r in per_entity
        ])
        table = pd.DataFrame(rows)[["metric", "method", "weight", "validation_error", "error_metric", "baseline_error", "n_entities"]]
        entity_frame = pd.DataFrame(per_entity)
        beat = entity_frame.groupby("metric")["beat_baseline"].mean().to_dict() if len(entity_frame) else {}
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, insights.account_id),
            "weights": dg.MetadataValue.md(markdown_table(table, max_rows=12, decimals=3)),
            "share_beating_seasonal_naive": dg.MetadataValue.json({k: round(float(v), 3) for k, v in beat.items()}),
            "entities_validated": len(entity_frame["entity_id"].unique()) if len(entity_frame) else 0,
        })
        return EnsembleCalibration(insights.reference_date, weights, metrics_used, pooled, entity_frame)

    return _ensemble_weights


def build_forecasts_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        retry_policy=database_retry_policy(),
        name=f"{level}_forecasts",
        automation_condition=after(f"{level}_ensemble_weights"),
        deps=[f"{level}_prophet_params"],
        metadata=stored_as("table", level),
        ins={"insights": dg.AssetIn(f"{level}_insights"), "calibration": dg.AssetIn(f"{level}_ensemble_weights")},
        partitions_def=ad_account_partitions,
        group_name="forecasting",
        kinds={"prophet", "sql"},
        owners=OWNERS,
        description=(
            f"7-day forecasts of CPL, leads and spend per {level}: the weighted ensemble of EMA, linear "
            "trend, Prophet (tuned params), AutoETS, AutoTheta and the seasonal window average, fitted "
            "without one-off outliers, with 95 % intervals, never negative, and the seasonal-naive "
            "baseline, each day marked with whether the ensemble beat the baseline on validation."
        ),
    )
    def _forecasts(
        context: dg.AssetExecutionContext,
        insights: LevelInsights,
        calibration: EnsembleCalibration,
        database: DatabaseResource,
        fanout: FanoutResource,
    ) -> pd.DataFrame:
        engine = database.engine()
        params = load_prophet_params(engine, insights.account_id, level)
        by_metric = {m: entity_series(insights, m) for m in settings.FORECAST_METRICS}
        entities = sorted(by_metric["spend"])
        items = [
            (e, {m: (by_metric[m][e], params.get((e, m)), calibration.weights.get(m, equal_weights(settings.FORECAST_METHODS)))
                 for m in settings.FORECAST_METRICS})
            for e in entities
        ]
        result = fanout.run(forecast_task, items, label=f"{level} forecasts", log=context.log)
        validation = calibration.per_entity.set_index(["entity_id", "metric"]) if len(calibration.per_entity) else None
        rows = []
        for entity, by_method in result.results.items():
            for metric, forecasts in by_method.items():
                check = validation.loc[(entity, metric)] if validation is not None and (entity, metric) in validation.index else None
                for method, forecast in forecasts.items():
                    for day, value, low, high in zip(forecast.dates, forecast.value, forecast.lower, forecast.upper):
                        rows.append({
                            "account_id": insights.account_id, "entity_type": level, "entity_id": entity,
                            "metric": metric, "forecast_date": day.date(), "predicted_value": float(value),
                            "lower_bound": float(low), "upper_bound": float(high), "method": method,
                            "reference_date": insights.reference_date,
                            "beat_baseline": None if check is None else bool(check["beat_baseline"]),
                            "validation_error": None if check is None else float(check["ensemble_error" if method == "ensemble" else "baseline_error"]),
                            "baseline_error": None if check is None else float(check["baseline_error"]),
                            "error_metric": None if check is None else check["error_metric"],
                        })
        replace_rows(engine, ForecastRow, {"account_id": insights.account_id, "entity_type": level}, rows)
        for entity, error in result.errors.items():
            context.log.error(f"forecast of {entity} failed: {error}")
        frame = pd.DataFrame(rows)
        skipped = len(entities) - len(result.results) - len(result.errors)
        metadata = {
            **no_data_metadata(insights.has_data, insights.account_id),
            "entities_forecast": len(result.results),
            "failed": len(result.errors),
            "skipped_too_little_history": skipped,
            "rows": len(frame),
            "seconds": round(result.seconds, 1),
            "backend": result.backend,
            "reference_date": insights.reference_date.isoformat(),
        }
        if len(frame):
            spend = insights.daily.groupby("entity_id")["spend"].sum().sort_values(ascending=False)
            top = [str(e) for e in spend.index[:4] if str(e) in result.results]
            names = entity_names(insights.entities)
            metadata["forecast_plot"] = dg.MetadataValue.md(_plot_markdown(by_metric, result.results, top, level, names))
            ensemble = frame.loc[frame["method"] == "ensemble"]
            preview = ensemble.loc[ensemble["entity_id"].isin(top)].pivot_table(
                index=["entity_id", "forecast_date"], columns="metric", values="predicted_value")
            metadata["top_entities"] = dg.MetadataValue.md(markdown_table(with_names(preview, names), max_rows=14))
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
