"""Import change events (budget, creative, audience changes, pauses, reactivations)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from sqlalchemy import Engine, delete, func, select, update

from ads_ml import settings
from ads_ml.db.engine import begin_write
from ads_ml.db.models import ENTITY_MODELS, ChangeEvent, ImportBatch, utcnow
from ads_ml.db.queries import record_import_batch
from ads_ml.db.upsert import upsert
from ads_ml.ingest.csvfile import Field, InputFileError, iter_batches, parse_dates, read_header, readable_csv, require_values
from ads_ml.ingest.insights import ensure_account, validate_account_id

CHANGE_FIELDS: tuple[Field, ...] = (
    Field("entity_type", ("entitytype", "level"), label='"entity_type"'),
    Field("entity_id", ("entityid",), label='"entity_id"'),
    Field("change_date", ("changedate", "date"), label='"change_date"'),
    Field("change_type", ("changetype",), label='"change_type"'),
    Field("old_value", ("oldvalue",), required=False),
    Field("new_value", ("newvalue",), required=False),
)


def import_changes(engine: Engine, path: str | Path, account_id: str) -> int:
    """Upsert the change events of ``path`` into ``account_id``; returns the number of rows read.
    Every event must name an entity the account already has (import insights first)."""
    validate_account_id(account_id)
    with readable_csv(Path(path)) as csv_path:
        return _import_changes(engine, csv_path, account_id)


def _import_changes(engine: Engine, path: Path, account_id: str) -> int:
    header = read_header(path, CHANGE_FIELDS)
    names = header.columns
    rows = 0
    seen_keys: set[tuple] = set()
    with begin_write(engine, wait=settings.import_wait_seconds()) as conn:
        ensure_account(conn, path, account_id, None)
        batch_id = record_import_batch(conn, account_id, "changes", 0)
        known = {
            level: {i for (i,) in conn.execute(select(model.id).where(model.account_id == account_id))}
            for level, model in ENTITY_MODELS.items()
        }
        for _first, raw in iter_batches(path, header, settings.IMPORT_BATCH_ROWS):
            require_values(path, raw, {c: names[c] for c in ("entity_type", "entity_id", "change_type")})
            level = raw["entity_type"].str.lower()
            bad = ~level.isin(settings.ENTITY_TYPES)
            if bad.any():
                row = int(raw.index[np.flatnonzero(bad.to_numpy())[0]])
                raise InputFileError(
                    path, f"{raw.at[row, 'entity_type']!r} is not one of campaign, adset, ad",
                    row=row, column=names["entity_type"],
                )
            change_type = raw["change_type"].str.lower()
            bad = ~change_type.isin(settings.CHANGE_TYPES)
            if bad.any():
                row = int(raw.index[np.flatnonzero(bad.to_numpy())[0]])
                raise InputFileError(
                    path,
                    f"{raw.at[row, 'change_type']!r} is not one of {', '.join(settings.CHANGE_TYPES)}",
                    row=row, column=names["change_type"],
                )
            dates = parse_dates(path, raw, "change_date", names["change_date"])
            unknown = [
                row for row, lvl, entity in zip(raw.index, level, raw["entity_id"]) if entity not in known[lvl]
            ]
            if unknown:
                row = int(unknown[0])
                raise InputFileError(
                    path, f"unknown {level.at[row]} {raw.at[row, 'entity_id']!r} in account {account_id}",
                    row=row, column=names["entity_id"],
                )
            keys = list(zip(level, raw["entity_id"], dates, change_type))
            seen_in_batch: dict[tuple, int] = {}
            for row, key in zip(raw.index, keys):
                if key in seen_keys or key in seen_in_batch:
                    raise InputFileError(
                        path, f"the same {key[3]} of {key[0]} {key[1]} on {key[2].date()} appears twice",
                        row=int(row), column=names["change_type"],
                    )
                seen_in_batch[key] = row
            seen_keys.update(seen_in_batch)
            now = utcnow()
            records = [
                {
                    "account_id": account_id,
                    "entity_type": lvl,
                    "entity_id": entity,
                    "change_date": date.date(),
                    "change_type": kind,
                    "old_value": (raw.at[row, "old_value"] or None) if "old_value" in names else None,
                    "new_value": (raw.at[row, "new_value"] or None) if "new_value" in names else None,
                    "created_at": now,
                    "import_batch_id": batch_id,  # kept on conflict: only a new event is new to the sensor
                }
                for row, lvl, entity, date, kind in zip(raw.index, level, raw["entity_id"], dates, change_type)
            ]
            upsert_change_events(conn, records)
            rows += len(records)
        if rows == 0:
            raise InputFileError(path, "no data rows")
        finish_change_batch(conn, batch_id)
    return rows


def upsert_change_events(conn, records: list[dict]) -> None:  # noqa: ANN001 - a Connection in a write transaction
    """Upsert change events (old and new values updated); an event already stored keeps the import
    batch that first wrote it, so only new events are new to the change-events sensor."""
    if not records:
        return
    stmt = upsert(
        conn, ChangeEvent.__table__,
        key=("account_id", "entity_type", "entity_id", "change_date", "change_type"),
        update=("old_value", "new_value"),
    )
    conn.execute(stmt, records)


def finish_change_batch(conn, batch_id: int) -> int:  # noqa: ANN001
    """The number of events the batch wrote first; a batch that wrote none is deleted (a re-import
    leaves no trace and starts nothing)."""
    new = conn.execute(select(func.count()).select_from(ChangeEvent).where(ChangeEvent.import_batch_id == batch_id)).scalar_one()
    if new:
        conn.execute(update(ImportBatch).where(ImportBatch.id == batch_id).values(rows=new))
    else:
        conn.execute(delete(ImportBatch).where(ImportBatch.id == batch_id))
    return int(new)
