"""``campaign_insights``, ``adset_insights``, ``ad_insights``: the last N days of daily insights
per account, up to the account's reference date (the latest stored insight date, unless given)."""

import datetime as dt

import dagster as dg
from pydantic import Field

from ads_ml import settings
from ads_ml.db.queries import LevelInsights, account_currency, latest_import_batch, load_level_insights, reference_date
from ads_ml.defs.common import LEVELS, OWNERS, retry_transient, entity_names, markdown_table, with_names
from ads_ml.defs.io_managers import stored_as, today
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource


class InsightsConfig(dg.Config):
    reference_date: str | None = Field(
        default=None, description="YYYY-MM-DD; default: the latest insight date stored for the account."
    )
    lookback_days: int = Field(default=settings.INSIGHTS_LOOKBACK_DAYS, ge=14, le=730)


def resolve_reference_date(config_value: str | None, database: DatabaseResource, account_id: str) -> dt.date | None:
    """The configured date, else the account's latest insight date (None: nothing stored yet)."""
    if config_value:
        try:
            return dt.date.fromisoformat(config_value)
        except ValueError:
            raise dg.Failure(f"reference_date {config_value!r} is not a date (YYYY-MM-DD)") from None
    return reference_date(database.engine(), account_id)


def build_insights_asset(level: str) -> dg.AssetsDefinition:
    @dg.asset(
        name=f"{level}_insights",
        metadata=stored_as("insights", level),
        partitions_def=ad_account_partitions,
        group_name="insights",
        kinds={"pandas", "sql"},
        owners=OWNERS,
        description=(
            f"Daily {level} insights (impressions, reach, clicks, spend, leads, conversions, frequency) "
            f"of the last N days up to the account's reference date, with the {level}s' status and budget."
        ),
    )
    @retry_transient
    def _insights(context: dg.AssetExecutionContext, config: InsightsConfig, database: DatabaseResource) -> LevelInsights:
        account_id = context.partition_key
        batch = latest_import_batch(database.engine(), account_id)  # before reading: what the rows reflect
        ref = resolve_reference_date(config.reference_date, database, account_id)
        if ref is None:
            insights = load_level_insights(database.engine(), account_id, level, today(), config.lookback_days)
            context.log.warning(f"account {account_id} has no insights stored yet")
            context.add_output_metadata({
                "no_data": True,
                "note": f"account {account_id} has no insights stored yet: import some "
                        f"(ads-ml import insights FILE --account {account_id}); downstream assets record no data",
                "rows": 0,
                "import_batch": batch,
                "entities": len(insights.entities),
                "lookback_days": config.lookback_days,
            })
            return insights
        insights = load_level_insights(database.engine(), account_id, level, ref, config.lookback_days)
        daily = insights.daily
        names = entity_names(insights.entities)
        currency = account_currency(database.engine(), account_id)
        by_entity = (
            daily.groupby("entity_id")[["spend", "leads", "impressions"]].sum().sort_values("spend", ascending=False)
        )
        context.add_output_metadata(
            {
                "rows": len(daily),
                "import_batch": batch,
                "entities": len(insights.entities),
                "entities_with_delivery": int(daily["entity_id"].nunique()),
                "reference_date": ref.isoformat(),
                "lookback_days": config.lookback_days,
                "first_date": insights.start_date.isoformat(),
                "currency": currency or "not recorded",
                "total_spend": float(daily["spend"].sum()),
                "total_leads": int(daily["leads"].sum()),
                "top_by_spend": dg.MetadataValue.md(markdown_table(with_names(by_entity, names), currency=currency)),
            }
        )
        return insights

    return _insights


insights_assets = [build_insights_asset(level) for level in LEVELS]
