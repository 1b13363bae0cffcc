"""Engines and transactions for the source + ML database (PostgreSQL or SQLite)."""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.orm import Session, sessionmaker

from ads_ml import settings

_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def _configure_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection, _record):  # noqa: ANN001
        # SQLAlchemy, not the sqlite3 module, begins transactions (see _on_begin): DDL and DML
        # are both transactional, and a writer can take the write lock up front.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        # WAL lets the webserver and sensors read while a run writes; the busy timeout waits for a
        # writer instead of failing with "database is locked".
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_seconds() * 1000)}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Connection) -> None:
        # BEGIN IMMEDIATE for writers: a deferred transaction that read first and then writes
        # fails at once with "database is locked" when another writer committed in between; an
        # immediate one waits (busy_timeout) for the write lock instead.
        immediate = connection.get_execution_options().get(WRITE_OPTION)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None) -> Engine:
    """A process-wide engine for ``url`` (default: ``settings.database_url()``)."""
    url = url or settings.database_url()
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            parsed = make_url(url)
            if parsed.get_backend_name() == "sqlite":
                if parsed.database and parsed.database != ":memory:":
                    Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
                engine = create_engine(url, connect_args={"timeout": settings.sqlite_busy_timeout_seconds()})
                _configure_sqlite(engine)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            _engines[url] = engine
        return engine


def dispose_engine(url: str) -> None:
    with _lock:
        engine = _engines.pop(url, None)
    if engine is not None:
        engine.dispose()


WRITE_OPTION = "ads_ml_write"


@contextmanager
def begin_write(engine: Engine, *, wait: float | None = None) -> Iterator[Connection]:
    """One write transaction (committed on success, rolled back on any error); on SQLite it takes
    the write lock when it begins, so concurrent writers queue instead of failing. ``wait``: how
    long this writer waits on SQLite for another to finish (default the busy timeout), e.g. a small
    import waiting for a large one of another account rather than being refused."""
    with engine.connect() as connection:
        connection = connection.execution_options(**{WRITE_OPTION: True})
        sqlite = connection.dialect.name == "sqlite" and wait is not None
        if sqlite:
            connection.connection.driver_connection.execute(f"PRAGMA busy_timeout={int(wait * 1000)}")
        try:
            with connection.begin():
                yield connection
        finally:
            if sqlite:
                connection.connection.driver_connection.execute(
                    f"PRAGMA busy_timeout={int(settings.sqlite_busy_timeout_seconds() * 1000)}")


def serialise_account_writes(conn: Connection, account_id: str) -> None:
    """Hold the account's insights for the rest of this write transaction: a concurrent import,
    ``--replace``, delete or Meta sync of the same account waits until this one commits, so each
    rolls adsets and campaigns up from every ad row committed before it (PostgreSQL: a transaction
    advisory lock; SQLite: ``BEGIN IMMEDIATE`` already serialises every writer)."""
    if conn.dialect.name == "postgresql":
        key = int.from_bytes(hashlib.sha256(f"ads_ml:insights:{account_id}".encode()).digest()[:8], "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


@contextmanager
def transaction(engine: Engine) -> Iterator[Connection]:
    """A connection inside one transaction: committed on success, rolled back on any error."""
    with engine.begin() as connection:
        yield connection


def session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


#: PostgreSQL SQLSTATEs worth trying again: serialisation failure, deadlock, lock not available,
#: too many connections, and the server shutting down or restarting.
TRANSIENT_SQLSTATES = frozenset({"40001", "40P01", "55P03", "53300", "57P01", "57P02", "57P03"})
#: SQLite's words for another writer holding the database past the busy timeout.
SQLITE_BUSY = ("database is locked", "database is busy", "database table is locked")


def is_transient(exc: BaseException) -> bool:
    """Whether trying the same work again later may succeed: a lost or refused database connection,
    a serialisation failure or deadlock, a lock held past the timeout, or any error that says so
    itself (``exc.transient``, e.g. Meta still throttling after its waits). Never an interrupt, a bug
    or bad data. The cause chain is searched (an error raised ``from`` a transient one)."""
    from sqlalchemy import exc as sa_exc

    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if getattr(exc, "transient", False) is True:
            return True
        if isinstance(exc, sa_exc.DBAPIError):
            if exc.connection_invalidated:
                return True
            state = getattr(exc.orig, "pgcode", None) or getattr(exc.orig, "sqlstate", None)
            if state:
                return state in TRANSIENT_SQLSTATES or state.startswith("08")
            if isinstance(exc, sa_exc.OperationalError):
                message = str(exc.orig).lower()
                # psycopg2 gives no SQLSTATE for a connection lost or refused
                return any(word in message for word in (*SQLITE_BUSY, "server closed the connection",
                                                        "could not connect", "connection refused",
                                                        "terminating connection", "connection timed out"))
            return False
        if isinstance(exc, sa_exc.TimeoutError):  # no pooled connection free in time
            return True
        if isinstance(exc, (ConnectionError, TimeoutError)):
            return True
        exc = exc.__cause__
    return False
