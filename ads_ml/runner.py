"""Running the account pipeline through Dagster from Python (the CLI and the tests use this), on
the instance in ``$DAGSTER_HOME`` so that the runs show in ``dagster dev``."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
from dagster._core.instance.ref import InstanceRef

from ads_ml import settings
from ads_ml.defs.partitions import AD_ACCOUNT_PARTITIONS_NAME


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
    if not instance.has_dynamic_partition(AD_ACCOUNT_PARTITIONS_NAME, account_id):
        instance.add_dynamic_partitions(AD_ACCOUNT_PARTITIONS_NAME, [account_id])


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
) -> dg.ExecuteInProcessResult:
    """Materialise ``select`` (asset names; default all) for one account partition."""
    defs = defs or _defs()
    known = asset_names(defs)
    selection = list(select or known)
    unknown = [name for name in selection if name not in known]
    if unknown:
        raise PipelineError(f"unknown asset(s) {', '.join(unknown)}; choose from: {', '.join(known)}")
    own_instance = instance is None
    instance = instance or get_instance()
    try:
        ensure_partition(instance, account_id)
        # INFO keeps the console readable; every event is still stored for the UI.
        run_config: dict = {"loggers": {"console": {"config": {"log_level": "INFO"}}}}
        if reference_date is not None:
            run_config["ops"] = {
                    name: {"config": {"reference_date": reference_date.isoformat()}}
                    for name in selection
                    if name.endswith("_insights")
                }
        job = defs.resolve_implicit_global_asset_job_def()
        result = job.execute_in_process(
            instance=instance,
            partition_key=account_id,
            asset_selection=[dg.AssetKey(name) for name in selection],
            run_config=run_config,
            tags={"ads_ml/launched_by": "cli"},
            raise_on_error=False,
        )
    finally:
        if own_instance:
            instance.dispose()
    if raise_on_error:
        _raise_on_failure(result, f"run {result.run_id} for {account_id}")
    return result


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
        result = defs.resolve_job_def("impact_analysis").execute_in_process(
            instance=instance,
            partition_key=account_id,
            run_config={
                "loggers": {"console": {"config": {"log_level": "INFO"}}},
                "ops": {"impact_reports": {"config": config}},
            },
            tags={"ads_ml/launched_by": "cli"},
            raise_on_error=False,
        )
    finally:
        if own_instance:
            instance.dispose()
    _raise_on_failure(result, f"impact run {result.run_id} for {account_id}")
    return result
