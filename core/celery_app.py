"""The Celery application object: configuration from celeryconfig.py, the task modules by name.

It lives in `core` so that every layer enqueues through the same app by task name (the gateway's
envelope, `core.handover`) without importing the task modules themselves. `tasks.app` adds the
worker-side signal handlers.
"""

from __future__ import annotations

import time
from typing import Any

from celery import Celery, signals

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


# When a task was put on its queue, in its message's headers: the exporter reads it off the oldest
# message of each queue ("the oldest task handed over but not started", tasks/metrics_exporter.py).
PUBLISHED_AT_HEADER = "published_at"


@signals.before_task_publish.connect
def _stamp_publish_time(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers[PUBLISHED_AT_HEADER] = time.time()
