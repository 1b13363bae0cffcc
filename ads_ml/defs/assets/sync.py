"""``meta_ad_accounts`` and ``meta_sync``: data flowing in from the Meta Marketing API.

``meta_ad_accounts`` (hourly) registers the ad accounts the token reads; the partitions sensor
turns new ones into partitions and removes retired ones. ``meta_sync`` (per account, hourly in the
account's timezone) pulls yesterday and today, and once a day the whole re-pull window, writing
through the importer's path: when something changed, an ``import_batches`` row makes
``new_insights_sensor`` refresh the account's insights (and ``change_events_sensor`` schedule the
impact reports of new changes), and the automation takes it from there. A sync that finds nothing
new writes nothing and starts nothing.
"""


import datetime as dt
import warnings

import dagster as dg
import pandas as pd
from pydantic import Field

from ads_ml.db.engine import is_transient
from ads_ml.defs.automation import on_meta_discovery_cron, on_meta_sync_cron
from ads_ml.defs.common import OWNERS, markdown_table, retry_transient
from ads_ml.defs.partitions import ad_account_partitions
from ads_ml.defs.resources import DatabaseResource, MetaResource
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.meta import MetaApiError
from ads_ml.ingest.sync import discover_accounts, sync_account, sync_states

NOT_CONFIGURED = ("Meta sync not configured (ADS_ML_META_ACCESS_TOKEN is not set): this deployment's data "
                  "comes from CSV imports (ads-ml import insights FILE --account ID)")

with warnings.catch_warnings():
    warnings.simplefilter("ignore")  # the time-window freshness policy is beta in Dagster 1.13
    SYNC_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=dt.timedelta(hours=3), warn_window=dt.timedelta(hours=2))


def _failure(exc: Exception, what: str) -> Exception:
    """An API or data error as one line: a token or permission problem, or an answer that could be
    stored wrongly, fails the step. What is transient (Meta still throttling or unreachable after
    every wait) is left to :func:`retry_transient`."""
    if is_transient(exc):
        return exc
    return dg.Failure(description=f"{what}: {exc}", allow_retries=False)


@dg.asset(
    name="meta_ad_accounts",
    group_name="sync",
    kinds={"facebook", "sql"},
    owners=OWNERS,
    automation_condition=on_meta_discovery_cron("meta_discovery"),
    description="The ad accounts the Meta token reads (or ADS_ML_META_ACCOUNT_IDS), with name, timezone, currency "
    "and status, in ad_accounts: new ones become partitions, disabled or closed ones (and those the token no longer "
    "reads) are retired.",
)
@retry_transient
def meta_ad_accounts(context: dg.AssetExecutionContext, database: DatabaseResource, meta: MetaResource) -> dg.MaterializeResult:
    if not meta.configured:
        context.log.info(NOT_CONFIGURED)
        return dg.MaterializeResult(metadata={"configured": False, "note": NOT_CONFIGURED})
    try:
        found = discover_accounts(database.engine(), meta.client(), meta.accounts())
    except (MetaApiError, InputFileError) as exc:
        raise _failure(exc, "account discovery") from None
    context.log.info(found.summary())
    table = pd.DataFrame(found.accounts, columns=["id", "name", "currency", "timezone", "account_status", "is_active"])
    return dg.MaterializeResult(metadata={
        "configured": True,
        "accounts": len(found.accounts),
        "added": dg.MetadataValue.json(found.added),
        "retired": dg.MetadataValue.json(found.retired),
        "updated": dg.MetadataValue.json(found.updated),
        "ad_accounts": dg.MetadataValue.md(markdown_table(table, max_rows=50)),
    })


class SyncConfig(dg.Config):
    since: str | None = Field(default=None, description="YYYY-MM-DD: re-pull from this day (a backfill from Meta).")
    full: bool | None = Field(default=None, description="Force (true) or skip (false) the full re-pull window; "
                              "unset: daily, at the first sync after META_FULL_SYNC_HOUR, account time.")


@dg.asset(
    name="meta_sync",
    group_name="sync",
    kinds={"facebook", "sql"},
    owners=OWNERS,
    partitions_def=ad_account_partitions,
    automation_condition=on_meta_sync_cron("meta_sync"),
    freshness_policy=SYNC_FRESHNESS,
    description="Pulls the account's campaigns, adsets and ads, its ad-level daily insights (yesterday and today "
    "hourly, the last 28 days once a day: Meta revises attributed results) and its activity log (budget, status, "
    "targeting and creative changes as change events) from the Meta Marketing API, and writes them through the "
    "importer's validation and upsert path in one transaction. Today's rows are marked partial.",
)
@retry_transient
def meta_sync(context: dg.AssetExecutionContext, config: SyncConfig, database: DatabaseResource,
              meta: MetaResource) -> dg.MaterializeResult:
    account_id = context.partition_key
    if not meta.configured:
        context.log.info(NOT_CONFIGURED)
        return dg.MaterializeResult(metadata={"no_data": True, "configured": False, "note": NOT_CONFIGURED})
    engine = database.engine()
    if account_id not in sync_states(engine, [account_id]):
        note = (f"{account_id} is not synced from Meta (discovery did not find it and it was never synced): its data "
                f"comes from CSV imports; `ads-ml sync --account {account_id}` starts syncing it")
        context.log.info(note)
        return dg.MaterializeResult(metadata={"no_data": True, "configured": True, "synced": False, "note": note})
    try:
        since = dt.date.fromisoformat(config.since) if config.since else None
    except ValueError:
        raise dg.Failure(f"since {config.since!r} is not a date (YYYY-MM-DD)", allow_retries=False) from None
    try:
        result = sync_account(engine, meta.client(), account_id, since=since, full=config.full,
                              lead_types=meta.lead_types())
    except (MetaApiError, InputFileError, ValueError) as exc:
        raise _failure(exc, f"Meta sync of {account_id}") from None
    context.log.info(result.summary())
    ins = result.insights
    partial = result.until.isoformat() + f" (read at {result.read_at:%H:%M} UTC)"
    return dg.MaterializeResult(metadata={
        "no_data": result.insight_rows_read == 0,
        "configured": True,
        "synced": True,
        "window": f"{result.since} .. {result.until}",
        "full_repull": result.full,
        "partial_day": partial,
        "changed": result.changed,
        "insight_rows_read": result.insight_rows_read,
        "insight_rows_changed": ins.rows_changed if ins else 0,
        "insight_rows_deleted": ins.rows_deleted if ins else 0,
        "entities": dg.MetadataValue.json(result.entities),
        "entities_changed": result.entities_changed,
        "change_events_read": result.changes_read,
        "change_events_new": result.changes_new,
        "activities_not_changes": dg.MetadataValue.json(result.changes_skipped),
        "requests": result.requests,
        "throttled_waits": result.throttled_waits,
        "throttled_seconds": round(result.throttled_seconds, 1),
        "transient_retries": result.transient_retries,
        "seconds": round(result.seconds, 2),
    })


sync_assets = [meta_ad_accounts, meta_sync]

