"""Dialect-aware upserts (PostgreSQL and SQLite share the ``ON CONFLICT`` form)."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Table, or_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection


def insert_for(connection: Connection, table: Table):  # noqa: ANN201
    name = connection.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise ValueError(f"unsupported database {name!r}: ads_ml runs on PostgreSQL and SQLite")


def upsert(
    connection: Connection,
    table: Table,
    key: Sequence[str],
    update: Sequence[str],
    *,
    always: Sequence[str] = (),
    nullness: Sequence[str] = (),
    select=None,  # noqa: ANN001 - an optional SELECT feeding the insert
    columns: Sequence[str] | None = None,
):  # noqa: ANN201
    """Build ``INSERT .. ON CONFLICT (key) DO UPDATE``: a conflicting row is updated only when one
    of ``update`` differs (null-safe), so re-writing identical data changes nothing; columns in
    ``always`` (e.g. ``updated_at``) are set along with such an update, never alone. For columns in
    ``nullness`` (also in ``always``) only whether they are NULL counts as a change, not their value
    (a partial day read again an hour later with the same figures is not a change; the day
    becoming complete is)."""
    stmt = insert_for(connection, table)
    if select is not None:
        stmt = stmt.from_select(list(columns or []), select)
    excluded = stmt.excluded
    changed = or_(*[table.c[c].is_distinct_from(excluded[c]) for c in update],
                  *[table.c[c].is_(None) != excluded[c].is_(None) for c in nullness])
    stmt = stmt.on_conflict_do_update(
        index_elements=[table.c[c] for c in key],
        set_={c: excluded[c] for c in (*update, *always)},
        where=changed,
    )
    if select is None:
        # SQLAlchemy batches many rows into one INSERT ("insertmanyvalues") for ON CONFLICT
        # statements only when they return something; without it each row is a round trip.
        stmt = stmt.returning(table.c[key[0]])
    return stmt
