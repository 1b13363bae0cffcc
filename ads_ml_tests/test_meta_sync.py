"""The Meta Marketing API sync against a local fake Graph API (``ads_ml.testing.fake_graph_api``;
the SDK pointed at it through ``ADS_ML_META_GRAPH_URL`` / the client's ``graph_url``), on SQLite and
PostgreSQL: what is stored equals what the fake served at every level; throttling pauses and
resumes without loss; a revised past day replaces the stored one; a re-sync with nothing new
writes nothing and starts no run; token and permission errors are one clear line."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys

import dagster as dg
import pandas as pd
import pytest
import sqlalchemy as sa

from ads_ml.db.queries import reference_date
from ads_ml.demo import generate_account
from ads_ml.ingest.csvfile import InputFileError
from ads_ml.ingest.meta import (
    MetaAccessError,
    MetaClient,
    change_records,
    count_from_actions,
    insights_frame,
    max_usage_pct,
    parse_action_types,
)
from ads_ml.ingest.sync import discover_accounts, sync_account
from ads_ml.testing.fake_graph_api import FakeAccount, FakeGraphApi, revise

TODAY = dt.datetime.now(dt.timezone.utc).date()
NOW = dt.datetime.now(dt.timezone.utc)
ACCOUNT = "act_1001"


def _fake_account(account_id: str = ACCOUNT, seed: int = 5, timezone: str = "UTC") -> FakeAccount:
    demo = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=3, days=40, end_date=TODAY, seed=seed)
    return FakeAccount.from_canonical(account_id, demo.insights, demo.changes, name=f"Account {seed}",
                                      timezone_name=timezone)


@pytest.fixture
def fake():
    with FakeGraphApi([_fake_account(), _fake_account("act_2002", seed=6)], page_size=25) as server:
        yield server


def _client(fake: FakeGraphApi, sleeps: list | None = None, **kwargs) -> MetaClient:
    return MetaClient(kwargs.pop("token", "test-token"), graph_url=fake.url,
                      sleep=(sleeps.append if sleeps is not None else (lambda s: None)), **kwargs)


def _stored(engine: sa.Engine, level: str, account: str = ACCOUNT) -> pd.DataFrame:
    with engine.connect() as conn:
        frame = pd.read_sql(sa.text(
            "select entity_id, date, impressions, reach, clicks, spend, leads, partial_as_of from daily_insights "
            "where account_id = :a and entity_type = :l order by entity_id, date"), conn, params={"a": account, "l": level})
    frame["date"] = pd.to_datetime(frame["date"]).dt.date.astype(str)
    return frame


def _served(account: FakeAccount, since: dt.date) -> pd.DataFrame:
    rows = [r for r in account.insights if r["date_start"] >= since.isoformat()]
    frame = pd.DataFrame({
        "ad_id": [r["ad_id"] for r in rows], "adset_id": [r["adset_id"] for r in rows],
        "campaign_id": [r["campaign_id"] for r in rows], "date": [r["date_start"] for r in rows],
        "impressions": [int(r["impressions"]) for r in rows], "clicks": [int(r["inline_link_clicks"]) for r in rows],
        "spend": [float(r["spend"]) for r in rows],
        # one lead reported as "lead" and "onsite_conversion.lead_grouped" counts once
        "leads": [int(next((a["value"] for a in r.get("actions", []) if a["action_type"] == "lead"), 0)) for r in rows],
    })
    return frame


def _batch_kinds(engine: sa.Engine) -> list[str]:
    """The import batches written so far (what the sensors start runs from), oldest first."""
    with engine.connect() as conn:
        return [k for (k,) in conn.execute(sa.text("select kind from import_batches order by id"))]


# --- pure: answers -> what is stored ---------------------------------------------------------------


def test_a_lead_reported_under_several_action_types_counts_once():
    alternatives = parse_action_types(("lead", "onsite_conversion.lead_grouped+offsite_conversion.fb_pixel_lead"))
    both = [{"action_type": "lead", "value": "5"}, {"action_type": "onsite_conversion.lead_grouped", "value": "3"},
            {"action_type": "offsite_conversion.fb_pixel_lead", "value": "2"}, {"action_type": "link_click", "value": "40"}]
    assert count_from_actions(both, alternatives) == "5"
    parts = [{"action_type": "onsite_conversion.lead_grouped", "value": "3"},
             {"action_type": "offsite_conversion.fb_pixel_lead", "value": "2"}]
    assert count_from_actions(parts, alternatives) == "5"  # disjoint sources are summed
    assert count_from_actions([{"action_type": "link_click", "value": "9"}], alternatives) == "0"
    assert count_from_actions(None, alternatives) == "0"
    with pytest.raises(ValueError, match="twice"):
        count_from_actions([{"action_type": "lead", "value": "1"}, {"action_type": "lead", "value": "1"}], alternatives)


def test_an_answer_that_could_be_stored_wrongly_is_refused_naming_request_and_row():
    day = TODAY - dt.timedelta(days=3)
    good = {"campaign_id": "1", "adset_id": "2", "ad_id": "3", "date_start": day.isoformat(), "date_stop": day.isoformat(),
            "spend": "1.5", "impressions": "10", "inline_link_clicks": "1", "account_currency": "BRL"}
    kwargs = {"currency": "BRL", "today": TODAY, "read_at": NOW}
    frame = insights_frame([good], ACCOUNT, day, TODAY, **kwargs).frame
    assert frame.loc[1, "partial_as_of"] == "" and frame.loc[1, "leads"] == "0"
    with pytest.raises(InputFileError, match=r"Meta insights act_1001 .*row 2.*not one day"):
        insights_frame([good, {**good, "date_stop": TODAY.isoformat()}], ACCOUNT, day, TODAY, **kwargs)
    with pytest.raises(InputFileError, match="outside the requested"):
        insights_frame([{**good, "date_start": "2020-01-01", "date_stop": "2020-01-01"}], ACCOUNT, day, TODAY, **kwargs)
    with pytest.raises(InputFileError, match="spend in USD, the account is in BRL"):
        insights_frame([{**good, "account_currency": "USD"}], ACCOUNT, day, TODAY, **kwargs)
    with pytest.raises(InputFileError, match="without ad_id"):
        insights_frame([{**good, "ad_id": ""}], ACCOUNT, day, TODAY, **kwargs)
    today_row = {**good, "date_start": TODAY.isoformat(), "date_stop": TODAY.isoformat()}
    assert insights_frame([today_row], ACCOUNT, day, TODAY, **kwargs).frame.loc[1, "partial_as_of"] == NOW.isoformat()


def test_activity_entries_become_change_events():
    levels = {"10": "campaign", "20": "adset", "30": "ad", "31": "ad"}
    entries = [
        {"event_type": "update_ad_set_budget", "event_time": "2026-11-02T02:30:00+0000", "object_id": "20",
         "extra_data": json.dumps({"old_value": {"old_value": 5000, "currency": "BRL"},
                                   "new_value": {"new_value": 7500, "currency": "BRL"}, "type": "payment_amount"})},
        {"event_type": "update_ad_set_budget", "event_time": "2026-11-02T20:00:00+0000", "object_id": "20",
         "extra_data": json.dumps({"old_value": {"old_value": 7500, "currency": "BRL"},
                                   "new_value": {"new_value": 9000, "currency": "BRL"}})},
        {"event_type": "update_ad_run_status", "event_time": "2026-11-03T12:00:00+0000", "object_id": "30",
         "extra_data": json.dumps({"old_value": "Active", "new_value": "Paused"})},
        {"event_type": "update_campaign_run_status", "event_time": "2026-11-04T12:00:00+0000", "object_id": "10",
         "extra_data": json.dumps({"old_value": "Paused", "new_value": "Active"})},
        {"event_type": "update_ad_set_target_spec", "event_time": "2026-11-05T12:00:00+0000", "object_id": "20",
         "extra_data": "{}"},
        {"event_type": "update_ad_creative", "event_time": "2026-11-06T12:00:00+0000", "object_id": "30"},
        {"event_type": "create_ad", "event_time": "2026-11-07T12:00:00+0000", "object_id": "31", "object_name": "New"},
        {"event_type": "update_ad_set_name", "event_time": "2026-11-07T12:00:00+0000", "object_id": "20"},
        {"event_type": "update_ad_creative", "event_time": "2026-11-07T12:00:00+0000", "object_id": "999"},
    ]
    out = change_records(entries, levels, {"30": "20", "31": "20"}, "America/Sao_Paulo", "BRL")
    rows = {(r["entity_type"], r["entity_id"], str(r["change_date"]), r["change_type"]): (r["old_value"], r["new_value"])
            for r in out.rows}
    # 02:30 UTC is the evening before in São Paulo; two budget changes on one local day are one event
    assert rows[("adset", "20", "2026-11-01", "budget_change")] == ("50", "75")
    assert rows[("adset", "20", "2026-11-02", "budget_change")] == ("75", "90")
    assert ("ad", "30", "2026-11-03", "pause") in rows and ("campaign", "10", "2026-11-04", "reactivate") in rows
    assert ("adset", "20", "2026-11-05", "audience_change") in rows and ("ad", "30", "2026-11-06", "creative_change") in rows
    assert rows[("adset", "20", "2026-11-07", "creative_change")][1] == "new ad 31 New"
    assert out.skipped == {"update_ad_set_name": 1, "update_ad_creative of an unknown object": 1}


def test_usage_headers_are_read():
    headers = {"X-Business-Use-Case-Usage": json.dumps({"123": [{"type": "ads_insights", "call_count": 95,
                                                                  "total_cputime": 10, "total_time": 12,
                                                                  "estimated_time_to_regain_access": 2}]}),
               "x-ad-account-usage": json.dumps({"acc_id_util_pct": 40.5, "reset_time_duration": 0})}
    assert max_usage_pct(headers) == 95
    assert max_usage_pct({}) == 0


# --- the sync against the fake Graph API -------------------------------------------------------------


def test_sync_stores_exactly_what_meta_served_at_every_level(engine: sa.Engine, fake: FakeGraphApi):
    client = _client(fake)
    found = discover_accounts(engine, client)
    assert sorted(found.added) == [ACCOUNT, "act_2002"]
    since = TODAY - dt.timedelta(days=39)
    result = sync_account(engine, client, ACCOUNT, since=since, now=NOW)
    served = _served(fake.accounts[ACCOUNT], since)
    assert result.insight_rows_read == len(served) and result.full

    ads = _stored(engine, "ad").rename(columns={"entity_id": "ad_id"})
    merged = served.merge(ads, on=["ad_id", "date"], how="outer", suffixes=("_served", "_stored"), indicator=True)
    assert (merged["_merge"] == "both").all(), merged[merged["_merge"] != "both"]
    for column in ("impressions", "clicks", "leads", "spend"):
        assert (merged[f"{column}_served"] == merged[f"{column}_stored"]).all(), column
    for level, key in (("adset", "adset_id"), ("campaign", "campaign_id")):
        expected = served.groupby([key, "date"])[["impressions", "clicks", "leads", "spend"]].sum().reset_index()
        stored = _stored(engine, level).rename(columns={"entity_id": key})
        both = expected.merge(stored, on=[key, "date"], how="outer", indicator=True)
        assert (both["_merge"] == "both").all() and len(both) == len(expected)
        for column in ("impressions", "clicks", "leads"):
            assert (both[f"{column}_x"] == both[f"{column}_y"]).all()
        assert ((both["spend_x"] - both["spend_y"]).abs() < 1e-6).all()

    # entities with names, statuses and budgets (cents -> BRL); today's rows partial; change events
    account = fake.accounts[ACCOUNT]
    with engine.connect() as conn:
        adsets = {r.id: r for r in conn.execute(sa.text("select * from adsets where account_id = :a"), {"a": ACCOUNT})}
        events = conn.execute(sa.text("select entity_type, entity_id, change_type, old_value, new_value from change_events "
                                      "where account_id = :a"), {"a": ACCOUNT}).all()
        acct = conn.execute(sa.text("select name, timezone, currency from ad_accounts where id = :a"), {"a": ACCOUNT}).one()
    assert tuple(acct) == ("Account 5", "UTC", "BRL")
    for item in account.adsets:
        assert adsets[item["id"]].name == item["name"] and adsets[item["id"]].status == item["effective_status"]
        if "daily_budget" in item:
            assert adsets[item["id"]].daily_budget == pytest.approx(int(item["daily_budget"]) / 100)
    assert len(events) == len(account.activities) > 0
    ads = _stored(engine, "ad")
    assert ads.loc[ads["date"] == TODAY.isoformat(), "partial_as_of"].notna().all()
    assert ads.loc[ads["date"] < TODAY.isoformat(), "partial_as_of"].isna().all()
    # features, tiers and forecasts read complete days only
    assert reference_date(engine, ACCOUNT) == TODAY - dt.timedelta(days=1)


def test_resync_with_nothing_new_writes_nothing_and_a_revised_day_replaces_the_stored_one(engine, fake):
    client = _client(fake)
    discover_accounts(engine, client)
    sync_account(engine, client, ACCOUNT, full=True, now=NOW)
    assert _batch_kinds(engine) == ["insights", "changes"]

    again = sync_account(engine, client, ACCOUNT, full=True, now=NOW + dt.timedelta(minutes=5))
    assert not again.changed and again.insights.rows_changed == 0
    assert _batch_kinds(engine) == ["insights", "changes"]  # nothing for the sensors: no run

    account = fake.accounts[ACCOUNT]
    day = (TODAY - dt.timedelta(days=10)).isoformat()
    row = next(r for r in account.insights if r["date_start"] == day)
    revise(account, day, row["ad_id"], spend="999.50", actions=[{"action_type": "lead", "value": "40"}])
    revised = sync_account(engine, client, ACCOUNT, full=True, now=NOW + dt.timedelta(minutes=10))
    # the ad-day, its adset-day and its campaign-day
    assert revised.insights.rows_changed == 3
    assert _batch_kinds(engine) == ["insights", "changes", "insights"]
    ads = _stored(engine, "ad").set_index(["entity_id", "date"])
    assert ads.loc[(row["ad_id"], day), "spend"] == 999.5 and ads.loc[(row["ad_id"], day), "leads"] == 40
    adsets = _stored(engine, "adset").set_index(["entity_id", "date"])
    served = _served(account, TODAY - dt.timedelta(days=28))
    assert adsets.loc[(row["adset_id"], day), "spend"] == pytest.approx(
        served.loc[(served["adset_id"] == row["adset_id"]) & (served["date"] == day), "spend"].sum())

    # a day Meta no longer reports is deleted, with its roll-ups when it was the only ad
    account.insights.remove(next(r for r in account.insights if r["date_start"] == day and r["ad_id"] == row["ad_id"]))
    sync_account(engine, client, ACCOUNT, full=True, now=NOW + dt.timedelta(minutes=15))
    assert (row["ad_id"], day) not in _stored(engine, "ad").set_index(["entity_id", "date"]).index

    # the next day, yesterday's partial rows become complete
    tomorrow = NOW + dt.timedelta(days=1)
    sync_account(engine, client, ACCOUNT, full=False, now=tomorrow)
    assert _stored(engine, "ad").query("date == @TODAY.isoformat()")["partial_as_of"].isna().all()


def test_throttling_pauses_and_resumes_without_loss(engine, fake):
    sleeps: list[float] = []
    client = _client(fake, sleeps)
    discover_accounts(engine, client)
    fake.throttle_next(2, code=80000, path="insights", regain_minutes=2)
    fake.throttle_next(1, code=17, path="ads")
    fake.fail_next(2, path="campaigns")  # HTTP 500, code 2, transient
    result = sync_account(engine, client, ACCOUNT, full=True, now=NOW)
    assert result.throttled_waits == 3 and result.transient_retries == 2
    assert sleeps.count(120.0) == 2  # estimated_time_to_regain_access (minutes) from the header
    served = _served(fake.accounts[ACCOUNT], TODAY - dt.timedelta(days=89))  # a first sync pulls 90 days
    assert len(_stored(engine, "ad")) == len(served)

    # high usage on a successful answer pauses before the next request
    fake.usage_pct, sleeps[:] = 95.0, []
    sync_account(engine, client, ACCOUNT, full=False, now=NOW)
    assert sleeps and all(s == 60.0 for s in sleeps)


def test_async_report_run_is_polled_to_completion(engine, fake):
    sleeps: list[float] = []
    client = _client(fake, sleeps, async_min_rows=0)
    discover_accounts(engine, client)
    fake.report_polls_to_finish = 3
    result = sync_account(engine, client, ACCOUNT, full=True, now=NOW)
    assert fake.count("POST", "insights") == 1 and result.insight_rows_read == len(_served(fake.accounts[ACCOUNT], TODAY - dt.timedelta(days=89)))
    assert len(sleeps) == 2  # two polls before "Job Completed"


def test_token_and_permission_errors_are_one_clear_line_and_store_nothing(engine, fake):
    with pytest.raises(MetaAccessError, match="access token is invalid or expired"):
        discover_accounts(engine, _client(fake, token="expired"))
    client = _client(fake)
    discover_accounts(engine, client)
    fake.denied.add(ACCOUNT)
    with pytest.raises(MetaAccessError, match=r"GET act_1001.*permission missing \(code 200"):
        sync_account(engine, client, ACCOUNT, now=NOW)
    assert _stored(engine, "ad").empty
    with engine.connect() as conn:
        error = conn.execute(sa.text("select last_error from meta_sync_state where account_id = :a"), {"a": ACCOUNT}).scalar_one()
    assert "permission missing" in error
    sync_account(engine, client, "act_2002", now=NOW)  # the other account goes on
    assert not _stored(engine, "ad", "act_2002").empty


def test_discovery_retires_disabled_and_vanished_accounts_only(engine, fake):
    from ads_ml.db.queries import active_account_ids

    client = _client(fake)
    with engine.begin() as conn:  # an account of CSV imports, unknown to the token
        conn.execute(sa.text("insert into ad_accounts (id, name, is_active, timezone, created_at, updated_at) "
                             "values ('act_csv', 'CSV', true, 'UTC', :t, :t)"), {"t": NOW})
    discover_accounts(engine, client)
    assert set(active_account_ids(engine)) == {ACCOUNT, "act_2002", "act_csv"}
    fake.accounts["act_2002"].account_status = 101  # closed
    del fake.accounts[ACCOUNT]
    found = discover_accounts(engine, client)
    assert found.retired == [ACCOUNT, "act_2002"]
    assert set(active_account_ids(engine)) == {"act_csv"}


def test_cli_sync_and_discover(db_url, fake, tmp_path, monkeypatch):
    env = {"ADS_ML_DATABASE_URL": db_url, "ADS_ML_META_GRAPH_URL": fake.url, "ADS_ML_META_ACCESS_TOKEN": "test-token",
           "DAGSTER_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    run = lambda *args, **extra: subprocess.run([sys.executable, "-m", "ads_ml.cli", *args], env={**env, **extra},  # noqa: E731
                                               capture_output=True, text=True, timeout=120)
    out = run("accounts", "discover")
    assert out.returncode == 0 and "added ['act_1001', 'act_2002']" in out.stdout, out.stderr
    out = run("sync", "--account", ACCOUNT, "--since", (TODAY - dt.timedelta(days=5)).isoformat())
    assert out.returncode == 0 and f"synced {TODAY - dt.timedelta(days=5)} .. {TODAY}" in out.stdout, out.stderr
    out = run("sync", "--account", ACCOUNT, ADS_ML_META_ACCESS_TOKEN="expired")
    assert out.returncode == 1 and out.stderr.count("\n") == 1 and "access token is invalid or expired" in out.stderr
    out = run("sync", "--account", ACCOUNT, ADS_ML_META_ACCESS_TOKEN="")
    assert out.returncode == 1 and "no Meta access token" in out.stderr


def test_the_partial_day_is_judged_only_for_what_can_only_grow(dagster_instance, engine):
    """Through Dagster as the automation runs it: the day in progress (synced this morning) is
    checked beside the last complete day, for excess spend only; an ad with no delivery yet today
    is not "stopped", and features read the last complete day."""
    from ads_ml.db.queries import load_features
    from ads_ml.runner import materialize_account

    demo = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=3, days=60, end_date=TODAY, seed=7,
                            churn=False, inject_anomalies=False)
    account = FakeAccount.from_canonical(ACCOUNT, demo.insights, timezone_name="UTC")
    today_rows = [r for r in account.insights if r["date_start"] == TODAY.isoformat()]
    spiked, silent = today_rows[0], today_rows[1]
    spiked["spend"] = f"{float(spiked['spend']) * 30:.2f}"
    account.insights.remove(silent)  # nothing delivered yet today
    with FakeGraphApi([account]) as fake:
        client = _client(fake)
        discover_accounts(engine, client)
        sync_account(engine, client, ACCOUNT, now=NOW)
    assert materialize_account(ACCOUNT, ["ad_insights", "ad_features", "ad_isolation_forest_models", "ad_anomalies"],
                               instance=dagster_instance).success
    with engine.connect() as conn:
        found = pd.read_sql(sa.text("select entity_id, anomaly_date, metric, observed_value, expected_value "
                                    "from ml_anomalies where account_id = :a"), conn, params={"a": ACCOUNT})
    found["anomaly_date"] = pd.to_datetime(found["anomaly_date"]).dt.date
    today = found[found["anomaly_date"] == TODAY]
    assert "spend" in set(today.loc[today["entity_id"] == spiked["ad_id"], "metric"]), today
    # on a day in progress only what can only grow: more spend, CPM or frequency than expected
    assert set(today["metric"]) <= {"spend", "cpm", "frequency"} and (today["observed_value"] > today["expected_value"]).all()
    assert silent["ad_id"] not in set(found.loc[found["anomaly_date"] == TODAY, "entity_id"])
    event = dagster_instance.get_latest_materialization_event(dg.AssetKey("ad_anomalies"))
    assert event.asset_materialization.metadata["day_in_progress"].value.startswith(TODAY.isoformat())
    assert set(load_features(engine, ACCOUNT, "ad")["reference_date"]) == {TODAY - dt.timedelta(days=1)}


def test_app_secret_proof_signs_every_request(engine):
    with FakeGraphApi([_fake_account()], app_secret="s3cret") as fake:
        with pytest.raises(Exception, match="appsecret_proof"):
            discover_accounts(engine, _client(fake))
        client = _client(fake, app_secret="s3cret")
        discover_accounts(engine, client)
        assert sync_account(engine, client, ACCOUNT, now=NOW).insight_rows_read > 0


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # the conditions, not the storage, are under test
def test_the_automation_syncs_meta_accounts_every_hour_of_their_own_clock(dagster_instance, engine, monkeypatch):
    """Discovery once a Meta token is configured; each discovered account synced at once, then at
    every hourly tick in its timezone; accounts of CSV imports never."""
    from ads_ml.definitions import defs
    from ads_ml.db.models import AdAccount, utcnow

    def requested(when: dt.datetime, cursor):  # noqa: ANN001, ANN202
        result = dg.evaluate_automation_conditions(
            defs=defs, instance=dagster_instance, cursor=cursor, evaluation_time=when,
            asset_selection=dg.AssetSelection.assets("meta_ad_accounts", "meta_sync"))
        wanted = {name: set(result.get_requested_partitions(dg.AssetKey(name)))
                  for name in ("meta_ad_accounts", "meta_sync")}
        return {k: v for k, v in wanted.items() if v}, result.cursor

    day = dt.datetime(2026, 11, 24, 10, 20, tzinfo=dt.timezone.utc)
    monkeypatch.delenv("ADS_ML_META_ACCESS_TOKEN", raising=False)
    assert requested(day, None)[0] == {}  # no token: nothing from Meta
    monkeypatch.setenv("ADS_ML_META_ACCESS_TOKEN", "test-token")
    with engine.begin() as conn:
        conn.execute(sa.insert(AdAccount).values(id="act_csv", name="csv", is_active=True, currency="BRL",
                                                 timezone="UTC", created_at=utcnow(), updated_at=utcnow()))
    dagster_instance.add_dynamic_partitions("ad_account", ["act_csv"])
    now, cursor = requested(day + dt.timedelta(seconds=30), None)
    assert now == {"meta_ad_accounts": {None}}  # discovery at once; the CSV account is not synced
    with FakeGraphApi([_fake_account(timezone="Asia/Kolkata")]) as fake:  # UTC+05:30
        discover_accounts(engine, _client(fake))
    # discovered, not yet a partition (the partitions sensor adds it at its next tick): nothing yet
    now, cursor = requested(day + dt.timedelta(seconds=45), cursor)
    assert "meta_sync" not in now, now
    dagster_instance.add_dynamic_partitions("ad_account", [ACCOUNT])
    now, cursor = requested(day + dt.timedelta(minutes=1), cursor)
    assert now.get("meta_sync") == {ACCOUNT}, now  # never synced: at once
    # the tick after a sync: nothing until the next hour of its clock
    from ads_ml.runner import materialize_account

    monkeypatch.setenv("ADS_ML_META_GRAPH_URL", "http://127.0.0.1:9")  # the run would fail if it called Meta
    monkeypatch.delenv("ADS_ML_META_ACCESS_TOKEN")  # …so it records "not configured" instead
    assert materialize_account(ACCOUNT, ["meta_sync"], instance=dagster_instance).success
    monkeypatch.setenv("ADS_ML_META_ACCESS_TOKEN", "test-token")
    now, cursor = requested(day + dt.timedelta(minutes=2), cursor)
    assert "meta_sync" not in now, now
    # Kolkata is UTC+05:30: its hours tick at hh:30 UTC. 10:29 UTC: no tick since; 10:31: one.
    now, cursor = requested(day + dt.timedelta(minutes=9), cursor)
    assert "meta_sync" not in now, now
    now, cursor = requested(day + dt.timedelta(minutes=11), cursor)
    assert now.get("meta_sync") == {ACCOUNT}, now
