"""A Celery app with Celery's defaults, for comparison: only the broker (and, so that a round trip
can be timed, a result backend) on the benchmark's Redis. ``celery -A bench.plain_app worker``."""

from __future__ import annotations

import os
import time

from celery import Celery

app = Celery("plain", broker=os.environ["REDIS_URL"], backend=os.environ["REDIS_URL"])


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.mark")
def mark() -> float:
    return time.time()
