"""A Celery app with the project's configuration (and so its Redis transport) and one task on the
maintenance queue that leaves a line per run, for the redelivery tests."""

from __future__ import annotations

import os
import time
from pathlib import Path

from celery import Celery

app = Celery("redelivery-app")
app.config_from_object("celeryconfig")


@app.task(name="maintenance.mark_run")
def mark_run(marker: str, label: str) -> None:
    """Appends `<label> <unix time> <pid>` to `marker`: each run leaves one line."""
    with Path(marker).open("a") as file:
        file.write(f"{label} {time.time():.3f} {os.getpid()}\n")
