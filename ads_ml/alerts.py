"""Alerts where the team works: new anomalies, urgent recommendations, impact verdicts and a daily
digest per account, delivered through Apprise (one URL per destination: Slack, Microsoft Teams,
Telegram, Discord, e-mail over SMTP, JSON webhooks, …).

**Exactly once.** Every item has a key (an anomaly is its account, entity, metric and day; a
recommendation its row's entity, type and creation; an impact report its change and windows; a
digest its account and local date). Before sending, a destination *claims* the item by inserting
its ``sent_alerts`` row (unique on destination and key), so a restart, a re-materialised partition
(result rows replaced under new ids) or a second daemon finds the row and sends nothing; the same
anomaly found again by the next run of the day is the same item. A claim left by a process that
died is taken over after ``ALERT_CLAIM_TIMEOUT``. A failing destination is retried with
exponential backoff (``next_attempt_at``) up to ``ALERT_MAX_ATTEMPTS`` and never holds back the
other destinations or the pipeline.

**Which rows.** Each delivery looks at the result rows of the last ``ALERT_LOOKBACK_HOURS``
(anomalies detected, high-priority recommendations opened, impact reports analysed, by their own
timestamps) — a window, not a cursor, so an item committed late is still seen; the keys make the
overlap harmless. Quiet hours (account time) hold a destination's items until they end.

URLs are secrets (tokens in webhook paths, SMTP passwords): they are stored, never logged; what is
shown is Apprise's privacy form (``json://host/****``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo

import pandas as pd
from sqlalchemy import Engine, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from ads_ml import settings
from ads_ml.db.engine import begin_write
from ads_ml.db.models import (
    ENTITY_MODELS,
    AdAccount,
    AlertDestination,
    Anomaly,
    Classification,
    DailyInsight,
    ImpactReportRow,
    Recommendation,
    SentAlert,
    utcnow,
)
from ads_ml.db.upsert import insert_for
from ads_ml.ml.metrics import format_value

log = logging.getLogger(__name__)

SEVERITIES = ("low", "medium", "high", "critical")
KINDS = ("anomaly", "recommendation", "impact", "digest")


def _env_urls() -> list[str]:
    return [u.strip() for u in os.environ.get(settings.ALERT_URLS_ENV, "").split(",") if u.strip()]


def privacy(url: str) -> str:
    """The URL as it may be shown: scheme and host only (``json://hooks.example.com/…``). Webhook
    paths, queries and credentials carry the secrets (a Slack or Teams token, an SMTP password)."""
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return f"{url.split('://', 1)[0]}://…"
    rest = "/…" if (parts.path.strip("/") or parts.query or parts.username) else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def check_url(url: str) -> None:
    import apprise

    if apprise.Apprise.instantiate(url) is None:
        raise ValueError(f"not an Apprise URL Apprise can send to: {privacy(url)} (see https://github.com/caronc/apprise/wiki)")


@dataclass
class Destination:
    key: str  # db:<id> or env:<hash>
    url: str
    account_id: str | None = None
    min_severity: str = "high"
    kinds: tuple[str, ...] = KINDS
    quiet_start: int | None = None
    quiet_end: int | None = None
    digest_hour: int = 8

    @property
    def shown(self) -> str:
        return privacy(self.url)

    def covers(self, account_id: str) -> bool:
        return self.account_id in (None, account_id)

    def quiet(self, local: dt.datetime) -> bool:
        if self.quiet_start is None or self.quiet_end is None or self.quiet_start == self.quiet_end:
            return False
        hour = local.hour
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= hour < self.quiet_end
        return hour >= self.quiet_start or hour < self.quiet_end


def destinations(engine: Engine) -> list[Destination]:
    """The active destinations of the database, and the environment's defaults
    (``ADS_ML_ALERT_URLS``: every account, severity ``ADS_ML_ALERT_MIN_SEVERITY``)."""
    out = []
    with engine.connect() as conn:
        for row in conn.execute(select(AlertDestination.__table__).where(AlertDestination.is_active.is_(True))):
            kinds = row.kinds if isinstance(row.kinds, list) else json.loads(row.kinds or "[]")
            out.append(Destination(key=f"db:{row.id}", url=row.url, account_id=row.account_id,
                                   min_severity=row.min_severity, kinds=tuple(kinds) or KINDS,
                                   quiet_start=row.quiet_start, quiet_end=row.quiet_end, digest_hour=row.digest_hour))
    for url in _env_urls():
        out.append(Destination(key=f"env:{hashlib.sha256(url.encode()).hexdigest()[:16]}", url=url,
                               min_severity=settings.alert_min_severity()))
    return out


def add_destination(engine: Engine, url: str, account_id: str | None, *, min_severity: str = "high",
                    kinds: Iterable[str] = KINDS, quiet: tuple[int, int] | None = None, digest_hour: int = 8) -> int:
    check_url(url)
    if min_severity not in SEVERITIES:
        raise ValueError(f"--min-severity must be one of {', '.join(SEVERITIES)}")
    kinds = list(kinds)
    bad = [k for k in kinds if k not in KINDS]
    if bad:
        raise ValueError(f"unknown kind(s) {', '.join(bad)}: choose from {', '.join(KINDS)}")
    if quiet and not all(0 <= h <= 23 for h in quiet):
        raise ValueError("quiet hours are hours 0–23, e.g. 22-7")
    if not 0 <= digest_hour <= 23:
        raise ValueError("--digest-hour is an hour 0–23")
    with begin_write(engine) as conn:
        if account_id is not None and conn.execute(select(AdAccount.id).where(AdAccount.id == account_id)).first() is None:
            raise LookupError(f"account {account_id} not found")
        return conn.execute(insert_for(conn, AlertDestination.__table__).values(
            account_id=account_id, url=url, min_severity=min_severity, kinds=kinds,
            quiet_start=quiet[0] if quiet else None, quiet_end=quiet[1] if quiet else None,
            digest_hour=digest_hour, is_active=True, created_at=utcnow(),
        ).returning(AlertDestination.id)).scalar_one()


def remove_destination(engine: Engine, destination_id: int) -> None:
    with begin_write(engine) as conn:
        if not conn.execute(delete(AlertDestination).where(AlertDestination.id == destination_id)).rowcount:
            raise LookupError(f"alert destination {destination_id} not found")


# --- what is sent ----------------------------------------------------------------------------------


@dataclass
class Item:
    key: str
    kind: str
    account_id: str
    severity: str  # for anomalies; "high" for the others
    text: str  # one Markdown block


@dataclass
class AccountView:
    account_id: str
    name: str
    currency: str
    timezone: str
    names: dict[tuple[str, str], str] = field(default_factory=dict)

    def entity(self, level: str, entity_id: str) -> str:
        name = self.names.get((level, entity_id))
        return f'{level} "{name}" ({entity_id})' if name else f"{level} {entity_id}"

    def value(self, metric: str, value) -> str:  # noqa: ANN001
        return format_value(metric, value, self.currency)

    def link(self, asset: str) -> str:
        base = os.environ.get(settings.UI_URL_ENV, "").strip().rstrip("/")
        return f"{base}/assets/{asset}?partition={self.account_id}" if base else ""


def _account_view(conn, account_id: str) -> AccountView:  # noqa: ANN001
    row = conn.execute(select(AdAccount.name, AdAccount.currency, AdAccount.timezone).where(AdAccount.id == account_id)).first()
    from ads_ml.db.queries import valid_timezone

    zone = valid_timezone(row.timezone if row else None, settings.schedule_timezone())
    view = AccountView(account_id, (row.name if row else None) or account_id, (row.currency if row else None) or "", zone)
    for level, model in ENTITY_MODELS.items():
        for entity_id, name in conn.execute(select(model.id, model.name).where(model.account_id == account_id)):
            if name:
                view.names[(level, entity_id)] = name
    return view


def _partial_days(conn, account_id: str) -> dict[dt.date, dt.datetime]:  # noqa: ANN001
    rows = conn.execute(select(DailyInsight.date, DailyInsight.partial_as_of).where(
        DailyInsight.account_id == account_id, DailyInsight.partial_as_of.is_not(None)).distinct())
    return {pd.Timestamp(d).date(): t for d, t in rows}


def collect_items(engine: Engine, account_id: str, now: dt.datetime) -> tuple[AccountView, list[Item]]:
    """The account's anomalies, high-priority recommendations and impact verdicts of the lookback
    window, as items (newest last)."""
    since = now - dt.timedelta(hours=settings.ALERT_LOOKBACK_HOURS)
    items: list[Item] = []
    with engine.connect() as conn:
        view = _account_view(conn, account_id)
        partial = _partial_days(conn, account_id)
        today = now.astimezone(ZoneInfo(view.timezone)).date()
        a = Anomaly
        for r in conn.execute(select(a.__table__).where(a.account_id == account_id, a.detected_at >= since)
                              .order_by(a.anomaly_date, a.entity_type, a.entity_id, a.metric)):
            day = pd.Timestamp(r.anomaly_date).date()
            if day in partial:
                read = pd.Timestamp(partial[day]).tz_localize("UTC") if pd.Timestamp(partial[day]).tzinfo is None \
                    else pd.Timestamp(partial[day])
                when = f"{day} (partial day, read at {read.tz_convert(view.timezone):%H:%M} account time)"
            elif day >= today:
                when = f"{day} (partial day)"
            else:
                when = str(day)
            text = (f"- **{r.severity.upper()}** {view.entity(r.entity_type, r.entity_id)}: {r.metric} "
                    f"{view.value(r.metric, r.observed_value)} vs expected {view.value(r.metric, r.expected_value)} "
                    f"on {when} ({r.kind}, {r.method})")
            items.append(Item(key=f"anomaly:{account_id}:{r.entity_type}:{r.entity_id}:{r.metric}:{day}",
                              kind="anomaly", account_id=account_id, severity=r.severity, text=text))
        rec = Recommendation
        for r in conn.execute(select(rec.__table__).where(rec.account_id == account_id, rec.created_at >= since,
                                                           rec.status == "OPEN", rec.priority == "high")
                              .order_by(rec.created_at)):
            action = r.suggested_action if isinstance(r.suggested_action, dict) else json.loads(r.suggested_action or "{}")
            change = ", ".join(f"{k} {v}" for k, v in action.items() if k != "type")
            text = (f"- **{r.recommendation_type}** {view.entity(r.entity_type, r.entity_id)} — {r.reason}"
                    f"{f' (suggested: {change})' if change else ''}; confidence {r.confidence:.0%}")
            created = pd.Timestamp(r.created_at).strftime("%Y%m%d")
            items.append(Item(key=f"recommendation:{account_id}:{r.entity_type}:{r.entity_id}:{r.recommendation_type}:{created}",
                              kind="recommendation", account_id=account_id, severity="high", text=text))
        imp = ImpactReportRow
        verdicts: dict[tuple, dict[int, str]] = {}  # each change's complete verdicts by after-window
        for v in conn.execute(select(imp.entity_type, imp.entity_id, imp.change_type, imp.change_date, imp.window_before,
                                     imp.window_after, imp.overall_impact).where(imp.account_id == account_id,
                                                                                 imp.status == "complete")):
            verdicts.setdefault(tuple(v[:5]), {})[v.window_after] = v.overall_impact
        for r in conn.execute(select(imp.__table__).where(imp.account_id == account_id, imp.analyzed_at >= since,
                                                           imp.status == "complete").order_by(imp.analyzed_at)):
            earlier = verdicts.get((r.entity_type, r.entity_id, r.change_type, r.change_date, r.window_before), {})
            shorter = [w for w in earlier if w < r.window_after]
            if shorter and earlier[max(shorter)] == r.overall_impact:
                continue  # a later window that confirms the verdict already sent is nothing new
            text = (f"- **{r.overall_impact}**: {r.change_type.replace('_', ' ')} of {view.entity(r.entity_type, r.entity_id)} "
                    f"on {r.change_date} ({r.window_before} days before / {r.window_after} after) — {r.recommendation}")
            items.append(Item(key=f"impact:{account_id}:{r.entity_type}:{r.entity_id}:{r.change_type}:{r.change_date}:"
                                  f"{r.window_before}:{r.window_after}:{r.overall_impact}",
                              kind="impact", account_id=account_id, severity="high", text=text))
    return view, items


def digest(engine: Engine, account_id: str, now: dt.datetime) -> tuple[AccountView, str]:
    """The daily digest: top recommendations, open anomalies, verdicts of the last day, tiers that
    changed, with links to the account's assets in the Dagster UI."""
    since = now - dt.timedelta(days=1)
    with engine.connect() as conn:
        view = _account_view(conn, account_id)
        recs = conn.execute(select(Recommendation.__table__).where(
            Recommendation.account_id == account_id, Recommendation.status == "OPEN")
            .order_by(Recommendation.priority, Recommendation.confidence.desc()).limit(50)).all()
        order = {"high": 0, "medium": 1, "low": 2}
        recs = sorted(recs, key=lambda r: (order.get(r.priority, 3), -r.confidence))[:5]
        anomalies = conn.execute(select(Anomaly.__table__).where(Anomaly.account_id == account_id,
                                                                  Anomaly.detected_at >= since)).all()
        rank = {s: i for i, s in enumerate(reversed(SEVERITIES))}
        anomalies = sorted(anomalies, key=lambda r: (rank.get(r.severity, 9), -abs(r.deviation_score)))[:10]
        verdicts = conn.execute(select(ImpactReportRow.__table__).where(
            ImpactReportRow.account_id == account_id, ImpactReportRow.analyzed_at >= since)).all()
        changed = conn.execute(select(Classification.__table__).where(
            Classification.account_id == account_id, Classification.classified_at >= since,
            Classification.tier_change_direction.in_(["improved", "declined"]))).all()
    lines = [f"# Daily digest — {view.name} ({account_id}), {now.astimezone(ZoneInfo(view.timezone)):%Y-%m-%d}", ""]
    lines.append("## Top recommendations")
    lines += [f"- **{r.recommendation_type}** ({r.priority}) {view.entity(r.entity_type, r.entity_id)} — {r.reason}"
              for r in recs] or ["- none open"]
    lines += ["", "## Anomalies of the last day"]
    lines += [f"- **{r.severity}** {view.entity(r.entity_type, r.entity_id)}: {r.metric} "
              f"{view.value(r.metric, r.observed_value)} vs expected {view.value(r.metric, r.expected_value)} on {r.anomaly_date}"
              for r in anomalies] or ["- none"]
    lines += ["", "## Impact verdicts of the last day"]
    lines += [f"- **{r.overall_impact}** {r.change_type.replace('_', ' ')} of {view.entity(r.entity_type, r.entity_id)} "
              f"on {r.change_date}" for r in verdicts] or ["- none"]
    lines += ["", "## Tiers that changed"]
    lines += [f"- {view.entity(r.entity_type, r.entity_id)}: {r.previous_tier} → {r.tier} ({r.tier_change_direction})"
              for r in changed[:20]] or ["- none"]
    link = view.link("ad_recommendations")
    if link:
        lines += ["", f"[Open {account_id} in the Dagster UI]({link})"]
    return view, "\n".join(lines)


# --- delivery ----------------------------------------------------------------------------------------


Notifier = Callable[[str, str, str], tuple[bool, str]]  # (url, title, markdown body) -> (ok, error)


def apprise_notify(url: str, title: str, body: str) -> tuple[bool, str]:
    """Send through Apprise; the error is what Apprise logged, with the URL's secrets masked."""
    import apprise

    sender = apprise.Apprise()
    if not sender.add(url):
        return False, f"not an Apprise URL: {privacy(url)}"
    with apprise.LogCapture(level=apprise.logging.WARNING) as captured:
        ok = bool(sender.notify(title=title, body=body, body_format=apprise.NotifyFormat.MARKDOWN))
    error = "" if ok else (captured.getvalue().strip().splitlines() or ["delivery failed"])[-1]
    error = re.sub(r"^\S+ \S+ - [A-Z]+ - ", "", error)  # Apprise's log prefix (time, level)
    return ok, error.replace(url, privacy(url))[:500]


@dataclass
class DeliveryReport:
    sent: int = 0
    deduplicated: int = 0
    failed: int = 0
    retried: int = 0
    deferred: int = 0  # quiet hours, or waiting for a retry
    errors: list[str] = field(default_factory=list)

    def summary(self) -> str:
        text = (f"sent {self.sent}, already sent {self.deduplicated}, failed {self.failed}, "
                f"retried {self.retried}, held {self.deferred}")
        return text + ("; " + "; ".join(self.errors[:5]) if self.errors else "")


def _claim(engine: Engine, destination: Destination, item: Item, now: dt.datetime) -> bool | None:
    """Claim ``item`` for ``destination``: True (send it), False (sent, given up, or claimed by a
    live process), None (waiting for its retry time)."""
    s = SentAlert.__table__
    with begin_write(engine) as conn:
        try:
            with conn.begin_nested():
                conn.execute(insert_for(conn, s).values(
                    destination=destination.key, item_key=item.key[:255], account_id=item.account_id, kind=item.kind,
                    status="SENDING", attempts=0, claimed_at=now, created_at=now))
            return True
        except IntegrityError:
            pass
        row = conn.execute(select(s).where(s.c.destination == destination.key, s.c.item_key == item.key[:255])).one()
        claimed = row.claimed_at if row.claimed_at is None or row.claimed_at.tzinfo else row.claimed_at.replace(tzinfo=dt.timezone.utc)
        retry_at = row.next_attempt_at if row.next_attempt_at is None or row.next_attempt_at.tzinfo \
            else row.next_attempt_at.replace(tzinfo=dt.timezone.utc)
        if row.status in ("SENT", "GAVE_UP"):
            return False
        if row.status == "SENDING" and claimed is not None and now - claimed < dt.timedelta(seconds=settings.ALERT_CLAIM_TIMEOUT_SECONDS):
            return False
        if row.status == "FAILED" and retry_at is not None and retry_at > now:
            return None
        taken = conn.execute(update(SentAlert).where(SentAlert.id == row.id, SentAlert.status == row.status,
                                                     or_(SentAlert.claimed_at.is_(None), SentAlert.claimed_at == row.claimed_at))
                             .values(status="SENDING", claimed_at=now)).rowcount
        return bool(taken)


def _finish(engine: Engine, destination: Destination, items: list[Item], ok: bool, error: str, now: dt.datetime) -> None:
    keys = [i.key[:255] for i in items]
    with begin_write(engine) as conn:
        if ok:
            conn.execute(update(SentAlert).where(SentAlert.destination == destination.key, SentAlert.item_key.in_(keys))
                         .values(status="SENT", sent_at=now, attempts=SentAlert.attempts + 1, last_error=None,
                                 next_attempt_at=None))
            return
        for row in conn.execute(select(SentAlert.id, SentAlert.attempts).where(
                SentAlert.destination == destination.key, SentAlert.item_key.in_(keys))).all():
            attempts = row.attempts + 1
            give_up = attempts >= settings.ALERT_MAX_ATTEMPTS
            wait = min(settings.ALERT_RETRY_BASE_SECONDS * 2 ** (attempts - 1), 3600)
            conn.execute(update(SentAlert).where(SentAlert.id == row.id).values(
                status="GAVE_UP" if give_up else "FAILED", attempts=attempts, last_error=error,
                next_attempt_at=None if give_up else now + dt.timedelta(seconds=wait)))


TITLES = {"anomaly": "New anomalies", "recommendation": "Urgent recommendations", "impact": "Impact verdicts"}
ASSETS = {"anomaly": "ad_anomalies", "recommendation": "ad_recommendations", "impact": "impact_reports"}


def deliver(engine: Engine, *, now: dt.datetime | None = None, notify: Notifier = apprise_notify,
            accounts: Iterable[str] | None = None) -> DeliveryReport:
    """One round: every destination gets the new items of its accounts (one message per account
    and kind) and each account's digest when its hour has come; see the module docstring."""
    from ads_ml.db.queries import active_account_ids

    now = now or utcnow()
    report = DeliveryReport()
    targets = destinations(engine)
    if not targets:
        return report
    for account_id in sorted(accounts if accounts is not None else active_account_ids(engine)):
        mine = [d for d in targets if d.covers(account_id)]
        if not mine:
            continue
        view, items = collect_items(engine, account_id, now)
        local = now.astimezone(ZoneInfo(view.timezone))
        for destination in mine:
            if destination.quiet(local):
                report.deferred += sum(1 for i in items if i.kind in destination.kinds)
                continue
            wanted = [i for i in items if i.kind in destination.kinds and (
                i.kind != "anomaly" or SEVERITIES.index(i.severity) >= SEVERITIES.index(destination.min_severity))]
            if "digest" in destination.kinds and local.hour >= destination.digest_hour:
                wanted.append(Item(key=f"digest:{account_id}:{local.date()}", kind="digest", account_id=account_id,
                                   severity="high", text=""))
            for kind in KINDS:
                group = [i for i in wanted if i.kind == kind]
                claimed = []
                for item in group:
                    state = _claim(engine, destination, item, now)
                    if state is True:
                        claimed.append(item)
                    elif state is None:
                        report.deferred += 1
                    else:
                        report.deduplicated += 1
                if not claimed:
                    continue
                if kind == "digest":
                    _, body = digest(engine, account_id, now)
                    title = f"Daily digest: {view.name} ({account_id})"
                else:
                    link = view.link(ASSETS[kind])
                    body = "\n".join(i.text for i in claimed) + (f"\n\n[Open in the Dagster UI]({link})" if link else "")
                    title = f"{TITLES[kind]} — {view.name} ({account_id}): {len(claimed)}"
                with begin_write(engine) as conn:
                    retries = conn.execute(select(SentAlert.attempts).where(
                        SentAlert.destination == destination.key,
                        SentAlert.item_key.in_([i.key[:255] for i in claimed]), SentAlert.attempts > 0)).all()
                try:
                    ok, error = notify(destination.url, title, body)
                except Exception as exc:  # noqa: BLE001 - one destination never stops the others
                    ok, error = False, f"{exc.__class__.__name__}: {exc}".replace(destination.url, destination.shown)
                _finish(engine, destination, claimed, ok, error, now)
                if ok:
                    report.sent += len(claimed)
                else:
                    report.failed += len(claimed)
                    report.errors.append(f"{destination.shown}: {error}")
                report.retried += len(retries)
    return report


def send_test(engine: Engine, account_id: str, notify: Notifier = apprise_notify) -> list[tuple[str, bool, str]]:
    """A sample message to each destination of the account: (destination as shown, ok, error)."""
    with engine.connect() as conn:
        view = _account_view(conn, account_id)
    out = []
    for destination in (d for d in destinations(engine) if d.covers(account_id)):
        body = (f"This is a test from ads_ml for {view.name} ({account_id}). Anomalies at or above "
                f"**{destination.min_severity}**, {', '.join(destination.kinds)} will arrive here"
                + (f"; quiet {destination.quiet_start}:00–{destination.quiet_end}:00 {view.timezone}"
                   if destination.quiet_start is not None else "") + ".")
        ok, error = notify(destination.url, f"ads_ml test — {view.name} ({account_id})", body)
        out.append((destination.shown, ok, error))
    return out


__all__ = ["DeliveryReport", "Destination", "add_destination", "deliver", "destinations", "digest",
           "remove_destination", "send_test"]
