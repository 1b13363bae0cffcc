"""Tiers: ``{level}_tier_classifier`` (XGBoost per account and level), ``transfer_classifier``
(trained on the account's campaigns) and ``{level}_classifications`` (into ml_classifications)."""

import datetime as dt
from typing import Optional

import dagster as dg
import numpy as np
import pandas as pd

from ads_ml import settings
from ads_ml.db.model_registry import ModelArtifact, StoredModel
from ads_ml.db.queries import (
    account_currency,
    LevelFeatures,
    LevelInsights,
    load_entities,
    load_feedback,
    previous_tiers,
    replace_classifications,
)
from ads_ml.defs.automation import on_account_cron
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import model_asset_metadata, stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource
from ads_ml.ml.tiers import (
    TIER_FEATURE_COLUMNS,
    TRANSFER_FEATURE_COLUMNS,
    TierTrainingResult,
    build_training_set,
    classify_entities,
    method_reasons,
    tier_direction,
    train_tier_classifier,
)

TIER_MODEL_NAME = "tier_classifier"
TRANSFER_MODEL_NAME = "transfer_classifier"
MODEL_TYPE = "xgboost.XGBClassifier (hist) + temperature scaling"


def _training_metadata(result: TierTrainingResult) -> dict:
    metadata = {
        "status": result.status,
        "labelled_samples": result.n_samples,
        "label_sources": dg.MetadataValue.json(result.label_sources),
        "tier_counts": dg.MetadataValue.json(result.tier_counts),
    }
    if result.reason:
        metadata["reason"] = result.reason
    if "use" in result.metrics:
        metadata["use"] = str(result.metrics["use"])
    for key in ("accuracy", "f1_weighted", "log_loss", "ece", "rule_accuracy", "model_order", "rule_order",
                "order_gain_lower"):
        if key in result.metrics and result.metrics[key] is not None and np.isfinite(result.metrics[key]):
            metadata[f"validation_{key}"] = float(result.metrics[key])
    if result.model is not None:
        importances = pd.Series(result.model.feature_importances_).sort_values(ascending=False).rename("gain share")
        metadata["feature_importances"] = dg.MetadataValue.md(markdown_table(importances.to_frame(), max_rows=12, decimals=3))
    return metadata


def _artifact(name: str, level: str, result: TierTrainingResult, columns: tuple[str, ...]) -> ModelArtifact:
    model = result.model
    return ModelArtifact(
        name=name,
        model_type=MODEL_TYPE,
        entity_type=level,
        model=model,
        parameters={**model.xgb_params, "temperature": model.temperature_, "classes": model.classes_},
        feature_columns=list(columns),
        metrics={
            **result.metrics,
            "labelled_samples": result.n_samples,
            "label_sources": result.label_sources,
            "tier_counts": result.tier_counts,
            "feature_importances": model.feature_importances_,
        },
    )


def build_tier_classifier_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_tier_classifier",
        automation_condition=on_account_cron("tier_training"),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        io_manager_key="model_io_manager",
        metadata=model_asset_metadata(TIER_MODEL_NAME, level, allow_missing=True),
        group_name="tiers",
        kinds={"xgboost", "scikitlearn"},
        owners=OWNERS,
        description=(
            f"XGBoost tier classifier of the account's {level}s: learns the tier each {level} earns over the "
            "next 7 days (people's feedback first), validated on the most recent weeks, calibrated "
            "probabilities. Fewer than 30 labelled samples: no model, and the metadata says why."
        ),
    )
    @retry_transient
    def _tier_classifier(
        context: dg.AssetExecutionContext, insights: LevelInsights, database: DatabaseResource
    ) -> Optional[ModelArtifact]:
        feedback = load_feedback(database.engine(), insights.account_id, level)
        training = build_training_set(insights.daily, insights.entities, insights.reference_date, feedback)
        result = train_tier_classifier(training)
        context.add_output_metadata({**no_data_metadata(insights.has_data, insights.account_id), **_training_metadata(result)})
        if result.status != "trained":
            context.log.warning(f"{level} tier classifier not trained for {insights.account_id}: {result.reason}")
            return None
        return _artifact(TIER_MODEL_NAME, level, result, TIER_FEATURE_COLUMNS)

    return _tier_classifier


@dg.asset(
    name="transfer_classifier",
    automation_condition=on_account_cron("transfer_training"),
    ins={"insights": dg.AssetIn("campaign_insights")},
    partitions_def=ad_account_partitions,
    io_manager_key="model_io_manager",
    metadata=model_asset_metadata(TRANSFER_MODEL_NAME, "campaign", allow_missing=True),
    group_name="tiers",
    kinds={"xgboost", "scikitlearn"},
    owners=OWNERS,
    description=(
        "Global tier classifier trained on the account's campaigns with scale-free features; it "
        "classifies entities without 14 days of history of their own (confidence × 0.85), and only "
        "when it beat the rule tiers on its own validation weeks. Needs at least 10 campaigns."
    ),
)
@retry_transient
def transfer_classifier(
    context: dg.AssetExecutionContext, insights: LevelInsights, database: DatabaseResource
) -> Optional[ModelArtifact]:
    campaigns = int(insights.daily["entity_id"].nunique())
    if campaigns < settings.TRANSFER_MIN_CAMPAIGNS:
        reason = f"{campaigns} campaigns with delivery, at least {settings.TRANSFER_MIN_CAMPAIGNS} needed"
        context.add_output_metadata({**no_data_metadata(insights.has_data, insights.account_id),
                                     "status": "insufficient_data", "reason": reason, "campaigns": campaigns})
        return None
    feedback = load_feedback(database.engine(), insights.account_id, "campaign")
    training = build_training_set(insights.daily, insights.entities, insights.reference_date, feedback)
    result = train_tier_classifier(training, feature_columns=TRANSFER_FEATURE_COLUMNS)
    context.add_output_metadata({**_training_metadata(result), "campaigns": campaigns})
    if result.status != "trained":
        return None
    return _artifact(TRANSFER_MODEL_NAME, "campaign", result, TRANSFER_FEATURE_COLUMNS)


def build_classifications_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_classifications",
        automation_condition=on_account_cron(f"{level}_classification"),
        metadata=stored_as("table", level),
        ins={
            "features": dg.AssetIn(f"{level}_features"),
            "tier_model": dg.AssetIn(f"{level}_tier_classifier"),
            "transfer_model": dg.AssetIn("transfer_classifier"),
        },
        partitions_def=ad_account_partitions,
        group_name="tiers",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Tier of every {level} (HIGH_PERFORMER / MODERATE / LOW / UNDERPERFORMER / INSUFFICIENT_DATA) "
            "with calibrated confidence, previous tier and direction, the features behind it and the "
            "model version; by the transfer model for entities without history of their own, by rules "
            "without a model. Written to ml_classifications for the reference date."
        ),
    )
    @retry_transient
    def _classifications(
        context: dg.AssetExecutionContext,
        features: LevelFeatures,
        tier_model: Optional[StoredModel],
        transfer_model: Optional[StoredModel],
        database: DatabaseResource,
    ) -> pd.DataFrame:
        engine = database.engine()
        frame = features.features
        model = tier_model.model if tier_model is not None else None
        transfer = transfer_model.model if transfer_model is not None else None
        result = classify_entities(frame, model, transfer)
        reasons = method_reasons(result, frame, model, transfer)
        previous = previous_tiers(engine, features.account_id, level, features.reference_date)
        result["previous_tier"] = previous.reindex(result.index).to_numpy()
        result["direction"] = tier_direction(result["previous_tier"], result["tier"])
        versions = {"model": tier_model.version if tier_model else None,
                    "transfer": transfer_model.version if transfer_model else None}
        result["model_version"] = result["method"].map(versions).astype("object")
        result["valid_until"] = features.reference_date + dt.timedelta(days=settings.TIER_HORIZON_DAYS)
        written = replace_classifications(engine, features.account_id, level, features.reference_date, result)

        metadata = {
            **no_data_metadata(not frame.empty, features.account_id),
            "entities": written,
            "reference_date": features.reference_date.isoformat(),
            "tier_counts": dg.MetadataValue.json(result["tier"].value_counts().to_dict()),
            "methods": dg.MetadataValue.json({name: r["entities"] for name, r in reasons.items()}),
            "method_reasons": dg.MetadataValue.md(markdown_table(pd.DataFrame(
                [{"method": name, **r} for name, r in reasons.items()], columns=["method", "entities", "why"]))),
            "changes": dg.MetadataValue.json(result["direction"].dropna().value_counts().to_dict()),
            "model_version": tier_model.version if tier_model and "model" in reasons else "none",
        }
        if tier_model is None:
            metadata["note"] = f"no READY {level} tier classifier: see {level}_tier_classifier's metadata for why"
        elif not getattr(tier_model.model, "beats_rules_", True):
            metadata["note"] = str(tier_model.training_metrics.get("use", "rules: the classifier did not beat the rule tiers"))
        if "model" in reasons:
            for key in ("accuracy", "f1_weighted", "log_loss", "ece"):
                if key in tier_model.training_metrics:
                    metadata[f"model_{key}"] = float(tier_model.training_metrics[key])
        preview = result.join(frame[["spend_7d", "leads_7d", "cpl_7d"]])
        preview = preview.sort_values("spend_7d", ascending=False)[
            ["tier", "confidence", "previous_tier", "direction", "method", "spend_7d", "leads_7d", "cpl_7d"]
        ]
        names = entity_names(load_entities(engine, features.account_id, level))
        metadata["top_by_spend"] = dg.MetadataValue.md(markdown_table(
            with_names(preview, names), max_rows=15, currency=account_currency(engine, features.account_id)))
        context.add_output_metadata(metadata)
        return result

    return _classifications


tier_classifier_assets = [build_tier_classifier_asset(level) for level in LEVELS]
classification_assets = [build_classifications_asset(level) for level in LEVELS]
tier_assets = [*tier_classifier_assets, transfer_classifier, *classification_assets]
