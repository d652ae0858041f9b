"""A Celery app with the project's configuration, its workers' signal handlers and BaseTask, and
small tasks whose transactions a test can drive into a deadlock, a serialization failure or an
exhausted connection pool (tests/integration/test_task_retries.py). Each first attempt waits at a
Redis rendezvous, so the test can act against it at the right moment; retries run straight through.

They work on `guard_probe (id int primary key, n int)`, created by the test."""

from __future__ import annotations

import time

import redis
from celery import Celery
from sqlalchemy import text

import tasks.app  # noqa: F401 - the workers' signal handlers: structured logs, metrics
from core.db import engine, session_scope
from core.settings import get_settings
from tasks.base import BaseTask

app = Celery("db-fault-app")
app.config_from_object("celeryconfig")

RENDEZVOUS_SECONDS = 30


def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url)


def _meet(key: str) -> None:
    """Tell the test we are at `key`, then wait until it says go."""
    client = _redis()
    client.rpush(f"{key}:ready", 1)
    if client.blpop([f"{key}:go"], RENDEZVOUS_SECONDS) is None:
        raise RuntimeError(f"the test never said go at {key}")


@app.task(name="maintenance.probe_deadlock", base=BaseTask, bind=True)
def probe_deadlock(self: BaseTask, key: str) -> str:
    """Row 1, then row 2: the test takes them in the other order."""
    with session_scope() as session:
        session.execute(text("UPDATE guard_probe SET n = n + 1 WHERE id = 1"))
        if self.request.retries == 0:
            _meet(key)
        session.execute(text("UPDATE guard_probe SET n = n + 10 WHERE id = 2"))
    return "done"


@app.task(name="maintenance.probe_read_modify_write", base=BaseTask, bind=True)
def probe_read_modify_write(self: BaseTask, key: str) -> str:
    """Read row 1, write it back plus one, at REPEATABLE READ: a concurrent update in between is a
    serialization failure (not a lost update)."""
    with session_scope() as session:
        session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        n = session.scalar(text("SELECT n FROM guard_probe WHERE id = 1"))
        if self.request.retries == 0:
            _meet(key)
        session.execute(text("UPDATE guard_probe SET n = :n WHERE id = 1"), {"n": n + 1})
    return "done"


@app.task(name="maintenance.probe_hold_connection", base=BaseTask)
def probe_hold_connection(key: str, seconds: float) -> str:
    """Keep one of this process's pooled connections busy for `seconds`."""
    with engine().connect() as connection:
        connection.exec_driver_sql("SELECT 1")
        _redis().rpush(f"{key}:holding", 1)
        time.sleep(seconds)
    return "done"


@app.task(name="maintenance.probe_increment", base=BaseTask)
def probe_increment(row: int) -> str:
    with session_scope() as session:
        session.execute(text("UPDATE guard_probe SET n = n + 1 WHERE id = :row"), {"row": row})
    return "done"
