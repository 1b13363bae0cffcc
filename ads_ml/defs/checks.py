"""Asset checks on the insights of every level. Spend, clicks and uniqueness block downstream
assets in the same run; missing days are a warning with the dates listed."""

import warnings
import dagster as dg

from ads_ml.db.queries import LevelInsights
from ads_ml.defs.common import LEVELS, entity_names, markdown_table, with_names
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.ml import quality


# The checks are partitioned like their asset, so a run of one account checks (and loads) that
# account only; Dagster 1.13 calls partitioned checks a preview feature.
warnings.filterwarnings("ignore", message="Specifying a partitions_def on an AssetCheckSpec", category=dg.PreviewWarning)


def build_insights_checks(level: str) -> list[dg.AssetChecksDefinition]:
    asset = f"{level}_insights"

    @dg.asset_check(asset=asset, partitions_def=ad_account_partitions, name="no_negative_spend", blocking=True, description="No day with negative spend.")
    def _no_negative_spend(insights: LevelInsights) -> dg.AssetCheckResult:
        bad = quality.negative_spend(insights.daily)
        return dg.AssetCheckResult(
            passed=bad.empty, metadata={"rows": len(bad), "examples": dg.MetadataValue.md(markdown_table(with_names(bad, entity_names(insights.entities))))}
        )

    @dg.asset_check(
        asset=asset, partitions_def=ad_account_partitions, name="clicks_not_above_impressions", blocking=True,
        description="Clicks never exceed impressions on a day.",
    )
    def _clicks(insights: LevelInsights) -> dg.AssetCheckResult:
        bad = quality.clicks_over_impressions(insights.daily)
        return dg.AssetCheckResult(
            passed=bad.empty, metadata={"rows": len(bad), "examples": dg.MetadataValue.md(markdown_table(with_names(bad, entity_names(insights.entities))))}
        )

    @dg.asset_check(
        asset=asset, partitions_def=ad_account_partitions, name="unique_entity_days", blocking=True, description="At most one row per entity and day."
    )
    def _unique(insights: LevelInsights) -> dg.AssetCheckResult:
        bad = quality.duplicate_entity_days(insights.daily)
        return dg.AssetCheckResult(
            passed=bad.empty, metadata={"rows": len(bad), "examples": dg.MetadataValue.md(markdown_table(with_names(bad, entity_names(insights.entities))))}
        )

    @dg.asset_check(
        asset=asset, partitions_def=ad_account_partitions, name="no_missing_days",
        description="Every day in the window has rows (a day without any row is usually a missed import); "
        "entities' own delivery gaps are listed for information.",
    )
    def _gaps(insights: LevelInsights) -> dg.AssetCheckResult:
        missing = quality.missing_days(insights.daily, insights.start_date, insights.reference_date)
        gaps = quality.entity_gaps(insights.daily)
        return dg.AssetCheckResult(
            passed=not missing,
            severity=dg.AssetCheckSeverity.WARN,
            metadata={
                "missing_days": len(missing),
                "missing_dates": ", ".join(d.isoformat() for d in missing[:31]) or "none",
                "entities_with_gaps": len(gaps),
                "largest_entity_gaps": dg.MetadataValue.md(markdown_table(with_names(gaps, entity_names(insights.entities)))),
            },
        )

    return [_no_negative_spend, _clicks, _unique, _gaps]


insights_checks = [check for level in LEVELS for check in build_insights_checks(level)]
