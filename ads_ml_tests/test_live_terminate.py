"""Terminate, as an operator clicks it in the UI, through a live webserver + daemon (GraphQL): the
run ends CANCELED, no step is retried or succeeds after the request, nothing is written once it is
canceled, force termination stops the worker too, and the account's next run starts only when the
canceled run's worker is gone, then succeeds. SQLite (in-process executor) and PostgreSQL
(multiprocess executor)."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa

from ads_ml_tests.live import TERMINAL, Deployment
from ads_ml_tests.test_live_deployment import SENSORS, WITH_DATA, _failures, _import_account, deployment  # noqa: F401

pytestmark = pytest.mark.slow

#: "Materialize all" of one account: every asset of the account's partition but the Meta sync.
ACCOUNT_ASSETS = [f"{level}_{name}" for level in ("campaign", "adset", "ad") for name in (
    "insights", "features", "tier_classifier", "classifications", "prophet_params", "ensemble_weights", "forecasts",
    "isolation_forest_models", "anomalies", "recommendations")] + ["transfer_classifier", "impact_reports"]
#: Step events that must not follow a terminate request.
AFTER_TERMINATE = (dg.DagsterEventType.STEP_UP_FOR_RETRY, dg.DagsterEventType.STEP_RESTARTED,
                   dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION)
#: What a step already running when Terminate was clicked may still record before the interrupt lands.
FINISHING = (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.ASSET_MATERIALIZATION)


def _rows(engine: sa.Engine) -> dict[str, int]:
    """Rows of every result table (ml_*): what a run writes."""
    names = [n for n in sa.inspect(engine).get_table_names() if n.startswith("ml_")]
    with engine.connect() as conn:
        return {name: conn.execute(sa.text(f"select count(*) from {name}")).scalar_one() for name in names}


def _events(live: Deployment, run_id: str) -> list[dg.EventLogEntry]:
    return [e for e in live.instance.all_logs(run_id) if e.dagster_event is not None]


def _alive(pid: int) -> bool:
    """Whether the process runs (a zombie waiting to be reaped has exited)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text().split("State:", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in ("Z", "X")


def _terminate_mid_step(live: Deployment, force: bool) -> tuple[str, float, int]:
    """Launch "Materialize all" for the account, terminate it while a step runs; returns the run id,
    the time of the request and the run worker's pid."""
    run_id = live.launch_assets(WITH_DATA, ACCOUNT_ASSETS)

    def running_step() -> str | None:
        started, done = set(), set()
        for event in _events(live, run_id):
            kind = event.dagster_event.event_type
            if kind == dg.DagsterEventType.STEP_START:
                started.add(event.dagster_event.step_key)
            elif kind in (dg.DagsterEventType.STEP_SUCCESS, dg.DagsterEventType.STEP_FAILURE):
                done.add(event.dagster_event.step_key)
        # past the insights, in a step that works for a while (the features and models of a level)
        return next((step for step in started - done if "_insights" not in step), None)

    step = live.wait_for(running_step, "a step past the insights to start", timeout=300)
    worker = next(e.dagster_event.pid for e in _events(live, run_id)
                  if e.dagster_event.event_type == dg.DagsterEventType.RUN_START)
    requested = time.time()
    status = live.terminate(run_id, force=force)
    print(f"\n[{live.storage}] {'force ' if force else ''}terminate during {step}: {status}")
    if force:
        assert status == "CANCELED"
    return run_id, requested, worker


def test_terminate_stops_the_run_and_the_account_runs_again(deployment: Deployment, tmp_path: Path):
    live = deployment
    for sensor in SENSORS:  # nothing but the operator launches runs here
        live.stop_sensor(sensor)
    _import_account(live.engine, tmp_path)
    live.instance.add_dynamic_partitions("ad_account", [WITH_DATA])

    for force in (False, True):
        run_id, requested, worker = _terminate_mid_step(live, force)
        rerun = live.launch_assets(WITH_DATA, ACCOUNT_ASSETS) if force else None  # queued right after
        status = live.wait_for(lambda: (s := live.status(run_id)) in TERMINAL and s, "the run to end", timeout=60)
        assert status == "CANCELED", _failures(live.instance, live.runs())
        assert time.time() - requested < 60
        rows = _rows(live.engine)
        live.wait_for(lambda: not _alive(worker), "the run worker to exit", timeout=60)
        # (after a force termination the queued re-run starts its steps only now: see below)
        assert _rows(live.engine) == rows, "written after the run was canceled"
        if not force:
            time.sleep(5)
            assert _rows(live.engine) == rows, "written after the run was canceled"
        assert live.status(run_id) == "CANCELED"
        events = _events(live, run_id)
        # The interrupt reaches the worker a moment after the request (webserver -> code server ->
        # signal): a step already running when the operator clicked may finish and record its
        # materialisation until then. Nothing else may follow the request: no retry, no step that
        # started after it materialising, nothing once the interrupt has failed a step.
        in_flight = {e.dagster_event.step_key for e in events if e.timestamp <= requested
                     and e.dagster_event.event_type == dg.DagsterEventType.STEP_START}
        interrupted = min((e.timestamp for e in events if e.timestamp > requested
                           and e.dagster_event.event_type == dg.DagsterEventType.STEP_FAILURE), default=float("inf"))
        late = [(e.dagster_event.event_type.value, e.dagster_event.step_key) for e in events
                if e.timestamp > requested and e.dagster_event.event_type in AFTER_TERMINATE
                and not (e.dagster_event.event_type in FINISHING and e.dagster_event.step_key in in_flight
                         and e.timestamp <= interrupted)]
        assert not late, late

    # The run launched right after the force termination waited for the canceled worker, then succeeded.
    last_of_canceled = max(e.timestamp for e in _events(live, run_id))
    status = live.wait_for(lambda: (s := live.status(rerun)) in TERMINAL and s, "the re-run to finish", timeout=900)
    assert status == "SUCCESS", _failures(live.instance, live.runs())
    first_step = min(e.timestamp for e in _events(live, rerun) if e.dagster_event.event_type == dg.DagsterEventType.STEP_START)
    assert first_step >= last_of_canceled, "the next run started a step while the canceled run's worker went on"
    materialised = {e.dagster_event.asset_key.to_user_string() for e in _events(live, rerun)
                    if e.dagster_event.event_type == dg.DagsterEventType.ASSET_MATERIALIZATION}
    assert set(ACCOUNT_ASSETS) <= materialised


def test_a_partition_added_in_the_ui_registers_its_account(deployment: Deployment):
    """"Add partition" on an asset page: the account is registered (and, Meta configured, synced),
    never removed by the partitions sensor a minute later."""
    live = deployment
    for sensor in SENSORS:
        live.stop_sensor(sensor)
    assert live.start_sensor("ad_account_partitions_sensor") == "RUNNING"
    live.add_partition("act_9999")

    def registered() -> bool:
        with live.engine.connect() as conn:
            return conn.execute(sa.text("select count(*) from ad_accounts a join meta_sync_state s "
                                        "on s.account_id = a.id where a.id = 'act_9999' and a.is_active")).scalar_one() == 1

    live.wait_for(registered, "the partitions sensor to register act_9999", timeout=120)
    time.sleep(12)  # two more ticks of the sensor (5 s interval here)
    assert "act_9999" in live.instance.get_dynamic_partitions("ad_account")
