"""Declarative automation: when each asset runs, as conditions on its own data instead of a chain of
cron times (Celery Beat's way).

- Insights are materialised by ``new_insights_sensor`` when an import commits (or a backfill).
- Fresh data flows on by itself (``eager``): features, campaign and adset anomalies and
  recommendations whenever one of their inputs changes; forecasts after each calibration of the
  ensemble weights; ad anomalies at most once per tick of their cron (every 2 h), when insights changed.
- Timed work runs at its cron time **in each account's own timezone** (``ad_accounts.timezone``):
  training, tuning, calibration and classification, each once per tick and only when its inputs
  are present and not being written. A new account gets each of them as soon as its insights exist.

Every condition waits while one of its inputs is being materialised, so training at 03:00 that runs
late still comes before classification at 05:00 reads the model, and while a blocking check of an
input failed (negative spend, clicks above impressions, a duplicated entity-day in the insights):
bad data stops the account's downstream assets until its insights are fixed and re-checked. Cron times are ``settings.SCHEDULES``
(``ADS_ML_SCHEDULE_<NAME>`` overrides one).
"""

from __future__ import annotations

import logging
import warnings

import dagster as dg

from ads_ml import settings
from ads_ml.db.engine import get_engine
from ads_ml.db.queries import account_timezones

log = logging.getLogger(__name__)


class AccountCronTickPassed(dg.AutomationCondition):
    """True for an account partition on the first evaluation after ``cron_schedule`` ticked in that
    account's timezone. Dagster's ``cron_tick_passed`` reads a cron in one timezone for every
    partition; accounts of one deployment live in several."""

    def __init__(self, cron_schedule: str) -> None:
        self.cron_schedule = cron_schedule

    @property
    def name(self) -> str:
        return f"account_cron_tick_passed({self.cron_schedule})"

    @property
    def description(self) -> str:
        return f"'{self.cron_schedule}' passed in the account's timezone"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        previous = context.previous_evaluation_time
        candidates = context.candidate_subset
        if previous is None or candidates.is_empty:
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        accounts = candidates.expensively_compute_partition_keys()
        fired = {
            account for account, zone in _timezones(accounts).items()
            if context.asset_graph_view.compute_previous_cron_tick(
                cron_schedule=self.cron_schedule, cron_timezone=zone) >= previous
        }
        return dg.AutomationResult(
            context, true_subset=context.asset_graph_view.compute_intersection_with_partition_keys(fired, candidates))


def _timezones(accounts) -> dict[str, str]:  # noqa: ANN001
    default = settings.schedule_timezone()
    try:
        return account_timezones(get_engine(settings.database_url()), accounts, default)
    except Exception as exc:  # noqa: BLE001 - no database yet: read the crons in the default timezone
        log.warning(f"account timezones unavailable ({exc}); reading cron times in {default}")
        return {account: default for account in accounts}


class MetaSyncedAccount(dg.AutomationCondition):
    """True for the account partitions the Meta sync keeps fresh (discovered by the token, or
    synced before), while a token is configured (``ADS_ML_META_ACCESS_TOKEN``); for an unpartitioned
    asset, true while a token is configured."""

    @property
    def name(self) -> str:
        return "meta_synced_account"

    @property
    def description(self) -> str:
        return "the account is synced from the Meta Marketing API (token configured)"

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        candidates = context.candidate_subset
        if not settings.meta_configured() or candidates.is_empty:
            return dg.AutomationResult(context, true_subset=context.get_empty_subset())
        if context.partitions_def is None:
            return dg.AutomationResult(context, true_subset=candidates)
        from ads_ml.ingest.sync import meta_synced_accounts

        try:
            synced = meta_synced_accounts(get_engine(settings.database_url()))
        except Exception as exc:  # noqa: BLE001 - no database yet: nothing to sync
            log.warning(f"Meta sync state unavailable ({exc})")
            synced = set()
        # an account discovered a moment ago may not be a partition yet: only the candidates' keys
        keys = synced & set(candidates.expensively_compute_partition_keys())
        return dg.AutomationResult(
            context, true_subset=context.asset_graph_view.compute_intersection_with_partition_keys(keys, candidates))


#: A failed blocking check of an input (e.g. negative spend in the insights) holds the asset back
#: until the input is materialised again and its checks pass; the asset's automation history in
#: the UI shows this condition false.
CHECKS_PASSED = dg.AutomationCondition.all_deps_blocking_checks_passed().with_label("inputs' blocking checks passed")
_INPUTS_READY = (~dg.AutomationCondition.any_deps_missing() & ~dg.AutomationCondition.any_deps_in_progress()
                 & CHECKS_PASSED)
#: Never materialised, until requested once: a new account, or an account that was there before the
#: automation (Dagster's ``newly_missing().since_last_handled()`` forgets those at the first
#: evaluation). A failed run is not retried over and over: it is retried at the next cron tick.
_NEVER_BUILT = dg.AutomationCondition.missing().newly_true().since(
    dg.AutomationCondition.newly_requested() | dg.AutomationCondition.newly_updated()
).with_label("never materialised")


def on_account_cron(name: str) -> dg.AutomationCondition:
    """Once per tick of ``settings.schedule_cron(name)`` in the account's timezone, and once when the
    partition has never been materialised, with every input present and none being written."""
    cron = settings.schedule_cron(name)
    return (
        (AccountCronTickPassed(cron).since_last_handled() | _NEVER_BUILT)
        & _INPUTS_READY
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"{name}: {cron} in the account's timezone")


def on_meta_sync_cron(name: str) -> dg.AutomationCondition:
    """The Meta sync's own clock: once per tick of ``settings.schedule_cron(name)`` in the account's
    timezone (hourly by default; the sync itself decides when the daily full re-pull is due), at
    once for an account never synced, and only for accounts the sync keeps fresh."""
    cron = settings.schedule_cron(name)
    return (
        (AccountCronTickPassed(cron).since_last_handled() | _NEVER_BUILT)
        & MetaSyncedAccount()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"{name}: {cron} in the account's timezone, Meta-synced accounts")


def on_meta_discovery_cron(name: str) -> dg.AutomationCondition:
    """Account discovery (unpartitioned): once per tick of its cron and at once when never run,
    while a Meta token is configured."""
    cron = settings.schedule_cron(name)
    return (
        (dg.AutomationCondition.cron_tick_passed(cron, settings.schedule_timezone()).since_last_handled()
         | _NEVER_BUILT)
        & MetaSyncedAccount()
        & ~dg.AutomationCondition.in_progress()
    ).with_label(f"{name}: '{cron}' while a Meta token is configured")


def on_fresh_inputs() -> dg.AutomationCondition:
    """Whenever an input changes (Dagster's ``eager``) and its blocking checks passed."""
    return (dg.AutomationCondition.eager() & CHECKS_PASSED).with_label("eager, inputs' blocking checks passed")


def after(*upstream: str) -> dg.AutomationCondition:
    """Whenever one of ``upstream`` is materialised again (the other inputs are read as they are)
    and the inputs' blocking checks passed."""
    return (dg.AutomationCondition.eager().allow(dg.AssetSelection.assets(*upstream)) & CHECKS_PASSED).with_label(
        f"after {', '.join(upstream)}")


def on_fresh_inputs_at_most_every(name: str) -> dg.AutomationCondition:
    """When inputs changed, at most once per tick of ``settings.schedule_cron(name)`` (and at once
    while the partition has never been materialised)."""
    cron = settings.schedule_cron(name)
    return (
        dg.AutomationCondition.eager()
        & (dg.AutomationCondition.cron_tick_passed(cron, settings.schedule_timezone()).since_last_handled()
           | dg.AutomationCondition.missing())
        & CHECKS_PASSED
    ).with_label(f"{name}: fresh inputs, at most once per '{cron}'")


def automation_sensor() -> dg.AutomationConditionSensorDefinition:
    """Evaluates the conditions above; on the code server, since ``AccountCronTickPassed`` reads the
    accounts' timezones from the database. One run per account and tick (not a backfill), so the
    per-account queue of dagster.yaml applies."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", dg.BetaWarning)  # use_user_code_server is beta in Dagster 1.13
        return dg.AutomationConditionSensorDefinition(
            "ads_ml_automation",
            target=dg.AssetSelection.all(),
            use_user_code_server=True,
            emit_backfills=False,
            default_status=dg.DefaultSensorStatus.RUNNING,
            minimum_interval_seconds=settings.sensor_interval_seconds(30),
            description="Runs every asset whose automation condition holds: fresh inputs, or its cron time "
            "in the account's timezone (see each asset's condition).",
        )
