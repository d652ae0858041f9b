"""Prometheus metrics of the workers, safe across Celery's prefork processes.

Every worker process writes its samples to files in PROMETHEUS_MULTIPROC_DIR (prometheus-client's
multiprocess mode, enabled by that variable being set before this module is imported), and
`python -m tasks.metrics_exporter` serves the sum of all of them on one `/metrics`. Without the
variable the metrics stay in memory, which is what unit tests and one-off scripts want.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

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
