"""The Meta sync of one ad account, and the discovery of the accounts a token reads.

A sync reads everything first (account, entities, insights of the window, activity log), turns it
into the importer's frames, and only then writes, in **one transaction** through the same
validation and upsert path as the CSV import (:func:`ads_ml.ingest.insights.write_ad_days`): the
window's ad-days are replaced by what Meta answered (a revised past day replaces the stored one, a
day Meta no longer reports is deleted), adsets and campaigns are rolled up, and an
``import_batches`` row is written only when something changed — so the sensors and the
automation fire on real change and a re-sync with nothing new starts nothing. A failure anywhere
(the API after its retries, a refused answer) writes no data; the error is kept in
``meta_sync_state`` for the UI and the CLI.

Windows: an account's first sync pulls ``META_INITIAL_DAYS`` (90) days of history; the daily full
sync re-pulls the last ``META_REPULL_DAYS`` days plus today (Meta revises attributed results for 28
days); the hourly sync pulls yesterday and today. Days are in the
account's timezone; today's rows are marked partial with the time they were read.
"""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, select, update
from sqlalchemy.engine import Connection

from ads_ml import settings
from ads_ml.db.engine import begin_write
from ads_ml.db.models import AdAccount, ENTITY_MODELS, MetaSyncState, utcnow
from ads_ml.db.queries import record_import_batch, valid_timezone
from ads_ml.db.upsert import insert_for, upsert
from ads_ml.ingest.changes import finish_change_batch, upsert_change_events
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.insights import ImportResult, _Format, validate_account_id, write_ad_days
from ads_ml.ingest.meta import (
    META_RAW_COLUMNS,
    RETIRED_ACCOUNT_STATUSES,
    MetaApiError,
    MetaClient,
    change_records,
    entity_records,
    insights_frame,
)


@dataclass
class SyncResult:
    account_id: str
    since: dt.date
    until: dt.date
    full: bool
    read_at: dt.datetime
    entities: dict[str, int] = field(default_factory=dict)  # level -> objects read
    entities_changed: int = 0
    insights: ImportResult | None = None
    insight_rows_read: int = 0
    changes_read: int = 0
    changes_new: int = 0
    changes_skipped: dict[str, int] = field(default_factory=dict)
    requests: int = 0
    throttled_waits: int = 0
    throttled_seconds: float = 0.0
    transient_retries: int = 0
    seconds: float = 0.0

    @property
    def changed(self) -> bool:
        ins = self.insights
        return bool(self.entities_changed or self.changes_new or (ins and ins.rows_changed + ins.rows_deleted))

    def summary(self) -> str:
        ins = self.insights
        kind = "full re-pull" if self.full else "recent days"
        lines = [
            f"{self.account_id}: synced {self.since} .. {self.until} ({kind}) in {self.seconds:.1f} s, "
            f"{self.requests} requests; {self.insight_rows_read} ad-day rows read, "
            f"{ins.rows_changed if ins else 0} insight rows new or changed, {ins.rows_deleted if ins else 0} deleted; "
            f"{sum(self.entities.values())} entities read ({self.entities_changed} new or changed); "
            f"{self.changes_read} change events from the activity log ({self.changes_new} new)"
        ]
        if self.throttled_waits:
            lines.append(f"  throttled: paused {self.throttled_waits} times, {self.throttled_seconds:.0f} s in all")
        if self.transient_retries:
            lines.append(f"  {self.transient_retries} transient failures retried")
        if not self.changed:
            lines.append("  nothing new: nothing written, no run started")
        return "\n".join(lines)


def _zone(name: str | None) -> str:
    return valid_timezone(name, settings.schedule_timezone())


def _load_state(engine: Engine, account_id: str) -> MetaSyncState | None:
    with engine.connect() as conn:
        row = conn.execute(select(MetaSyncState.__table__).where(MetaSyncState.account_id == account_id)).first()
    return row


def full_sync_due(last_full: dt.datetime | None, now: dt.datetime, timezone: str) -> bool:
    """The daily full re-pull is due when none ran yet, or the last ran on an earlier day (account
    time) and it is ``META_FULL_SYNC_HOUR`` or later."""
    if last_full is None:
        return True
    zone = ZoneInfo(timezone)
    if last_full.tzinfo is None:
        last_full = last_full.replace(tzinfo=dt.timezone.utc)
    local_now = now.astimezone(zone)
    return last_full.astimezone(zone).date() < local_now.date() and local_now.hour >= settings.META_FULL_SYNC_HOUR


def sync_account(engine: Engine, client: MetaClient, account_id: str, *, since: dt.date | None = None,
                 full: bool | None = None, now: dt.datetime | None = None,
                 lead_types: tuple[str, ...] | None = None) -> SyncResult:
    """Sync one account (see the module docstring). ``since``: re-pull from that day (a backfill);
    ``full``: force (True) or skip (False) the full re-pull window; default: the daily rule."""
    validate_account_id(account_id)
    started = time.perf_counter()
    now = now or utcnow()
    before = client.stats.requests, client.stats.throttled_waits, client.stats.throttled_seconds, client.stats.transient_retries
    result: SyncResult | None = None
    try:
        account = client.account(account_id)
        timezone = _zone(account.get("timezone_name"))
        currency = (account.get("currency") or "").upper() or None
        today = now.astimezone(ZoneInfo(timezone)).date()
        state = _load_state(engine, account_id)
        if since is not None:
            if since > today:
                raise ValueError(f"--since {since} is after today ({today} in {timezone})")
            full = True
        elif state is None or state.last_full_sync_at is None:
            full = True  # the account's first sync: its history, as far back as the analyses read
            since = today - dt.timedelta(days=settings.META_INITIAL_DAYS - 1)
        else:
            if full is None:
                full = full_sync_due(state.last_full_sync_at, now, timezone)
            since = today - dt.timedelta(days=settings.META_REPULL_DAYS if full else 1)
        result = SyncResult(account_id=account_id, since=since, until=today, full=bool(full), read_at=now)

        entities = client.entities(account_id)
        result.entities = {level: len(items) for level, items in entities.items()}
        # pure: everything is read and checked before anything is written; each page becomes a
        # frame as it arrives, so memory holds the frames, not the API's JSON
        records = entity_records(entities, account_id, currency)
        frames, request = [], f"Meta insights {account_id} {since}..{today}"
        for page in client.insight_pages(account_id, since, today, ads=len(entities.get("ad", []))):
            answer = insights_frame(page, account_id, since, today, currency=currency, today=today, read_at=now,
                                    lead_types=lead_types or settings.meta_lead_action_types(),
                                    first_row=result.insight_rows_read + 1)
            result.insight_rows_read += len(answer.frame)
            if len(answer.frame):
                frames.append(answer.frame)
        activities = client.activities(account_id, dt.datetime.combine(since, dt.time(), ZoneInfo(timezone)))
        levels = {r["id"]: level for level, items in records.rows.items() for r in items}
        ad_parents = {r["id"]: r["adset_id"] for r in records.rows.get("ad", [])}
        changes = change_records(activities, levels, ad_parents, timezone, currency)
        result.changes_read, result.changes_skipped = len(changes.rows), changes.skipped

        with begin_write(engine) as conn:
            _upsert_account(conn, account_id, account, timezone, currency, now)
            result.entities_changed = _upsert_entities(conn, account_id, records, now)
            fmt = _Format(names={c: c for c in META_RAW_COLUMNS if c != "partial_as_of"}, meta=True,
                          leads_from_results=False, lead_indicators=(),
                          earliest=today - dt.timedelta(days=settings.IMPORT_MAX_AGE_DAYS),
                          latest=today + dt.timedelta(days=settings.IMPORT_MAX_FUTURE_DAYS))
            insights = ImportResult(account_id=account_id, file=request)
            batches = (pd.concat(frames[i:i + 40]) for i in range(0, len(frames), 40))  # importer-sized batches
            result.insights = write_ad_days(conn, request, account_id, batches, fmt, insights, replace=(since, today))
            if result.entities_changed and not (insights.rows_changed + insights.rows_deleted):
                # a status or budget changed without a new figure: the analyses read them too
                record_import_batch(conn, account_id, "insights", result.entities_changed, since, today)
            if changes.rows:
                batch_id = record_import_batch(conn, account_id, "changes", 0)
                upsert_change_events(conn, [{**r, "account_id": account_id, "created_at": now,
                                             "import_batch_id": batch_id} for r in changes.rows])
                result.changes_new = finish_change_batch(conn, batch_id)
            _save_state(conn, account_id, now, full=bool(full), through=today, error=None)
    except (MetaApiError, InputFileError, ValueError) as exc:
        record_sync_error(engine, account_id, str(exc), now)
        raise
    finally:
        stats = client.stats
        if result is not None:
            result.requests = stats.requests - before[0]
            result.throttled_waits = stats.throttled_waits - before[1]
            result.throttled_seconds = stats.throttled_seconds - before[2]
            result.transient_retries = stats.transient_retries - before[3]
            result.seconds = time.perf_counter() - started
    return result


def _upsert_account(conn: Connection, account_id: str, account: dict, timezone: str, currency: str | None,
                    now: dt.datetime) -> None:
    table = AdAccount.__table__
    stored = conn.execute(select(table.c.currency).where(table.c.id == account_id)).first()
    if stored is not None and stored.currency and currency and stored.currency.upper() != currency:
        raise InputFileError(f"Meta account {account_id}", f"the account is stored in {stored.currency}, Meta reports "
                             f"{currency}: its insights would mix currencies")
    status = account.get("account_status")
    values = {"name": (account.get("name") or account_id)[:255], "timezone": timezone, "currency": currency,
              "updated_at": now}
    if status is not None:
        values["is_active"] = int(status) not in RETIRED_ACCOUNT_STATUSES
    stmt = upsert(conn, table, key=("id",), update=[k for k in values if k != "updated_at"], always=["updated_at"])
    conn.execute(stmt, [{"id": account_id, "is_active": values.get("is_active", True), "created_at": now, **values}])


def _upsert_entities(conn: Connection, account_id: str, records, now: dt.datetime) -> int:  # noqa: ANN001
    """Upsert campaigns, then adsets, then ads; returns how many were new or changed."""
    changed = 0
    for level in ("campaign", "adset", "ad"):
        rows = records.rows.get(level, [])
        if not rows:
            continue
        table = ENTITY_MODELS[level].__table__
        values = [{**r, "account_id": account_id, "created_at": now, "updated_at": now} for r in rows]
        tracked = [c for c in ("name", "status", "effective_status", "daily_budget", "lifetime_budget",
                               "created_time", "updated_time") if c in values[0]]
        stmt = upsert(conn, table, key=("account_id", "id"), update=tracked, always=["updated_at"])
        for start in range(0, len(values), 5000):
            changed += len(conn.execute(stmt, values[start:start + 5000]).all())
    return changed


def _save_state(conn: Connection, account_id: str, now: dt.datetime, *, full: bool | None, through: dt.date | None,
                error: str | None, discovered: bool | None = None, account_status: int | None = None) -> None:
    table = MetaSyncState.__table__
    values: dict = {"updated_at": now}
    if through is not None:
        values.update(last_sync_at=now, synced_through=through, last_error=None, last_error_at=None)
        if full:
            values["last_full_sync_at"] = now
    if error is not None:
        values.update(last_error=error[:2000], last_error_at=now)
    if discovered is not None:
        values["discovered"] = discovered
    if account_status is not None:
        values["account_status"] = account_status
    conn.execute(insert_for(conn, table).values(**{"discovered": False, **values, "account_id": account_id})
                 .on_conflict_do_update(index_elements=[table.c.account_id], set_=values))


def record_sync_error(engine: Engine, account_id: str, error: str, now: dt.datetime | None = None) -> None:
    """Keep a failed sync's reason (own transaction: the failed sync wrote nothing)."""
    try:
        with begin_write(engine) as conn:
            if conn.execute(select(AdAccount.id).where(AdAccount.id == account_id)).first() is None:
                return
            _save_state(conn, account_id, now or utcnow(), full=None, through=None, error=error)
    except Exception:  # noqa: BLE001 - the sync's own error is what the caller reports
        pass


@dataclass
class DiscoveryResult:
    accounts: list[dict]
    added: list[str]
    retired: list[str]
    updated: list[str]

    def summary(self) -> str:
        lines = [f"{len(self.accounts)} ad accounts readable; added {self.added or 'none'}, "
                 f"retired {self.retired or 'none'}, updated {self.updated or 'none'}"]
        for a in self.accounts:
            lines.append(f"  {a['id']}: {a['name']} ({a['currency'] or '?'}, {a['timezone']}) "
                         f"{'active' if a['is_active'] else 'retired (Meta account_status ' + str(a['account_status']) + ')'}")
        return "\n".join(lines)


def discover_accounts(engine: Engine, client: MetaClient, account_ids: tuple[str, ...] = (),
                      now: dt.datetime | None = None) -> DiscoveryResult:
    """Register the ad accounts the token reads (or exactly ``account_ids``) in ``ad_accounts`` with
    their name, timezone, currency and status: new ones become partitions (the partitions sensor),
    accounts Meta disabled or closed — and discovered accounts the token no longer reads — are
    retired (``is_active`` false). Accounts created by CSV imports are never retired here."""
    now = now or utcnow()
    answer = client.ad_accounts(account_ids)
    accounts = []
    for number, item in enumerate(answer, start=1):
        account_id = item.get("id") or f"act_{item.get('account_id')}"
        if not settings.ACCOUNT_ID_PATTERN.fullmatch(str(account_id)):
            raise InputFileError("Meta /me/adaccounts", f"account id {account_id!r} is not valid", row=number,
                                 column="id")
        status = item.get("account_status")
        accounts.append({"id": str(account_id), "name": item.get("name") or str(account_id),
                         "timezone": _zone(item.get("timezone_name")),
                         "currency": (item.get("currency") or "").upper() or None,
                         "account_status": int(status) if status is not None else None,
                         "is_active": status is None or int(status) not in RETIRED_ACCOUNT_STATUSES})
    added, updated, retired = [], [], []
    seen = {a["id"] for a in accounts}
    with begin_write(engine) as conn:
        existing = {r.id: r for r in conn.execute(select(AdAccount.__table__))}
        for a in accounts:
            before = existing.get(a["id"])
            if before is None:
                added.append(a["id"])
            elif (before.name, before.timezone, before.currency, before.is_active) != (
                    a["name"], a["timezone"], a["currency"], a["is_active"]):
                updated.append(a["id"])
            _upsert_account(conn, a["id"], {"name": a["name"], "account_status": a["account_status"]},
                            a["timezone"], a["currency"], now)
            _save_state(conn, a["id"], now, full=None, through=None, error=None, discovered=True,
                        account_status=a["account_status"])
            if not a["is_active"] and (before is None or before.is_active):
                retired.append(a["id"])
        gone = [r.account_id for r in conn.execute(select(MetaSyncState.account_id).where(
            MetaSyncState.discovered.is_(True)))
            if r.account_id not in seen and existing.get(r.account_id) is not None and existing[r.account_id].is_active]
        if gone:
            conn.execute(update(AdAccount).where(AdAccount.id.in_(gone)).values(is_active=False, updated_at=now))
            retired.extend(gone)
    return DiscoveryResult(accounts=accounts, added=added, retired=sorted(retired), updated=updated)


def register_accounts(engine: Engine, account_ids: list[str], *, sync_from_meta: bool,
                      now: dt.datetime | None = None) -> list[str]:
    """Register ad accounts an operator added as partitions in the UI: an active ``ad_accounts`` row
    (named by its id until a sync or discovery tells its name, timezone and currency), and, with
    ``sync_from_meta``, a sync state so that the hourly sync pulls it (its first sync: 90 days).
    Accounts already registered are left as they are. Returns the ids registered, in one transaction."""
    now = now or dt.datetime.now(dt.timezone.utc)
    registered = []
    with begin_write(engine) as conn:
        known = {r.id for r in conn.execute(select(AdAccount.id).where(AdAccount.id.in_(account_ids)))}
        for account_id in account_ids:
            if account_id in known:
                continue
            conn.execute(AdAccount.__table__.insert().values(
                id=account_id, name=account_id, is_active=True, currency=None,
                timezone=settings.schedule_timezone(), created_at=now, updated_at=now))
            if sync_from_meta:
                _save_state(conn, account_id, now, full=None, through=None, error=None)
            registered.append(account_id)
    return registered


def meta_synced_accounts(engine: Engine) -> set[str]:
    """Active accounts the sync keeps fresh: discovered ones and those synced before."""
    with engine.connect() as conn:
        return {r.account_id for r in conn.execute(
            select(MetaSyncState.account_id).join(AdAccount, AdAccount.id == MetaSyncState.account_id)
            .where(AdAccount.is_active.is_(True)))}


def sync_states(engine: Engine, account_ids: list[str] | None = None) -> dict[str, dict]:
    with engine.connect() as conn:
        query = select(MetaSyncState.__table__)
        if account_ids is not None:
            query = query.where(MetaSyncState.account_id.in_(account_ids))
        return {r.account_id: dict(r._mapping) for r in conn.execute(query)}
