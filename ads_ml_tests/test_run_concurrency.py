"""Runs of one account never overlap, whoever starts them, and a killed run does not block the
account: on SQLite and PostgreSQL, through the installed ``ads-ml`` command."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.instance.ref import InstanceRef

from ads_ml import settings
from ads_ml.db.engine import dispose_engine, get_engine
from ads_ml.defs import resources
from ads_ml.defs.resources import FanoutResource
from ads_ml.db.migrate import migrate
from ads_ml.defs.sensors import dead_cli_runs_sensor
from ads_ml.demo import generate_account
from ads_ml.ingest.insights import import_insights
from ads_ml.runner import PipelineError, materialize_account
from ads_ml_tests.conftest import REPO_ROOT

ACCOUNT = "act_turns"
SELECT = ["ad_insights", "ad_features", "ad_isolation_forest_models", "ad_anomalies"]


def _account(engine, tmp_path: Path) -> None:
    account = generate_account(n_campaigns=2, adsets_per_campaign=2, ads_per_adset=3, days=60,
                               end_date=dt.date(2026, 10, 31), seed=3)
    path = tmp_path / "insights.csv"
    account.insights.to_csv(path, index=False)
    import_insights(engine, path, ACCOUNT)


def _materialize(*select: str) -> subprocess.Popen:
    exe = Path(sys.executable).with_name("ads-ml")
    return subprocess.Popen([str(exe), "materialize", "--account", ACCOUNT, "--select", *select],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))


def _runs(instance: dg.DagsterInstance) -> list[dg.RunRecord]:
    return sorted(instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": ACCOUNT})),
                  key=lambda r: r.start_time or 0)


@pytest.mark.slow
def test_two_cli_materialisations_of_one_account_take_turns(dagster_instance, engine, tmp_path):
    _account(engine, tmp_path)
    first, second = _materialize(*SELECT), _materialize(*SELECT)
    for process in (first, second):
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err
    runs = _runs(dagster_instance)
    assert [r.dagster_run.status for r in runs] == [dg.DagsterRunStatus.SUCCESS] * 2
    assert runs[0].end_time <= runs[1].start_time, "the two runs of one account overlapped"


def test_a_run_in_progress_elsewhere_holds_the_cli_back(dagster_instance, engine, tmp_path, monkeypatch):
    """A run the daemon launched (here: recorded as started) is waited for, up to the configured time."""
    _account(engine, tmp_path)
    dagster_instance.add_dynamic_partitions("ad_account", [ACCOUNT])
    busy = dg.DagsterRun(job_name="ad_anomaly_detection", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED,
                         tags={"dagster/partition": ACCOUNT})
    dagster_instance.add_run(busy)
    monkeypatch.setenv("ADS_ML_ACCOUNT_WAIT_SECONDS", "2")
    with pytest.raises(PipelineError, match=f"account {ACCOUNT} is still busy with run {busy.run_id}"):
        materialize_account(ACCOUNT, ["ad_insights"], instance=dagster_instance)
    assert [r.dagster_run.run_id for r in _runs(dagster_instance)] == [busy.run_id]  # nothing started


@pytest.mark.slow
def test_a_killed_cli_run_is_failed_and_the_account_moves_on(dagster_instance, engine, tmp_path):
    _account(engine, tmp_path)
    process = _materialize(*SELECT, "ad_prophet_params")
    deadline = time.monotonic() + 300
    while not (started := [r for r in _runs(dagster_instance) if r.dagster_run.status == dg.DagsterRunStatus.STARTED]):
        assert process.poll() is None and time.monotonic() < deadline, process.communicate()
        time.sleep(0.5)
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    run_id = started[0].dagster_run.run_id
    assert dagster_instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # nobody else knows

    result = dead_cli_runs_sensor(dg.build_sensor_context(instance=dagster_instance))
    assert run_id in result.skip_message
    assert dagster_instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE
    assert dagster_instance.get_run_by_id(run_id).tags["ads_ml/process"].startswith(f"{process.pid}:")
    again = dead_cli_runs_sensor(dg.build_sensor_context(instance=dagster_instance))
    assert "no run of a killed" in again.skip_message

    # the account is free: the next run neither waits nor fails
    started_at = time.monotonic()
    assert materialize_account(ACCOUNT, ["ad_insights"], instance=dagster_instance).success
    assert time.monotonic() - started_at < 120


@pytest.mark.slow
def test_a_step_that_meets_a_locked_database_is_retried(tmp_path, monkeypatch):
    """A real transient error: another process holds SQLite's write lock past the busy timeout. The
    step fails with "database is locked", is retried by its RetryPolicy and succeeds once the lock
    is gone; the run succeeds."""
    url = f"sqlite:///{tmp_path / 'ads_ml.db'}"
    migrate(url)
    engine = get_engine(url)
    _account(engine, tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_PG_", "ADS_ML_"))}
    env.update({"ADS_ML_DATABASE_URL": url, "DAGSTER_HOME": str(home), "ADS_ML_MODELS_DIR": str(tmp_path / "models"),
                "ADS_ML_N_JOBS": "1", "ADS_ML_SQLITE_BUSY_TIMEOUT_SECONDS": "1", "ADS_ML_STEP_RETRIES": "5",
                "ADS_ML_STEP_RETRY_DELAY_SECONDS": "0.5"})
    for key in [k for k in os.environ if k.startswith("DAGSTER_PG_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("DAGSTER_HOME", str(home))  # the instance's SQLite storage lives under it
    holder = sqlite3.connect(tmp_path / "ads_ml.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    process = subprocess.Popen([str(Path(sys.executable).with_name("ads-ml")), "materialize", "--account", ACCOUNT,
                                "--select", "ad_insights", "ad_features"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    instance = dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(home)))
    try:
        deadline = time.monotonic() + 300
        while True:  # hold the lock until the step has failed on it and is waiting for its retry
            assert process.poll() is None and time.monotonic() < deadline, process.communicate()[1][-3000:]
            runs = instance.get_run_records(dg.RunsFilter(tags={"dagster/partition": ACCOUNT}))
            if runs and instance.all_logs(runs[0].dagster_run.run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY):
                break
            time.sleep(0.2)
        holder.execute("ROLLBACK")
        _, err = process.communicate(timeout=300)
        assert process.returncode == 0, err
        run_id = runs[0].dagster_run.run_id
        retried = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_UP_FOR_RETRY)
        assert {record.dagster_event.step_key for record in retried} == {"ad_features"}
        failure = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE)
        assert not failure and instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
        assert "database is locked" in str([r.dagster_event.event_specific_data for r in retried])
    finally:
        holder.close()
        instance.dispose()
        dispose_engine(url)


def test_runs_steps_and_fanout_workers_add_up_to_the_cores(dagster_instance, monkeypatch):
    import yaml

    queue = yaml.safe_load((REPO_ROOT / "dagster.yaml").read_text())["run_queue"]["max_concurrent_runs"]
    assert queue == settings.DEFAULT_CONCURRENT_RUNS  # the budget assumes the queue's real limit
    monkeypatch.setattr(settings, "cores", lambda: 16)
    monkeypatch.delenv("ADS_ML_N_JOBS", raising=False)
    monkeypatch.delenv("ADS_ML_STEP_CONCURRENCY", raising=False)
    assert settings.step_concurrency() == 4  # 16 cores shared by 4 runs
    assert settings.fanout_workers(runs_in_progress=1, steps_per_run=1) == 16  # alone: the whole machine
    assert settings.fanout_workers(runs_in_progress=4, steps_per_run=4) == 1
    assert settings.fanout_workers(runs_in_progress=2, steps_per_run=1) == 8

    fanout = FanoutResource()
    assert fanout.workers() == 16 // resources.steps_per_run()  # outside a run (PostgreSQL: multiprocess)
    for _ in range(3):
        dagster_instance.add_run(dg.DagsterRun(job_name="x", run_id=str(uuid.uuid4()), status=dg.DagsterRunStatus.STARTED))
    fanout._instance = dagster_instance
    assert fanout.workers() == 16 // (3 * resources.steps_per_run())
    monkeypatch.setenv("ADS_ML_N_JOBS", "5")
    assert fanout.workers() == 5  # an explicit setting wins


def test_a_partition_added_by_another_process_meanwhile_is_not_an_error(dagster_instance, monkeypatch):
    """Two CLI runs of a new account both see it missing, and the second insert breaks the unique key."""
    from ads_ml.runner import ensure_partition

    dagster_instance.add_dynamic_partitions("ad_account", [ACCOUNT])  # the other process got there first
    real = dagster_instance.has_dynamic_partition
    seen = [False]  # what this process saw just before that insert, then the truth
    monkeypatch.setattr(dagster_instance, "has_dynamic_partition",
                        lambda name, key: seen.pop() if seen else real(name, key))
    ensure_partition(dagster_instance, ACCOUNT)
    assert dagster_instance.get_dynamic_partitions("ad_account") == [ACCOUNT]
