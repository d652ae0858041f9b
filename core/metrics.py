"""Prometheus metrics of the workers, safe across Celery's prefork processes.

Every worker process writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode, enabled by that variable being set before this module is imported), and
`python -m tasks.metrics_exporter` serves the sum of all of them on one `/metrics`. Without the
variable the metrics stay in memory, which is what unit tests and one-off scripts want.
"""

from __future__ import annotations

import time
from typing import Protocol

from prometheus_client import Counter, Gauge, Histogram

TASK_SECONDS = Histogram(
    "worker_task_seconds", "Run time of a task, by task name and final state", ["task", "state"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0),
)
TASK_RETRIES = Counter("worker_task_retries_total", "Task retries, by task name", ["task"])
TASK_FAILURES = Counter("worker_task_failures_total", "Tasks that failed for good, by task name", ["task"])
TASK_OUTCOMES = Counter(
    # e.g. reservations.place_order: reserved / sold_out; payments.refund_order: refunded
    "worker_task_outcomes_total", "What a task reported it did, by task name and outcome",
    ["task", "outcome"],
)
PAYMENTS = Counter("payments_total", "Payments recorded, by outcome (paid, paid_late, needs_refund)", ["outcome"])
REFUNDS = Counter("refunds_total", "Refunds recorded in the ledger")
NOTIFICATIONS = Counter("notifications_total", "Outbox messages, by result (sent, dropped, retry_later)", ["result"])
TELEGRAM_FLOOD = Counter("telegram_too_many_requests_total", "429 answers from the Bot API")

# Why a task is being retried (tasks/base.py: transient_reason), e.g. deadlock, serialization_failure,
# statement_timeout, lock_timeout, db_pool_exhausted, db_unavailable, redis_unavailable.
TRANSIENT_ERRORS = Counter(
    "worker_transient_errors_total", "Transient errors that made a task retry, by task name and reason",
    ["task", "reason"],
)
DEAD_LETTERS = Counter("worker_dead_letters_total", "Dead letters recorded (a task gave up), by task name", ["task"])

# The database connection pool of each process (core/db.py), summed over the processes.
DB_POOL_CHECKED_OUT = Gauge(
    "db_pool_checked_out_connections", "Database connections in use (checked out of the pool)",
    multiprocess_mode="livesum",  # processes that ended are left out (tasks/metrics_exporter.py)
)
DB_POOL_CHECKOUT_SECONDS = Histogram(
    "db_pool_checkout_seconds",
    "Time to get a usable connection from the pool: waiting, opening one, its liveness ping",
    buckets=(0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0),
)
DB_POOL_WAITS = Counter(
    "db_pool_waits_total", "Checkouts that found every connection of the pool in use and had to wait",
)
DB_POOL_TIMEOUTS = Counter(
    "db_pool_timeouts_total", "Checkouts that gave up after DB_POOL_TIMEOUT_SECONDS (pool exhausted)",
)

# How long an update waited for its chat's advisory lock (chat/engine.py): another update of the
# same chat was being handled. Long waits mean a slow handler or a flood from one chat.
CHAT_LOCK_WAIT_SECONDS = Histogram(
    "chat_lock_wait_seconds", "Time an update waited for its chat's lock",
    buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)

# Beat records the time of each tick it may send jobs in (it holds the lock) under this Redis key;
# the workers' exporter reports its age (beat_last_tick_age_seconds).
BEAT_LAST_TICK_KEY = "surplus:beat:last_tick"


class _Setter(Protocol):
    def set(self, name: str, value: str) -> object: ...


def record_beat_tick(redis_client: _Setter) -> None:
    redis_client.set(BEAT_LAST_TICK_KEY, repr(time.time()))
