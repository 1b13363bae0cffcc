"""Running the account pipeline through Dagster from Python (the CLI and the tests use this), on
the instance in ``$DAGSTER_HOME`` so that the runs show in ``dagster dev``."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import os
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import dagster as dg
import sqlalchemy.exc
from dagster._core.instance.ref import InstanceRef

from ads_ml import settings
from ads_ml.db.engine import get_engine
from ads_ml.db.locks import AccountBusyError, account_lock
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME

log = logging.getLogger(__name__)

#: Tags of a run executed in this process (``ads-ml materialize``): where it runs, so that a run whose
#: process was killed can be told from one still running (``fail_dead_cli_runs``).
HOST_TAG, PROCESS_TAG = "ads_ml/host", "ads_ml/process"
IN_PROGRESS = [dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.CANCELING]


class PipelineError(RuntimeError):
    """A run failed or was asked for something that does not exist."""


def get_instance() -> dg.DagsterInstance:
    """The instance of ``$DAGSTER_HOME``; without it, a persistent one under ``.ads_ml/`` using the
    ``dagster.yaml`` of the working directory when there is one (as ``dagster dev`` does)."""
    if os.environ.get(settings.DAGSTER_HOME_ENV):
        return dg.DagsterInstance.get()
    base = settings.state_dir()
    base.mkdir(parents=True, exist_ok=True)
    config_dir = Path.cwd() if (Path.cwd() / "dagster.yaml").exists() else base
    return dg.DagsterInstance.from_ref(InstanceRef.from_dir(str(base), config_dir=str(config_dir)))


def ensure_partition(instance: dg.DagsterInstance, account_id: str) -> None:
    """Register the account's partition; two processes may race to add it (the second one's insert
    breaks the unique key), which is fine as long as it exists afterwards."""
    if instance.has_dynamic_partition(AD_ACCOUNT_PARTITIONS_NAME, account_id):
        return
    try:
        instance.add_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME, [account_id])
    except sqlalchemy.exc.IntegrityError:
        if not instance.has_dynamic_partition(AD_ACCOUNT_PARTITIONS_NAME, account_id):
            raise


def asset_names(defs: dg.Definitions | None = None) -> list[str]:
    defs = defs or _defs()
    return sorted(k.to_user_string() for k in defs.resolve_all_asset_keys())


def materialize_account(
    account_id: str,
    select: Sequence[str] | None = None,
    *,
    reference_date: dt.date | None = None,
    instance: dg.DagsterInstance | None = None,
    defs: dg.Definitions | None = None,
    raise_on_error: bool = True,
    run_config: dict | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialise ``select`` (asset names; default all) for one account partition; ``run_config``'s
    ``ops`` (e.g. a sensor's run request's) configure the selected assets."""
    defs = defs or _defs()
    known = asset_names(defs)
    # an account's assets: the deployment-wide ones (meta_ad_accounts) are not the account's
    graph = defs.resolve_asset_graph()
    selection = list(select or [name for name in known if graph.get(dg.AssetKey(name)).partitions_def is not None])
    unknown = [name for name in selection if name not in known]
    if unknown:
        raise PipelineError(f"unknown asset(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
    own_instance = instance is None
    instance = instance or get_instance()
    try:
        ensure_partition(instance, account_id)
        # INFO keeps the console readable; every event is still stored for the UI.
        config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}},
                        "ops": dict((run_config or {}).get("ops", {}))}
        if reference_date is not None:
            config["ops"].update({
                    name: {"config": {"reference_date": reference_date.isoformat()}}
                    for name in selection
                    if name.endswith("_insights")
                })
        if not config["ops"]:
            del config["ops"]
        job = defs.resolve_implicit_global_asset_job_def()
        with account_turn(instance, account_id):
            result = job.execute_in_process(
                instance=instance,
                partition_key=account_id,
                asset_selection=[dg.AssetKey(name) for name in selection],
                run_config=config,
                tags=cli_run_tags(),
                raise_on_error=False,
            )
    finally:
        if own_instance:
            instance.dispose()
    if raise_on_error:
        _raise_on_failure(result, f"run {result.run_id} for {account_id}")
    return result


@contextlib.contextmanager
def account_turn(instance: dg.DagsterInstance, account_id: str) -> Iterator[None]:
    """Wait for the account's turn, as the daemon's run queue does (dagster.yaml: one run per account
    at a time): take the account's lock (other ``ads-ml`` processes, and run workers, which hold it
    for their life: :mod:`ads_ml.defs.executor`), then make sure no run of the account launched
    elsewhere (schedules, sensors, the UI) is in progress — if one is, let the lock go (its worker
    may be waiting for it) and try again. A run of ours is in progress from the moment it starts,
    so the queue holds the daemon's runs of the account back. Runs left STARTED by a killed
    ``ads-ml`` process are failed on the way (they hold nothing)."""
    timeout = settings.account_wait_seconds()
    deadline = time.monotonic() + timeout
    engine = get_engine(settings.database_url())
    told = False
    try:
        while True:
            with account_lock(engine, account_id, timeout=max(deadline - time.monotonic(), 0.0),
                              waiting=lambda: log.warning(f"waiting for another run of {account_id} to finish")):
                busy = _runs_in_progress(instance, account_id)
                if not busy:
                    yield
                    return
            if time.monotonic() >= deadline:
                raise AccountBusyError(f"account {account_id} is still busy with run {busy[0].run_id} "
                                       f"({busy[0].job_name}) after {timeout:.0f} s")
            if not told:
                log.warning(f"waiting for run {busy[0].run_id} ({busy[0].job_name}) of {account_id} to finish")
                told = True
            time.sleep(1.0)
    except AccountBusyError as exc:
        raise PipelineError(f"{exc}; try again later or raise {settings.ACCOUNT_WAIT_ENV}") from exc


def _runs_in_progress(instance: dg.DagsterInstance, account_id: str) -> list[dg.DagsterRun]:
    fail_dead_cli_runs(instance, account_id)
    return [record.dagster_run for record in instance.get_run_records(
        dg.RunsFilter(tags={"dagster/partition": account_id}, statuses=IN_PROGRESS))]


def cli_run_tags() -> dict[str, str]:
    return {"ads_ml/launched_by": "cli", HOST_TAG: socket.gethostname(), PROCESS_TAG: _process_id(os.getpid()) or ""}


def _process_id(pid: int) -> str | None:
    """``pid:start time`` of a live process on this machine (the start time tells a reused pid
    apart), or None when no such process runs."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return f"{pid}:{stat.rsplit(')', 1)[1].split()[19]}"
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"{pid}:"


def fail_dead_cli_runs(instance: dg.DagsterInstance, account_id: str | None = None) -> list[str]:
    """Mark FAILURE the in-progress runs executed by an ``ads-ml`` process of this machine that no
    longer exists (killed, machine restarted): nothing else would, and the account's queue waits on
    them. Returns their run ids."""
    tags = {HOST_TAG: socket.gethostname(), **({"dagster/partition": account_id} if account_id else {})}
    failed = []
    for record in instance.get_run_records(dg.RunsFilter(tags=tags, statuses=IN_PROGRESS)):
        run = record.dagster_run
        recorded = run.tags.get(PROCESS_TAG, "")
        pid = recorded.split(":", 1)[0]
        if not pid.isdigit() or _process_id(int(pid)) in (recorded, f"{pid}:"):
            continue
        message = (f"the ads-ml process {pid} on {run.tags[HOST_TAG]} that executed this run is gone "
                   "(killed or the machine restarted): run marked failed")
        instance.report_engine_event(message, run)
        instance.report_run_failed(run, message)
        failed.append(run.run_id)
    return failed


def _raise_on_failure(result: dg.ExecuteInProcessResult, what: str) -> None:
    """A PipelineError naming each failed step and the root cause of its error (not Dagster's
    wrapper, e.g. "Error occurred while loading input", but the checksum mismatch under it)."""
    if result.success:
        return
    failures = [
        f"{event.step_key}: {root_cause(event.event_specific_data.error)}"
        for event in result.all_events
        if event.event_type == dg.DagsterEventType.STEP_FAILURE and event.event_specific_data.error
    ]
    raise PipelineError(f"{what} failed: " + ("; ".join(failures) or "see the run in dagster dev"))


def root_cause(error) -> str:  # noqa: ANN001 - dagster's SerializableErrorInfo
    """The innermost cause of a serialised error chain, as one line ``Type: message``."""
    while getattr(error, "cause", None) is not None:
        error = error.cause
    message = " ".join((error.message or "").split())
    return message or getattr(error, "cls_name", None) or "unknown error"


def _defs() -> dg.Definitions:
    from ads_ml.definitions import defs

    return defs


def run_impact(
    account_id: str,
    config: dict,
    *,
    instance: dg.DagsterInstance | None = None,
    defs: dg.Definitions | None = None,
) -> dg.ExecuteInProcessResult:
    """Run the on-demand impact job for one account (fresh insights, then the report)."""
    defs = defs or _defs()
    own_instance = instance is None
    instance = instance or get_instance()
    try:
        ensure_partition(instance, account_id)
        with account_turn(instance, account_id):
            result = defs.resolve_job_def("impact_analysis").execute_in_process(
                instance=instance,
                partition_key=account_id,
                run_config={
                    "loggers": {"console": {"config": {"log_level": "INFO"}}},
                    "ops": {"impact_reports": {"config": config}},
                },
                tags=cli_run_tags(),
                raise_on_error=False,
            )
    finally:
        if own_instance:
            instance.dispose()
    _raise_on_failure(result, f"impact run {result.run_id} for {account_id}")
    return result
