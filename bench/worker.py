"""The Celery app the benchmarks' workers run: the project's own app (tasks/app.py, celeryconfig.py,
every task), plus no-op tasks to compare against. Started as ``celery -A bench.worker worker``.

* ``bench.noop``: a bare no-op (``@app.task``), what the flash sale's work is compared with;
* ``bench.noop_base``: the same on the project's ``BaseTask`` (retry policy, correlation id);
* ``bench.noop_base_quiet``: the same without task events (as ``updates.handle_update`` runs);
* ``bench.mark``: a no-op that stores a result (the last of a batch: when it is done, the batch is).

With ``BENCH_TELEGRAM_RATE`` set (messages per second), the workers' shared outbound limiter lets
that many messages a second through instead of the free tier's 30 (Telegram allows up to 1,000
with paid broadcasts): the flash sale measures the workers, not Telegram's ceiling.
"""

from __future__ import annotations

import os
import time

from core import ratelimit

if os.environ.get("BENCH_TELEGRAM_RATE"):
    rate = float(os.environ["BENCH_TELEGRAM_RATE"])
    ratelimit.SAFE_LIMITS = {**ratelimit.SAFE_LIMITS, "global_rate": rate, "global_burst": max(1, int(rate / 10))}

from tasks.app import app  # after the limiter is set up
from tasks.base import BaseTask

__all__ = ["app"]


@app.task(name="bench.noop")
def noop() -> None:
    return None


@app.task(name="bench.noop_base", base=BaseTask)
def noop_base() -> None:
    return None


@app.task(name="bench.noop_base_quiet", base=BaseTask, send_events=False)
def noop_base_quiet() -> None:
    return None


@app.task(name="bench.mark", ignore_result=False)
def mark() -> float:
    return time.time()
