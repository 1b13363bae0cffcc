"""Anomalies: ``{level}_isolation_forest_models`` (one Isolation Forest per entity, through the
model IO manager) and ``{level}_anomalies`` (into ml_anomalies for the analysed days)."""

import datetime as dt
import time

import dagster as dg
import pandas as pd
from pydantic import Field

from ads_ml import settings
from ads_ml.db.model_registry import ModelArtifact, StoredModel
from ads_ml.ml.metrics import format_value
from ads_ml.db.queries import LevelInsights, account_currency, account_today, latest_partial_date, load_level_insights, replace_anomalies
from ads_ml.defs.automation import on_account_cron, on_fresh_inputs, on_fresh_inputs_at_most_every
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import model_asset_metadata, stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource
from ads_ml.ml.anomalies import daily_metrics, detect_level, fit_entity_forest, history_window

MODEL_NAME = "isolation_forest"
MODEL_TYPE = "isotree.IsolationForest"


class DetectionConfig(dg.Config):
    days_to_analyze: int = Field(default=settings.ANOMALY_DAYS_TO_ANALYZE, ge=1, le=60,
                                 description="Days, ending at the reference date, checked by this run.")


def build_models_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_isolation_forest_models",
        automation_condition=on_account_cron("anomaly_training"),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        io_manager_key="model_io_manager",
        metadata=model_asset_metadata(MODEL_NAME, level, per_entity=True),
        group_name="anomalies",
        kinds={"scikitlearn"},
        owners=OWNERS,
        description=(
            f"One Isolation Forest per {level} on its daily spend, CPL, CTR, frequency, leads and CPM over "
            "the 60 days before the analysed day — the history detection compares with (≥ 14 days, "
            "contamination 0.05, 100 trees); a model file and an ml_trained_models row each."
        ),
    )
    @retry_transient
    def _models(context: dg.AssetExecutionContext, insights: LevelInsights) -> list:
        ref = pd.Timestamp(insights.reference_date)
        forests, failed = {}, {}
        started = time.perf_counter()
        metrics = daily_metrics(insights.daily)
        # the window detection compares the analysed day with; the analysed day itself is not
        # "normal" to learn from
        histories, _analysed = history_window(metrics, ref, settings.ANOMALY_DAYS_TO_ANALYZE)
        days = histories.groupby("entity_id").size().reindex(metrics["entity_id"].unique(), fill_value=0)
        too_short = int((days < settings.ANOMALY_MIN_SAMPLES).sum())
        for entity, history in histories.groupby("entity_id", sort=True):
            if len(history) < settings.ANOMALY_MIN_SAMPLES:
                continue
            try:
                forests[entity] = fit_entity_forest(history)
            except Exception as exc:  # noqa: BLE001 - one entity's bad history is data, not a failed run
                failed[entity] = f"{type(exc).__name__}: {exc}"
                context.log.error(f"isolation forest of {entity} failed: {failed[entity]}")
        seconds = time.perf_counter() - started
        artifacts = [
            ModelArtifact(
                name=MODEL_NAME, model_type=MODEL_TYPE, entity_type=level, entity_id=entity, model=forest,
                parameters={"n_estimators": settings.ANOMALY_N_ESTIMATORS, "contamination": settings.ANOMALY_CONTAMINATION,
                            "history_days": settings.ANOMALY_HISTORY_DAYS},
                feature_columns=list(settings.ANOMALY_FEATURES),
                metrics={"samples": forest.samples, "features": len(settings.ANOMALY_FEATURES),
                         "contamination": settings.ANOMALY_CONTAMINATION,
                         "first_date": forest.first_date, "last_date": forest.last_date},
            )
            for entity, forest in sorted(forests.items())
        ]
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, insights.account_id),
            "models": len(artifacts),
            "skipped_too_little_history": too_short,
            "failed": len(failed),
            "seconds": round(seconds, 2),
            "reference_date": insights.reference_date.isoformat(),
        })
        return artifacts

    return _models


def build_anomalies_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_anomalies",
        automation_condition=(on_fresh_inputs_at_most_every("ad_anomaly_detection") if level == "ad" else on_fresh_inputs()),
        metadata=stored_as("table", level),
        ins={"insights": dg.AssetIn(f"{level}_insights"), "models": dg.AssetIn(f"{level}_isolation_forest_models")},
        partitions_def=ad_account_partitions,
        group_name="anomalies",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Anomalies of every {level} over the last days_to_analyze days: robust weekday-aware checks per "
            "metric, sharpened by the entity's Isolation Forest, and structural cases (tracking broken, "
            "delivery stopped, spend above budget), with observed vs expected, deviation and severity. "
            "Replaces the window's rows in ml_anomalies."
        ),
    )
    @retry_transient
    def _anomalies(
        context: dg.AssetExecutionContext,
        config: DetectionConfig,
        insights: LevelInsights,
        models: dict,
        database: DatabaseResource,
    ) -> pd.DataFrame:
        ref = pd.Timestamp(insights.reference_date)
        entities = insights.entities.set_index(insights.entities["entity_id"].astype(str))
        in_progress_from = account_today(database.engine(), insights.account_id)
        days_to_analyze = config.days_to_analyze
        daily = insights.daily
        partial_until = (latest_partial_date(database.engine(), insights.account_id, insights.reference_date)
                         if insights.has_data else None)
        if partial_until is not None:
            # the days in progress after the last complete one (today, from the Meta sync): judged
            # beside it, only for what can only grow by the day's end
            extra = (partial_until - insights.reference_date).days
            partial = load_level_insights(database.engine(), insights.account_id, level, partial_until, extra).daily
            daily = pd.concat([daily, partial], ignore_index=True)
            in_progress_from = min(in_progress_from, insights.reference_date + dt.timedelta(days=1))
            ref, days_to_analyze = pd.Timestamp(partial_until), days_to_analyze + extra
        unreadable = getattr(models, "skipped", {})  # files refused (corrupted, tampered, old format)
        metrics = daily_metrics(daily)
        history, _analysed = history_window(metrics, ref, days_to_analyze)
        checked = sorted(history["entity_id"].unique())  # entities with some history to compare with
        forests, rebuilt = {}, []
        for entity in checked:
            stored: StoredModel | None = models.get(entity)
            if stored is not None:
                forests[entity] = stored.model
            elif entity in unreadable:
                own = history.loc[history["entity_id"] == entity]
                if len(own) >= settings.ANOMALY_MIN_SAMPLES:  # the forest the training asset would store
                    forests[entity] = fit_entity_forest(own)
                    rebuilt.append(entity)
        budgets = pd.to_numeric(entities["daily_budget"], errors="coerce") if "daily_budget" in entities else pd.Series(dtype=float)
        started = time.perf_counter()
        found = detect_level(
            metrics.loc[metrics["entity_id"].isin(checked)], ref, forests=forests,
            statuses=entities["status"].to_dict() if "status" in entities else {},
            budgets={e: float(b) for e, b in budgets.items() if pd.notna(b)},
            days_to_analyze=days_to_analyze, in_progress_from=in_progress_from,
        )
        seconds = time.perf_counter() - started
        first_day = (ref - pd.Timedelta(days=days_to_analyze - 1)).date()
        rows = [
            {"account_id": insights.account_id, "entity_type": level, **r} for r in found.to_dict("records")
        ]
        replace_anomalies(database.engine(), insights.account_id, level, first_day, ref.date(), rows)
        severity_rank = {"critical": 0, "high": 1, "medium": 2, "low": 3}
        top = found
        if len(found):
            top = found.assign(_rank=found["severity"].map(severity_rank), _size=found["deviation_score"].abs())
            top = top.sort_values(["_rank", "_size"], ascending=[True, False])
            # each row's values in its metric's unit: money in the account's currency, CTR in %
            currency = account_currency(database.engine(), insights.account_id)
            top = top.assign(**{column: [format_value(m, v, currency) for m, v in zip(top["metric"], top[column])]
                                for column in ("observed_value", "expected_value")})
        context.add_output_metadata({
            **no_data_metadata(insights.has_data, insights.account_id),
            "anomalies": len(found),
            "entities_checked": len(checked),
            "entities_with_model": len(forests),
            "seconds": round(seconds, 2),
            "window": f"{first_day} .. {ref.date()}",
            "day_in_progress": (in_progress_from.isoformat() if in_progress_from <= ref.date() else "none")
            + " (judged only for excess spend / CPM / frequency and overspend)",
            "by_severity": dg.MetadataValue.json(found["severity"].value_counts().to_dict() if len(found) else {}),
            "by_metric": dg.MetadataValue.json(found["metric"].value_counts().to_dict() if len(found) else {}),
            "top_anomalies": dg.MetadataValue.md(markdown_table(with_names(
                top[["entity_id", "anomaly_date", "metric", "observed_value", "expected_value", "deviation_score", "severity", "method"]]
                if len(top) else top, entity_names(insights.entities)), max_rows=15)),
            "models_unreadable": dg.MetadataValue.json(unreadable),
            "models_rebuilt_for_this_run": len(rebuilt),
        })
        return found

    return _anomalies


isolation_forest_assets = [build_models_asset(level) for level in LEVELS]
anomaly_assets = [build_anomalies_asset(level) for level in LEVELS]
anomalies_assets = [*isolation_forest_assets, *anomaly_assets]
