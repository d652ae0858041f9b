"""A Celery app with the project's configuration and one slow task, for broker fault tests: the
project's own tasks finish too quickly to be caught in flight reliably."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

app = Celery("slow-task-app")
app.config_from_object("celeryconfig")


@app.task(name="updates.slow_marker")
def slow_marker(seconds: float, marker: str) -> None:
    """Sleeps, then appends one line to `marker`: each completed run leaves a line."""
    time.sleep(seconds)
    with Path(marker).open("a") as file:
        file.write(f"{os.getpid()}\n")
