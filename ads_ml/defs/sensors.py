"""Sensors: ad accounts -> dynamic partitions; new insight rows -> a refresh of that account."""

import datetime as dt
import json

import dagster as dg

from ads_ml import settings
from ads_ml.db.migrate import SchemaError
from ads_ml.db.queries import (
    account_states,
    active_account_ids,
    change_events_of_batches,
    import_batches_after,
    reference_date,
    reported_windows,
)
from ads_ml.defs.common import LEVELS
from ads_ml.defs.jobs import insights_refresh_job, impact_job
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME, ad_account_partitions
from ads_ml.defs.resources import DatabaseResource, MetaResource
from ads_ml.ingest.sync import register_accounts
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
    description="Keeps the ad_account partitions and the ad_accounts table in step: a partition for every "
    "active ad account; a partition added in the UI registers its ad account (synced from Meta when the sync "
    "is configured); a partition is removed only when its account is deactivated or deleted. The tick names "
    "what it added, registered and removed, and why.",
)
def ad_account_partitions_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource,
                                 meta: MetaResource) -> dg.SensorResult:
    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(why_not))
    accounts = account_states(engine)  # id -> is_active
    try:
        known = set(json.loads(context.cursor or "{}").get("known", accounts))
    except (ValueError, AttributeError):
        known = set(accounts)
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    deleted = sorted(a for a in existing if a not in accounts and a in known)
    from_ui = sorted(a for a in existing if a not in accounts and a not in known)
    valid = [a for a in from_ui if settings.ACCOUNT_ID_PATTERN.fullmatch(a)]
    registered = register_accounts(engine, valid, sync_from_meta=meta.configured) if valid else []
    deactivated = sorted(a for a in existing if accounts.get(a) is False)
    to_add = sorted(a for a, active in accounts.items() if active and a not in existing)
    to_remove = deactivated + deleted
    requests = []
    if to_add:
        requests.append(ad_account_partitions.build_add_request(to_add))
    if to_remove:
        requests.append(ad_account_partitions.build_delete_request(to_remove))
    said = []
    if to_add:
        said.append(f"added {', '.join(to_add)} (active ad accounts without a partition)")
    if registered:
        said.append(f"registered {', '.join(registered)} (partitions added in the UI) as ad accounts"
                    + (", synced from Meta" if meta.configured else "; import their insights (ads-ml import)"))
    if invalid := sorted(set(from_ui) - set(valid)):
        said.append(f"kept {', '.join(invalid)} unregistered: not an ad account id (letters, digits, '_', '-')")
    if deactivated:
        said.append(f"removed {', '.join(deactivated)} (deactivated)")
    if deleted:
        said.append(f"removed {', '.join(deleted)} (deleted from ad_accounts)")
    message = "; ".join(said) or f"{len(existing)} account partitions up to date"
    if said:
        context.log.info(message)
    return dg.SensorResult(dynamic_partitions_requests=requests, skip_reason=dg.SkipReason(message),
                           cursor=json.dumps({"known": sorted(set(accounts) | set(registered))}))


def _insights_reflect(instance: dg.DagsterInstance, account_id: str, batch_id: int) -> bool:
    """Whether every level's latest insights materialisation of the account read the data of import
    batch ``batch_id`` (their metadata's ``import_batch``: the newest batch committed before they read)."""
    for level in LEVELS:
        records = instance.fetch_materializations(dg.AssetRecordsFilter(
            asset_key=dg.AssetKey(f"{level}_insights"), asset_partitions=[account_id]), limit=1).records
        materialization = records[0].asset_materialization if records else None
        seen = materialization.metadata.get("import_batch") if materialization else None
        if seen is None or not isinstance(seen.value, int) or seen.value < batch_id:
            return False
    return True


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
    # the daemon's first start: imports the insights assets already reflect (`ads-ml demo` or
    # `ads-ml materialize` ran the pipeline before) are not run again. Later, every batch is new to
    # the cursor (on PostgreSQL a batch may commit after a higher-numbered one was read).
    reflected = [a for a in accounts if after is None and a in existing
                 and _insights_reflect(context.instance, a, int(newest[a]))]
    accounts = [a for a in accounts if a not in reflected]
    if reflected and not accounts:
        return dg.SensorResult(skip_reason=dg.SkipReason(
            f"the insights of {', '.join(reflected)} already reflect their latest import: nothing to refresh"),
            cursor=cursor)
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
    "waiting for an after-window; when an account's insights reach a change's date + 7, 14 or 28 days "
    "(ADS_ML_IMPACT_WINDOWS), requests the impact report of exactly the changes that are due, once per window.",
)
def change_events_sensor(context: dg.SensorEvaluationContext, database: DatabaseResource) -> dg.SensorResult:
    engine, why_not = _engine_or_reason(database)
    if engine is None:
        return dg.SensorResult(skip_reason=dg.SkipReason(why_not))
    windows = settings.impact_report_windows()
    state, after = _batch_cursor(context.cursor)
    batches, horizon = import_batches_after(engine, after or 0, ("changes",))
    fresh = change_events_of_batches(engine, batches["id"])
    # a change's windows already reported (e.g. `ads-ml demo` reported them before the daemon's
    # first start) are not requested again
    reported: dict[str, dict] = {a: reported_windows(engine, a, settings.IMPACT_DEFAULT_WINDOW_DAYS)
                                 for a in fresh["account_id"].unique()}
    pending = [entry + [0] if len(entry) == 3 else entry for entry in state.get("pending", [])]  # [id, account, date, done up to]
    already = 0
    for r in fresh.itertuples():
        done = reported[r.account_id].get((r.entity_type, str(r.entity_id), r.change_date, r.change_type), set())
        upto = max((w for w in windows if w in done), default=0)
        if upto == windows[-1]:
            already += 1
            continue
        pending.append([int(r.id), r.account_id, r.change_date.isoformat(), upto])
    active = set(active_account_ids(engine))
    due: dict[str, list[tuple[int, int]]] = {}
    waiting = []
    references: dict[str, dt.date | None] = {}
    for event_id, account, change_date, upto in pending:
        if account not in active:
            continue  # a deactivated account's changes are dropped
        if account not in references:
            references[account] = reference_date(engine, account)
        ref = references[account]
        elapsed = [w for w in windows if w > upto and ref is not None
                   and dt.date.fromisoformat(change_date) + dt.timedelta(days=w) <= ref]
        if elapsed:
            due.setdefault(account, []).append((event_id, elapsed[-1]))
            upto = elapsed[-1]
        if upto < windows[-1]:
            waiting.append([event_id, account, change_date, upto])
    existing = set(context.instance.get_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME))
    new_partitions = sorted(a for a in due if a not in existing)
    requests = [
        dg.RunRequest(
            run_key=f"impact:{account}:{','.join(f'{i}@{w}d' for i, w in sorted(items))}",
            partition_key=account,
            run_config={"ops": {"impact_reports": {"config": {"change_ids": sorted(i for i, _ in items),
                                                              "windows": list(windows)}}}},
        )
        for account, items in sorted(due.items())
    ]
    return dg.SensorResult(
        run_requests=requests,
        dynamic_partitions_requests=[ad_account_partitions.build_add_request(new_partitions)] if new_partitions else [],
        cursor=json.dumps({"after": horizon, "pending": waiting}),
        skip_reason=None if requests else dg.SkipReason(
            f"no change due: {len(waiting)} waiting for an after-window ({'/'.join(map(str, windows))} days)"
            + (f", {already} already reported" if already else "")),
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
