"""``campaign_features``, ``adset_features``, ``ad_features``: one row of features per entity,
computed for the whole level at once and stored in ``ml_features``."""

import dagster as dg

from ads_ml.db.queries import LevelFeatures, LevelInsights, account_currency, replace_features
from ads_ml.defs.automation import on_fresh_inputs
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, no_data_metadata, with_names
from ads_ml.defs.io_managers import stored_as
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource
from ads_ml.ml.features import FEATURE_COLUMNS, compute_entity_features

PREVIEW_COLUMNS = ["spend_7d", "leads_7d", "cpl_7d", "ctr_7d", "cpl_trend_7d", "share_of_parent_spend_7d", "is_active"]


def build_features_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_features",
        automation_condition=on_fresh_inputs(),
        metadata=stored_as("features", level),
        ins={"insights": dg.AssetIn(f"{level}_insights")},
        partitions_def=ad_account_partitions,
        group_name="features",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Entity features of every {level} as of the reference date (7/14/30-day sums and ratios, "
            "trends, volatility, weekday effects, delivery, hierarchy shares). Ratios with a zero "
            "denominator are missing. Written to ml_features, replacing the partition's rows."
        ),
    )
    @retry_transient
    def _features(context: dg.AssetExecutionContext, insights: LevelInsights, database: DatabaseResource) -> LevelFeatures:
        features = compute_entity_features(insights.daily, insights.entities, insights.reference_date)
        written = replace_features(
            database.engine(), insights.account_id, level, features, insights.reference_date
        )
        missing_cpl = int(features["cpl_7d"].isna().sum())
        names = entity_names(insights.entities)
        context.add_output_metadata(
            {
                **no_data_metadata(insights.has_data, insights.account_id),
                "entities": written,
                "features": len(FEATURE_COLUMNS),
                "reference_date": insights.reference_date.isoformat(),
                "active_entities": int(features["is_active"].sum()),
                "entities_without_cpl_7d": missing_cpl,
                "preview": dg.MetadataValue.md(
                    markdown_table(with_names(features.sort_values("spend_7d", ascending=False)[PREVIEW_COLUMNS], names),
                                   currency=account_currency(database.engine(), insights.account_id))
                ),
            }
        )
        return LevelFeatures(insights.account_id, level, insights.reference_date, features)

    return _features


features_assets = [build_features_asset(level) for level in LEVELS]
