"""The Celery application object: configuration from celeryconfig.py, the task modules by name.

It lives in `core` so that every layer enqueues through the same app by task name (the gateway's
envelope, `core.handover`) without importing the task modules themselves. `tasks.app` adds the
worker-side signal handlers.
"""

from __future__ import annotations

from celery import Celery

from beat_schedule import SCHEDULE

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
