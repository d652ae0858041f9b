"""Database engine and sessions, one engine per process (re-created after a fork)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine
from sqlalchemy.orm import Session, sessionmaker

from core.settings import get_settings

_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


def engine() -> Engine:
    global _engine, _engine_pid, _sessionmaker
    if _engine is None or _engine_pid != os.getpid():
        # A connection pool must not cross a fork (Celery prefork): the child builds its own.
        if _engine is not None:
            _engine.dispose(close=False)
        _engine = create_engine(
            get_settings().database_url,
            pool_size=5,
            max_overflow=10,
            pool_pre_ping=True,  # a restarted Postgres leaves dead connections in the pool
            pool_recycle=1800,
        )
        _engine_pid = os.getpid()
        _sessionmaker = sessionmaker(_engine, expire_on_commit=False)
    return _engine


def reset_engine() -> None:
    """Forget the engine (tests that point DATABASE_URL elsewhere)."""
    global _engine, _engine_pid, _sessionmaker
    if _engine is not None:
        _engine.dispose()
    _engine = _engine_pid = _sessionmaker = None


@contextmanager
def session_scope() -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception. Callbacks registered with
    `after_commit` run once the commit succeeded (never for a rolled-back transaction)."""
    engine()
    assert _sessionmaker is not None
    with _sessionmaker() as session:
        with session.begin():
            yield session
        callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


def rows_affected(session: Session, statement: Executable) -> int:
    """Run an UPDATE or DELETE in the session and return how many rows it touched."""
    # Such a statement's result is a CursorResult, which carries the row count (Session.execute's
    # type does not say so).
    return cast("CursorResult[Any]", session.execute(statement)).rowcount


def after_commit(session: Session, callback: Callable[[], None]) -> None:
    """Run `callback` after this transaction commits: enqueue follow-up tasks here, so a task
    never runs for rows that don't exist yet (or never will)."""
    session.info.setdefault("after_commit", []).append(callback)


@contextmanager
def autocommit_connection(session: Session) -> Iterator[Connection]:
    """Another pooled connection to the session's database, in autocommit mode (each statement its
    own transaction, independent of the session's): for work that must commit on its own, at once."""
    with session.get_bind().engine.connect() as conn:
        yield conn.execution_options(isolation_level="AUTOCOMMIT")
