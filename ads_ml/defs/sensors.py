"""Sensors: ad accounts -> dynamic partitions; new insight rows -> a refresh of that account."""

import datetime as dt
import json

import dagster as dg

from ads_ml import settings
from ads_ml.db.migrate import SchemaError
from ads_ml.db.queries import (
    active_account_ids,
    change_events_of_batches,
    import_batches_after,
    reference_date,
)
from ads_ml.defs.jobs import insights_refresh_job, impact_job
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME, ad_account_partitions
from ads_ml.defs.resources import DatabaseResource
from ads_ml.runner import fail_dead_cli_runs


def _engine_or_reason(database: DatabaseResource):  # noqa: ANN202
    """(engine, None), or (None, why) before the schema exists: on a fresh install the sensors
    skip with the reason instead of failing."""
    try:
        return database.engine(), None
    except SchemaError as exc:
        return None, str(exc)


@dg.sensor(
    name="ad_account_partitions_sensor",
    minimum_interval_seconds=settings.sensor_interval_seconds(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds a partition for every active ad account and removes deactivated ones.",
)
def ad_account_partitions_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(why_not))
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


def _batch_cursor(cursor: str | None) -> tuple[dict, int | None]:
    """The sensor's state and its import-batch cursor (None: first evaluation, or a cursor written
    before import batches existed: start from the batches there are)."""
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        state = {}
    state = state if isinstance(state, dict) else {}
    after = state.get("after")
    return state, (int(after) if isinstance(after, int) else None)


@dg.sensor(
    name="new_insights_sensor",
    job=insights_refresh_job,
    minimum_interval_seconds=settings.sensor_interval_seconds(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="When an import or deletion of an account's insights commits (cursor on import_batches, "
    "in commit order), requests a refresh of that account's insights; what depends on them follows by "
    "automation.",
)
def new_insights_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(why_not))
    state, after = _batch_cursor(context.cursor)
    batches, horizon = import_batches_after(engine, after or 0, ("insights", "delete"))
    cursor = json.dumps({"after": horizon})
    batches = batches[batches["rows"] > 0]  # an import that changed nothing
    if batches.empty:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new imports"), cursor=cursor)
    active = set(active_account_ids(engine))
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    newest = batches.groupby("account_id")["id"].max()
    accounts = sorted(a for a in newest.index if a in active)
    new_partitions = [a for a in accounts if a not in existing]
    run_requests = [
        dg.RunRequest(run_key=f"{account}:import:{int(newest[account])}", partition_key=account,
                      tags={"ads_ml/import_batch": str(int(newest[account]))})
        for account in accounts
    ]
    return dg.SensorResult(
        run_requests=run_requests,
        dynamic_partitions_requests=[ad_account_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=cursor,
    )


@dg.sensor(
    name="change_events_sensor",
    job=impact_job,
    minimum_interval_seconds=settings.sensor_interval_seconds(300),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Keeps a cursor on the imports of change events (in commit order) and the changes still "
    "waiting for their after-window; when an account's insights reach a change's date + 7 days, requests the "
    "impact report of exactly the changes that are due.",
)
def change_events_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(why_not))
    state, after = _batch_cursor(context.cursor)
    batches, horizon = import_batches_after(engine, after or 0, ("changes",))
    fresh = change_events_of_batches(engine, batches["id"])
    pending = state.get("pending", []) + [[int(r.id), r.account_id, r.change_date.isoformat()] for r in fresh.itertuples()]
    active = set(active_account_ids(engine))
    window = dt.timedelta(days=settings.IMPACT_DEFAULT_WINDOW_DAYS)
    due: dict[str, list[int]] = {}
    waiting = []
    references: dict[str, dt.date | None] = {}
    for event_id, account, change_date in pending:
        if account not in active:
            continue  # a deactivated account's changes are dropped
        if account not in references:
            references[account] = reference_date(engine, account)
        ref = references[account]
        if ref is not None and dt.date.fromisoformat(change_date) + window <= ref:
            due.setdefault(account, []).append(event_id)
        else:
            waiting.append([event_id, account, change_date])
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    new_partitions = sorted(a for a in due if a not in existing)
    requests = [
        dg.RunRequest(
            run_key=f"impact:{account}:{','.join(map(str, sorted(ids)))}",
            partition_key=account,
            run_config={"ops": {"impact_reports": {"config": {"change_ids": sorted(ids)}}}},
        )
        for account, ids in sorted(due.items())
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[ad_account_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps({"after": horizon, "pending": waiting}),
    )


@dg.sensor(
    name="dead_cli_runs_sensor",
    minimum_interval_seconds=settings.sensor_interval_seconds(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Fails the runs an ads-ml process of this machine left in progress when it was killed, so "
    "the account's queued runs move on (runs the daemon launched are watched by run monitoring).",
)
def dead_cli_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
    failed = fail_dead_cli_runs(context.instance)
    return dg.SkipReason(f"failed {len(failed)} run(s) of killed ads-ml processes: {', '.join(failed)}"
                         if failed else "no run of a killed ads-ml process")


@dg.sensor(
    name="alerts_sensor",
    minimum_interval_seconds=settings.sensor_interval_seconds(60),
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Delivers new anomalies, urgent recommendations and impact verdicts, and each account's daily "
    "digest at its hour, to the alert destinations (ads-ml alerts add, ADS_ML_ALERT_URLS) through Apprise, exactly "
    "once (sent_alerts); a failing destination is retried with backoff and named here.",
)
def alerts_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SkipReason:
    from ads_ml.alerts import deliver

    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SkipReason(why_not)
    report = deliver(engine)
    if report.errors:
        context.log.warning(f"alerts: {report.summary()}")
    return dg.SkipReason(f"alerts: {report.summary()}")
