"""Reads from the source schema and writes of ML results, as frames. Used by assets and the CLI."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pandas as pd
from sqlalchemy import Engine, delete, func, literal, select, text

from ads_ml.db.jsonsafe import to_jsonable
from ads_ml.db.upsert import insert_for
from ads_ml.ml.impact import verdict_history, verdict_of_record
from ads_ml.ml.metrics import format_value
from ads_ml.db.models import (
    ENTITY_MODELS,
    AdAccount,
    Classification,
    DailyInsight,
    EnsembleWeight,
    FeatureRow,
    ForecastValidation,
    TierFeedback,
    utcnow,
)

DAILY_COLUMNS = [
    "entity_id", "date", "impressions", "reach", "clicks", "spend", "leads", "conversions", "frequency",
]


@dataclass
class LevelInsights:
    """Daily insights of one level of one account, with its entities and the reference date."""

    account_id: str
    entity_type: str
    reference_date: dt.date
    start_date: dt.date
    daily: pd.DataFrame  # DAILY_COLUMNS plus parent_id; date as datetime64
    entities: pd.DataFrame  # entity_id, parent_id, name, status, daily_budget

    @property
    def has_data(self) -> bool:
        return not self.daily.empty


@dataclass
class LevelFeatures:
    """Entity features of one level of one account as of the reference date."""

    account_id: str
    entity_type: str
    reference_date: dt.date
    features: pd.DataFrame  # index entity_id; parent_id + FEATURE_COLUMNS


@dataclass
class EnsembleCalibration:
    """Forecast ensemble weights per metric and method, and what the validation showed per entity."""

    reference_date: dt.date | None
    weights: dict[str, dict[str, float]]
    error_metric: dict[str, str]
    pooled_errors: dict[str, dict[str, float | None]]
    per_entity: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: per metric the conformal interval (low, high): forecast + each × the entity's scale
    intervals: dict[str, tuple[float, float]] = field(default_factory=dict)


def reference_date(engine: Engine, account_id: str) -> dt.date | None:
    """The latest **complete** insight day stored for the account (any level): a day read while
    still in progress (``partial_as_of``, today from the Meta sync) is not one, so features, tiers,
    forecasts and impact never read a partial day as a full one. The latest day when every stored
    day is partial; None when the account has no insights."""
    with engine.connect() as conn:
        value = conn.execute(
            select(func.max(DailyInsight.date)).where(DailyInsight.account_id == account_id,
                                                      DailyInsight.partial_as_of.is_(None))
        ).scalar_one_or_none()
        if value is None:
            value = conn.execute(
                select(func.max(DailyInsight.date)).where(DailyInsight.account_id == account_id)
            ).scalar_one_or_none()
    return _as_date(value)


def latest_partial_date(engine: Engine, account_id: str, after: dt.date) -> dt.date | None:
    """The last day after ``after`` read while in progress (the anomaly checks judge such days only
    for what can only grow by the day's end), or None."""
    with engine.connect() as conn:
        value = conn.execute(
            select(func.max(DailyInsight.date)).where(DailyInsight.account_id == account_id, DailyInsight.date > after,
                                                      DailyInsight.partial_as_of.is_not(None))
        ).scalar_one_or_none()
    return _as_date(value)


def account_timezones(engine: Engine, account_ids: Iterable[str], default: str = "UTC") -> dict[str, str]:
    """Each account's IANA timezone; ``default`` for an account that is unknown or whose stored
    timezone is not a valid IANA name."""
    ids = sorted(set(account_ids))
    with engine.connect() as conn:
        rows = conn.execute(select(AdAccount.id, AdAccount.timezone).where(AdAccount.id.in_(ids))) if ids else []
        stored = {account: zone for account, zone in rows}
    return {account: valid_timezone(stored.get(account), default) for account in ids}


def valid_timezone(name: str | None, default: str = "UTC") -> str:
    """``name`` when it is a valid IANA timezone, else ``default``."""
    try:
        ZoneInfo(name or "")
        return name or default
    except (ZoneInfoNotFoundError, ValueError):
        return default


def account_today(engine: Engine, account_id: str, now: dt.datetime | None = None) -> dt.date:
    """Today in the account's timezone (UTC when unknown): the first day whose insights are not
    complete yet."""
    zone = ZoneInfo(account_timezones(engine, [account_id])[account_id])
    return (now or dt.datetime.now(dt.timezone.utc)).astimezone(zone).date()


def account_currency(engine: Engine, account_id: str) -> str | None:
    """The account's currency code (ISO 4217, e.g. BRL), None when it is not known."""
    with engine.connect() as conn:
        value = conn.execute(select(AdAccount.currency).where(AdAccount.id == account_id)).scalar_one_or_none()
    return value.strip().upper() if isinstance(value, str) and value.strip() else None


def account_exists(engine: Engine, account_id: str) -> bool:
    with engine.connect() as conn:
        return conn.execute(select(AdAccount.id).where(AdAccount.id == account_id)).first() is not None


def load_entities(engine: Engine, account_id: str, entity_type: str) -> pd.DataFrame:
    model = ENTITY_MODELS[entity_type]
    if entity_type == "campaign":
        parent = literal(account_id)
    elif entity_type == "adset":
        parent = model.campaign_id
    else:
        parent = model.adset_id
    budget = getattr(model, "daily_budget", None)
    columns = [
        model.id.label("entity_id"),
        parent.label("parent_id"),
        model.name.label("name"),
        model.status.label("status"),
    ]
    if budget is not None:
        columns.append(budget.label("daily_budget"))
    with engine.connect() as conn:
        frame = pd.read_sql(select(*columns).where(model.account_id == account_id).order_by(model.id), conn)
    if "daily_budget" not in frame.columns:
        frame["daily_budget"] = np.nan
    return frame


def load_level_insights(
    engine: Engine,
    account_id: str,
    entity_type: str,
    ref_date: dt.date,
    lookback_days: int,
) -> LevelInsights:
    """Daily rows of the ``lookback_days`` days ending at ``ref_date`` (inclusive)."""
    start = ref_date - dt.timedelta(days=lookback_days - 1)
    d = DailyInsight
    query = (
        select(
            d.entity_id, d.date, d.impressions, d.reach, d.clicks, d.spend, d.leads, d.conversions, d.frequency,
        )
        .where(
            d.account_id == account_id,
            d.entity_type == entity_type,
            d.date >= start,
            d.date <= ref_date,
        )
        .order_by(d.entity_id, d.date)
    )
    with engine.connect() as conn:
        daily = pd.read_sql(query, conn)
    daily["date"] = pd.to_datetime(daily["date"])
    for column in ("impressions", "clicks", "leads", "conversions"):
        daily[column] = daily[column].astype("int64")
    daily["reach"] = daily["reach"].astype("float64")
    daily["spend"] = daily["spend"].astype("float64")
    daily["frequency"] = daily["frequency"].astype("float64")
    entities = load_entities(engine, account_id, entity_type)
    parents = entities.set_index("entity_id")["parent_id"]
    daily["parent_id"] = daily["entity_id"].map(parents)
    return LevelInsights(
        account_id=account_id,
        entity_type=entity_type,
        reference_date=ref_date,
        start_date=start,
        daily=daily,
        entities=entities,
    )


def replace_features(
    engine: Engine, account_id: str, entity_type: str, features: pd.DataFrame, ref_date: dt.date
) -> int:
    """Replace the account's ``ml_features`` rows of this level in one transaction."""
    now = utcnow()
    columns = [c for c in features.columns if c != "parent_id"]
    values = features[columns].astype("float64").to_numpy()
    parents = features["parent_id"].tolist() if "parent_id" in features.columns else [None] * len(features)
    rows = [
        {
            "account_id": account_id,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "parent_id": None if parent is None or (isinstance(parent, float) and np.isnan(parent)) else str(parent),
            "reference_date": ref_date,
            "features": to_jsonable(dict(zip(columns, row))),
            "computed_at": now,
        }
        for entity_id, parent, row in zip(features.index, parents, values)
    ]
    with engine.begin() as conn:
        conn.execute(
            delete(FeatureRow).where(FeatureRow.account_id == account_id, FeatureRow.entity_type == entity_type)
        )
        if rows:
            conn.execute(FeatureRow.__table__.insert(), rows)
    return len(rows)


def load_features(engine: Engine, account_id: str, entity_type: str) -> pd.DataFrame:
    """Stored features of a level as a frame (index entity_id), missing values as NaN."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(FeatureRow.entity_id, FeatureRow.parent_id, FeatureRow.reference_date, FeatureRow.features)
            .where(FeatureRow.account_id == account_id, FeatureRow.entity_type == entity_type)
            .order_by(FeatureRow.entity_id)
        ).all()
    if not rows:
        return pd.DataFrame()
    frame = pd.DataFrame([r.features for r in rows], index=pd.Index([r.entity_id for r in rows], name="entity_id"))
    frame = frame.astype("float64")
    frame.insert(0, "parent_id", [r.parent_id for r in rows])
    frame.insert(1, "reference_date", [_as_date(r.reference_date) for r in rows])
    return frame


def load_level_features(engine: Engine, account_id: str, entity_type: str, feature_columns: list[str],
                        fallback_date: dt.date) -> LevelFeatures:
    """The features last written for a level (``ml_features``), as the features asset returned them;
    an empty frame with the feature columns when there are none."""
    stored = load_features(engine, account_id, entity_type)
    if stored.empty:
        empty = pd.DataFrame(columns=["parent_id", *feature_columns], index=pd.Index([], name="entity_id"))
        return LevelFeatures(account_id, entity_type, fallback_date, empty.astype({c: "float64" for c in feature_columns}))
    ref = stored["reference_date"].max()
    frame = stored.drop(columns=["reference_date"]).reindex(columns=["parent_id", *feature_columns])
    return LevelFeatures(account_id, entity_type, ref, frame)


def replace_calibration(engine: Engine, account_id: str, entity_type: str, weight_rows: list[dict],
                        validation_rows: list[dict]) -> None:
    """Replace a level's ensemble weights and per-entity validation in one transaction."""
    where = {"account_id": account_id, "entity_type": entity_type}
    with engine.begin() as conn:
        _replace_in(conn, EnsembleWeight, where, weight_rows)
        _replace_in(conn, ForecastValidation, where, validation_rows)


def load_calibration(engine: Engine, account_id: str, entity_type: str, baseline: str) -> EnsembleCalibration:
    """The level's stored ensemble calibration; empty weights (the forecasts then weigh the methods
    equally) when it has never been calibrated."""
    w, v = EnsembleWeight, ForecastValidation
    with engine.connect() as conn:
        weights = conn.execute(
            select(w.metric, w.method, w.weight, w.validation_error, w.error_metric, w.baseline_error, w.reference_date,
                   w.interval_low, w.interval_high)
            .where(w.account_id == account_id, w.entity_type == entity_type)
        ).all()
        validation = pd.read_sql(
            select(v.entity_id, v.metric, v.error_metric, v.ensemble_error, v.baseline_error, v.beat_baseline)
            .where(v.account_id == account_id, v.entity_type == entity_type).order_by(v.entity_id, v.metric),
            conn,
        )
    by_metric: dict[str, dict[str, float]] = {}
    error_metric: dict[str, str] = {}
    pooled: dict[str, dict[str, float | None]] = {}
    intervals: dict[str, tuple[float, float]] = {}
    for r in weights:
        by_metric.setdefault(r.metric, {})[r.method] = float(r.weight)
        error_metric[r.metric] = r.error_metric
        pooled.setdefault(r.metric, {})[r.method] = r.validation_error
        pooled[r.metric][baseline] = r.baseline_error
        if r.interval_low is not None and r.interval_high is not None:
            intervals[r.metric] = (float(r.interval_low), float(r.interval_high))
    if len(validation):
        validation["beat_baseline"] = validation["beat_baseline"].astype(bool)
    ref = max((_as_date(r.reference_date) for r in weights), default=None)
    return EnsembleCalibration(ref, by_metric, error_metric, pooled, validation, intervals)


def account_states(engine: Engine) -> dict[str, bool]:
    """Every ad account: id -> is_active."""
    with engine.connect() as conn:
        return {r.id: bool(r.is_active) for r in conn.execute(select(AdAccount.id, AdAccount.is_active).order_by(AdAccount.id))}


def active_account_ids(engine: Engine) -> list[str]:
    with engine.connect() as conn:
        return [
            r for (r,) in conn.execute(select(AdAccount.id).where(AdAccount.is_active.is_(True)).order_by(AdAccount.id))
        ]


def record_import_batch(conn, account_id: str, kind: str, rows: int,  # noqa: ANN001 - a Connection in a write transaction
                        first_date: dt.date | None = None, last_date: dt.date | None = None) -> int:
    """Log an import in its own transaction (it commits or rolls back with the data); returns its id."""
    from ads_ml.db.models import ImportBatch

    txid = None
    if conn.dialect.name == "postgresql":
        txid = conn.execute(text("SELECT pg_current_xact_id()::text::bigint")).scalar_one()
    return conn.execute(insert_for(conn, ImportBatch.__table__).values(
        account_id=account_id, kind=kind, rows=int(rows), first_date=first_date, last_date=last_date,
        txid=txid, created_at=utcnow()).returning(ImportBatch.id)).scalar_one()


def import_batches_after(engine: Engine, cursor: int, kinds: Iterable[str]) -> tuple[pd.DataFrame, int]:
    """The import batches of ``kinds`` committed since ``cursor``, and the next cursor; none is ever
    skipped, whatever order concurrent imports commit in.

    PostgreSQL: the cursor is a transaction-id horizon. Every transaction below the current
    snapshot's xmin has finished, so the batches with ``cursor <= txid < xmin`` are all visible now
    and none can appear later; the next cursor is xmin. SQLite: writers hold the database's write
    lock from their first statement to their commit, so ids are allocated in commit order and the
    cursor is the last id seen."""
    from ads_ml.db.models import ImportBatch as B

    columns = [B.id, B.account_id, B.kind, B.rows, B.first_date, B.last_date]
    with engine.connect() as conn:
        if engine.dialect.name == "postgresql":
            horizon = conn.execute(text("SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint")).scalar_one()
            query = select(*columns).where(B.txid >= cursor, B.txid < horizon)
        else:
            horizon = None
            query = select(*columns).where(B.id > cursor)
        frame = pd.read_sql(query.where(B.kind.in_(list(kinds))).order_by(B.id), conn)
        if horizon is None:
            last = conn.execute(select(func.max(B.id))).scalar_one_or_none()
            horizon = int(last) if last is not None else cursor
    return frame, int(horizon)


def latest_import_batch(engine: Engine, account_id: str) -> int | None:
    """The newest committed insights import (or deletion) batch of the account: read before the
    insights, a materialisation reflects every batch up to it."""
    from ads_ml.db.models import ImportBatch as B

    with engine.connect() as conn:
        return conn.execute(select(func.max(B.id)).where(B.account_id == account_id,
                                                         B.kind.in_(["insights", "delete"]))).scalar_one_or_none()


def change_events_of_batches(engine: Engine, batch_ids: Iterable[int]) -> pd.DataFrame:
    """The change events first written by the given import batches."""
    from ads_ml.db.models import ChangeEvent as C

    ids = sorted({int(i) for i in batch_ids})
    with engine.connect() as conn:
        frame = pd.read_sql(select(C.id, C.account_id, C.entity_type, C.entity_id, C.change_date, C.change_type)
                            .where(C.import_batch_id.in_(ids)).order_by(C.id), conn)
    frame["change_date"] = pd.to_datetime(frame["change_date"]).dt.date
    return frame


def _as_date(value) -> dt.date | None:  # noqa: ANN001
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    return dt.date.fromisoformat(str(value)[:10])


def _as_datetime(value) -> dt.datetime:  # noqa: ANN001
    if isinstance(value, str):
        value = dt.datetime.fromisoformat(value)
    if value.tzinfo is None:  # SQLite returns naive datetimes; we always store UTC
        value = value.replace(tzinfo=dt.timezone.utc)
    return value


def load_feedback(engine: Engine, account_id: str, entity_type: str) -> pd.DataFrame:
    """People's tier feedback of a level: ``entity_id, tier, feedback_date``, oldest first."""
    query = (
        select(TierFeedback.entity_id, TierFeedback.tier, TierFeedback.feedback_date)
        .where(TierFeedback.account_id == account_id, TierFeedback.entity_type == entity_type)
        .order_by(TierFeedback.created_at, TierFeedback.id)
    )
    with engine.connect() as conn:
        return pd.read_sql(query, conn)


def previous_tiers(engine: Engine, account_id: str, entity_type: str, before: dt.date) -> pd.Series:
    """Each entity's tier of its latest classification strictly before ``before``."""
    c = Classification
    latest = (
        select(c.entity_id, func.max(c.reference_date).label("reference_date"))
        .where(c.account_id == account_id, c.entity_type == entity_type, c.reference_date < before)
        .group_by(c.entity_id)
        .subquery()
    )
    query = select(c.entity_id, c.tier).join(
        latest, (c.entity_id == latest.c.entity_id) & (c.reference_date == latest.c.reference_date)
    ).where(c.account_id == account_id, c.entity_type == entity_type)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return pd.Series({entity: tier for entity, tier in rows}, dtype="object")


def replace_classifications(
    engine: Engine, account_id: str, entity_type: str, ref_date: dt.date, frame: pd.DataFrame
) -> int:
    """Replace the level's classifications of ``ref_date`` in one transaction.

    ``frame``: index entity_id; tier, confidence, previous_tier, direction, top_features, method,
    is_transfer, rule_tier, model_version, valid_until."""
    now = utcnow()
    rows = [
        {
            "account_id": account_id,
            "entity_type": entity_type,
            "entity_id": str(entity_id),
            "reference_date": ref_date,
            "tier": r.tier,
            "confidence_score": None if pd.isna(r.confidence) else float(r.confidence),
            "previous_tier": None if r.previous_tier is None or pd.isna(r.previous_tier) else r.previous_tier,
            "tier_change_direction": r.direction,
            "feature_importances": to_jsonable(r.top_features),
            "method": r.method,
            "is_transfer": bool(r.is_transfer),
            "rule_tier": r.rule_tier,
            "model_version": None if r.model_version is None or pd.isna(r.model_version) else int(r.model_version),
            "valid_until": r.valid_until,
            "classified_at": now,
        }
        for entity_id, r in zip(frame.index, frame.itertuples(index=False))
    ]
    with engine.begin() as conn:
        conn.execute(
            delete(Classification).where(
                Classification.account_id == account_id,
                Classification.entity_type == entity_type,
                Classification.reference_date == ref_date,
            )
        )
        if rows:
            conn.execute(Classification.__table__.insert(), rows)
    return len(rows)


def latest_classifications(engine: Engine, account_id: str, entity_type: str) -> pd.DataFrame:
    """The level's classifications of its latest classified reference date (index entity_id)."""
    c = Classification
    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(c.reference_date)).where(c.account_id == account_id, c.entity_type == entity_type)
        ).scalar_one_or_none()
        if latest is None:
            return pd.DataFrame()
        frame = pd.read_sql(
            select(c.entity_id, c.reference_date, c.tier, c.confidence_score, c.previous_tier,
                   c.tier_change_direction, c.method, c.model_version)
            .where(c.account_id == account_id, c.entity_type == entity_type, c.reference_date == latest)
            .order_by(c.entity_id),
            conn,
        )
    return frame.set_index("entity_id")


def replace_rows(engine: Engine, model, where: dict, rows: list[dict]) -> int:  # noqa: ANN001
    """Delete the rows of ``model`` matching ``where`` and insert ``rows``, in one transaction."""
    with engine.begin() as conn:
        _replace_in(conn, model, where, rows)
    return len(rows)


def _replace_in(conn, model, where: dict, rows: list[dict]) -> None:  # noqa: ANN001
    """Within the caller's transaction: delete ``model``'s rows matching ``where``, insert ``rows``."""
    table = model.__table__
    conn.execute(delete(table).where(*[table.c[k] == v for k, v in where.items()]))
    if rows:
        conn.execute(table.insert(), [to_jsonable_row(r) for r in rows])


def to_jsonable_row(row: dict) -> dict:
    """NumPy scalars to Python; NaN to None (JSON columns and floats alike)."""
    out = {}
    for key, value in row.items():
        if isinstance(value, dict):
            out[key] = to_jsonable(value)
        elif isinstance(value, np.generic):
            value = value.item()
            out[key] = None if isinstance(value, float) and np.isnan(value) else value
        elif isinstance(value, float) and np.isnan(value):
            out[key] = None
        else:
            out[key] = value
    return out


def load_prophet_params(engine: Engine, account_id: str, entity_type: str) -> dict[tuple[str, str], dict]:
    """Tuned params by (entity_id, metric)."""
    from ads_ml.db.models import ProphetParams as P

    with engine.connect() as conn:
        rows = conn.execute(
            select(P.entity_id, P.metric, P.changepoint_prior_scale, P.seasonality_prior_scale)
            .where(P.account_id == account_id, P.entity_type == entity_type)
        ).all()
    return {
        (r.entity_id, r.metric): {
            "changepoint_prior_scale": r.changepoint_prior_scale,
            "seasonality_prior_scale": r.seasonality_prior_scale,
        }
        for r in rows
    }


def replace_anomalies(engine: Engine, account_id: str, entity_type: str, first_day: dt.date, last_day: dt.date,
                      rows: list[dict]) -> int:
    """Replace the level's anomalies dated ``first_day``..``last_day`` in one transaction."""
    from ads_ml.db.models import Anomaly

    table = Anomaly.__table__
    with engine.begin() as conn:
        conn.execute(delete(table).where(
            table.c.account_id == account_id, table.c.entity_type == entity_type,
            table.c.anomaly_date >= first_day, table.c.anomaly_date <= last_day,
        ))
        if rows:
            conn.execute(table.insert(), [to_jsonable_row(r) for r in rows])
    return len(rows)


def forecast_and_anomaly_summary(engine: Engine, account_id: str, entity_type: str) -> str:
    """One line: next-7-day forecast totals of the level and its anomalies of the latest day."""
    from ads_ml.db.models import Anomaly, ForecastRow

    with engine.connect() as conn:
        totals = dict(conn.execute(
            select(ForecastRow.metric, func.sum(ForecastRow.predicted_value))
            .where(ForecastRow.account_id == account_id, ForecastRow.entity_type == entity_type,
                   ForecastRow.method == "ensemble", ForecastRow.metric.in_(["spend", "leads"]))
            .group_by(ForecastRow.metric)
        ).all())
        latest = conn.execute(
            select(func.max(Anomaly.anomaly_date)).where(Anomaly.account_id == account_id, Anomaly.entity_type == entity_type)
        ).scalar_one_or_none()
        severities = dict(conn.execute(
            select(Anomaly.severity, func.count())
            .where(Anomaly.account_id == account_id, Anomaly.entity_type == entity_type, Anomaly.anomaly_date == latest)
            .group_by(Anomaly.severity)
        ).all()) if latest else {}
    parts = []
    if totals:
        currency = account_currency(engine, account_id)
        parts.append(f"next 7 days (sum of entity forecasts): spend {format_value('spend', totals.get('spend', 0.0), currency)}, "
                     f"leads {totals.get('leads', 0):,.0f}")
    if latest:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(severities.items()))
        parts.append(f"anomalies on {latest}: {counts}")
    return "; ".join(parts)


def store_recommendations(engine: Engine, account_id: str, entity_type: str, ref_date: dt.date,
                          frame: pd.DataFrame, expiry_days: int) -> dict[str, int]:
    """In one transaction: OPEN recommendations past their expiry become EXPIRED; new ones are
    inserted OPEN unless the same entity already has an OPEN one of the same type."""
    from ads_ml.db.models import Recommendation as R

    now = utcnow()
    table = R.__table__
    with engine.begin() as conn:
        expired = conn.execute(
            table.update()
            .where(table.c.account_id == account_id, table.c.entity_type == entity_type,
                   table.c.status == "OPEN", table.c.expires_at <= now)
            .values(status="EXPIRED", updated_at=now)
        ).rowcount
        rows = [
            {
                "account_id": account_id, "entity_type": entity_type, "entity_id": r["entity_id"],
                "recommendation_type": r["recommendation_type"], "priority": r["priority"],
                "confidence": r["confidence"], "reason": r["reason"],
                "suggested_action": to_jsonable(r["suggested_action"]), "evidence": to_jsonable(r["evidence"]),
                "status": "OPEN", "reference_date": ref_date, "created_at": now,
                "expires_at": now + dt.timedelta(days=expiry_days), "updated_at": now,
            }
            for r in frame.to_dict("records")
        ]
        inserted = 0
        if rows:
            # the partial unique index keeps an already OPEN (entity, type) from being issued twice,
            # also against a concurrent run
            stmt = insert_for(conn, table).on_conflict_do_nothing(
                index_elements=[table.c.account_id, table.c.entity_type, table.c.entity_id, table.c.recommendation_type],
                index_where=text("status = 'OPEN'"),
            ).returning(table.c.id)
            inserted = len(conn.execute(stmt, rows).all())
    return {"new": inserted, "already_open": len(frame) - inserted, "expired": int(expired or 0)}


def latest_anomalies(engine: Engine, account_id: str, entity_type: str) -> pd.DataFrame:
    """The level's anomalies of its latest anomaly date (entity_id, metric, method, severity)."""
    from ads_ml.db.models import Anomaly as A

    with engine.connect() as conn:
        latest = conn.execute(
            select(func.max(A.anomaly_date)).where(A.account_id == account_id, A.entity_type == entity_type)
        ).scalar_one_or_none()
        if latest is None:
            return pd.DataFrame(columns=["entity_id", "metric", "method", "severity"])
        return pd.read_sql(
            select(A.entity_id, A.metric, A.method, A.severity)
            .where(A.account_id == account_id, A.entity_type == entity_type, A.anomaly_date == latest),
            conn,
        )


def load_change_events(engine: Engine, account_id: str, ids: list[int] | None = None) -> pd.DataFrame:
    from ads_ml.db.models import ChangeEvent as C

    query = select(C.id, C.entity_type, C.entity_id, C.change_date, C.change_type, C.old_value, C.new_value).where(
        C.account_id == account_id)
    if ids:
        query = query.where(C.id.in_(ids))
    with engine.connect() as conn:
        frame = pd.read_sql(query.order_by(C.change_date, C.id), conn)
    frame["change_date"] = pd.to_datetime(frame["change_date"]).dt.date
    return frame


def reported_windows(engine: Engine, account_id: str, window_before: int) -> dict[tuple, set[int]]:
    """(entity_type, entity_id, change_date, change_type) → the after-windows it has a complete report for."""
    from ads_ml.db.models import ImpactReportRow as I

    with engine.connect() as conn:
        rows = conn.execute(
            select(I.entity_type, I.entity_id, I.change_date, I.change_type, I.window_after)
            .where(I.account_id == account_id, I.status == "complete", I.window_before == window_before)
        ).all()
    out: dict[tuple, set[int]] = {}
    for t, e, d, c, w in rows:
        out.setdefault((t, e, _as_date(d), c), set()).add(int(w))
    return out


def all_impact_reports(engine: Engine, account_id: str) -> pd.DataFrame:
    """Every impact report of the account, one row per change and windows (change_date as a date)."""
    from ads_ml.db.models import ImpactReportRow as I

    columns = ["entity_type", "entity_id", "change_date", "change_type", "status", "overall_impact",
               "metric_changes", "recommendation", "window_before", "window_after", "analyzed_at", "id"]
    with engine.connect() as conn:
        rows = conn.execute(select(*(getattr(I, c) for c in columns)).where(I.account_id == account_id)).all()
    frame = pd.DataFrame(rows, columns=columns)
    frame["change_date"] = frame["change_date"].map(_as_date)
    return frame


def current_impact_reports(engine: Engine, account_id: str) -> pd.DataFrame:
    """The account's impact reports as they stand: one row per change (entity, date, type), its
    verdict of record (:func:`ads_ml.ml.impact.verdict_of_record`) — with ``history``, how the
    verdict evolved over the windows, the most recent
    change first. What ``impact_reports`` holds, whatever one run added."""
    frame = all_impact_reports(engine, account_id)
    if frame.empty:
        return frame.drop(columns=["id", "window_before"]).assign(history=pd.Series(dtype=object))
    key = ["entity_type", "entity_id", "change_date", "change_type"]
    history = {k: verdict_history(group) for k, group in frame.groupby(key, sort=False)}
    frame = verdict_of_record(frame.sort_values(["analyzed_at", "id"]), key)
    frame["history"] = [history[tuple(k)] for k in frame[key].itertuples(index=False)]
    frame = frame.sort_values(["change_date", "analyzed_at"], ascending=False).drop(columns=["id", "window_before"])
    return frame.reset_index(drop=True)


def store_impact_reports(engine: Engine, rows: list[dict]) -> int:
    """Replace reports with the same key (entity, change, windows) in one transaction."""
    from ads_ml.db.models import ImpactReportRow as I

    table = I.__table__
    with engine.begin() as conn:
        for r in rows:
            conn.execute(delete(table).where(
                table.c.account_id == r["account_id"], table.c.entity_type == r["entity_type"],
                table.c.entity_id == r["entity_id"], table.c.change_date == r["change_date"],
                table.c.change_type == r["change_type"], table.c.window_before == r["window_before"],
                table.c.window_after == r["window_after"],
            ))
        if rows:
            conn.execute(table.insert(), [to_jsonable_row(r) for r in rows])
    return len(rows)


def actions_summary(engine: Engine, account_id: str, entity_type: str) -> str:
    """One line: OPEN recommendations by type and impact verdicts of record of the level."""
    from ads_ml.db.models import Recommendation as R

    with engine.connect() as conn:
        recs = conn.execute(
            select(R.recommendation_type, func.count())
            .where(R.account_id == account_id, R.entity_type == entity_type, R.status == "OPEN")
            .group_by(R.recommendation_type).order_by(func.count().desc())
        ).all()
    reports = current_impact_reports(engine, account_id)
    reports = reports.loc[reports["entity_type"] == entity_type] if len(reports) else reports
    parts = []
    if recs:
        parts.append("open recommendations: " + ", ".join(f"{t} {n}" for t, n in recs))
    if len(reports):
        verdicts = reports["overall_impact"].value_counts()
        parts.append("impact verdicts of record: " + ", ".join(f"{v} {verdicts[v]}" for v in sorted(verdicts.index)))
    return "; ".join(parts)


def top_findings(engine: Engine, account_id: str, entity_type: str, limit: int = 5) -> list[str]:
    """Lines naming the level's most urgent OPEN recommendations and its anomalies of the latest
    day, each as ``name (id)`` so a marketer recognises the entity."""
    from ads_ml.db.models import Anomaly as A
    from ads_ml.db.models import Recommendation as R

    names = load_entities(engine, account_id, entity_type)
    names = dict(zip(names["entity_id"].astype(str), names["name"]))

    def label(entity_id: str) -> str:
        name = names.get(str(entity_id))
        return f"{name} ({entity_id})" if name else str(entity_id)

    priority = {"high": 0, "medium": 1, "low": 2}
    severity = {"critical": 0, "high": 1, "medium": 2, "low": 3}
    with engine.connect() as conn:
        recs = conn.execute(
            select(R.entity_id, R.recommendation_type, R.priority, R.reason)
            .where(R.account_id == account_id, R.entity_type == entity_type, R.status == "OPEN")
        ).all()
        latest = conn.execute(
            select(func.max(A.anomaly_date)).where(A.account_id == account_id, A.entity_type == entity_type)
        ).scalar_one_or_none()
        anomalies = conn.execute(
            select(A.entity_id, A.metric, A.severity, A.observed_value, A.expected_value)
            .where(A.account_id == account_id, A.entity_type == entity_type, A.anomaly_date == latest)
        ).all() if latest else []
    lines = []
    for r in sorted(recs, key=lambda r: (priority.get(r.priority, 9), r.entity_id))[:limit]:
        lines.append(f"{r.recommendation_type} [{r.priority}] {label(r.entity_id)}: {r.reason}")
    currency = account_currency(engine, account_id)
    for a in sorted(anomalies, key=lambda a: (severity.get(a.severity, 9), a.entity_id))[:limit]:
        lines.append(f"anomaly [{a.severity}] {label(a.entity_id)}: {a.metric} {format_value(a.metric, a.observed_value, currency)} "
                     f"(expected {format_value(a.metric, a.expected_value, currency)}) on {latest}")
    return lines
