"""One base class for every task: retry policy, correlation id, and a dead letter when a task
gives up, so every task behaves the same way."""

from __future__ import annotations

import traceback
from typing import Any

import kombu.exceptions
import redis.exceptions
import sqlalchemy.exc
import structlog
from celery import Task
from sqlalchemy.dialects.postgresql import insert

from core import handover, metrics
from core.db import session_scope
from core.logging import get_logger
from models import DeadLetter

log = get_logger(__name__)

# Failures that go away by themselves, retried with backoff (autoretry_for below):
#
# * sqlalchemy.exc.OperationalError: SQLAlchemy raises it for every psycopg2.OperationalError, and
#   psycopg2 makes these Postgres errors subclasses of that one (tests/unit/test_transient_errors.py
#   checks it): DeadlockDetected (40P01) and SerializationFailure (40001), both
#   TransactionRollbackError, the transaction was rolled back and simply runs again;
#   QueryCanceled (57014: DB_STATEMENT_TIMEOUT_SECONDS) and LockNotAvailable (55P03:
#   DB_LOCK_TIMEOUT_SECONDS); AdminShutdown and CannotConnectNow (a restarting Postgres); and a
#   connection the server closed, e.g. after DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS.
# * sqlalchemy.exc.TimeoutError: no connection came free in the pool within DB_POOL_TIMEOUT_SECONDS.
# * a dropped connection to Postgres or Redis.
# * kombu.exceptions.OperationalError: a publish to the broker that failed (Redis away), e.g. a
#   hand-over published after its commit (core.handover.publish): the row is durable, and the
#   retry, finding its update done, publishes it again. Not a bug to tell the user about: the
#   fault drill (bench/chaos.py, Redis stopped) saw "something went wrong, not completed" sent for
#   a reservation that was then placed.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.DisconnectionError,
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    kombu.exceptions.OperationalError,
    ConnectionError,
    TimeoutError,
)

# Postgres error codes (SQLSTATE) worth naming in a retry's log line and metric.
_PG_REASONS = {
    "40P01": "deadlock",
    "40001": "serialization_failure",
    "57014": "statement_timeout",  # or a query cancelled by an operator (pg_cancel_backend)
    "55P03": "lock_timeout",
    "57P01": "db_restarting",  # admin_shutdown
    "57P03": "db_restarting",  # cannot_connect_now: starting up or recovering
    "53300": "db_too_many_connections",
}


def transient_reason(error: BaseException) -> str:
    """A short name for why a task is retried (the `reason` of task_retrying and
    worker_transient_errors_total)."""
    if isinstance(error, sqlalchemy.exc.TimeoutError):
        return "db_pool_exhausted"
    if isinstance(error, sqlalchemy.exc.DBAPIError):
        reason = _PG_REASONS.get(getattr(error.orig, "pgcode", None) or "")
        if reason:
            return reason
        return "db_connection_lost" if error.connection_invalidated else "db_unavailable"
    if isinstance(error, redis.exceptions.RedisError):
        return "redis_unavailable"
    if isinstance(error, TRANSIENT_ERRORS):
        return "network"
    return "other"


class BaseTask(Task):
    autoretry_for = TRANSIENT_ERRORS
    # 1, 2, 4, 8, then 16 s at most between attempts, each with full jitter. A task that kept failing
    # through a minute without Postgres or Redis runs again at most 16 s after it is back; with a
    # 600 s cap it waited minutes, and the drill with Postgres down 60 s still found a refund
    # waiting. The retries keep the horizon the doubling gave (about 8 minutes on average).
    retry_backoff = 1
    retry_backoff_max = 16
    retry_jitter = True
    max_retries = 60

    def before_start(self, task_id, args, kwargs) -> None:
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(
            task=self.name, task_id=task_id, cid=self.request.get("cid") or task_id
        )
        if self.request.retries or (self.request.delivery_info or {}).get("redelivered"):
            self._resend_own_handovers(task_id)

    def _resend_own_handovers(self, task_id: str) -> None:
        """A retried or redelivered task first publishes what an earlier attempt handed over after
        its commit and never got published (Redis away at that moment, or the process killed), as a
        redelivered update does: else that waits for the `maintenance.resend_handovers` sweeper.
        The fault drill (bench/chaos.py, Redis stopped) found a Pay button kept back so. Best
        effort: the sweeper stays behind it."""
        try:
            with session_scope() as session:
                handover.resend_after_commit(session, handover.task_origin(task_id))
        except Exception as error:  # noqa: BLE001 - the task itself must run; the sweeper publishes them
            log.warning("handovers_not_resent", error=repr(error)[:300])

    def on_retry(self, exc, task_id, args, kwargs, einfo) -> None:
        if exc is None or not isinstance(exc, TRANSIENT_ERRORS):  # the task asked for it (self.retry)
            log.info("task_retrying", reason="requested", retries=self.request.retries + 1,
                     error=repr(exc) if exc is not None else None)
            return
        reason = transient_reason(exc)
        metrics.TRANSIENT_ERRORS.labels(self.name, reason).inc()
        first_line = (str(exc).strip().splitlines() or [repr(exc)])[0][:300]
        log.warning("task_retrying", reason=reason, retries=self.request.retries + 1, max_retries=self.max_retries,
                    error=first_line)

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        log.error("task_failed", error=repr(exc))
        self.record_dead_letter(task_id, exc)

    def record_dead_letter(self, task_id: str, exc: BaseException, reference: str | None = None, *,
                           task_name: str | None = None, arguments: dict[str, Any] | None = None) -> None:
        """Keep a failed task for an operator, with its arguments so that it can be replayed
        (domain/dead_letters.py); best effort (the database may be what failed). `task_name` and
        `arguments`: the one piece of this task's work that failed, kept as the task that replays
        it alone (one update of a batch, as `updates.handle_update`)."""
        text = "".join(traceback.format_exception(exc))[-4000:]
        if arguments is None:
            arguments = {"args": list(self.request.args or ()), "kwargs": dict(self.request.kwargs or {})}
        try:
            with session_scope() as session:
                recorded = session.execute(
                    insert(DeadLetter)
                    .values(task_name=task_name or self.name, task_id=task_id, error=text,
                            reference=reference or self.request.get("cid"), payload=arguments)
                    .on_conflict_do_nothing(index_elements=["task_id"])
                    .returning(DeadLetter.id)
                ).first()
        except Exception as error:  # noqa: BLE001 - a dead letter must never mask the failure itself
            log.error("dead_letter_not_recorded", error=repr(error))
            return
        if recorded is not None:
            metrics.DEAD_LETTERS.labels(task_name or self.name).inc()
