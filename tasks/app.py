"""The Celery application as workers run it: the app from core.celery_app, plus logging, correlation
ids and metrics for every task."""

from __future__ import annotations

import time

import structlog
from celery.signals import (
    before_task_publish,
    setup_logging,
    task_failure,
    task_postrun,
    task_prerun,
    task_retry,
    worker_process_init,
)

import chat.messages  # noqa: F401 - registers how each domain notice reads, before any task runs
from core import db, metrics, time_limits
from core.celery_app import app
from core.logging import configure_logging, init_error_reporting
from core.settings import get_settings

__all__ = ["app"]


@setup_logging.connect
def _configure_logging(**_kwargs) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_error_reporting(settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None)


@before_task_publish.connect
def _pass_on_correlation_id(headers: dict | None = None, **_kwargs) -> None:
    """A task sent while another runs carries that one's correlation id (from the update or Stripe
    event that started it all), so one id follows a request through every task it causes."""
    cid = structlog.contextvars.get_contextvars().get("cid")
    if cid and headers is not None and not headers.get("cid"):
        headers["cid"] = cid


@worker_process_init.connect
def _fresh_process(**_kwargs) -> None:
    # Each prefork child opens its own database pool and Bot API client on first use.
    db.reset_engine()


# --------------------------------------------------------------------------- metrics
# Timing and outcomes for every task in one place, so no task has to remember to report them.
_started: dict[str, float] = {}


@task_prerun.connect
def _task_started(task_id: str | None = None, **_kwargs) -> None:
    if task_id:
        _started[task_id] = time.perf_counter()
    settings = get_settings()
    time_limits.arm(settings.task_soft_time_limit_seconds, settings.task_time_limit_seconds)


@task_postrun.connect
def _task_finished(task_id: str | None = None, task=None, retval=None, state: str | None = None,
                   **_kwargs) -> None:
    time_limits.disarm()
    started = _started.pop(task_id, None) if task_id else None
    name = getattr(task, "name", "unknown")
    if started is not None:
        metrics.TASK_SECONDS.labels(name, state or "UNKNOWN").observe(time.perf_counter() - started)
    if state == "SUCCESS" and isinstance(retval, str) and len(retval) <= 40:
        metrics.TASK_OUTCOMES.labels(name, retval).inc()


@task_retry.connect
def _task_retried(sender=None, **_kwargs) -> None:
    metrics.TASK_RETRIES.labels(getattr(sender, "name", "unknown")).inc()


@task_failure.connect
def _task_failed(sender=None, **_kwargs) -> None:
    metrics.TASK_FAILURES.labels(getattr(sender, "name", "unknown")).inc()
