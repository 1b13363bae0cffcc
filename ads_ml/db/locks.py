"""One writer per ad account across processes: ``account_lock(engine, account)``.

PostgreSQL: a session advisory lock on a connection held for the duration. SQLite (one machine): an
exclusive ``flock`` on a file beside the database. Both are released by the operating system or the
server when the holder dies, so a killed process never leaves an account locked.

No Dagster here: the runner takes this lock around the runs it executes in-process (``ads-ml
materialize`` / ``ads-ml impact``).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from sqlalchemy import Engine, text

from ads_ml.db.model_registry import safe_component


class AccountBusyError(RuntimeError):
    """Another process held the account for longer than we were willing to wait."""


def _key(account_id: str) -> int:
    """A signed 64-bit advisory-lock key for the account."""
    return int.from_bytes(hashlib.sha256(f"ads_ml:{account_id}".encode()).digest()[:8], "big", signed=True)


@contextlib.contextmanager
def account_lock(engine: Engine, account_id: str, *, timeout: float, poll: float = 1.0,
                 waiting: Callable[[], None] | None = None) -> Iterator[None]:
    """Hold the account's lock for the block; ``waiting()`` is called once if we have to wait.
    Raises :class:`AccountBusyError` after ``timeout`` seconds."""
    if engine.dialect.name == "postgresql":
        lock = _postgres_lock(engine, account_id, timeout, poll, waiting)
    else:
        lock = _file_lock(engine, account_id, timeout, poll, waiting)
    with lock:
        yield


def _wait(try_once: Callable[[], bool], account_id: str, timeout: float, poll: float,
          waiting: Callable[[], None] | None) -> None:
    deadline = time.monotonic() + timeout
    told = False
    while not try_once():
        if time.monotonic() >= deadline:
            raise AccountBusyError(f"account {account_id} is still busy with another run after {timeout:.0f} s")
        if not told and waiting is not None:
            waiting()
            told = True
        time.sleep(poll)


@contextlib.contextmanager
def _postgres_lock(engine: Engine, account_id: str, timeout: float, poll: float,
                   waiting: Callable[[], None] | None) -> Iterator[None]:
    key = _key(account_id)
    with engine.connect() as conn:
        def try_once() -> bool:
            got = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar_one()
            conn.commit()  # end the implicit transaction; the session lock stays
            return bool(got)

        _wait(try_once, account_id, timeout, poll, waiting)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()


@contextlib.contextmanager
def _file_lock(engine: Engine, account_id: str, timeout: float, poll: float,
               waiting: Callable[[], None] | None) -> Iterator[None]:
    database = engine.url.database
    if not database or database == ":memory:":
        yield  # a private in-memory database has a single process by definition
        return
    folder = Path(database).with_name(Path(database).name + ".locks")
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{safe_component(account_id)}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        def try_once() -> bool:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return True
            except BlockingIOError:
                return False

        _wait(try_once, account_id, timeout, poll, waiting)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
