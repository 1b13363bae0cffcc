"""SQLAlchemy models: the source schema (accounts, entities, daily insights, change events, tier
feedback) and the ML tables owned by this project.

The same models run on PostgreSQL (production) and SQLite (embedded default). Alembic migrations in
``migrations/`` create exactly these tables; ``ads_ml_tests/test_migrations.py`` checks they agree.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Date,
    DateTime,
    Float,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_N_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# BIGINT autoincrement on PostgreSQL, INTEGER (rowid alias) on SQLite.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[str]: JSON}


class AdAccount(Base):
    __tablename__ = "ad_accounts"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    currency: Mapped[str | None] = mapped_column(String(8))
    timezone: Mapped[str] = mapped_column(String(64), default="UTC")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(
        DateTime(timezone=True), default=utcnow, onupdate=utcnow
    )


class Campaign(Base):
    __tablename__ = "campaigns"
    __table_args__ = (
        ForeignKeyConstraint(["account_id"], ["ad_accounts.id"], ondelete="CASCADE"),
    )

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    daily_budget: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: A lifetime budget (never stored as a daily budget).
    lifetime_budget: Mapped[float | None] = mapped_column(Float)
    #: From the Meta sync: the delivery status as Meta reports it (``status`` is its ACTIVE/PAUSED reading)
    #: and Meta's own created / updated times of the object.
    effective_status: Mapped[str | None] = mapped_column(String(32))
    created_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Adset(Base):
    __tablename__ = "adsets"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "campaign_id"], ["campaigns.account_id", "campaigns.id"], ondelete="CASCADE"
        ),
        Index("ix_adsets_account_campaign", "account_id", "campaign_id"),
    )

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    campaign_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    daily_budget: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: A lifetime budget (never stored as a daily budget).
    lifetime_budget: Mapped[float | None] = mapped_column(Float)
    #: From the Meta sync: the delivery status as Meta reports it (``status`` is its ACTIVE/PAUSED reading)
    #: and Meta's own created / updated times of the object.
    effective_status: Mapped[str | None] = mapped_column(String(32))
    created_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class Ad(Base):
    __tablename__ = "ads"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "adset_id"], ["adsets.account_id", "adsets.id"], ondelete="CASCADE"
        ),
        Index("ix_ads_account_adset", "account_id", "adset_id"),
    )

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    adset_id: Mapped[str] = mapped_column(String(64))
    campaign_id: Mapped[str] = mapped_column(String(64))
    name: Mapped[str | None] = mapped_column(String(512))
    status: Mapped[str] = mapped_column(String(16), default="ACTIVE")
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: From the Meta sync: the delivery status as Meta reports it (``status`` is its ACTIVE/PAUSED reading)
    #: and Meta's own created / updated times of the object.
    effective_status: Mapped[str | None] = mapped_column(String(32))
    created_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_time: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class DailyInsight(Base):
    """One row per account, level, entity and day. Adset and campaign rows are rolled up from ads
    when the source only has ad rows. ``updated_at`` changes only when a row's values change: the
    new-insights sensor keeps its cursor on it."""

    __tablename__ = "daily_insights"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "entity_type", "entity_id", "date", name="uq_daily_insights_key"
        ),
        CheckConstraint("entity_type IN ('campaign', 'adset', 'ad')", name="entity_type"),
        ForeignKeyConstraint(["account_id"], ["ad_accounts.id"], ondelete="CASCADE"),
        Index("ix_daily_insights_account_type_date", "account_id", "entity_type", "date"),
        Index("ix_daily_insights_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    date: Mapped[dt.date] = mapped_column(Date)
    impressions: Mapped[int] = mapped_column(BigInteger, default=0)
    reach: Mapped[int | None] = mapped_column(BigInteger)
    clicks: Mapped[int] = mapped_column(BigInteger, default=0)
    spend: Mapped[float] = mapped_column(Float, default=0.0)
    leads: Mapped[int] = mapped_column(BigInteger, default=0)
    conversions: Mapped[int] = mapped_column(BigInteger, default=0)
    frequency: Mapped[float | None] = mapped_column(Float)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: When the day was read while still in progress (today in the account's timezone, from the
    #: Meta sync): the day is partial. NULL for a complete day.
    partial_as_of: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))


class ChangeEvent(Base):
    __tablename__ = "change_events"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "entity_type", "entity_id", "change_date", "change_type",
            name="uq_change_events_key",
        ),
        ForeignKeyConstraint(["account_id"], ["ad_accounts.id"], ondelete="CASCADE"),
        Index("ix_change_events_account_date", "account_id", "change_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    change_date: Mapped[dt.date] = mapped_column(Date)
    change_type: Mapped[str] = mapped_column(String(32))
    old_value: Mapped[str | None] = mapped_column(Text)
    new_value: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    #: The import that first wrote this event (sensors find new events by their import).
    import_batch_id: Mapped[int | None] = mapped_column(BigId, index=True)


class ImportBatch(Base):
    """One committed import (insights, changes, or a deletion of insights), written in the import's
    own transaction: the sensors' cursor. On PostgreSQL ``txid`` is the writing transaction's id, so
    a reader can take exactly the batches of transactions that have all finished, in whatever order
    they committed; SQLite has one writer at a time, so its ids are in commit order."""

    __tablename__ = "import_batches"
    __table_args__ = (Index("ix_import_batches_txid", "txid"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))  # insights / changes / delete
    rows: Mapped[int] = mapped_column(Integer)
    first_date: Mapped[dt.date | None] = mapped_column(Date)
    last_date: Mapped[dt.date | None] = mapped_column(Date)
    txid: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class MetaSyncState(Base):
    """Per ad account, what the Meta sync knows: whether discovery found it (only discovered
    accounts are retired when the token no longer reads them), Meta's account status, and when it
    was last synced, fully (the re-pull window) and at all, with the last error."""

    __tablename__ = "meta_sync_state"

    account_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    discovered: Mapped[bool] = mapped_column(Boolean, default=False)
    account_status: Mapped[int | None] = mapped_column(Integer)
    last_sync_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_full_sync_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    synced_through: Mapped[dt.date | None] = mapped_column(Date)
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TierFeedback(Base):
    """A tier confirmed by a person; it overrides rule-based training labels."""

    __tablename__ = "tier_feedback"
    __table_args__ = (
        ForeignKeyConstraint(["account_id"], ["ad_accounts.id"], ondelete="CASCADE"),
        Index("ix_tier_feedback_entity", "account_id", "entity_type", "entity_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    tier: Mapped[str] = mapped_column(String(32))
    feedback_date: Mapped[dt.date | None] = mapped_column(Date)
    created_by: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class TrainedModel(Base):
    """Metadata of a model file written by the model IO manager."""

    __tablename__ = "ml_trained_models"
    __table_args__ = (
        UniqueConstraint(
            "account_id", "name", "entity_type", "entity_id", "version", name="uq_ml_trained_models_key"
        ),
        Index("ix_ml_trained_models_lookup", "account_id", "name", "entity_type", "entity_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    model_type: Mapped[str] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    # "" for account-level models (one per account and level), so the unique key works everywhere.
    entity_id: Mapped[str] = mapped_column(String(64), default="")
    path: Mapped[str] = mapped_column(Text)
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    feature_columns: Mapped[list[str]] = mapped_column(JSON, default=list)
    training_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))
    checksum: Mapped[str | None] = mapped_column(String(64))
    error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class FeatureRow(Base):
    """One row of entity features per account, level and entity, as of ``reference_date``."""

    __tablename__ = "ml_features"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", name="uq_ml_features_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    parent_id: Mapped[str | None] = mapped_column(String(64))
    reference_date: Mapped[dt.date] = mapped_column(Date)
    features: Mapped[dict[str, Any]] = mapped_column(JSON)
    computed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Classification(Base):
    """Tier of an entity as of a reference date; re-running the same date replaces its rows."""

    __tablename__ = "ml_classifications"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "reference_date", name="uq_ml_classifications_key"),
        Index("ix_ml_classifications_account_level_date", "account_id", "entity_type", "reference_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    reference_date: Mapped[dt.date] = mapped_column(Date)
    tier: Mapped[str] = mapped_column(String(32))
    confidence_score: Mapped[float | None] = mapped_column(Float)
    previous_tier: Mapped[str | None] = mapped_column(String(32))
    tier_change_direction: Mapped[str | None] = mapped_column(String(16))
    feature_importances: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    method: Mapped[str] = mapped_column(String(16))  # model / transfer / rules
    is_transfer: Mapped[bool] = mapped_column(Boolean, default=False)
    rule_tier: Mapped[str | None] = mapped_column(String(32))
    model_version: Mapped[int | None] = mapped_column(Integer)
    valid_until: Mapped[dt.date] = mapped_column(Date)
    classified_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ProphetParams(Base):
    """Tuned Prophet hyperparameters of one entity and metric, with the CV metrics behind them."""

    __tablename__ = "ml_prophet_params"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "metric", name="uq_ml_prophet_params_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    changepoint_prior_scale: Mapped[float] = mapped_column(Float)
    seasonality_prior_scale: Mapped[float] = mapped_column(Float)
    cv_error: Mapped[float | None] = mapped_column(Float)
    error_metric: Mapped[str] = mapped_column(String(8))
    cv_metrics: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    n_points: Mapped[int] = mapped_column(Integer)
    n_folds: Mapped[int] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # tuned / fallback
    params_path: Mapped[str] = mapped_column(Text)
    reference_date: Mapped[dt.date] = mapped_column(Date)
    tuned_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class EnsembleWeight(Base):
    """Calibrated weight of one forecasting method per account, level and metric."""

    __tablename__ = "ml_ensemble_weights"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "metric", "method", name="uq_ml_ensemble_weights_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    metric: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(16))
    weight: Mapped[float] = mapped_column(Float)
    validation_error: Mapped[float | None] = mapped_column(Float)
    error_metric: Mapped[str] = mapped_column(String(8))
    baseline_error: Mapped[float | None] = mapped_column(Float)
    n_entities: Mapped[int] = mapped_column(Integer)
    #: the ensemble's 95 % interval: forecast + interval_low / interval_high × the entity's scale
    interval_low: Mapped[float | None] = mapped_column(Float)
    interval_high: Mapped[float | None] = mapped_column(Float)
    reference_date: Mapped[dt.date] = mapped_column(Date)
    calibrated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ForecastValidation(Base):
    """How the calibrated ensemble and the seasonal-naive baseline did on one entity's validation
    window (written with the weights; forecasts record whether the ensemble beat the baseline)."""

    __tablename__ = "ml_forecast_validation"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "metric", name="uq_ml_forecast_validation_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    error_metric: Mapped[str] = mapped_column(String(8))
    ensemble_error: Mapped[float | None] = mapped_column(Float)
    baseline_error: Mapped[float | None] = mapped_column(Float)
    beat_baseline: Mapped[bool] = mapped_column(Boolean)
    reference_date: Mapped[dt.date] = mapped_column(Date)


class ForecastRow(Base):
    """One day of a 7-day forecast of one entity and metric."""

    __tablename__ = "ml_forecasts"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "metric", "forecast_date", "method",
                         name="uq_ml_forecasts_key"),
        Index("ix_ml_forecasts_account_level", "account_id", "entity_type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    forecast_date: Mapped[dt.date] = mapped_column(Date)
    predicted_value: Mapped[float] = mapped_column(Float)
    lower_bound: Mapped[float] = mapped_column(Float)
    upper_bound: Mapped[float] = mapped_column(Float)
    method: Mapped[str] = mapped_column(String(16))
    reference_date: Mapped[dt.date] = mapped_column(Date)
    beat_baseline: Mapped[bool | None] = mapped_column(Boolean)
    validation_error: Mapped[float | None] = mapped_column(Float)
    baseline_error: Mapped[float | None] = mapped_column(Float)
    error_metric: Mapped[str | None] = mapped_column(String(8))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Anomaly(Base):
    """An anomalous day of one entity's metric."""

    __tablename__ = "ml_anomalies"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "metric", "anomaly_date", name="uq_ml_anomalies_key"),
        Index("ix_ml_anomalies_account_level_date", "account_id", "entity_type", "anomaly_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    metric: Mapped[str] = mapped_column(String(16))
    anomaly_date: Mapped[dt.date] = mapped_column(Date)
    observed_value: Mapped[float] = mapped_column(Float)
    expected_value: Mapped[float | None] = mapped_column(Float)
    deviation_score: Mapped[float] = mapped_column(Float)
    direction: Mapped[str] = mapped_column(String(8))
    severity: Mapped[str] = mapped_column(String(16))
    method: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    detected_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class Recommendation(Base):
    """A recommended action for one entity; OPEN until applied, dismissed or expired."""

    __tablename__ = "ml_recommendations"
    __table_args__ = (
        Index("ix_ml_recommendations_open", "account_id", "entity_type", "status"),
        # At most one OPEN recommendation of a type per entity, enforced by the schema (two runs
        # writing at once cannot both insert it).
        Index("uq_ml_recommendations_one_open", "account_id", "entity_type", "entity_id", "recommendation_type",
              unique=True, sqlite_where=text("status = 'OPEN'"), postgresql_where=text("status = 'OPEN'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    recommendation_type: Mapped[str] = mapped_column(String(32))
    priority: Mapped[str] = mapped_column(String(8))
    confidence: Mapped[float] = mapped_column(Float)
    reason: Mapped[str] = mapped_column(Text)
    suggested_action: Mapped[dict[str, Any]] = mapped_column(JSON)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    status: Mapped[str] = mapped_column(String(16))  # OPEN / APPLIED / DISMISSED / EXPIRED
    reference_date: Mapped[dt.date] = mapped_column(Date)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)
    expires_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    updated_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class ImpactReportRow(Base):
    """The before/after verdict on one change of one entity, for given windows."""

    __tablename__ = "ml_impact_reports"
    __table_args__ = (
        UniqueConstraint("account_id", "entity_type", "entity_id", "change_date", "change_type",
                         "window_before", "window_after", name="uq_ml_impact_reports_key"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str] = mapped_column(String(64))
    entity_type: Mapped[str] = mapped_column(String(16))
    entity_id: Mapped[str] = mapped_column(String(64))
    change_event_id: Mapped[int | None] = mapped_column(BigInteger)
    change_date: Mapped[dt.date] = mapped_column(Date)
    change_type: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(20))  # complete / insufficient_data
    overall_impact: Mapped[str] = mapped_column(String(16))
    metric_changes: Mapped[dict[str, Any]] = mapped_column(JSON)
    recommendation: Mapped[str] = mapped_column(Text)
    counterfactual: Mapped[str] = mapped_column(String(16))
    window_before: Mapped[int] = mapped_column(Integer)
    window_after: Mapped[int] = mapped_column(Integer)
    analyzed_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class AlertDestination(Base):
    """Where an account's alerts go: an Apprise URL (Slack, Teams, Telegram, e-mail, JSON webhook…;
    a secret: never logged or shown in full). ``account_id`` NULL: every account's default."""

    __tablename__ = "alert_destinations"
    __table_args__ = (Index("ix_alert_destinations_account", "account_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[str | None] = mapped_column(String(64))
    url: Mapped[str] = mapped_column(Text)
    #: anomalies at or above this severity (low / medium / high / critical)
    min_severity: Mapped[str] = mapped_column(String(16), default="high")
    #: what is sent: anomaly, recommendation, impact, digest
    kinds: Mapped[list[str]] = mapped_column(JSON)
    #: quiet hours in the account's timezone (start hour inclusive, end hour exclusive; may wrap midnight)
    quiet_start: Mapped[int | None] = mapped_column(Integer)
    quiet_end: Mapped[int | None] = mapped_column(Integer)
    #: the daily digest's hour in the account's timezone
    digest_hour: Mapped[int] = mapped_column(Integer, default=8)
    is_active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


class SentAlert(Base):
    """One item (an anomaly of a day, a recommendation, an impact verdict, a digest) to one
    destination: the unique key is what makes delivery exactly once — a restart, a re-materialised
    partition or a second daemon finds the row and does not send again. ``status``: SENDING (claimed),
    SENT, FAILED (retried from ``next_attempt_at``), GAVE_UP."""

    __tablename__ = "sent_alerts"
    __table_args__ = (
        UniqueConstraint("destination", "item_key", name="uq_sent_alerts_key"),
        Index("ix_sent_alerts_account_status", "account_id", "status"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    destination: Mapped[str] = mapped_column(String(64))  # db:<id> or env:<hash>
    item_key: Mapped[str] = mapped_column(String(255))
    account_id: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    next_attempt_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    claimed_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    sent_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True), default=utcnow)


ENTITY_MODELS = {"campaign": Campaign, "adset": Adset, "ad": Ad}
MODEL_STATUSES = ("TRAINING", "READY", "FAILED", "DEPRECATED")

__all__ = [
    "AdAccount",
    "AlertDestination",
    "SentAlert",
    "Ad",
    "Anomaly",
    "Adset",
    "Base",
    "Campaign",
    "ChangeEvent",
    "Classification",
    "DailyInsight",
    "EnsembleWeight",
    "ForecastRow",
    "ProphetParams",
    "ENTITY_MODELS",
    "FeatureRow",
    "ImpactReportRow",
    "Recommendation",
    "MODEL_STATUSES",
    "MetaSyncState",
    "TierFeedback",
    "TrainedModel",
]
