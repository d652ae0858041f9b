"""One base class for every task: retry policy, correlation id, and a dead letter when a task
gives up, so every task behaves the same way."""

from __future__ import annotations

import traceback

import redis.exceptions
import sqlalchemy.exc
import structlog
from celery import Task
from sqlalchemy.dialects.postgresql import insert

from core.db import session_scope
from core.logging import get_logger
from models import DeadLetter

log = get_logger(__name__)

# Failures that go away by themselves: a restarting Postgres or Redis, a dropped connection.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    ConnectionError,
    TimeoutError,
)


class BaseTask(Task):
    autoretry_for = TRANSIENT_ERRORS
    retry_backoff = 1  # 1 s, 2 s, 4 s ... with jitter
    retry_backoff_max = 600
    retry_jitter = True
    max_retries = 10

    def before_start(self, task_id, args, kwargs) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task=self.name, task_id=task_id, cid=self.request.get("cid") or task_id
        )

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        log.error("task_failed", error=repr(exc))
        self.record_dead_letter(task_id, exc)

    def record_dead_letter(self, task_id: str, exc: BaseException, reference: str | None = None) -> None:
        """Keep a failed task for an operator, with its arguments so that it can be replayed
        (domain/dead_letters.py); best effort (the database may be what failed)."""
        text = "".join(traceback.format_exception(exc))[-4000:]
        arguments = {"args": list(self.request.args or ()), "kwargs": dict(self.request.kwargs or {})}
        try:
            with session_scope() as session:
                session.execute(
                    insert(DeadLetter)
                    .values(task_name=self.name, task_id=task_id, error=text,
                            reference=reference or self.request.get("cid"), payload=arguments)
                    .on_conflict_do_nothing(index_elements=["task_id"])
                )
        except Exception as error:  # noqa: BLE001 - a dead letter must never mask the failure itself
            log.error("dead_letter_not_recorded", error=repr(error))
