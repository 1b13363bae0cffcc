"""Steps are retried only for what is transient, through Dagster's own retry request: never for a
bug, bad data, a ``Failure`` or an interrupt (a Terminate must stop the run, see test_live_terminate)."""


import sqlite3

import dagster as dg
import psycopg2
import pytest
import sqlalchemy.exc as sa_exc

from ads_ml.db.engine import is_transient
from ads_ml.defs.common import retry_transient
from ads_ml.ingest.meta import MetaAccessError, MetaApiError


def _operational(message: str, orig: Exception | None = None) -> sa_exc.OperationalError:
    return sa_exc.OperationalError("SELECT 1", {}, orig or sqlite3.OperationalError(message))


class _PgError(psycopg2.OperationalError):
    """psycopg2's errors carry their SQLSTATE in ``pgcode`` (read-only on the real class)."""

    def __init__(self, code: str) -> None:
        super().__init__(f"sqlstate {code}")
        self._code = code

    @property
    def pgcode(self) -> str:  # noqa: D102
        return self._code


@pytest.mark.parametrize("error, transient", [
    (_operational("database is locked"), True),
    (_operational("server closed the connection unexpectedly"), True),
    (_operational("x", _PgError("40001")), True),   # serialisation failure
    (_operational("x", _PgError("40P01")), True),   # deadlock
    (_operational("x", _PgError("55P03")), True),   # lock not available
    (_operational("x", _PgError("08006")), True),   # connection failure
    (_operational("x", _PgError("22P02")), False),  # invalid text: bad data
    (sa_exc.IntegrityError("INSERT", {}, sqlite3.IntegrityError("UNIQUE constraint failed")), False),
    (_operational("no such table: daily_insights"), False),
    (sa_exc.TimeoutError("QueuePool limit"), True),
    (ConnectionResetError("reset by peer"), True),
    (MetaApiError("GET act_1/insights: still throttled after 5 waits", transient=True), True),
    (MetaApiError("GET act_1/insights: HTTP 400, code 100: bad field"), False),
    (MetaAccessError("token expired"), False),
    (ValueError("bad data"), False),
    (KeyError("a bug"), False),
    (dg.Failure("refused"), False),
])
def test_what_counts_as_transient(error, transient):
    assert is_transient(error) is transient


def test_a_transient_cause_counts():
    try:
        try:
            raise _operational("database is locked")
        except sa_exc.OperationalError as exc:
            raise RuntimeError("writing the features") from exc
    except RuntimeError as wrapped:
        assert is_transient(wrapped)


def _run(asset_fn):  # noqa: ANN001, ANN202
    result = dg.materialize([asset_fn], raise_on_error=False)
    kinds = [e.event_type_value for e in result.all_events if e.event_type_value.startswith("STEP_")]
    return result, kinds


def test_a_transient_error_is_retried_and_a_bug_is_not(monkeypatch):
    monkeypatch.setenv("ADS_ML_STEP_RETRY_DELAY_SECONDS", "0")
    monkeypatch.setenv("ADS_ML_STEP_RETRIES", "2")
    attempts = {"flaky": 0, "buggy": 0}

    @dg.asset
    @retry_transient
    def flaky(context: dg.AssetExecutionContext) -> int:
        attempts["flaky"] += 1
        if context.retry_number == 0:
            raise _operational("database is locked")
        return 1

    result, kinds = _run(flaky)
    assert result.success and attempts["flaky"] == 2 and kinds.count("STEP_UP_FOR_RETRY") == 1

    @dg.asset
    @retry_transient
    def buggy(context: dg.AssetExecutionContext) -> int:
        attempts["buggy"] += 1
        raise KeyError("a bug")

    result, kinds = _run(buggy)
    assert not result.success and attempts["buggy"] == 1 and "STEP_UP_FOR_RETRY" not in kinds

    @dg.asset
    @retry_transient
    def always_locked(context: dg.AssetExecutionContext) -> int:
        raise _operational("database is locked")

    result, kinds = _run(always_locked)  # retried ADS_ML_STEP_RETRIES times, then failed
    assert not result.success and kinds.count("STEP_UP_FOR_RETRY") == 2 and kinds[-1] == "STEP_FAILURE"


def test_no_asset_carries_a_retry_policy():
    """Dagster's RetryPolicy retries every exception, an interrupt too (dagster-io/dagster#15026)."""
    from ads_ml.definitions import defs

    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assets_def = node.assets_def
        assert assets_def.op.retry_policy is None, key.to_user_string()


def test_a_step_does_not_start_once_its_run_was_terminated():
    """A step starting after Terminate (its run CANCELING) fails before computing or writing."""
    computed = []

    @dg.asset
    @retry_transient
    def first(context: dg.AssetExecutionContext) -> int:
        context.instance.report_run_canceling(context.instance.get_run_by_id(context.run.run_id))  # Terminate
        return 1

    @dg.asset
    @retry_transient
    def second(context: dg.AssetExecutionContext, first: int) -> int:
        computed.append(first)
        return 2

    result = dg.materialize([first, second], raise_on_error=False)
    assert not result.success and computed == []
    failure = next(e for e in result.all_events if e.event_type_value == "STEP_FAILURE")
    assert failure.step_key == "second" and "was terminated (CANCELING) before this step started" in str(
        failure.event_specific_data.error.message)
