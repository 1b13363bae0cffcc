"""End to end, as operators run it: ``dagster-webserver`` and ``dagster-daemon`` against a throwaway
``DAGSTER_HOME`` (SQLite storage with the in-process executor; PostgreSQL storage with the
multiprocess executor), driven only through GraphQL, as the UI does.

Each storage: the sensors are turned on through GraphQL, data is imported, and the runs the daemon
launches (partitions sensor, new-insights sensor, change-events sensor, declarative automation)
must reach SUCCESS; a partition backfill of one account must complete; the on-demand
``impact_analysis`` job launched with run config must write its report; and every job the
launchpad offers must succeed for an account with data and for a new account without any.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import time
import uuid
from zoneinfo import ZoneInfo
from pathlib import Path

import pytest
import sqlalchemy as sa
from dagster._core.instance.ref import InstanceRef
from sqlalchemy.engine import make_url

import dagster as dg
from ads_ml.db.engine import dispose_engine, get_engine
from ads_ml.db.migrate import migrate
from ads_ml.demo import generate_account
from ads_ml.ingest.changes import import_changes
from ads_ml.ingest.insights import import_insights
from ads_ml.defs.jobs import all_jobs
from ads_ml_tests.conftest import _create_database, _drop_database
from ads_ml_tests.live import REPO_ROOT, TERMINAL, Deployment
from ads_ml_tests.helpers import count
from ads_ml.testing.fake_graph_api import FakeAccount, FakeGraphApi
from ads_ml_tests.receivers import Webhook

pytestmark = pytest.mark.slow

WITH_DATA, WITHOUT_DATA = "act_live", "act_new"
#: An account whose ad insights fail a blocking check (negative spend) until they are re-imported.
BAD = "act_bad"
#: An account whose data arrives only through the Meta sync (the local fake Graph API).
SYNCED, SYNCED_TZ = "act_3003", "America/Sao_Paulo"
END = dt.date.today() - dt.timedelta(days=1)
AUTOMATION = "ads_ml_automation"
SENSORS = ["ad_account_partitions_sensor", "new_insights_sensor", "change_events_sensor", "alerts_sensor", AUTOMATION]


def _failures(instance: dg.DagsterInstance, runs: list[dict]) -> str:
    """The step failures of the runs that did not succeed, for the assertion message."""
    lines = []
    for run in runs:
        if run["status"] == "SUCCESS":
            continue
        lines.append(f"{run['job']} {run['tags'].get('dagster/partition')} {run['status']}")
        records = instance.all_logs(run["run_id"])
        before = len(lines)
        for record in records:
            event = record.dagster_event
            if event is not None and event.event_type in (dg.DagsterEventType.STEP_FAILURE, dg.DagsterEventType.RUN_FAILURE):
                error = getattr(event.event_specific_data, "error", None)
                lines.append(f"  {event.step_key}: {error.message.strip().splitlines()[-1] if error else event.message}")
        if len(lines) == before:  # no failure event: what the run's log ends with
            lines += [f"  {(r.dagster_event.event_type_value if r.dagster_event else 'log')}: {r.user_message[:300]}"
                      for r in records[-8:]]
    return "\n".join(lines)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def deployment(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    storage = request.param
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text((REPO_ROOT / "dagster.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "ADS_ML_"))}
    env.update({
        "DAGSTER_HOME": str(home),
        "ADS_ML_MODELS_DIR": str(tmp_path / "models"),
        "ADS_ML_N_JOBS": "1",
        "ADS_ML_SENSOR_INTERVAL_SECONDS": "5",
        # Prophet is off by default; on here at two levels so its tuning is a real, long run
        # (the run whose worker is killed below) and its forecasts go through the deployment too
        "ADS_ML_FORECAST_METHODS_CAMPAIGN": "ema,linear,swa,ets,theta,snaive,prophet",
        "ADS_ML_FORECAST_METHODS_ADSET": "ema,linear,swa,ets,theta,snaive,prophet",
    })
    synced_today = dt.datetime.now(ZoneInfo(SYNCED_TZ)).date()
    demo = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=2, days=60, end_date=synced_today, seed=9)
    fake = FakeGraphApi([FakeAccount.from_canonical(SYNCED, demo.insights, demo.changes, name="Synced account",
                                                    timezone_name=SYNCED_TZ)])
    fake.start()
    env.update({"ADS_ML_META_ACCESS_TOKEN": fake.token, "ADS_ML_META_GRAPH_URL": fake.url})
    webhook = Webhook()  # the team's chat: every account's anomalies, from low severity on
    env.update({"ADS_ML_ALERT_URLS": webhook.url, "ADS_ML_ALERT_MIN_SEVERITY": "low",
                "ADS_ML_UI_URL": "http://127.0.0.1:3000"})
    created: list[str] = []
    if storage == "postgresql":
        server = request.getfixturevalue("pg_server_url")
        suffix = uuid.uuid4().hex[:8]
        ml_url = _create_database(server, f"ads_ml_live_{suffix}")
        dagster_url = make_url(_create_database(server, f"ads_ml_live_dagster_{suffix}"))
        created = [f"ads_ml_live_{suffix}", f"ads_ml_live_dagster_{suffix}"]
        env.update({
            # the multiprocess executor, which the default picks only from 2 cores per concurrent run
            "ADS_ML_EXECUTOR": "multiprocess",
            "ADS_ML_DATABASE_URL": ml_url,
            "DAGSTER_PG_HOST": dagster_url.host or "127.0.0.1", "DAGSTER_PG_PORT": str(dagster_url.port or 5432),
            "DAGSTER_PG_USERNAME": dagster_url.username or "postgres", "DAGSTER_PG_PASSWORD": dagster_url.password or "",
            "DAGSTER_PG_DB": dagster_url.database,
        })
    else:
        env["ADS_ML_DATABASE_URL"] = f"sqlite:///{tmp_path / 'ads_ml.db'}"
    for key in [k for k in os.environ if k.startswith(("DAGSTER_PG_", "ADS_ML_"))]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith(("DAGSTER_", "ADS_ML_")):
            monkeypatch.setenv(key, value)
    migrate(env["ADS_ML_DATABASE_URL"])
    # create the instance's storage once: the webserver and the daemon starting together on a fresh
    # DAGSTER_HOME can both create SQLite's schedule storage ("more than one head present")
    dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home))).dispose()
    live = Deployment(tmp_path, env)
    instance = None
    try:
        live.wait_ready()
        instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
        live.storage, live.instance, live.engine = storage, instance, get_engine(env["ADS_ML_DATABASE_URL"])
        live.fake, live.webhook = fake, webhook
        yield live
    finally:
        live.stop()
        fake.stop()
        webhook.stop()
        if instance is not None:
            instance.dispose()
        dispose_engine(env["ADS_ML_DATABASE_URL"])
        for name in created:
            _drop_database(request.getfixturevalue("pg_server_url"), name)


def _import_account(engine: sa.Engine, folder: Path) -> None:
    account = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=2, days=60, end_date=END, seed=5)
    insights, changes = folder / "insights.csv", folder / "changes.csv"
    account.insights.to_csv(insights, index=False)
    account.changes.to_csv(changes, index=False)
    import_insights(engine, insights, WITH_DATA)
    import_changes(engine, changes, WITH_DATA)


def _bad_account(engine: sa.Engine, folder: Path) -> Path:
    """An account imported, then one ad-day made negative by another writer (nothing an import
    accepts): its ad insights fail the blocking ``no_negative_spend`` check. Returns its file."""
    account = generate_account(n_campaigns=1, adsets_per_campaign=1, ads_per_adset=3, days=40, end_date=END, seed=4)
    path = folder / "bad.csv"
    account.insights.to_csv(path, index=False)
    import_insights(engine, path, BAD)
    with engine.begin() as conn:
        conn.execute(sa.text(
            "update daily_insights set spend = -0.5 where account_id = :a and entity_type = 'ad' and id = "
            "(select min(id) from daily_insights where account_id = :a and entity_type = 'ad' and spend > 0)"), {"a": BAD})
    return path


def _new_account(engine: sa.Engine) -> None:
    """An ad account registered in the source with no insights yet (as the source system adds one)."""
    from ads_ml.db.models import AdAccount, utcnow

    with engine.begin() as conn:
        conn.execute(AdAccount.__table__.insert().values(
            id=WITHOUT_DATA, name="New account", is_active=True, currency="BRL", timezone="UTC",
            created_at=utcnow(), updated_at=utcnow()))


def test_daemon_and_launchpad_runs_succeed(deployment: Deployment, tmp_path: Path):
    live = deployment
    bad_file = _bad_account(live.engine, tmp_path)  # there before the daemon's first ticks
    for sensor in SENSORS:
        assert live.start_sensor(sensor) == "RUNNING"

    _new_account(live.engine)
    _import_account(live.engine, tmp_path)

    # Sensors: partitions for both accounts, a refresh of the insights of the account with new
    # rows, the impact reports of its changes whose after-window has elapsed, and declarative
    # automation: everything derived from the fresh insights, in one run.
    live.wait_for(lambda: set(live.instance.get_dynamic_partitions("ad_account")) >= {WITH_DATA, WITHOUT_DATA},
                  "the partitions sensor to add both accounts")

    wanted = {(WITH_DATA, "new_insights_sensor"), (WITH_DATA, "change_events_sensor"), (WITH_DATA, AUTOMATION),
              (SYNCED, AUTOMATION), (SYNCED, "new_insights_sensor"), (SYNCED, "change_events_sensor")}
    live.wait_for(lambda: wanted <= {(r["tags"].get("dagster/partition"), r["tags"].get("dagster/sensor_name"))
                                     for r in live.runs()},
                  "the sensors and the automation to launch their runs", timeout=600)
    # The automation builds everything the account needs, in as many ticks as the runs in progress
    # (the impact run re-reads the insights) take; then it is stopped, or the launchpad runs below
    # would start more automated runs.
    expected = {"ad_features", "ad_tier_classifier", "ad_classifications", "ad_anomalies", "ad_forecasts", "ad_recommendations"}

    def materialised_for_account(account: str = WITH_DATA) -> set[str]:
        return {name for name in expected if live.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey(name), asset_partitions=[account]), limit=1).records}

    live.wait_for(lambda: materialised_for_account() == expected, "the automation to build the account's assets",
                  timeout=900)
    # The account whose ad insights failed their blocking check: its other levels go on, its ad
    # level waits (the UI's automation history says the blocking checks did not pass) ...
    def check_passed(account: str) -> bool | None:
        """The latest result of the account's ``ad_insights:no_negative_spend`` check (None: not run yet)."""
        key = dg.AssetCheckKey(dg.AssetKey("ad_insights"), "no_negative_spend")
        done = [r for r in live.instance.event_log_storage.get_asset_check_execution_history(key, limit=50)
                if r.partition == account and r.event is not None and r.event.dagster_event is not None
                and r.event.dagster_event.event_type == dg.DagsterEventType.ASSET_CHECK_EVALUATION]
        return done[0].event.dagster_event.event_specific_data.passed if done else None

    live.wait_for(lambda: check_passed(BAD) is False and live.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("adset_features"), asset_partitions=[BAD]), limit=1).records,
        "the bad account's check to fail and its adset level to go on", timeout=600)
    assert not live.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_features"), asset_partitions=[BAD]), limit=1).records
    # ... until the insights are fixed (re-imported) and checked again: then its ad level is built
    import_insights(live.engine, bad_file, BAD)
    live.wait_for(lambda: check_passed(BAD) is True and live.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_features"), asset_partitions=[BAD]), limit=1).records,
        "the fixed account's ad level to be built", timeout=600)
    # The Meta-synced account: discovered, synced, and analysed by the automation with no CSV at all;
    # the changes of its activity log get their impact reports.
    live.wait_for(lambda: materialised_for_account(SYNCED) == expected
                  and count(live.engine, "ml_impact_reports", f"account_id = '{SYNCED}'") > 0,
                  "the synced account's assets and impact reports", timeout=900)
    assert count(live.engine, "change_events", f"account_id = '{SYNCED}'") == len(live.fake.accounts[SYNCED].activities)
    # The anomalies found reach the team's webhook through the alerts sensor, once each.
    anomalies = count(live.engine, "ml_anomalies", f"account_id = '{WITH_DATA}'")
    assert anomalies > 0
    alerted = live.wait_for(lambda: [m for m in live.webhook.received
                                     if m["title"].startswith("New anomalies") and f"({WITH_DATA})" in m["title"]],
                            "the anomalies to reach the webhook", timeout=300)
    assert "/assets/ad_anomalies?partition=" in alerted[0]["message"] or "/assets/" in alerted[0]["message"]
    assert count(live.engine, "sent_alerts", f"account_id = '{WITH_DATA}' and kind = 'anomaly' and status = 'SENT'") > 0
    assert count(live.engine, "daily_insights", f"account_id = '{SYNCED}' and entity_type = 'ad'") == len(
        live.fake.accounts[SYNCED].insights)
    assert live.stop_sensor(AUTOMATION) == "STOPPED"
    runs = live.wait_for(lambda: (runs := live.runs()) and all(r["status"] in TERMINAL for r in runs) and runs,
                         "the sensors' and the automation's runs to finish", timeout=900)
    # the one run that did not succeed: the bad account's insights, stopped by the failed check
    failed = [r for r in runs if r["status"] != "SUCCESS"]
    assert [(r["job"], r["tags"].get("dagster/partition")) for r in failed] == [("insights_refresh", BAD)], \
        _failures(live.instance, runs)
    runs = [r for r in runs if r["status"] == "SUCCESS"]
    by_sensor = {r["tags"].get("dagster/sensor_name"): r["job"] for r in runs}
    assert by_sensor["new_insights_sensor"] == "insights_refresh" and by_sensor["change_events_sensor"] == "impact_analysis"
    materialised: dict[str, set[str]] = {}  # run id -> assets, of the automation's runs
    for run in (r for r in runs if r["tags"].get("dagster/sensor_name") == AUTOMATION):
        materialised[run["run_id"]] = {record.dagster_event.asset_key.to_user_string() for record in live.instance.all_logs(
            run["run_id"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)}
    automated = next(r for r in runs if r["run_id"] == max(materialised, key=lambda run_id: len(materialised[run_id])))
    # Each automation tick's "N materializations requested" is what its runs materialised.
    ticks = [t for t in live.ticks(AUTOMATION) if t["runIds"]]
    assert ticks and sum(len(t["runIds"]) for t in ticks) == len(materialised), (ticks, materialised)
    for tick in ticks:
        assert tick["requestedAssetMaterializationCount"] == sum(len(materialised[r]) for r in tick["runIds"]), (
            tick, {r: sorted(materialised[r]) for r in tick["runIds"]})
    assert expected <= set().union(*materialised.values()), materialised  # all by the automation
    assert count(live.engine, "ml_features", f"account_id = '{WITH_DATA}'") > 0
    assert count(live.engine, "ml_recommendations", f"account_id = '{WITH_DATA}'") > 0
    assert count(live.engine, "ml_impact_reports", f"account_id = '{WITH_DATA}'") > 0

    # A backfill of one account from the UI's asset graph.
    backfill = live.launch_backfill(WITH_DATA, ["adset_insights", "adset_features", "adset_anomalies"])
    status = live.wait_for(
        lambda: (s := live.backfill_status(backfill)) not in ("REQUESTED", "CANCELING", "FAILING") and s,
        "the backfill to complete")
    assert status in ("COMPLETED", "COMPLETED_SUCCESS"), _failures(live.instance, live.runs())

    # On demand from the launchpad: impact_analysis with run config.
    change_date = (END - dt.timedelta(days=20)).isoformat()
    adset = live.engine.connect().execute(sa.text(
        f"select entity_id from daily_insights where account_id = '{WITH_DATA}' and entity_type = 'adset' "
        "order by entity_id limit 1")).scalar_one()
    impact_config = {"ops": {"impact_reports": {"config": {
        "entity_type": "adset", "entity_id": adset, "change_date": change_date, "change_type": "budget_change"}}}}
    launched = {live.launch("impact_analysis", WITH_DATA, impact_config)}

    # Every job of the launchpad, for the account with data and for the new account without data.
    for job in sorted(j.name for j in all_jobs):
        run_config = {}
        if job == "prophet_tuning":
            run_config = {"ops": {f"{level}_prophet_params": {"config": {"metrics": ["leads"]}}
                                  for level in ("campaign", "adset", "ad")}}
        for account in (WITH_DATA, WITHOUT_DATA):
            launched.add(live.launch(job, account, run_config))

    def launched_done() -> list[dict] | None:
        runs = [r for r in live.runs() if r["run_id"] in launched]
        return runs if len(runs) == len(launched) and all(r["status"] in TERMINAL for r in runs) else None

    runs = live.wait_for(launched_done, "the launchpad runs to finish", timeout=1800)
    assert all(r["status"] == "SUCCESS" for r in runs), _failures(live.instance, runs)
    assert {(r["job"], r["tags"]["dagster/partition"]) for r in runs} >= {
        (j.name, a) for j in all_jobs for a in (WITH_DATA, WITHOUT_DATA)}
    with live.engine.connect() as conn:
        report = conn.execute(sa.text(
            "select status, overall_impact from ml_impact_reports where account_id = :a and entity_id = :e "
            "and change_date = :d and change_type = 'budget_change'"), {"a": WITH_DATA, "e": adset, "d": change_date}).one()
    assert report.status == "complete" and report.overall_impact in ("positive", "negative", "neutral", "inconclusive")

    # The new account's runs materialised with metadata saying there was no data.
    records = live.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_anomalies"), asset_partitions=[WITHOUT_DATA]), limit=1).records
    assert records and records[0].event_log_entry.asset_materialization.metadata["no_data"].value is True

    # The multiprocess executor ran the PostgreSQL deployment's steps in their own processes.
    expected_executor = "multiprocess" if live.storage == "postgresql" else "in_process"
    step_starts = [record for record in live.instance.all_logs(automated["run_id"])
                   if record.dagster_event is not None and record.dagster_event.event_type == dg.DagsterEventType.STEP_START]
    pids = {record.dagster_event.pid for record in step_starts}
    assert (len(pids) > 1) == (expected_executor == "multiprocess"), (expected_executor, pids)

    # A run whose worker process is killed is failed, and the account's queued run goes on.
    tuning = {"ops": {f"{level}_prophet_params": {"config": {"metrics": ["cpl", "leads"]}} for level in ("campaign", "adset", "ad")}}
    doomed = live.launch("prophet_tuning", WITH_DATA, tuning)
    worker = live.wait_for(lambda: next((record.dagster_event.pid for record in live.instance.all_logs(
                                             doomed, of_type=dg.DagsterEventType.RUN_START)), None),
                           "the run to start its worker")
    os.kill(worker, signal.SIGKILL)
    queued = live.launch("insights_refresh", WITH_DATA)
    statuses = live.wait_for(lambda: (s := {r["run_id"]: r["status"] for r in live.runs() if r["run_id"] in (doomed, queued)})
                             and all(v in TERMINAL for v in s.values()) and s,
                             "the killed run to be failed and the queued one to finish", timeout=600)
    assert statuses == {doomed: "FAILURE", queued: "SUCCESS"}, statuses

    # A re-sync from the launchpad with nothing new at Meta succeeds and starts no run.
    before = {r["run_id"] for r in live.runs()}
    resync = live.launch("sync_from_meta", SYNCED, {"ops": {"meta_sync": {"config": {"full": True}}}})
    live.wait_for(lambda: next((r["status"] for r in live.runs() if r["run_id"] == resync and r["status"] in TERMINAL), None),
                  "the re-sync to finish")
    time.sleep(15)  # three sensor intervals
    started = [r for r in live.runs() if r["run_id"] not in before | {resync}]
    assert not started and next(r for r in live.runs() if r["run_id"] == resync)["status"] == "SUCCESS", started

    # What the synced account got, and what the team received (shown with pytest -s).
    where = f"account_id = '{SYNCED}'"
    ad_days = count(live.engine, "daily_insights", where + " and entity_type = 'ad'")
    print(f"\n[{live.storage}] {SYNCED} (data only from the Meta sync): {ad_days} ad-days, "
          f"{count(live.engine, 'ml_classifications', where)} tiers, {count(live.engine, 'ml_anomalies', where)} anomalies, "
          f"{count(live.engine, 'ml_recommendations', where)} recommendations, "
          f"{count(live.engine, 'ml_impact_reports', where)} impact reports of {count(live.engine, 'change_events', where)} "
          f"changes from its activity log")
    with live.engine.connect() as conn:
        sent = conn.execute(sa.text("select kind, status, count(*), sum(attempts) from sent_alerts group by kind, status")).all()
    print(f"[{live.storage}] alerts: {[tuple(r) for r in sent]}; webhook received {len(live.webhook.received)} messages: "
          f"{[m['title'] for m in live.webhook.received]}")
