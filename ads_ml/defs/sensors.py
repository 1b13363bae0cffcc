"""Sensors: ad accounts -> dynamic partitions; new insight rows -> a refresh of that account."""

import datetime as dt

import dagster as dg

from ads_ml.db.migrate import SchemaError
from ads_ml.db.queries import accounts_with_new_insights, active_account_ids
from ads_ml.defs.jobs import account_refresh_job
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME, ad_account_partitions
from ads_ml.defs.resources import DatabaseResource


@dg.sensor(
    name="ad_account_partitions_sensor",
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition for every active ad account and removes deactivated ones.",
)
def ad_account_partitions_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    try:
        engine = database.engine()
    except SchemaError as exc:  # a fresh install before `ads-ml migrate` / the first import
        return dg.SensorResult(skip_reason=dg.SkipReason(str(exc)))
    active = set(active_account_ids(engine))
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    to_add = sorted(active - existing)
    to_remove = sorted(existing - active)
    requests = []
    if to_add:
        requests.append(ad_account_partitions.build_add_request(to_add))
    if to_remove:
        requests.append(ad_account_partitions.build_delete_request(to_remove))
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason(f"{len(existing)} account partitions up to date"))
    context.log.info(f"adding {to_add or 'none'}, removing {to_remove or 'none'}")
    return dg.SensorResult(dynamic_partitions_requests=requests)


@dg.sensor(
    name="new_insights_sensor",
    job=account_refresh_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When insight rows of an account change (cursor on daily_insights.updated_at), "
    "requests a run of that account's features and everything downstream.",
)
def new_insights_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    try:
        engine = database.engine()
    except SchemaError as exc:
        return dg.SensorResult(skip_reason=dg.SkipReason(str(exc)))
    since = dt.datetime.fromisoformat(context.cursor) if context.cursor else None
    changed = accounts_with_new_insights(engine, since)
    if not changed:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new insight rows"))
    active = set(active_account_ids(engine))
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    accounts = sorted(a for a in changed if a in active)
    new_partitions = [a for a in accounts if a not in existing]
    run_requests = [
        dg.RunRequest(run_key=f"{account}:{changed[account].isoformat()}", partition_key=account)
        for account in accounts
    ]
    cursor = max(changed.values()).isoformat()
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[ad_account_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=cursor,
    )
