"""Database engine and sessions, one engine per process (re-created after a fork).

Every connection the engine opens carries the guards of core/settings.py (statement_timeout,
lock_timeout, idle_in_transaction_session_timeout), sent as libpq start-up options: Postgres applies
them when the connection opens, so they cost no round trip, and they hold for the autocommit
connections of the reservation path (`autocommit_connection`) as for the sessions' own. The pool
waits at most `db_pool_timeout_seconds` for a free connection and then raises
sqlalchemy.exc.TimeoutError; tasks retry on it (tasks/base.py), so an exhausted pool is a retry with
a log line, never a hang. The pool reports its use to Prometheus (core/metrics.py: db_pool_*).
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Connection, CursorResult, Engine, Executable, create_engine, event, func, select
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import QueuePool

from core import metrics
from core.logging import get_logger
from core.settings import Settings, get_settings

log = get_logger(__name__)

_engine: Engine | None = None
_engine_pid: int | None = None
_sessionmaker: sessionmaker[Session] | None = None


def guard_options(settings: Settings) -> str:
    """The libpq `options` that set the guards for a connection's whole session (milliseconds; 0: off)."""
    guards = {
        "statement_timeout": settings.db_statement_timeout_seconds,
        "lock_timeout": settings.db_lock_timeout_seconds,
        "idle_in_transaction_session_timeout": settings.db_idle_in_transaction_timeout_seconds,
    }
    return " ".join(f"-c {name}={max(round(seconds * 1000), 1) if seconds else 0}" for name, seconds in guards.items())


class MeasuredPool(QueuePool):
    """SQLAlchemy's QueuePool, timing each checkout (waiting, opening a connection, the liveness
    ping) and counting the ones that had to wait for a connection to come back (every one in use)
    and the ones that gave up (the pool is exhausted)."""

    def __init__(self, creator: Any, pool_size: int = 5, max_overflow: int = 10, timeout: float = 30.0,
                 **kwargs: Any) -> None:
        super().__init__(creator, pool_size=pool_size, max_overflow=max_overflow, timeout=timeout, **kwargs)
        self._limits = (pool_size, max_overflow, timeout)

    def connect(self) -> Any:
        size, max_overflow, timeout = self._limits
        started = time.perf_counter()
        if self.checkedin() == 0 and self.overflow() >= max_overflow:  # nothing idle, no room to open one
            metrics.DB_POOL_WAITS.inc()
        try:
            return super().connect()
        except PoolTimeoutError:
            metrics.DB_POOL_TIMEOUTS.inc()
            log.warning("db_pool_exhausted", waited=round(time.perf_counter() - started, 3), pool_size=size,
                        max_overflow=max_overflow, in_use=self.checkedout(),
                        detail=f"every connection of this process was in use for {timeout:g}s "
                               "(DB_POOL_TIMEOUT_SECONDS); the task is retried")
            raise
        finally:
            metrics.DB_POOL_CHECKOUT_SECONDS.observe(time.perf_counter() - started)


def create_guarded_engine(url: str, settings: Settings, **overrides: Any) -> Engine:
    """An engine whose every connection has the guards, with the measured pool; `overrides` go to
    create_engine (tests pass a smaller pool)."""
    options = guard_options(settings)

    kwargs: dict[str, Any] = {
        "poolclass": MeasuredPool,
        "pool_size": settings.db_pool_size,
        "max_overflow": settings.db_max_overflow,
        "pool_timeout": settings.db_pool_timeout_seconds,
        "pool_pre_ping": True,  # a restarted Postgres leaves dead connections in the pool
        "pool_recycle": 1800,
        **overrides,
    }
    new_engine = create_engine(url, **kwargs)

    @event.listens_for(new_engine, "do_connect")
    def _with_guards(_dialect, _record, _cargs, cparams: dict[str, Any]) -> None:
        # Options given in DATABASE_URL (?options=-c ...) come after ours, so they win.
        cparams["options"] = f"{options} {cparams['options']}" if cparams.get("options") else options
        cparams.setdefault("connect_timeout", settings.db_connect_timeout_seconds)

    @event.listens_for(new_engine, "checkout")
    def _checked_out(*_args: Any) -> None:
        metrics.DB_POOL_CHECKED_OUT.inc()

    @event.listens_for(new_engine, "checkin")
    def _checked_in(*_args: Any) -> None:
        metrics.DB_POOL_CHECKED_OUT.dec()

    return new_engine


def engine() -> Engine:
    global _engine, _engine_pid, _sessionmaker
    if _engine is None or _engine_pid != os.getpid():
        # A connection pool must not cross a fork (Celery prefork): the child builds its own.
        if _engine is not None:
            _engine.dispose(close=False)
        settings = get_settings()
        _engine = create_guarded_engine(settings.database_url, settings)
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
def session_scope(bind: Connection | None = None) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception. Callbacks registered with
    `after_commit` run once the commit succeeded (never for a rolled-back transaction). `bind`: a
    connection the caller holds for several transactions in a row (`connected`), instead of one
    checked out from the pool for this one."""
    engine()
    assert _sessionmaker is not None
    with (_sessionmaker() if bind is None else _sessionmaker(bind=bind)) as session:
        with session.begin():
            yield session
        callbacks = session.info.pop("after_commit", [])
    for callback in callbacks:
        callback()


@contextmanager
def connected() -> Iterator[Connection]:
    """One pooled connection for a task's transactions in a row (the update's, then the sending of
    its replies): checked out, and pinged, once instead of once per transaction."""
    with engine().connect() as connection:
        yield connection


@contextmanager
def transaction(connection: Connection | None = None) -> Iterator[Connection]:
    """A transaction on `connection` (one the caller holds), or on a connection of its own from the
    pool; committed on success, rolled back on any exception."""
    if connection is None:
        with engine().begin() as fresh:
            yield fresh
    else:
        with connection.begin():
            yield connection


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


def lock_chat(session: Session, chat_id: int) -> None:
    """Take the chat's advisory lock until the transaction ends (updates of one chat are handled one
    at a time), timing the wait (chat_lock_wait_seconds). A wait beyond DB_LOCK_TIMEOUT_SECONDS
    raises OperationalError (lock_timeout), and the task is retried."""
    started = time.perf_counter()
    try:
        session.execute(select(func.pg_advisory_xact_lock(chat_id)))
    finally:
        metrics.CHAT_LOCK_WAIT_SECONDS.observe(time.perf_counter() - started)


class PreparedStatement:
    """A statement with named parameters (``:name``), prepared once per database connection.

    Which connections have it is remembered in the connection's ``info``, which lives exactly as
    long as the database connection. PREPARE is not undone by a rollback, so a prepared statement
    survives its transaction. `params` names each parameter's SQL type, in order. Statements that
    run on every tap or reservation are prepared so that Postgres parses and plans them once;
    `DB_PREPARE_STATEMENTS=false` sends them whole, for a pooler that drops prepared statements."""

    def __init__(self, name: str, sql: str, params: dict[str, str]) -> None:
        self.name = f"{name}_{hashlib.sha1(sql.encode()).hexdigest()[:10]}"
        body = sql
        for position, param in enumerate(params, 1):
            body = re.sub(rf"(?<![:\w]):{param}\b", f"${position}", body)
        if re.search(r"(?<![:\w]):[a-z_]+\b", body):
            raise ValueError(f"{name}: a parameter is missing from {list(params)}")
        self.prepare_sql = f"PREPARE {self.name} ({', '.join(params.values())}) AS {body}"
        self.execute_sql = f"EXECUTE {self.name} ({', '.join(f'%({p})s' for p in params)})"
        self.inline_sql = re.sub(r"(?<![:\w]):([a-z_]+)\b", r"%(\1)s", sql)  # unprepared, same parameters

    def __call__(self, conn: Connection, values: dict[str, Any]) -> CursorResult[Any]:
        if not get_settings().db_prepare_statements:
            return conn.exec_driver_sql(self.inline_sql, values)
        prepared = conn.info.setdefault("core.db.prepared", set())
        if self.name not in prepared:
            conn.exec_driver_sql(self.prepare_sql)
            prepared.add(self.name)
        return conn.exec_driver_sql(self.execute_sql, values)
