"""Countdown tasks and the visibility timeout (core/broker.py, docs/redelivery.md): a task held by its
worker for a countdown longer than any visibility timeout on the Redis runs once, at its time, even
while another worker with a 2 s timeout sweeps the shared `unacked` set; and one whose worker was
SIGKILLed runs once, after it fell due, on the next worker."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import redis

from localenv.services import RedisServer, free_port
from tests.processes import ManagedProcess, start_worker, stop_all
from tests.support.redelivery_app import app as redelivery_app

pytestmark = pytest.mark.slow

APP = "tests.support.redelivery_app"
MAINTENANCE_TIMEOUT = 3  # the maintenance workers' visibility timeout for their queue, in seconds
SWEEP_INTERVAL = 5  # celeryconfig: unacked_restore_interval
# The held task's countdown outlasts the 2.5 s below plus the updates worker's start-up (2-3 s, more on
# a busy machine), so that worker's first sweep, at its start, finds the task held and not yet due:
# a sweep timing it from its delivery would give it back then, and it would run twice.
HELD_COUNTDOWN = 10


def _runs(marker: Path) -> list[tuple[str, float]]:
    if not marker.exists():
        return []
    return [(label, float(at)) for label, at, _pid in (line.split() for line in marker.read_text().splitlines())]


def _wait(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"not reached in {timeout:.0f} s: {what}")


def test_countdown_tasks_run_once_at_their_time_whoever_sweeps_and_whoever_dies(tmp_path):
    server = RedisServer(tmp_path / "redis", free_port()).start()
    broker = redis.Redis.from_url(server.url)
    marker = tmp_path / "runs.txt"
    # The maintenance workers keep the queue's timeout longer (3 s); the updates worker, started last,
    # takes 2 s for every queue (the value an updates worker alone might get from a per-worker setting).
    maintenance_env = {"REDIS_URL": server.url, "BROKER_VISIBILITY_TIMEOUTS": f"maintenance={MAINTENANCE_TIMEOUT}"}
    updates_env = {"REDIS_URL": server.url, "BROKER_VISIBILITY_TIMEOUT": "2"}
    workers: list[ManagedProcess] = []
    try:
        first = start_worker("countdown-m1", queues="maintenance", env=maintenance_env, app=APP)
        workers.append(first)
        with redelivery_app.connection_for_write(server.url) as connection:
            orphan_due = time.time() + 10
            redelivery_app.send_task("maintenance.mark_run", args=[str(marker), "orphan"], countdown=10,
                                     connection=connection)
        _wait(lambda: broker.hlen("unacked") == 1, 10, "the first worker holding the orphan for its countdown")
        first.kill()  # main process and pool children, SIGKILL: nobody gives its message back
        first.process.wait(10)

        second = start_worker("countdown-m2", queues="maintenance", env=maintenance_env, app=APP)
        workers.append(second)
        with redelivery_app.connection_for_write(server.url) as connection:
            held_due = time.time() + HELD_COUNTDOWN
            redelivery_app.send_task("maintenance.mark_run", args=[str(marker), "held"], countdown=HELD_COUNTDOWN,
                                     connection=connection)
        _wait(lambda: broker.hlen("unacked") == 2, 10, "the second worker holding its task")
        time.sleep(2.5)  # both unacknowledged for longer than the updates worker's timeout
        workers.append(start_worker("countdown-u", queues="updates", env=updates_env, app=APP))

        _wait(lambda: {label for label, _at in _runs(marker)} == {"orphan", "held"}, 40, "both tasks run")
        # Long enough for any early or second copy to have run: past both due times plus the maintenance
        # timeout and two sweeps.
        time.sleep(max(0.0, max(orphan_due, held_due) + MAINTENANCE_TIMEOUT + 2 * SWEEP_INTERVAL - time.time()))
        runs = _runs(marker)
        assert sorted(label for label, _at in runs) == ["held", "orphan"], runs
        at = dict(runs)
        assert at["held"] >= held_due - 0.5, "ran before its countdown"
        assert at["orphan"] >= orphan_due, "the dead worker's task ran before it was due"
        assert broker.hlen("unacked") == 0
    finally:
        stop_all(workers)
        broker.close()
        server.stop()
