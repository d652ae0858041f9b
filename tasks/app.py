"""The Celery application: configuration from celeryconfig.py, tasks from the modules below."""

from __future__ import annotations

from celery import Celery
from celery.signals import setup_logging, worker_process_init

from beat_schedule import SCHEDULE
from core.logging import configure_logging
from core.settings import get_settings

TASK_MODULES = [
    "tasks.updates",
    "tasks.reservations",
    "tasks.payments",
    "tasks.images",
    "tasks.notifications",
    "tasks.maintenance",
]
app = Celery("surplus", include=TASK_MODULES)
app.config_from_object("celeryconfig")
app.conf.beat_schedule = SCHEDULE


@setup_logging.connect
def _configure_logging(**_kwargs) -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)


@worker_process_init.connect
def _fresh_process(**_kwargs) -> None:
    # Each prefork child opens its own database pool and Bot API client on first use.
    from core import db

    db.reset_engine()
