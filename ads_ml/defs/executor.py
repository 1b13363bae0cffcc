"""The run worker holds its ad account for as long as it lives.

Dagster's run queue (dagster.yaml: one run per ``dagster/partition``) starts an account's next run
as soon as the previous one is no longer in progress. A run *force*-terminated from the UI is marked
CANCELED at once, while its worker may still be finishing the step it was in; the queue would start
the next run beside it. So every run worker takes the account's lock (:mod:`ads_ml.db.locks`: a
PostgreSQL advisory lock, or a file lock beside SQLite — both released by the server or the
operating system when the process dies) before its first step and keeps it until it exits: the
account's next run waits, with an engine event saying so, until the canceled run's worker is gone.
``ads-ml materialize`` takes the same lock (:func:`ads_ml.runner.account_turn`).
"""

import contextlib
from collections.abc import Iterator

import dagster as dg

from ads_ml import settings
from ads_ml.db.engine import get_engine
from ads_ml.db.locks import AccountBusyError, account_lock

PARTITION_TAG = "dagster/partition"


class AccountTurnExecutor(dg.Executor):
    """Runs ``inner`` (Dagster's own executor) while holding the run's ad account."""

    def __init__(self, inner: dg.Executor) -> None:
        self._inner = inner

    @property
    def retries(self):  # noqa: ANN201 - Dagster's RetryMode
        return self._inner.retries

    @property
    def step_dependency_config(self):  # noqa: ANN201
        return self._inner.step_dependency_config

    def execute(self, plan_context, execution_plan) -> Iterator:  # noqa: ANN001
        run = plan_context.dagster_run
        account_id = run.tags.get(PARTITION_TAG)
        if not account_id:  # deployment-wide runs (meta_ad_accounts) hold no account
            yield from self._inner.execute(plan_context, execution_plan)
            return

        def waiting() -> None:
            plan_context.instance.report_engine_event(
                f"waiting for the worker of an earlier run of {account_id} to exit (a run force-terminated "
                "from the UI finishes its step first) before the first step", run)

        engine = get_engine(settings.database_url())
        with contextlib.ExitStack() as held:
            try:
                held.enter_context(account_lock(engine, account_id, timeout=settings.account_wait_seconds(),
                                                waiting=waiting))
            except AccountBusyError as exc:
                raise dg.Failure(f"{exc}; raise {settings.ACCOUNT_WAIT_ENV} to wait longer", allow_retries=False) from None
            yield from self._inner.execute(plan_context, execution_plan)


def account_turn(base: dg.ExecutorDefinition) -> dg.ExecutorDefinition:
    """``base`` (e.g. ``dg.in_process_executor``) whose runs hold their account; configure the
    result (``.configured``) as you would ``base``."""
    return dg.ExecutorDefinition(
        name=base.name,
        config_schema=base.config_schema,
        requirements=base.get_requirements,
        executor_creation_fn=lambda init_context: AccountTurnExecutor(base.executor_creation_fn(init_context)),
        description=base.description,
    )
