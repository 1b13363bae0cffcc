"""One place for configuration and for the constants the users rely on.

Environment (read at call time, never baked into code):

- ``ADS_ML_DATABASE_URL``: SQLAlchemy URL of the source + ML database. Default: a SQLite file
  ``ads_ml.db`` under ``$DAGSTER_HOME``, or under ``.ads_ml/`` (in the working directory) when
  ``DAGSTER_HOME`` is unset.
- ``ADS_ML_MODELS_DIR``: where model files are written. Default: ``models/`` beside the database
  (for a server database, beside where the SQLite default would be).
- ``DAGSTER_HOME``: the Dagster instance directory.
- ``DAGSTER_PG_HOST`` (with ``DAGSTER_PG_USERNAME``, ``DAGSTER_PG_PASSWORD``, ``DAGSTER_PG_DB``,
  ``DAGSTER_PG_PORT``): when set, the Dagster instance stores runs and events in PostgreSQL.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from sqlalchemy.engine import make_url

# --- environment -----------------------------------------------------------------------------

DATABASE_URL_ENV = "ADS_ML_DATABASE_URL"
MODELS_DIR_ENV = "ADS_ML_MODELS_DIR"
DAGSTER_HOME_ENV = "DAGSTER_HOME"
DAGSTER_PG_HOST_ENV = "DAGSTER_PG_HOST"
#: Optional override of the step executor: ``in_process`` or ``multiprocess`` (Dagster's own), or a
#: Dagster integration's executor — ``celery`` (dagster-celery: steps on Celery workers of the broker
#: at ADS_ML_CELERY_BROKER_URL) or ``k8s`` (dagster-k8s: each step in its own Kubernetes job). Dask
#: takes the per-entity fan-out (ADS_ML_DASK_ADDRESS), not the steps: dagster-dask 0.29's executor
#: fails on dask 2026 ("Iteration is not allowed on @record KeyRangesPartitionsSubset").
EXECUTOR_ENV = "ADS_ML_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "celery", "k8s")
CELERY_BROKER_ENV = "ADS_ML_CELERY_BROKER_URL"

LOCAL_STATE_DIRNAME = ".ads_ml"


def state_dir() -> Path:
    """Directory holding the embedded defaults: ``$DAGSTER_HOME`` or ``./.ads_ml``."""
    home = os.environ.get(DAGSTER_HOME_ENV)
    if home:
        return Path(home).expanduser().resolve()
    return (Path.cwd() / LOCAL_STATE_DIRNAME).resolve()


def database_url() -> str:
    """The configured database URL (``ADS_ML_DATABASE_URL``) or the embedded SQLite default."""
    url = os.environ.get(DATABASE_URL_ENV, "").strip()
    if url:
        return with_default_driver(url)
    return f"sqlite:///{state_dir() / 'ads_ml.db'}"


def with_default_driver(url: str) -> str:
    """``postgresql://`` and ``postgres://`` mean psycopg2, the driver ads_ml installs."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg2://" + url[len(prefix):]
    return url


def models_dir(db_url: str | None = None) -> Path:
    """The model directory (``ADS_ML_MODELS_DIR``), by default ``models/`` beside the database."""
    configured = os.environ.get(MODELS_DIR_ENV, "").strip()
    if configured:
        return Path(configured).expanduser().resolve()
    url = make_url(db_url or database_url())
    if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
        return Path(url.database).expanduser().resolve().parent / "models"
    return state_dir() / "models"


def dagster_uses_postgres() -> bool:
    """True when the Dagster instance is configured for PostgreSQL (``DAGSTER_PG_*`` set)."""
    return bool(os.environ.get(DAGSTER_PG_HOST_ENV, "").strip())


def is_sqlite_url(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def executor_kind() -> str:
    """``multiprocess`` only when nothing in the run writes to SQLite and a run may use at least two
    cores for its steps (cores ÷ concurrent runs ≥ 2); otherwise ``in_process``.

    SQLite instance storage (or a SQLite ML database) and Dagster's multiprocess executor lock
    each other ("database is locked"), so the embedded default runs steps in one process. With
    fewer than two cores per run the multiprocess executor runs one step at a time anyway, each in
    a process of its own: ``benchmarks/multi_account.py`` measured 20 accounts on 2 cores with
    4 runs at once at 139 accounts an hour (3.3 GB) against 345 (2.2 GB) in process.
    """
    override = os.environ.get(EXECUTOR_ENV, "").strip()
    if override:
        if override not in EXECUTORS:
            raise ValueError(f"{EXECUTOR_ENV} must be one of {', '.join(EXECUTORS)}, not {override!r}")
        return override
    if dagster_uses_postgres() and not is_sqlite_url(database_url()) and step_concurrency() >= 2:
        return "multiprocess"
    return "in_process"


# --- identifiers -----------------------------------------------------------------------------

ACCOUNT_ID_PATTERN = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
ENTITY_TYPES = ("campaign", "adset", "ad")
#: Parent level of each level ("account" for campaigns).
PARENT_LEVEL = {"campaign": "account", "adset": "campaign", "ad": "adset"}
ENTITY_STATUSES = ("ACTIVE", "PAUSED", "ARCHIVED", "DELETED")
CHANGE_TYPES = ("budget_change", "creative_change", "audience_change", "pause", "reactivate")

# --- insights and features ---------------------------------------------------------------------

#: Days of daily insights loaded per account and level, ending at the reference date.
INSIGHTS_LOOKBACK_DAYS = 90
#: Windows (days, ending at the reference date inclusive) of the entity features.
SHORT_WINDOW_DAYS = 7
MEDIUM_WINDOW_DAYS = 14
LONG_WINDOW_DAYS = 30
#: Half-life (days) of the recency weights of ``spend_weighted`` / ``leads_weighted``, the
#: evidence the rule tiers rank by: a day two weeks old counts half as much as today. Measured on
#: the ground-truth accounts (``python -m benchmarks.tiers_direct``, 40 accounts): ordering the
#: next week's CPL, 7 days' CPL alone 0.808, half-lives 10 / 14 / 21 / 28 days 0.850 / 0.851 /
#: 0.850 / 0.847 (ceiling 0.883): the few leads of a week at small volume say less than the
#: fatigue of a month changes.
RECENCY_HALF_LIFE_DAYS = 14.0
#: Rows per batch when importing; memory is bounded by this, not by the file size.
IMPORT_BATCH_ROWS = 20_000
#: Insight dates accepted relative to the import day: not in the future (one day of slack for
#: timezones), not more than ten years back. Anything else is a mistake in the file.
IMPORT_MAX_FUTURE_DAYS = 1
IMPORT_MAX_AGE_DAYS = 3653
#: Limits checked in the importer so that SQLite and PostgreSQL store exactly the same files.
IMPORT_MAX_ID_LENGTH = 64
IMPORT_MAX_NAME_LENGTH = 512
IMPORT_MAX_COUNT = 10**12  # impressions, reach, clicks, leads, conversions of one ad-day
IMPORT_MAX_SPEND = 10**12  # spend of one ad-day, in the account's currency
IMPORT_MAX_BUDGET = 10**12
#: Plausibility: a given frequency differing from impressions / reach by more than this (relative,
#: plus 0.01 for Meta's two decimals) is reported as a warning, not refused.
IMPORT_FREQUENCY_TOLERANCE = 0.02

# --- tiers (classification) --------------------------------------------------------------------

TIER_HIGH = "HIGH_PERFORMER"
TIER_MODERATE = "MODERATE"
TIER_LOW = "LOW"
TIER_UNDER = "UNDERPERFORMER"
TIER_INSUFFICIENT = "INSUFFICIENT_DATA"
#: Best first; the classifier predicts these four.
TIERS = (TIER_HIGH, TIER_MODERATE, TIER_LOW, TIER_UNDER)
#: Rule tiers are quantiles of the level's entities by cost per lead, so every tier holds a share a
#: marketer can act on: the cheapest quarter HIGH, then MODERATE, LOW and the dearest quarter
#: UNDERPERFORMER (cumulative shares below). The cost is shrunk toward the level's pooled CPL by
#: TIER_PRIOR_LEADS pseudo-leads — (spend + k · pooled CPL) / (leads + k) — the volume guard: an
#: ad with one cheap lead is not HIGH on luck, and one that spent without a lead is dearer the
#: more it spent.
TIER_QUANTILES = (0.25, 0.50, 0.75)
TIER_PRIOR_LEADS = 3.0
#: No lead and less spend than this share of the account CPL: too little evidence for a tier.
TIER_INSUFFICIENT_SPEND_SHARE_OF_CPL = 0.5
#: Window (days) of a forward-looking outcome label, and how long a classification is valid.
TIER_HORIZON_DAYS = 7
#: At least this many labelled samples per account and level to train a classifier.
TIER_MIN_TRAINING_SAMPLES = 30
#: Entities younger than this (days since first delivery) lack history of their own.
TIER_MIN_HISTORY_DAYS = 14
#: Feature snapshots (one a week, going back from the reference date) used for training.
TIER_MAX_SNAPSHOTS = 12
#: Share of the labelled samples (the most recent snapshots) held out for time-based validation.
TIER_VALIDATION_SHARE = 0.2
#: A classifier is used over the rule tiers only if, on the validation snapshots, its gain in
#: ordering the realised next-week CPL (a spender without a lead the dearest) is above 0 at this
#: one-sided confidence (bootstrap over the entities, each drawn with all its snapshots, this many
#: draws). Measured (``benchmarks.bench_tiers``, 10 accounts of 12 campaigns): at 0.9 with the
#: entities of each snapshot drawn apart and the shrunk CPL, a classifier that does not beat the
#: rules on this generator was used at 5 of 30 levels and ordered the test week worse at 3 of them
#: (by 0.006–0.049); at 0.95 with the entities drawn whole it is used at none.
TIER_GATE_CONFIDENCE = 0.95
TIER_GATE_BOOTSTRAP_DRAWS = 200
#: Posterior draws behind a rule tier's confidence (:func:`ads_ml.ml.tiers.rule_confidence`).
#: Measured against the held-out week's tier (``benchmarks.tiers_direct``, 40 accounts): top-label
#: ECE 0.05 at small volume, 0.03 at large.
TIER_RULE_CONFIDENCE_DRAWS = 200
#: The transfer model needs this many campaigns, and its confidence is multiplied by the penalty.
TRANSFER_MIN_CAMPAIGNS = 10
TRANSFER_CONFIDENCE_PENALTY = 0.85
#: XGBoost settings of the tier classifiers: shallow and regularised, for accounts with a few
#: hundred labelled samples (measured on generated accounts: better validation log loss and
#: calibration than deeper trees).
TIER_XGB_PARAMS = {
    "tree_method": "hist",
    "n_estimators": 100,
    "max_depth": 3,
    "learning_rate": 0.05,
    "subsample": 0.8,
    "colsample_bytree": 0.8,
    "min_child_weight": 3.0,
    "reg_lambda": 5.0,
}

# --- automation --------------------------------------------------------------------------------

SCHEDULE_TIMEZONE_ENV = "ADS_ML_SCHEDULE_TIMEZONE"


def schedule_cron(name: str) -> str:
    """Cron of the timed work ``name``: ``ADS_ML_SCHEDULE_<NAME>`` (e.g. ``ADS_ML_SCHEDULE_TIER_TRAINING="0 4 * * *"``)
    or the default in ``SCHEDULES``. Read when the code location loads."""
    value = os.environ.get(f"ADS_ML_SCHEDULE_{name.upper()}", "").strip()
    return value or SCHEDULES[name]


STEP_RETRIES_ENV = "ADS_ML_STEP_RETRIES"
STEP_RETRY_DELAY_ENV = "ADS_ML_STEP_RETRY_DELAY_SECONDS"
SQLITE_BUSY_TIMEOUT_ENV = "ADS_ML_SQLITE_BUSY_TIMEOUT_SECONDS"


def _number(name: str, default: float) -> float:
    value = os.environ.get(name, "").strip()
    try:
        number = float(value) if value else default
    except ValueError:
        raise ValueError(f"{name}={value!r}: expected a number") from None
    if number < 0:
        raise ValueError(f"{name}={value!r}: expected a number ≥ 0")
    return number


def step_retries() -> int:
    """Retries of a failed step (``ADS_ML_STEP_RETRIES``, default 2): every step talks to the
    database, and a connection lost or a lock held too long passes."""
    return int(_number(STEP_RETRIES_ENV, 2))


def step_retry_delay_seconds() -> float:
    """First wait before a retry, doubled each time (``ADS_ML_STEP_RETRY_DELAY_SECONDS``, default 10)."""
    return _number(STEP_RETRY_DELAY_ENV, 10)


def import_wait_seconds() -> float:
    """How long an import, ``--replace`` or delete of insights waits on SQLite for another writer
    (e.g. a large import of another account) before it is refused (``ADS_ML_IMPORT_WAIT_SECONDS``,
    3600)."""
    return _number("ADS_ML_IMPORT_WAIT_SECONDS", 3600)


def sqlite_busy_timeout_seconds() -> float:
    """How long a SQLite writer waits for another's lock (``ADS_ML_SQLITE_BUSY_TIMEOUT_SECONDS``, 60)."""
    return _number(SQLITE_BUSY_TIMEOUT_ENV, 60)


ACCOUNT_WAIT_ENV = "ADS_ML_ACCOUNT_WAIT_SECONDS"


def account_wait_seconds() -> float:
    """How long ``ads-ml materialize`` waits for another run of the same account to finish before
    giving up (``ADS_ML_ACCOUNT_WAIT_SECONDS``, default one hour)."""
    value = os.environ.get(ACCOUNT_WAIT_ENV, "").strip()
    try:
        return float(value) if value else 3600.0
    except ValueError:
        raise ValueError(f"{ACCOUNT_WAIT_ENV}={value!r}: expected a number of seconds") from None


SENSOR_INTERVAL_ENV = "ADS_ML_SENSOR_INTERVAL_SECONDS"


def sensor_interval_seconds(default: int) -> int:
    """Minimum seconds between evaluations of the sensors (``ADS_ML_SENSOR_INTERVAL_SECONDS``)."""
    value = os.environ.get(SENSOR_INTERVAL_ENV, "").strip()
    if not value:
        return default
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"{SENSOR_INTERVAL_ENV}={value!r}: expected a whole number of seconds ≥ 1")
    return int(value)


def impact_report_windows() -> tuple[int, ...]:
    """The after-windows every change is reported at (``ADS_ML_IMPACT_WINDOWS`` or the default), ascending."""
    value = os.environ.get(IMPACT_WINDOWS_ENV, "").strip()
    if not value:
        return IMPACT_REPORT_WINDOWS
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not parts or not all(p.isdigit() and IMPACT_MIN_WINDOW_DAYS <= int(p) <= IMPACT_MAX_WINDOW_DAYS for p in parts):
        raise ValueError(f"{IMPACT_WINDOWS_ENV}={value!r}: expected comma-separated days, each "
                         f"{IMPACT_MIN_WINDOW_DAYS}–{IMPACT_MAX_WINDOW_DAYS}")
    return tuple(sorted({int(p) for p in parts}))


def schedule_timezone() -> str:
    """Timezone of the cron times for an account whose own timezone is unknown or not a valid IANA
    name (``ADS_ML_SCHEDULE_TIMEZONE``, default UTC)."""
    return os.environ.get(SCHEDULE_TIMEZONE_ENV, "").strip() or "UTC"


#: Cron times of the timed work, read in each account's own timezone (``ad_accounts.timezone``).
#: Everything else follows the data by declarative automation (``ads_ml.defs.automation``):
#: features, campaign/adset anomalies and recommendations whenever their inputs change, forecasts
#: after each calibration. Ad anomalies run at most once per tick of their cron, when insights changed.
SCHEDULES = {
    "anomaly_training": "0 1 * * *",
    "prophet_tuning": "0 2 * * 0",  # cpl, then leads
    "tier_training": "0 3 * * *",
    "transfer_training": "0 3 * * 1",
    "campaign_classification": "0 5 * * *",
    "adset_classification": "30 5 * * *",
    "ad_classification": "0 6 * * *",
    "ensemble_calibration": "30 5 * * *",
    "ad_anomaly_detection": "0 */2 * * *",
    # the Meta sync: today's (and yesterday's) data every hour; the account discovery every hour
    "meta_sync": "0 * * * *",
    "meta_discovery": "15 * * * *",
}

# --- forecasting -----------------------------------------------------------------------------

FORECAST_HORIZON_DAYS = 7
FORECAST_METRICS = ("cpl", "leads", "spend")
#: Every method the ensemble can use: the vectorised ones (one pass over a level's entity × day
#: matrix: ema, linear, swa) and those fitted one series at a time (prophet, ets, theta).
FORECAST_METHODS = ("ema", "linear", "prophet", "ets", "theta", "swa", "snaive")
#: The members of each level's ensemble (``ADS_ML_FORECAST_METHODS_<LEVEL>``, comma-separated,
#: overrides one); "snaive" is seasonal naive as a member. Measured with
#: ``python -m benchmarks.forecasts_real`` (real data at three cut-offs, and two generators): with
#: Prophet added the pooled ratio to seasonal naive moves by 0.003–0.007 for +25–35 % of the
#: forecasting time and a weekly tuning run; it is left out by default (its tuning then skips).
FORECAST_METHODS_BY_LEVEL = {
    "campaign": ("ema", "linear", "swa", "ets", "theta", "snaive"),
    "adset": ("ema", "linear", "swa", "ets", "theta", "snaive"),
    "ad": ("ema", "linear", "swa", "ets", "theta", "snaive"),
}
#: The stacked ensemble learns its weights and interval on this many rolling weekly origins.
FORECAST_VALIDATION_WINDOWS = 4
#: ... and mixes its stacked weights half-way with equal weights (what held on unseen data).
FORECAST_STACK_SHRINK = 0.5
#: ... over the members whose validation error is at most this many times seasonal naive's.
FORECAST_DROP_RATIO = 2.0
#: An entity with no spend on its last this many days is stopped: forecast as zero, its CPL not at all.
FORECAST_STOPPED_DAYS = 1
FORECAST_INTERVAL_WIDTH = 0.95
#: Smoothing of the EMA method and the window (days) of the linear trend.
EMA_ALPHA = 0.3
LINEAR_TREND_DAYS = 28
#: An entity needs this many days of history for a forecast, and this many for Prophet in it.
FORECAST_MIN_POINTS = 7
#: One-off outliers (a spend spike, a day of overspend) are replaced by the median of the days
#: before them before the methods are fitted: further than this many robust standard deviations.
FORECAST_OUTLIER_WINDOW_DAYS = 28
FORECAST_OUTLIER_Z = 5.0
#: ... for these metrics (counts are fitted as they are).
FORECAST_CLEANED_METRICS = ("spend", "cpl")
#: The seasonal window average ("swa") averages each weekday over this many past weeks.
SEASONAL_WINDOW_WEEKS = 4
FORECAST_MIN_POINTS_PROPHET = 14
#: Daily CPL is undefined on days without leads: the CPL series is the trailing 7-day CPL.
CPL_SERIES_WINDOW_DAYS = 7

# --- Prophet tuning --------------------------------------------------------------------------

PROPHET_CHANGEPOINT_PRIOR_SCALES = (0.01, 0.05, 0.1)
PROPHET_SEASONALITY_PRIOR_SCALES = (0.1, 1.0, 10.0)
PROPHET_FALLBACK_PARAMS = (0.05, 1.0)
PROPHET_TUNING_METRICS = ("cpl", "leads")
PROPHET_CV_WINDOW_DAYS = 60
PROPHET_CV_INITIAL_DAYS = 30
PROPHET_CV_PERIOD_DAYS = 7
PROPHET_CV_HORIZON_DAYS = 7
PROPHET_MIN_POINTS = 30

# --- fan-out ---------------------------------------------------------------------------------

DASK_ADDRESS_ENV = "ADS_ML_DASK_ADDRESS"
N_JOBS_ENV = "ADS_ML_N_JOBS"


def celery_broker_url() -> str | None:
    """Broker of the Celery executor's workers (``ADS_ML_CELERY_BROKER_URL``; unset: dagster-celery's
    default, a RabbitMQ on localhost)."""
    return os.environ.get(CELERY_BROKER_ENV, "").strip() or None


def dask_address() -> str | None:
    """Scheduler address of a Dask cluster for per-entity fan-out (``ADS_ML_DASK_ADDRESS``)."""
    return os.environ.get(DASK_ADDRESS_ENV, "").strip() or None


def n_jobs() -> int | None:
    """Local worker processes for per-entity fan-out (``ADS_ML_N_JOBS``; -1 = all cores); None when
    unset: the share of the cores this step gets (``fanout_workers``)."""
    value = os.environ.get(N_JOBS_ENV, "").strip()
    return int(value) if value else None


STEP_CONCURRENCY_ENV = "ADS_ML_STEP_CONCURRENCY"
CONCURRENT_RUNS_ENV = "ADS_ML_CONCURRENT_RUNS"
#: dagster.yaml's run_queue.max_concurrent_runs (a test keeps them equal).
DEFAULT_CONCURRENT_RUNS = 4


def concurrent_runs() -> int:
    """Runs the queue lets run at once (``ADS_ML_CONCURRENT_RUNS``, set it when you change
    dagster.yaml's ``run_queue.max_concurrent_runs``)."""
    value = os.environ.get(CONCURRENT_RUNS_ENV, "").strip()
    return max(1, int(value)) if value else DEFAULT_CONCURRENT_RUNS


def cores() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1))


def step_concurrency() -> int:
    """Steps the multiprocess executor runs at once in one run (``ADS_ML_STEP_CONCURRENCY``): by
    default the cores divided among the runs the queue lets run at once."""
    value = os.environ.get(STEP_CONCURRENCY_ENV, "").strip()
    if value:
        return max(1, int(value))
    return max(1, cores() // concurrent_runs())


def fanout_workers(runs_in_progress: int, steps_per_run: int) -> int:
    """Processes for one step's per-entity fan-out, so that runs × steps × workers add up to the
    cores instead of multiplying past them: a lone run on an idle machine gets all of them."""
    return max(1, cores() // (max(1, runs_in_progress) * max(1, steps_per_run)))

# --- anomalies -------------------------------------------------------------------------------

#: Isolation Forest per entity: daily features over the last ANOMALY_HISTORY_DAYS days (at least
#: ANOMALY_MIN_SAMPLES days), contamination and number of trees as the users know them.
ANOMALY_HISTORY_DAYS = 60
ANOMALY_MIN_SAMPLES = 14
ANOMALY_CONTAMINATION = 0.05
ANOMALY_N_ESTIMATORS = 100
ANOMALY_FEATURES = ("spend", "cpl", "ctr", "frequency", "leads", "cpm")
#: CTR is only checked for entities with at least this many clicks a day.
ANOMALY_MIN_CLICKS_FOR_CTR = 5
#: The level and spread a day is compared with come from this many recent days of the history.
ANOMALY_BASELINE_DAYS = 21
#: Days (ending at the reference date) analysed by each detection run.
ANOMALY_DAYS_TO_ANALYZE = 1
#: Robust z-score (median / MAD of the weekday-adjusted history) above which a value is anomalous;
#: a lower bar applies when the entity's Isolation Forest also finds the day anomalous.
ANOMALY_Z_THRESHOLD = 4.0
ANOMALY_Z_THRESHOLD_WITH_MODEL = 3.5
#: Severity by |z|: low from the threshold, then medium, high, critical from these.
ANOMALY_SEVERITY_Z = {"medium": 6.0, "high": 9.0, "critical": 14.0}
#: Smallest spread (as a share of the typical value) a metric's z-score divides by, so a very
#: steady history does not turn every small wobble into an alarm. Leads and CPL are judged by
#: Poisson tail probabilities of the lead count instead.
ANOMALY_MIN_RELATIVE_SPREAD = {"spend": 0.15, "cpm": 0.15, "ctr": 0.10, "frequency": 0.05}
#: "Delivery stopped" only for an entity that delivered on each of this many days before (one
#: that stopped weeks ago is not news) and whose status is not one of these.
ANOMALY_STOPPED_RECENT_DAYS = 3
ANOMALY_INACTIVE_STATUSES = ("PAUSED", "ARCHIVED", "DELETED")
#: Structural checks: spend above this multiple of the daily budget; a lead-less day is a broken
#: form / pixel when the recent history (leads on most days) makes the run of lead-less days
#: less likely than this.
ANOMALY_BUDGET_OVERSPEND = 1.5
ANOMALY_ZERO_LEADS_PROBABILITY = 0.001

# --- impact analysis -------------------------------------------------------------------------

IMPACT_DEFAULT_WINDOW_DAYS = 7
IMPACT_MIN_WINDOW_DAYS = 3
IMPACT_MAX_WINDOW_DAYS = 30
#: Each change gets a report this many days after it, each when its after-window has elapsed
#: (``change_events_sensor`` requests them); the longest complete one is the verdict of record.
#: ``ADS_ML_IMPACT_WINDOWS`` (comma-separated days) overrides them.
IMPACT_REPORT_WINDOWS = (7, 14, 28)
IMPACT_WINDOWS_ENV = "ADS_ML_IMPACT_WINDOWS"
#: ``ads-ml report`` lists this many of each level's most recent changes with their verdict of record.
REPORT_IMPACT_ROWS = 5
IMPACT_METRICS = ("cpl", "leads", "ctr", "spend")
IMPACT_SIGNIFICANCE = 0.05
IMPACT_MIN_EFFECT_SIZE = 0.2  # Cohen's d below this is not meaningful
#: Days before the change used as the baseline and to measure the noise of a window mean.
IMPACT_PRE_PERIOD_DAYS = 56
#: Days before the change whose level is a rate metric's counterfactual (entity minus controls; its
#: noise is measured over the whole pre-period), and the fewest days either may have. Measured on
#: the ground-truth benchmark (benchmarks/ground_truth.py, seeds 1–4, large + small volume):
#: 14 days called 4/56 null changes significant and found 16/56 real ones; 21 or 28 days 6/56 and
#: 18/56. A recent level is not misled by an entity's slow drift (creative fatigue); the calibration
#: study finds 77.5 % of its real changes with 14 days against 81 % with 21.
IMPACT_COUNTERFACTUAL_PRE_DAYS = 14
IMPACT_MIN_PRE_DAYS = 7
#: A rate metric is tested only when its level days and its after-window each expect at least this
#: many leads (clicks for CTR): below, a handful of leads could make the verdict by chance.
IMPACT_MIN_EVENTS = 10
#: An entity whose count (leads, clicks) is zero on at least this share of its delivering days
#: before the change is tested on its counts (quasi-Poisson with the wander's variogram); one with a
#: count on nearly every day on its daily log metric against the controls'.
IMPACT_SPARSE_ZERO_SHARE = 0.1
#: The entity's wander against its controls is measured at lags of up to this many days (and
#: half the clean pre-period at most), on at least IMPACT_MIN_NOISE_DAYS clean days before the change.
IMPACT_VARIOGRAM_MAX_LAG = 21
IMPACT_MIN_NOISE_DAYS = 21
#: Controls clean (no change of their own, no ad starting or stopping) for this many days before the
#: change are preferred: the pre-period starts where every chosen control is clean.
IMPACT_MIN_CONTROL_PRE_DAYS = 28
#: Which regime events before the windows start a fresh pre-period: "change" (a change event of
#: the entity or its descendants), "delivery" (one of its ads or adsets starting or stopping).
#: Measured with benchmarks/impact_generators.py (20 seeds × 2 generators): cutting at deliveries
#: too left adsets a few clean days and found 5 of 40 real budget changes on the first generator,
#: 3 of 58 on the other; at change events only, 13 and 4, null changes called 3.0 % and 5.3 %.
IMPACT_PRE_PERIOD_CUT_BY = ("change",)
#: Metrics judged for each change type, and which direction is good.
IMPACT_PRIMARY_METRICS = {
    "budget_change": ("cpl", "leads"),
    "budget_cut": ("cpl",),  # a budget change that lowered the budget: leads are expected to fall with it
    "creative_change": ("ctr", "cpl"),
    "audience_change": ("cpl", "leads", "ctr"),
    "pause": ("spend",),
    "reactivate": ("leads", "cpl"),
}
#: The metrics that decide the verdict of each change type — what the change was made for: CPL or
#: leads for a budget (spend moves, so they differ), CPL alone for a creative or an audience (the
#: bottom line: leads at the same spend carry the same information and CTR is only a step towards
#: it), spend for a pause. The other primary metrics are reported and can only hold a positive
#: verdict back; a Holm correction runs over the deciding metrics only, so a verdict is not
#: diluted by testing metrics that carry the same leads twice.
IMPACT_DECISIVE_METRICS = {
    "budget_change": ("cpl", "leads"),
    "budget_cut": ("cpl",),
    "creative_change": ("cpl",),
    "audience_change": ("cpl",),
    "pause": ("spend",),
    "reactivate": ("leads", "cpl"),
}
IMPACT_GOOD_DIRECTION = {"cpl": -1, "leads": 1, "ctr": 1, "spend": 1}
#: For a pause, spend going down is what was wanted.
IMPACT_GOOD_DIRECTION_OVERRIDES = {"pause": {"spend": -1}}

# --- recommendations -------------------------------------------------------------------------

RECOMMENDATION_EXPIRY_DAYS = 7
#: Thresholds of the rules (CPL ratios are against the level's pooled 7-day CPL).
REC_SCALE_UP_MAX_CPL_RATIO = 0.75
REC_SCALE_UP_MIN_LEADS = 10
REC_SCALE_UP_BUDGET_PCT = 20
REC_BUDGET_INCREASE_MAX_CPL_RATIO = 0.95
REC_BUDGET_INCREASE_MIN_LEADS = 5
REC_BUDGET_INCREASE_MIN_BUDGET_USE = 0.9  # average daily spend / daily budget
REC_BUDGET_INCREASE_PCT = 15
REC_BUDGET_DECREASE_MIN_CPL_RATIO = 1.3
REC_BUDGET_DECREASE_MIN_CPL_TREND = 0.10
REC_BUDGET_DECREASE_PCT = -20
REC_PAUSE_MIN_SPEND_IN_CPLS = 3.0  # spend without a lead, in account CPLs
REC_PAUSE_MIN_CPL_RATIO = 2.0
REC_REACTIVATE_MAX_CPL_RATIO = 0.9  # 30-day CPL against the account's 30-day CPL
REC_REACTIVATE_MIN_LEADS_30D = 5
REC_AUDIENCE_REVIEW_MIN_SIBLING_RATIO = 1.5
REC_AUDIENCE_EXPANSION_MIN_FREQUENCY = 3.0
REC_AUDIENCE_EXPANSION_MAX_CPL_RATIO = 1.0
REC_AUDIENCE_NARROWING_MAX_FREQUENCY = 1.3
REC_AUDIENCE_NARROWING_MIN_CPL_RATIO = 1.3
REC_CREATIVE_REFRESH_MIN_FREQUENCY = 2.5
REC_CREATIVE_REFRESH_MAX_CTR_TREND = -0.20
REC_CREATIVE_REFRESH_MIN_FREQUENCY_TREND = 0.05
REC_CREATIVE_TEST_MIN_SHARE = 0.9  # one ad carries this share of its adset's spend
REC_CREATIVE_TEST_MIN_AGE_DAYS = 21
REC_CREATIVE_WINNER_MAX_SIBLING_RATIO = 0.7
REC_CREATIVE_WINNER_MIN_LEADS = 10
REC_MIN_SPEND_7D = 1.0  # below this an entity is not worth a recommendation


def forecast_methods(level: str) -> tuple[str, ...]:
    """The ensemble's methods at ``level``: ``ADS_ML_FORECAST_METHODS_<LEVEL>`` or the default."""
    name = f"ADS_ML_FORECAST_METHODS_{level.upper()}"
    value = os.environ.get(name, "").strip()
    if not value:
        return FORECAST_METHODS_BY_LEVEL[level]
    methods = tuple(dict.fromkeys(m.strip().lower() for m in value.split(",") if m.strip()))
    unknown = [m for m in methods if m not in FORECAST_METHODS]
    if unknown or not methods:
        raise ValueError(f"{name}={value!r}: unknown method(s) {unknown or value!r}; choose from {', '.join(FORECAST_METHODS)}")
    return methods


# --- the Meta Marketing API sync ---------------------------------------------------------------

#: The token of a system user with ``ads_read`` (a Dagster ``EnvVar`` of the ``meta`` resource); the
#: app secret, when set, adds ``appsecret_proof`` to every request.
META_ACCESS_TOKEN_ENV = "ADS_ML_META_ACCESS_TOKEN"
META_APP_SECRET_ENV = "ADS_ML_META_APP_SECRET"
#: The Graph API's base URL (tests and operators point it at another host).
META_GRAPH_URL_ENV = "ADS_ML_META_GRAPH_URL"
META_GRAPH_URL = "https://graph.facebook.com"
#: The Graph API version every request names (pinned; the facebook-business SDK of the same major).
META_API_VERSION = "v26.0"
#: Only these accounts (comma-separated ``act_…``) instead of every account the token reads.
META_ACCOUNT_IDS_ENV = "ADS_ML_META_ACCOUNT_IDS"
#: Days re-pulled by the daily full sync: Meta revises attributed results for 28 days.
META_REPULL_DAYS = 28
#: Days pulled by an account's first sync (its history for the analyses: the insights' lookback).
META_INITIAL_DAYS = INSIGHTS_LOOKBACK_DAYS
#: The daily full re-pull runs at the first hourly sync at or after this hour, account time.
META_FULL_SYNC_HOUR = 4
#: Leads and conversions from the ``actions`` of an insight row: alternatives in order, the first
#: whose action types the row reports wins; '+' sums disjoint types. Meta's ``lead`` already totals
#: the on-Facebook form leads (``onsite_conversion.lead_grouped``) and the website pixel's
#: (``offsite_conversion.fb_pixel_lead``), so a lead reported under several types counts once.
META_LEAD_ACTION_TYPES = ("lead", "onsite_conversion.lead_grouped+offsite_conversion.fb_pixel_lead")
META_LEAD_ACTION_TYPES_ENV = "ADS_ML_META_LEAD_ACTION_TYPES"
META_CONVERSION_ACTION_TYPES = ("purchase", "offsite_conversion.fb_pixel_purchase")
#: An insights request of more estimated ad-days than this runs as an asynchronous report
#: (``AdReportRun``), polled until done or ``META_ASYNC_TIMEOUT_SECONDS``.
META_ASYNC_MIN_ROWS = 10_000
META_ASYNC_TIMEOUT_SECONDS = 1800
#: Page size of every list request.
META_PAGE_LIMIT = 500
#: Pause when a usage header (x-business-use-case-usage, x-ad-account-usage, x-app-usage) reaches
#: this percentage; how long when the header gives no time to regain access; the longest one wait.
META_THROTTLE_PAUSE_PCT = 90.0
META_THROTTLE_DEFAULT_WAIT_SECONDS = 60.0
META_THROTTLE_MAX_WAIT_SECONDS = 900.0
#: Throttled requests retried this many times, transient errors (5xx, connection) with backoff.
META_MAX_THROTTLE_RETRIES = 8
META_MAX_TRANSIENT_RETRIES = 4
META_TRANSIENT_BACKOFF_SECONDS = 2.0
META_REQUEST_TIMEOUT_SECONDS = 120.0
#: Meta's currency offsets: budgets come in the currency's minor unit (cents) except these,
#: whose offset is 1 (Marketing API reference, "Currencies").
META_OFFSET_1_CURRENCIES = ("CLP", "COP", "CRC", "HUF", "ISK", "IDR", "JPY", "KRW", "PYG", "TWD", "VND")


def meta_graph_url() -> str:
    return (os.environ.get(META_GRAPH_URL_ENV, "").strip() or META_GRAPH_URL).rstrip("/")


def meta_account_ids() -> tuple[str, ...]:
    return tuple(a.strip() for a in os.environ.get(META_ACCOUNT_IDS_ENV, "").split(",") if a.strip())


def meta_lead_action_types() -> tuple[str, ...]:
    value = os.environ.get(META_LEAD_ACTION_TYPES_ENV, "").strip()
    return tuple(a.strip() for a in value.split(",") if a.strip()) if value else META_LEAD_ACTION_TYPES


def meta_configured() -> bool:
    """True when a Meta access token is configured (the sync and discovery then run by themselves)."""
    return bool(os.environ.get(META_ACCESS_TOKEN_ENV, "").strip())


# --- alerts ---------------------------------------------------------------------------------------

#: Default destinations for every account (comma-separated Apprise URLs), besides those stored by
#: ``ads-ml alerts add``; their anomalies at or above ``ADS_ML_ALERT_MIN_SEVERITY`` (default high).
ALERT_URLS_ENV = "ADS_ML_ALERT_URLS"
ALERT_MIN_SEVERITY_ENV = "ADS_ML_ALERT_MIN_SEVERITY"
#: The Dagster UI's address, for links in alerts and digests.
UI_URL_ENV = "ADS_ML_UI_URL"
#: Result rows of the last this many hours are looked at by each delivery round.
ALERT_LOOKBACK_HOURS = 48
#: A claim older than this (its process died mid-send) is taken over.
ALERT_CLAIM_TIMEOUT_SECONDS = 300
#: A failing destination is retried after 30 s, 60 s, 120 s, … (at most an hour), this many times.
ALERT_MAX_ATTEMPTS = 8
ALERT_RETRY_BASE_SECONDS = 30.0


def alert_min_severity() -> str:
    value = os.environ.get(ALERT_MIN_SEVERITY_ENV, "").strip().lower() or "high"
    if value not in ("low", "medium", "high", "critical"):
        raise ValueError(f"{ALERT_MIN_SEVERITY_ENV}={value!r}: expected low, medium, high or critical")
    return value
