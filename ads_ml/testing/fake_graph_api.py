"""A local stand-in for Meta's Graph API (Marketing API), for tests, benchmarks and trying the sync
without a token: an HTTP server the ``facebook-business`` SDK talks to when
``ADS_ML_META_GRAPH_URL`` points at it.

It answers with the response shapes of the public Marketing API reference: lists as
``{"data": [...], "paging": {"cursors": {"before", "after"}, "next"}}`` (no ``next`` on the last
page); ``POST /act_<id>/insights`` starting an ``AdReportRun`` whose ``async_status`` goes
"Job Not Started" → "Job Running" → "Job Completed"; usage headers (``x-business-use-case-usage``,
``x-ad-account-usage``, ``x-app-usage``); errors as ``{"error": {"message", "type", "code",
"error_subcode", "is_transient", "fbtrace_id"}}`` — throttling (codes 4, 17, 32, 613, 80000–80014),
an invalid token (190), a missing permission (200), transient failures (HTTP 500, code 2); and
activity entries with their ``extra_data`` JSON.

A fake is right here: it stands for a paid external API the tests cannot reach. Nothing of the
product runs inside it.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import threading
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

import pandas as pd

API_VERSION_PREFIX = "v"


@dataclass
class FakeAccount:
    """One ad account as Meta holds it."""

    account_id: str  # act_<digits>
    name: str
    timezone_name: str = "America/Sao_Paulo"
    currency: str = "BRL"
    account_status: int = 1
    campaigns: list[dict] = field(default_factory=list)
    adsets: list[dict] = field(default_factory=list)
    ads: list[dict] = field(default_factory=list)
    insights: list[dict] = field(default_factory=list)  # ad-level daily rows in Meta's shape
    activities: list[dict] = field(default_factory=list)

    @classmethod
    def from_canonical(cls, account_id: str, insights: pd.DataFrame, changes: pd.DataFrame | None = None, *,
                       name: str | None = None, timezone_name: str = "America/Sao_Paulo", currency: str = "BRL",
                       lead_action_types: tuple[str, ...] = ("lead", "onsite_conversion.lead_grouped")) -> "FakeAccount":
        """An account serving a canonical ad-level frame (``ads_ml.demo``'s form) as Meta would:
        budgets in cents, leads in ``actions`` under each of ``lead_action_types`` (Meta reports one
        form lead as ``lead`` and ``onsite_conversion.lead_grouped``), changes as activity entries."""
        account = cls(account_id=account_id, name=name or account_id, timezone_name=timezone_name, currency=currency)
        created = "2025-01-01T10:00:00+0000"
        last = insights.sort_values("date").groupby("ad_id").tail(1).set_index("ad_id")
        for cid, group in insights.groupby("campaign_id", sort=True):
            status = str(group.sort_values("date")["campaign_status"].iloc[-1]) if "campaign_status" in group else "ACTIVE"
            account.campaigns.append({"id": str(cid), "name": str(group["campaign_name"].iloc[0]), "status": status,
                                      "effective_status": status, "created_time": created, "updated_time": created})
        for sid, group in insights.groupby("adset_id", sort=True):
            status = str(group.sort_values("date")["adset_status"].iloc[-1]) if "adset_status" in group else "ACTIVE"
            budget = group.sort_values("date")["adset_daily_budget"].iloc[-1] if "adset_daily_budget" in group else None
            item = {"id": str(sid), "name": str(group["adset_name"].iloc[0]), "campaign_id": str(group["campaign_id"].iloc[0]),
                    "status": status, "effective_status": status, "created_time": created, "updated_time": created}
            if budget is not None and pd.notna(budget):
                item["daily_budget"] = str(int(round(float(budget) * 100)))
            account.adsets.append(item)
        for aid, row in last.iterrows():
            status = str(row.get("ad_status", "ACTIVE"))
            account.ads.append({"id": str(aid), "name": str(row["ad_name"]), "adset_id": str(row["adset_id"]),
                                "campaign_id": str(row["campaign_id"]), "status": status, "effective_status": status,
                                "created_time": created, "updated_time": created})
        account.ads.sort(key=lambda a: a["id"])
        for row in insights.itertuples(index=False):
            account.insights.append(meta_insight_row(row._asdict(), currency, lead_action_types))
        if changes is not None:
            for row in changes.itertuples(index=False):
                account.activities.append(meta_activity(row._asdict(), account, currency))
        return account


def meta_insight_row(row: dict, currency: str, lead_action_types: tuple[str, ...]) -> dict:
    day = str(pd.Timestamp(row["date"]).date())
    impressions, reach = int(row["impressions"]), int(row.get("reach") or 0)
    out = {
        "account_currency": currency, "campaign_id": str(row["campaign_id"]), "campaign_name": str(row["campaign_name"]),
        "adset_id": str(row["adset_id"]), "adset_name": str(row["adset_name"]), "ad_id": str(row["ad_id"]),
        "ad_name": str(row["ad_name"]), "date_start": day, "date_stop": day,
        "spend": f"{float(row['spend']):.2f}", "impressions": str(impressions),
        "inline_link_clicks": str(int(row["clicks"])),
    }
    if reach:
        out["reach"] = str(reach)
        out["frequency"] = f"{impressions / reach:.6f}"
    leads = int(row["leads"])
    if leads:
        out["actions"] = [{"action_type": t, "value": str(leads)} for t in lead_action_types]
        out["actions"].append({"action_type": "link_click", "value": str(int(row["clicks"]))})
    return out


def meta_activity(change: dict, account: FakeAccount, currency: str) -> dict:
    """A change event as the activity log shows it (event time at noon, account time)."""
    kind, level = change["change_type"], change["entity_type"]
    meta_level = {"campaign": "campaign", "adset": "ad_set", "ad": "ad"}[level]
    day = dt.date.fromisoformat(str(change["change_date"])[:10])
    when = dt.datetime.combine(day, dt.time(12), tzinfo=_zone(account.timezone_name)).astimezone(dt.timezone.utc)
    extra: dict = {}
    if kind == "budget_change":
        event = f"update_{meta_level}_budget"
        extra = {"old_value": {"old_value": int(round(float(change["old_value"]) * 100)), "currency": currency},
                 "new_value": {"new_value": int(round(float(change["new_value"]) * 100)), "currency": currency},
                 "type": "payment_amount"}
    elif kind in ("pause", "reactivate"):
        event = f"update_{meta_level}_run_status"
        extra = {"old_value": "Active" if kind == "pause" else "Paused",
                 "new_value": "Paused" if kind == "pause" else "Active"}
    elif kind == "audience_change":
        event = "update_ad_set_target_spec"
        extra = {"old_value": "targeting", "new_value": "targeting"}
    else:
        event = "update_ad_creative"
    return {"event_type": event, "event_time": when.strftime("%Y-%m-%dT%H:%M:%S+0000"), "object_id": str(change["entity_id"]),
            "object_name": f"{level} {change['entity_id']}", "object_type": meta_level.upper(),
            "extra_data": json.dumps(extra), "translated_event_type": event.replace("_", " ")}


def _zone(name: str):  # noqa: ANN202
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


class FakeGraphApi:
    """The server and its state. ``accounts`` by id; the knobs below make it misbehave as Meta does."""

    def __init__(self, accounts: list[FakeAccount] | None = None, *, token: str = "test-token",
                 page_size: int = 25, app_secret: str | None = None) -> None:
        self.accounts = {a.account_id: a for a in accounts or []}
        self.token, self.page_size = token, page_size
        #: when set, every request must carry appsecret_proof = HMAC-SHA256(app secret, token)
        self.app_secret = app_secret
        self.requests: list[tuple[str, str, dict]] = []  # method, path, params (token dropped)
        self.denied: set[str] = set()  # accounts the token may not read (permission error 200)
        self.faults: list[dict] = []  # next responses to spoil: {"kind": "throttle"|"error500", "path": substring}
        self.usage_pct = 0.0  # reported in x-business-use-case-usage / x-ad-account-usage
        self.usage_regain_minutes = 0
        self.report_polls_to_finish = 2
        self._reports: dict[str, dict] = {}
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> "FakeGraphApi":
        self.start()
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def throttle_next(self, times: int = 1, code: int = 80000, path: str = "", regain_minutes: int = 0) -> None:
        self.faults.extend({"kind": "throttle", "code": code, "path": path, "regain": regain_minutes}
                           for _ in range(times))

    def fail_next(self, times: int = 1, path: str = "") -> None:
        self.faults.extend({"kind": "error500", "path": path} for _ in range(times))

    def count(self, method: str = "GET", contains: str = "") -> int:
        return sum(1 for m, p, _ in self.requests if m == method and contains in p)

    # --- the HTTP side ---------------------------------------------------------------------------

    def _handler(self):  # noqa: ANN202
        api = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # noqa: ANN002
                return

            def do_GET(self) -> None:  # noqa: N802
                self._serve("GET")

            def do_POST(self) -> None:  # noqa: N802
                self._serve("POST")

            def _serve(self, method: str) -> None:
                parsed = urlparse(self.path)
                params = {k: v[-1] for k, v in parse_qs(parsed.query).items()}
                if method == "POST":
                    length = int(self.headers.get("Content-Length") or 0)
                    params.update({k: v[-1] for k, v in parse_qs(self.rfile.read(length).decode()).items()})
                status, body, headers = api._answer(method, parsed.path, params, self.headers.get("Host", ""))
                payload = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(payload)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(payload)

        return Handler

    def _usage_headers(self, account_id: str | None, regain: int = 0, pct: float | None = None) -> dict:
        pct = self.usage_pct if pct is None else pct
        bucket = [{"type": "ads_insights", "call_count": pct, "total_cputime": pct / 2, "total_time": pct / 2,
                   "estimated_time_to_regain_access": regain, "ads_api_access_tier": "standard_access"}]
        headers = {"x-business-use-case-usage": json.dumps({"1234567890": bucket}),
                   "x-app-usage": json.dumps({"call_count": 1, "total_time": 1, "total_cputime": 1})}
        if account_id:
            headers["x-ad-account-usage"] = json.dumps({"acc_id_util_pct": pct, "reset_time_duration": 0,
                                                        "ads_api_access_tier": "standard_access"})
        return headers

    @staticmethod
    def _error(status: int, code: int, message: str, kind: str = "OAuthException", subcode: int | None = None,
               transient: bool = False) -> tuple[int, dict]:
        error = {"message": message, "type": kind, "code": code, "is_transient": transient,
                 "fbtrace_id": uuid.uuid4().hex[:11]}
        if subcode is not None:
            error["error_subcode"] = subcode
        return status, {"error": error}

    def _answer(self, method: str, path: str, params: dict, host: str) -> tuple[int, dict, dict]:
        parts = [p for p in path.split("/") if p]
        if parts and parts[0].startswith(API_VERSION_PREFIX):
            parts = parts[1:]
        logged = {k: v for k, v in params.items() if k not in ("access_token", "appsecret_proof")}
        with self._lock:
            self.requests.append((method, "/".join(parts), logged))
            fault = next((f for f in self.faults if f["path"] in "/".join(parts)), None)
            if fault is not None:
                self.faults.remove(fault)
        account_id = parts[0] if parts and parts[0].startswith("act_") else None
        if params.get("access_token") != self.token:
            status, body = self._error(400, 190, "Error validating access token: Session has expired.", subcode=463)
            return status, body, {}
        if self.app_secret is not None:
            proof = hmac.new(self.app_secret.encode(), self.token.encode(), hashlib.sha256).hexdigest()
            if params.get("appsecret_proof") != proof:
                status, body = self._error(400, 100, "API calls from the server require an appsecret_proof argument",
                                           kind="GraphMethodException")
                return status, body, {}
        if fault is not None and fault["kind"] == "throttle":
            status, body = self._error(400, fault["code"], "There have been too many calls from this ad-account. "
                                       "Wait a bit and try again.", subcode=2446079, transient=True)
            return status, body, self._usage_headers(account_id, regain=fault["regain"], pct=100.0)
        if fault is not None and fault["kind"] == "error500":
            status, body = self._error(500, 2, "An unexpected error has occurred. Please retry your request later.",
                                       transient=True)
            return status, body, {}
        headers = self._usage_headers(account_id)
        if account_id is not None and (account_id in self.denied or account_id not in self.accounts):
            status, body = self._error(400, 200, f"(#200) Ad account owner has NOT grant ads_management or ads_read "
                                       f"permission", kind="OAuthException")
            return status, body, headers
        base = f"http://{host}/{path.strip('/')}"
        try:
            body = self._route(method, parts, params, base)
        except LookupError as exc:
            status, body = self._error(400, 100, f"Unsupported get request. {exc}", kind="GraphMethodException")
            return status, body, headers
        return 200, body, headers

    def _route(self, method: str, parts: list[str], params: dict, base: str) -> dict:
        raw = params.get("fields", "")
        fields = json.loads(raw) if raw.startswith("[") else [f for f in raw.split(",") if f]
        if parts == ["me", "adaccounts"]:
            items = [self._account_fields(a, fields) for a in self.accounts.values()]
            return self._page(items, params, base)
        if len(parts) == 1 and parts[0].startswith("act_"):
            return self._account_fields(self.accounts[parts[0]], fields)
        if len(parts) == 1 and parts[0] in self._reports:
            report = self._reports[parts[0]]
            report["polls"] += 1
            done = report["polls"] >= self.report_polls_to_finish
            status = "Job Completed" if done else ("Job Running" if report["polls"] > 1 else "Job Not Started")
            return {"id": parts[0], "async_status": status,
                    "async_percent_completion": 100 if done else 50 * (report["polls"] - 1)}
        if len(parts) == 2 and parts[0] in self._reports and parts[1] == "insights":
            report = self._reports[parts[0]]
            return self._page(report["rows"], params, base)
        if len(parts) == 2 and parts[0] in self.accounts:
            account, edge = self.accounts[parts[0]], parts[1]
            if edge in ("campaigns", "adsets", "ads"):
                items = {"campaigns": account.campaigns, "adsets": account.adsets, "ads": account.ads}[edge]
                wanted = set(json.loads(params["effective_status"])) if "effective_status" in params else None
                if wanted is not None:
                    items = [i for i in items if i.get("effective_status") in wanted]
                return self._page([_pick(i, fields) for i in items], params, base)
            if edge == "insights":
                rows = self._insight_rows(account, params, fields)
                if method == "POST":
                    report_id = str(6000000000000 + len(self._reports) + 1)
                    self._reports[report_id] = {"rows": rows, "polls": 0}
                    return {"report_run_id": report_id}
                return self._page(rows, params, base)
            if edge == "activities":
                since = int(params.get("since", 0))
                items = [a for a in account.activities
                         if dt.datetime.strptime(a["event_time"], "%Y-%m-%dT%H:%M:%S%z").timestamp() >= since]
                items.sort(key=lambda a: a["event_time"], reverse=True)  # newest first, as Meta lists them
                return self._page([_pick(i, fields) for i in items], params, base)
        raise LookupError(f"Object with ID '{'/'.join(parts)}' does not exist")

    @staticmethod
    def _account_fields(account: FakeAccount, fields: list[str]) -> dict:
        full = {"id": account.account_id, "account_id": account.account_id.removeprefix("act_"), "name": account.name,
                "timezone_name": account.timezone_name, "currency": account.currency,
                "account_status": account.account_status}
        return _pick(full, fields)

    @staticmethod
    def _insight_rows(account: FakeAccount, params: dict, fields: list[str]) -> list[dict]:
        if params.get("level") != "ad" or str(params.get("time_increment")) != "1":
            raise LookupError("this fake serves level=ad with time_increment=1")
        window = json.loads(params["time_range"])
        rows = [r for r in account.insights if window["since"] <= r["date_start"] <= window["until"]]
        rows.sort(key=lambda r: (r["date_start"], r["ad_id"]))
        return [_pick(r, fields) for r in rows]

    def _page(self, items: list[dict], params: dict, base: str) -> dict:
        limit = min(int(params.get("limit", self.page_size)), self.page_size)
        start = int(params["after"]) if params.get("after") else 0
        page = items[start:start + limit]
        body: dict = {"data": page}
        if items:
            after = start + len(page)
            body["paging"] = {"cursors": {"before": str(start), "after": str(after)}}
            if after < len(items):
                query = {k: v for k, v in params.items() if k not in ("after",)}
                query["after"] = str(after)
                body["paging"]["next"] = f"{base}?{urlencode(query)}"
        return body


def _pick(item: dict, fields: list[str]) -> dict:
    if not fields:
        return {"id": item["id"]} if "id" in item else dict(item)
    out = {k: item[k] for k in fields if k in item}
    if "id" in item:
        out.setdefault("id", item["id"])
    return out


def revise(account: FakeAccount, day: str, ad_id: str, **values: str) -> None:
    """Meta revising a past day's figures (late attribution): change one ad-day in place."""
    for row in account.insights:
        if row["date_start"] == day and row["ad_id"] == ad_id:
            row.update(values)
            return
    raise KeyError(f"no row for ad {ad_id} on {day}")


__all__ = ["FakeAccount", "FakeGraphApi", "meta_activity", "meta_insight_row", "revise"]
