"""Small helpers shared by the asset modules."""

from __future__ import annotations

import functools
import logging
import random
from collections.abc import Callable

import dagster as dg
import pandas as pd

from ads_ml import settings
from ads_ml.db.engine import is_transient
from ads_ml.ml.metrics import unit_columns

log = logging.getLogger(__name__)

OWNERS = ["team:data-engineering"]
LEVELS = ("campaign", "adset", "ad")


def retry_transient(fn: Callable) -> Callable:
    """Every asset's step: it does not start once its run was terminated (:func:`_stop_if_terminated`),
    and it is retried only for what is transient (:func:`ads_ml.db.engine.is_transient`: a lost
    connection, a serialisation failure or deadlock, a lock held past the timeout), at most
    ``ADS_ML_STEP_RETRIES`` times, waits doubling from ``ADS_ML_STEP_RETRY_DELAY_SECONDS``, jittered.

    Dagster's ``RetryPolicy`` retries every exception, and an interrupt too (dagster#15026): a
    Terminate became a retry and the run went on to SUCCESS. Here an interrupt, a ``Failure``, bad
    data or a bug fails the step at once. Each attempt writes in its own transaction, so a retried
    step never leaves half of its rows."""

    @functools.wraps(fn)
    def step(*args, **kwargs):  # noqa: ANN202
        _stop_if_terminated(args)
        try:
            return fn(*args, **kwargs)
        except Exception as exc:
            if not is_transient(exc):
                raise
            raise transient_retry(exc, _retry_number(args, kwargs)) from exc

    return step


#: A run an operator terminated: a step of it must not start (and write) any more.
TERMINATED = (dg.DagsterRunStatus.CANCELING, dg.DagsterRunStatus.CANCELED)


def _stop_if_terminated(args: tuple) -> None:
    """Fail a step that starts after its run was terminated. The multiprocess executor forwards
    Terminate's interrupt to the step processes it has, but a step process still starting up when
    it arrives would run the whole step and write its rows (seen in the live terminate test on
    PostgreSQL); the run's status (CANCELING, or CANCELED when forced) tells it not to."""
    context = next((a for a in args if isinstance(a, (dg.AssetExecutionContext, dg.OpExecutionContext))), None)
    if context is None:
        return
    run_id = context.run.run_id
    run = context.instance.get_run_by_id(run_id)
    if run is not None and run.status in TERMINATED:
        raise dg.Failure(f"run {run_id} was terminated ({run.status.value}) before this step started: "
                         "nothing computed or written", allow_retries=False)


def transient_retry(exc: BaseException, retry_number: int) -> dg.RetryRequested:
    """Dagster's retry request for a transient error, the wait doubling with each retry."""
    delay = settings.step_retry_delay_seconds() * 2 ** retry_number * random.uniform(0.75, 1.25)
    log.warning(f"transient error, retried in {delay:.0f} s: {exc}")
    return dg.RetryRequested(max_retries=settings.step_retries(), seconds_to_wait=delay)


def _retry_number(args: tuple, kwargs: dict) -> int:
    """The step's retry number from its context (asset, input or output context), 0 if none."""
    for value in (*args, *kwargs.values()):
        number = getattr(value, "retry_number", None)
        if isinstance(number, int):
            return number
        step_context = getattr(value, "_step_context", None)
        if step_context is not None:
            return int(getattr(step_context, "previous_attempt_count", 0) or 0)
    return 0


def markdown_table(frame: pd.DataFrame, max_rows: int = 10, decimals: int = 2, currency: str | None = None) -> str:
    """A Markdown preview of the first rows: floats rounded, missing values shown as '—', ids kept
    as written (never parsed as numbers); money columns named with the account's ``currency``
    (``spend_7d (BRL)``), CTR columns with %. A meaningful index (entity ids, dates) becomes
    columns; a plain row number (left by sorting or filtering) is dropped."""
    if frame.empty:
        return "_no rows_"
    frame = unit_columns(frame, currency)

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and pd.isna(value)):
            return "—"
        if isinstance(value, float):
            return f"{value:,.{decimals}f}"
        if isinstance(value, pd.Timestamp):
            return value.date().isoformat()
        return str(value)

    shown = frame.head(max_rows)
    if not isinstance(shown.index, pd.RangeIndex):
        shown = shown.reset_index(drop=all(name is None for name in shown.index.names))
    return shown.map(cell).to_markdown(index=False, disable_numparse=True)


def entity_names(entities: pd.DataFrame) -> pd.Series:
    """Entity id (as text) → name, from an insights' ``entities`` frame."""
    if entities is None or entities.empty or "name" not in entities.columns:
        return pd.Series(dtype="object")
    return pd.Series(entities["name"].to_numpy(), index=entities["entity_id"].astype(str)).dropna()


def with_names(frame: pd.DataFrame, names: pd.Series) -> pd.DataFrame:
    """``frame`` with a ``name`` column beside its entity id (an ``entity_id`` column or index), so
    a marketer reads names, not only numeric ids. Unknown ids get no name."""
    if "entity_id" not in frame.columns and "entity_id" in list(frame.index.names):
        frame = frame.reset_index()
    if "entity_id" in frame.columns:
        ids = frame["entity_id"].astype(str)
        out = frame.copy()
        out.insert(list(out.columns).index("entity_id") + 1, "name", ids.map(names).to_numpy())
        return out
    return frame


def no_data_metadata(has_data: bool, account_id: str) -> dict:
    """Metadata saying a partition had no insights to work on ({} when it had some)."""
    if has_data:
        return {}
    return {"no_data": True,
            "note": f"account {account_id} has no insights in the window: nothing to compute (import insights first)"}
