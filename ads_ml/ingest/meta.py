"""The Meta Marketing API source, on the official ``facebook-business`` SDK.

:class:`MetaClient` reads what a token can see: the ad accounts, their campaigns, adsets and ads,
ad-level daily insights and the activity log. Every request goes through one SDK method
(:meth:`_PacedApi.call`), where throttling (usage headers, throttling error codes) pauses and
resumes the same request, transient failures are retried with backoff, and an invalid token or a
missing permission becomes one clear :class:`MetaAccessError`. Nothing is written while reading:
:func:`ads_ml.ingest.sync.sync_account` writes what was read in one transaction.

The functions below the client turn the API's answers into the canonical frames of the importer
(pure: no database, no HTTP), refusing an answer that could be stored wrongly with its request
and row named.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd
import requests
from facebook_business.adobjects.ad import Ad
from facebook_business.adobjects.adaccount import AdAccount as SdkAdAccount
from facebook_business.adobjects.adset import AdSet
from facebook_business.adobjects.campaign import Campaign
from facebook_business.adobjects.adreportrun import AdReportRun
from facebook_business.adobjects.user import User
from facebook_business.api import FacebookAdsApi
from facebook_business.exceptions import FacebookRequestError
from facebook_business.session import FacebookSession

from ads_ml import settings
from ads_ml.ingest.csvfile import InputFileError

log = logging.getLogger(__name__)

ACCOUNT_FIELDS = ("id", "account_id", "name", "timezone_name", "currency", "account_status")
#: Meta's account_status values under which an account is retired (disabled, pending closure, closed).
RETIRED_ACCOUNT_STATUSES = (2, 100, 101)
ENTITY_FIELDS = {
    "campaign": ("id", "name", "status", "effective_status", "daily_budget", "lifetime_budget",
                 "created_time", "updated_time"),
    "adset": ("id", "name", "campaign_id", "status", "effective_status", "daily_budget", "lifetime_budget",
              "created_time", "updated_time"),
    "ad": ("id", "name", "adset_id", "campaign_id", "status", "effective_status", "created_time", "updated_time"),
}
INSIGHT_FIELDS = ("account_currency", "campaign_id", "campaign_name", "adset_id", "adset_name", "ad_id", "ad_name",
                  "date_start", "date_stop", "spend", "impressions", "reach", "frequency", "inline_link_clicks",
                  "actions")
ACTIVITY_FIELDS = ("event_type", "event_time", "object_id", "object_name", "object_type", "extra_data",
                   "translated_event_type")
THROTTLE_CODES = frozenset({4, 17, 32, 613, *range(80000, 80015)})
TOKEN_CODES = frozenset({190, 102})
PERMISSION_CODES = frozenset({10, 294, *range(200, 300)})
TRANSIENT_CODES = frozenset({1, 2})
USAGE_HEADERS = ("x-business-use-case-usage", "x-ad-account-usage", "x-app-usage", "x-fb-ads-insights-throttle")


class MetaApiError(RuntimeError):
    """A request that failed for good (after its retries), naming the request. ``transient``: Meta
    was still throttling or unreachable after every wait, so the whole sync may succeed later."""

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient


class MetaAccessError(MetaApiError):
    """The token is invalid or expired, or lacks a permission: nothing to retry."""


def _describe(method: str, path) -> str:  # noqa: ANN001
    """A request as a person reads it, without the token: ``GET act_1/insights``."""
    if not isinstance(path, str):
        return f"{method} {'/'.join(map(str, path))}"
    return f"{method} {path.split('/v', 1)[-1].split('/', 1)[-1] if '/v' in path else path}"


@dataclass
class ApiStats:
    requests: int = 0
    throttled_waits: int = 0
    throttled_seconds: float = 0.0
    transient_retries: int = 0


class _PacedApi(FacebookAdsApi):
    """The SDK's API object with Meta's rules for being a good client: every request (pages of a
    cursor, report-run polls, …) passes :meth:`call`, which pauses on high usage and on throttling
    errors and resumes the very same request, so nothing read so far is lost."""

    def __init__(self, session: FacebookSession, api_version: str, *, sleep: Callable[[float], None],
                 pause_pct: float, default_wait: float, max_wait: float, max_throttle_retries: int,
                 max_transient_retries: int, backoff: float) -> None:
        super().__init__(session, api_version=api_version)
        self.sleep, self.pause_pct, self.default_wait, self.max_wait = sleep, pause_pct, default_wait, max_wait
        self.max_throttle_retries, self.max_transient_retries, self.backoff = (
            max_throttle_retries, max_transient_retries, backoff)
        self.stats = ApiStats()

    def call(self, method, path, params=None, headers=None, files=None, url_override=None, api_version=None):  # noqa: ANN001, ANN201, PLR0913
        what = _describe(method, path if not isinstance(path, str) else path)
        throttled = transient = 0
        while True:
            self.stats.requests += 1
            try:
                response = super().call(method, path, params=params, headers=headers, files=files,
                                        url_override=url_override, api_version=api_version)
            except FacebookRequestError as exc:
                code = exc.api_error_code()
                if code in TOKEN_CODES:
                    raise MetaAccessError(f"{what}: the access token is invalid or expired (code {code}: "
                                          f"{exc.api_error_message()}); renew the system user's token") from None
                if code in PERMISSION_CODES:
                    raise MetaAccessError(f"{what}: permission missing (code {code}: {exc.api_error_message()}); "
                                          "the token needs ads_read on this ad account") from None
                if code in THROTTLE_CODES or exc.http_status() == 429:
                    throttled += 1
                    if throttled > self.max_throttle_retries:
                        raise MetaApiError(f"{what}: still throttled after {self.max_throttle_retries} waits "
                                           f"(code {code}: {exc.api_error_message()})", transient=True) from None
                    self._pause(what, _regain_seconds(exc.http_headers() or {}) or self.default_wait * throttled,
                                f"throttled (code {code})")
                    continue
                if exc.api_transient_error() or code in TRANSIENT_CODES or (exc.http_status() or 0) >= 500:
                    transient += 1
                    if transient > self.max_transient_retries:
                        raise MetaApiError(f"{what}: failed {transient} times (HTTP {exc.http_status()}, code {code}: "
                                           f"{exc.api_error_message()})", transient=True) from None
                    self.stats.transient_retries += 1
                    self.sleep(self.backoff * 2 ** (transient - 1))
                    continue
                raise MetaApiError(f"{what}: HTTP {exc.http_status()}, code {code}: {exc.api_error_message()}") from None
            except (requests.ConnectionError, requests.Timeout) as exc:
                transient += 1
                if transient > self.max_transient_retries:
                    raise MetaApiError(f"{what}: {exc.__class__.__name__} {transient} times: {exc}", transient=True) from None
                self.stats.transient_retries += 1
                self.sleep(self.backoff * 2 ** (transient - 1))
                continue
            usage = max_usage_pct(response.headers())
            if usage >= self.pause_pct:
                self._pause(what, _regain_seconds(response.headers()) or self.default_wait, f"usage at {usage:.0f} %")
            return response

    def _pause(self, what: str, seconds: float, why: str) -> None:
        seconds = min(max(seconds, 0.0), self.max_wait)
        log.warning(f"Meta API {why} at {what}: pausing {seconds:.0f} s, then resuming the same request")
        self.stats.throttled_waits += 1
        self.stats.throttled_seconds += seconds
        self.sleep(seconds)


def _header(headers, name: str):  # noqa: ANN001, ANN202
    for key, value in (headers or {}).items():
        if key.lower() == name:
            try:
                return json.loads(value)
            except (TypeError, ValueError):
                return None
    return None


def _usage_entries(headers) -> list[dict]:  # noqa: ANN001
    entries = []
    for name in USAGE_HEADERS:
        value = _header(headers, name)
        if isinstance(value, dict) and any(isinstance(v, list) for v in value.values()):
            for items in value.values():  # business use case: {business_id: [{type, call_count, ...}]}
                entries.extend(i for i in items if isinstance(i, dict))
        elif isinstance(value, dict):
            entries.append(value)
    return entries


def max_usage_pct(headers) -> float:  # noqa: ANN001
    """The highest usage percentage any of Meta's usage headers reports (0 when none)."""
    pct = 0.0
    for entry in _usage_entries(headers):
        for key in ("call_count", "total_cputime", "total_time", "acc_id_util_pct", "app_id_util_pct"):
            try:
                pct = max(pct, float(entry.get(key) or 0))
            except (TypeError, ValueError):
                continue
    return pct


def _regain_seconds(headers) -> float:  # noqa: ANN001
    """Seconds until access is regained, from the usage headers (``estimated_time_to_regain_access``
    is in minutes, ``reset_time_duration`` in seconds); 0 when they do not say."""
    seconds = 0.0
    for entry in _usage_entries(headers):
        try:
            seconds = max(seconds, 60.0 * float(entry.get("estimated_time_to_regain_access") or 0),
                          float(entry.get("reset_time_duration") or 0))
        except (TypeError, ValueError):
            continue
    return seconds


class MetaClient:
    """Reads from the Marketing API through the SDK (see the module docstring)."""

    def __init__(self, access_token: str, *, app_secret: str | None = None, graph_url: str | None = None,
                 api_version: str = settings.META_API_VERSION, sleep: Callable[[float], None] = time.sleep,
                 page_limit: int = settings.META_PAGE_LIMIT, async_min_rows: int = settings.META_ASYNC_MIN_ROWS,
                 async_timeout: float = settings.META_ASYNC_TIMEOUT_SECONDS,
                 pause_pct: float = settings.META_THROTTLE_PAUSE_PCT,
                 default_wait: float = settings.META_THROTTLE_DEFAULT_WAIT_SECONDS,
                 max_wait: float = settings.META_THROTTLE_MAX_WAIT_SECONDS,
                 max_throttle_retries: int = settings.META_MAX_THROTTLE_RETRIES,
                 max_transient_retries: int = settings.META_MAX_TRANSIENT_RETRIES,
                 backoff: float = settings.META_TRANSIENT_BACKOFF_SECONDS,
                 timeout: float = settings.META_REQUEST_TIMEOUT_SECONDS) -> None:
        if not access_token:
            raise MetaAccessError(f"no Meta access token: set {settings.META_ACCESS_TOKEN_ENV}")
        session = FacebookSession(app_secret=app_secret or None, access_token=access_token, timeout=timeout)
        session.GRAPH = (graph_url or settings.meta_graph_url()).rstrip("/")
        self.api = _PacedApi(session, api_version, sleep=sleep, pause_pct=pause_pct, default_wait=default_wait,
                             max_wait=max_wait, max_throttle_retries=max_throttle_retries,
                             max_transient_retries=max_transient_retries, backoff=backoff)
        self.sleep, self.page_limit = sleep, page_limit
        self.async_min_rows, self.async_timeout = async_min_rows, async_timeout

    @property
    def stats(self) -> ApiStats:
        return self.api.stats

    def ad_accounts(self, account_ids: Sequence[str] = ()) -> list[dict]:
        """The ad accounts the token reads (``/me/adaccounts``), or exactly ``account_ids``."""
        if account_ids:
            return [dict(SdkAdAccount(_act(a), api=self.api).api_get(fields=list(ACCOUNT_FIELDS))) for a in account_ids]
        cursor = User(fbid="me", api=self.api).get_ad_accounts(fields=list(ACCOUNT_FIELDS),
                                                                params={"limit": self.page_limit})
        return [dict(a) for a in cursor]

    def account(self, account_id: str) -> dict:
        return dict(SdkAdAccount(_act(account_id), api=self.api).api_get(fields=list(ACCOUNT_FIELDS)))

    def entities(self, account_id: str) -> dict[str, list[dict]]:
        """Every campaign, adset and ad of the account, whatever its status."""
        account = SdkAdAccount(_act(account_id), api=self.api)
        edges = {"campaign": (account.get_campaigns, Campaign), "adset": (account.get_ad_sets, AdSet),
                 "ad": (account.get_ads, Ad)}
        out = {}
        for level, (edge, kind) in edges.items():
            # every effective status the SDK knows for the level: paused, archived and deleted
            # entities (and their history) are read too
            statuses = sorted(v for k, v in vars(kind.EffectiveStatus).items() if not k.startswith("_"))
            params = {"limit": self.page_limit, "effective_status": statuses}
            out[level] = [dict(e) for e in edge(fields=list(ENTITY_FIELDS[level]), params=params)]
        return out

    def insight_pages(self, account_id: str, since: dt.date, until: dt.date, ads: int = 0) -> Iterator[list[dict]]:
        """Ad-level daily insights of ``since``..``until`` (account time), page by page (a large
        answer is turned into frames as it arrives). Estimated larger than ``async_min_rows``
        ad-days: an asynchronous report run, polled until it completes."""
        account = SdkAdAccount(_act(account_id), api=self.api)
        params = {
            "level": "ad",
            "time_increment": 1,
            "time_range": {"since": since.isoformat(), "until": until.isoformat()},
            "limit": self.page_limit,
            "action_report_time": "impression",
        }
        days = (until - since).days + 1
        if ads * days > self.async_min_rows:
            report = account.get_insights(fields=list(INSIGHT_FIELDS), params=params, is_async=True)
            report = self._wait_for_report(account_id, report)
            return self._pages((report.get_id(), "insights"), {"limit": self.page_limit})
        return self._pages((_act(account_id), "insights"), {**params, "fields": ",".join(INSIGHT_FIELDS)})

    def _pages(self, path: tuple[str, str], params: dict) -> Iterator[list[dict]]:
        """The pages of a paged edge, as plain dicts, through the SDK's ``call`` (pacing, retries,
        errors as above) and the cursor paging its ``Cursor`` follows. Insight pages skip the
        SDK's per-field object parsing, which cost 0.2 ms a row (36 s for 2,000 ads × 90 days)."""
        params = dict(params)
        while True:
            body = self.api.call("GET", path, params=params).json()
            yield body.get("data") or []
            paging = body.get("paging") or {}
            after = (paging.get("cursors") or {}).get("after")
            if not after or "next" not in paging:
                return
            params["after"] = after

    def _wait_for_report(self, account_id: str, report: AdReportRun) -> AdReportRun:
        report_id = report.get("report_run_id") or report.get("id")
        report = AdReportRun(str(report_id), api=self.api)
        started, delay = time.monotonic(), 1.0
        while True:
            report.api_get(fields=[AdReportRun.Field.async_status, AdReportRun.Field.async_percent_completion])
            status = report.get(AdReportRun.Field.async_status)
            if status == "Job Completed":
                return report
            if status in ("Job Failed", "Job Skipped"):
                raise MetaApiError(f"insights report {report_id} of {account_id}: {status}")
            if time.monotonic() - started > self.async_timeout:
                raise MetaApiError(f"insights report {report_id} of {account_id} not done after "
                                   f"{self.async_timeout:.0f} s ({status}, "
                                   f"{report.get(AdReportRun.Field.async_percent_completion)} %)")
            self.sleep(delay)
            delay = min(delay * 1.5, 15.0)

    def activities(self, account_id: str, since: dt.datetime) -> list[dict]:
        """The account's activity log since ``since`` (``/act_<id>/activities``)."""
        account = SdkAdAccount(_act(account_id), api=self.api)
        cursor = account.get_activities(fields=list(ACTIVITY_FIELDS),
                                        params={"since": int(since.timestamp()), "limit": self.page_limit})
        return [dict(a) for a in cursor]


def _act(account_id: str) -> str:
    return account_id if account_id.startswith("act_") else f"act_{account_id}"


# --- answers -> canonical frames (pure) -----------------------------------------------------------


def parse_action_types(alternatives: Iterable[str]) -> tuple[tuple[str, ...], ...]:
    """``("lead", "a+b")`` -> ``(("lead",), ("a", "b"))``."""
    return tuple(tuple(t.strip() for t in alt.split("+") if t.strip()) for alt in alternatives if alt.strip())


def count_from_actions(actions, alternatives: tuple[tuple[str, ...], ...]) -> str:  # noqa: ANN001
    """The count of the first alternative whose types the row reports (summed within it), as text
    for the importer's checks; '0' when none. A type listed twice in ``actions`` is refused."""
    values: dict[str, str] = {}
    for action in actions or []:
        kind = action.get("action_type")
        if kind in values:
            raise ValueError(f"action type {kind!r} reported twice")
        values[kind] = str(action.get("value", "0"))
    for alternative in alternatives:
        present = [t for t in alternative if t in values]
        if present:
            try:
                total = sum(Decimal(values[t]) for t in present)
            except InvalidOperation:
                raise ValueError(f"action value {[values[t] for t in present]} is not a number") from None
            return format(total.normalize(), "f")
    return "0"


@dataclass
class InsightAnswer:
    """An insights answer as the importer's raw frame, and the request it came from."""

    request: str
    frame: pd.DataFrame  # canonical columns, text values, index = row number in the answer (1-based)


def insights_frame(rows: list[dict], account_id: str, since: dt.date, until: dt.date, *, currency: str | None,
                   today: dt.date, read_at: dt.datetime, lead_types: Iterable[str] = settings.META_LEAD_ACTION_TYPES,
                   conversion_types: Iterable[str] = settings.META_CONVERSION_ACTION_TYPES,
                   first_row: int = 1) -> InsightAnswer:
    """Meta's ad-level daily insight rows -> the importer's raw frame (rows numbered from
    ``first_row``: a page of a longer answer). Refused, naming the request and row: a row that is
    not one day (``date_start`` ≠ ``date_stop``), a day outside the request, a row without ids,
    another currency than the account's, unreadable ``actions``. Days from ``today`` on (account
    time) are marked partial, read at ``read_at``."""
    request = f"Meta insights {account_id} {since}..{until}"
    index = pd.RangeIndex(first_row, first_row + len(rows))
    raw = pd.DataFrame.from_records(rows, index=index) if rows else pd.DataFrame(index=index)

    def text(column: str, default: str = "") -> pd.Series:
        if column not in raw.columns:
            return pd.Series(default, index=index, dtype=object)
        return raw[column].astype(object).where(raw[column].notna(), default).astype(str).str.strip()

    def refuse(bad: pd.Series, message, column: str) -> None:  # noqa: ANN001
        if bad.any():
            row = int(bad.index[bad.to_numpy()][0])
            raise InputFileError(request, message(row) if callable(message) else message, row=row, column=column)

    start, stop = text("date_start"), text("date_stop")
    refuse(start != stop, lambda r: f"a row covers {start[r]}..{stop[r]}, not one day", "date_start")
    refuse(~start.str.fullmatch(r"\d{4}-\d{2}-\d{2}"), lambda r: f"{start[r]!r} is not a date", "date_start")
    refuse((start < since.isoformat()) | (start > until.isoformat()),
           lambda r: f"day {start[r]} is outside the requested {since}..{until}", "date_start")
    ids = {c: text(c) for c in ("campaign_id", "adset_id", "ad_id")}
    for column, values in ids.items():
        refuse(values == "", f"a row without {column}", column)
    row_currency = text("account_currency").str.upper()
    if currency:
        refuse((row_currency != "") & (row_currency != currency.upper()),
               lambda r: f"spend in {row_currency[r]}, the account is in {currency}", "account_currency")
    leads, conversions = parse_action_types(lead_types), parse_action_types(conversion_types)
    actions = raw["actions"] if "actions" in raw.columns else pd.Series(None, index=index, dtype=object)
    counts = {"leads": [], "conversions": []}
    for number, value in zip(index, actions):
        try:
            counts["leads"].append(count_from_actions(value if isinstance(value, list) else None, leads))
            counts["conversions"].append(count_from_actions(value if isinstance(value, list) else None, conversions))
        except (ValueError, AttributeError, TypeError) as exc:
            raise InputFileError(request, f"actions unreadable: {exc}", row=int(number), column="actions") from None
    frame = pd.DataFrame({
        "date": start, **ids,
        "campaign_name": text("campaign_name"), "adset_name": text("adset_name"), "ad_name": text("ad_name"),
        "impressions": text("impressions", "0"), "clicks": text("inline_link_clicks", "0"), "spend": text("spend", "0"),
        "reach": text("reach"), "frequency": text("frequency"),
        "leads": pd.Series(counts["leads"], index=index, dtype=object),
        "conversions": pd.Series(counts["conversions"], index=index, dtype=object),
        "partial_as_of": pd.Series(np.where(start >= today.isoformat(), read_at.isoformat(), ""), index=index,
                                   dtype=object),
    }, index=index, columns=list(META_RAW_COLUMNS))
    return InsightAnswer(request=request, frame=frame)


META_RAW_COLUMNS = ("date", "campaign_id", "adset_id", "ad_id", "campaign_name", "adset_name", "ad_name",
                    "impressions", "clicks", "spend", "reach", "frequency", "leads", "conversions", "partial_as_of")


def _text(value, default: str = "") -> str:  # noqa: ANN001
    return default if value is None else str(value).strip()


def currency_offset(currency: str | None) -> int:
    return 1 if (currency or "").upper() in settings.META_OFFSET_1_CURRENCIES else 100


def money(value, currency: str | None) -> float | None:  # noqa: ANN001
    """A budget in the currency's minor unit (Meta's form) -> currency units; None when unset or 0."""
    if value in (None, ""):
        return None
    try:
        amount = float(value) / currency_offset(currency)
    except (TypeError, ValueError):
        raise ValueError(f"budget {value!r} is not a number") from None
    if not math.isfinite(amount) or amount < 0:
        raise ValueError(f"budget {value!r} is not a budget")
    return amount or None


def meta_time(value) -> dt.datetime | None:  # noqa: ANN001
    """Meta's ``2026-11-02T10:15:00+0000`` -> an aware datetime (None when missing)."""
    if not value:
        return None
    if isinstance(value, (int, float)):
        return dt.datetime.fromtimestamp(value, tz=dt.timezone.utc)
    text = str(value)
    if len(text) > 5 and text[-5] in "+-" and text[-3] != ":":
        text = text[:-2] + ":" + text[-2:]
    parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=dt.timezone.utc)


@dataclass
class EntityRecords:
    """Campaigns, adsets and ads as rows of our tables (without account_id)."""

    rows: dict[str, list[dict]] = field(default_factory=dict)


def entity_records(entities: dict[str, list[dict]], account_id: str, currency: str | None) -> EntityRecords:
    """Meta's objects -> rows of ``campaigns``, ``adsets``, ``ads``; ``status`` is the
    ACTIVE/PAUSED/ARCHIVED/DELETED reading of Meta's ``effective_status`` (a campaign's pause pauses
    its adsets and ads), the raw one kept in ``effective_status``. A malformed object is refused
    with its id."""
    from ads_ml.ingest.insights import STATUS_WORDS  # one mapping of Meta's delivery words
    from ads_ml.ingest.csvfile import normalise_header

    out = EntityRecords()
    for level, items in entities.items():
        rows = []
        for number, item in enumerate(items, start=1):
            where = f"Meta {level}s of {account_id}"
            entity_id = _text(item.get("id"))
            if not entity_id.isdigit() or len(entity_id) > settings.IMPORT_MAX_ID_LENGTH:
                raise InputFileError(where, f"id {entity_id!r} is not a Meta id", row=number, column="id")
            effective = _text(item.get("effective_status")) or _text(item.get("status"))
            status = STATUS_WORDS.get(normalise_header(effective)) or (
                _text(item.get("status")).upper() if _text(item.get("status")).upper() in settings.ENTITY_STATUSES
                else "ACTIVE")
            row = {
                "id": entity_id, "name": (_text(item.get("name")) or None), "status": status,
                "effective_status": effective[:32] or None,
                "created_time": meta_time(item.get("created_time")), "updated_time": meta_time(item.get("updated_time")),
            }
            if row["name"] and len(row["name"]) > settings.IMPORT_MAX_NAME_LENGTH:
                raise InputFileError(where, f"name of {entity_id} longer than {settings.IMPORT_MAX_NAME_LENGTH}",
                                     row=number, column="name")
            if level in ("campaign", "adset"):
                try:
                    row["daily_budget"] = money(item.get("daily_budget"), currency)
                    row["lifetime_budget"] = money(item.get("lifetime_budget"), currency)
                except ValueError as exc:
                    raise InputFileError(where, f"{entity_id}: {exc}", row=number, column="daily_budget") from None
            if level in ("adset", "ad"):
                row["campaign_id"] = _text(item.get("campaign_id"))
                if not row["campaign_id"].isdigit():
                    raise InputFileError(where, f"{entity_id} has no campaign", row=number, column="campaign_id")
            if level == "ad":
                row["adset_id"] = _text(item.get("adset_id"))
                if not row["adset_id"].isdigit():
                    raise InputFileError(where, f"{entity_id} has no adset", row=number, column="adset_id")
            rows.append(row)
        out.rows[level] = rows
    return out


#: Activity event types -> our change types (pause / reactivate by the new status).
BUDGET_EVENTS = ("update_campaign_budget", "update_ad_set_budget")
RUN_STATUS_EVENTS = ("update_campaign_run_status", "update_ad_set_run_status", "update_ad_run_status")
AUDIENCE_EVENTS = ("update_ad_set_target_spec", "update_ad_targets_spec")
CREATIVE_EVENTS = ("update_ad_creative", "edit_and_update_ad_creative")
NEW_AD_EVENTS = ("create_ad",)


def _extra(value) -> dict:  # noqa: ANN001
    if isinstance(value, dict):
        return value
    try:
        parsed = json.loads(value) if value else {}
    except (TypeError, ValueError):
        return {}
    return parsed if isinstance(parsed, dict) else {}


def _side(extra: dict, key: str):  # noqa: ANN202
    """``old_value`` / ``new_value`` of ``extra_data``: a plain value, or ``{"old_value": 5000,
    "currency": "BRL", ...}`` (budgets come in the currency's minor unit)."""
    value = extra.get(key)
    if isinstance(value, dict):
        inner = value.get(key, value.get("value"))
        return inner, value.get("currency")
    return value, None


@dataclass
class ChangeRecords:
    rows: list[dict] = field(default_factory=list)
    skipped: dict[str, int] = field(default_factory=dict)  # event type -> count not turned into a change

    def skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1


def change_records(activities: list[dict], levels: dict[str, str], ad_parents: dict[str, str],
                   timezone: str, currency: str | None) -> ChangeRecords:
    """Activity entries -> change events (entity_type, entity_id, change_date in the account's
    timezone, change_type, old and new value): budget changes with their old and new budgets,
    pauses and reactivations, audience (targeting) edits, creative changes, and a new ad as a
    creative change of its adset. ``levels`` maps every known entity id to its level (Meta's
    ``object_type`` names levels inconsistently; the id does not). Several changes of one kind on
    one entity and day are one event, from the first old value to the last new one."""
    zone = ZoneInfo(timezone)
    out = ChangeRecords()
    merged: dict[tuple, dict] = {}
    for entry in sorted(activities, key=lambda a: str(a.get("event_time", ""))):
        kind = str(entry.get("event_type", ""))
        object_id = _text(entry.get("object_id"))
        when = meta_time(entry.get("event_time"))
        if when is None:
            out.skip(f"{kind} without event_time")
            continue
        extra = _extra(entry.get("extra_data"))
        old, old_currency = _side(extra, "old_value")
        new, new_currency = _side(extra, "new_value")
        level = levels.get(object_id)
        entity = object_id
        if kind in BUDGET_EVENTS:
            change = "budget_change"
            try:
                old = money(old, old_currency or currency) if old not in (None, "") else None
                new = money(new, new_currency or currency) if new not in (None, "") else None
            except ValueError:
                out.skip(f"{kind} with an unreadable budget")
                continue
        elif kind in RUN_STATUS_EVENTS:
            word = str(new or "").strip().lower()
            if word in ("active", "activo", "ativo", "1"):
                change = "reactivate"
            elif word in ("paused", "inactive", "pausado", "pausada", "0", "archived", "deleted"):
                change = "pause"
            else:
                out.skip(f"{kind} to {new!r}")
                continue
        elif kind in AUDIENCE_EVENTS:
            change = "audience_change"
        elif kind in CREATIVE_EVENTS:
            change = "creative_change"
        elif kind in NEW_AD_EVENTS:
            change = "creative_change"
            level, entity = "adset", ad_parents.get(object_id, "")
            old, new = None, f"new ad {object_id} {entry.get('object_name') or ''}".strip()
            if not entity:
                out.skip("create_ad of an unknown ad")
                continue
        else:
            out.skip(kind or "no event_type")
            continue
        if level is None:
            out.skip(f"{kind} of an unknown object")
            continue
        date = when.astimezone(zone).date()
        key = (level, entity, date, change)
        text_old = None if old is None else (f"{old:g}" if isinstance(old, float) else str(old))
        text_new = None if new is None else (f"{new:g}" if isinstance(new, float) else str(new))
        if key in merged:
            merged[key]["new_value"] = text_new  # the first old value, the last new one
            continue
        merged[key] = {"entity_type": level, "entity_id": entity, "change_date": date, "change_type": change,
                       "old_value": text_old, "new_value": text_new}
    out.rows = list(merged.values())
    return out
