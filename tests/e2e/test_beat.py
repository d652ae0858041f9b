"""Two real `celery -A tasks beat` processes at once (a redeploy overlap, a mistake) fire each
job once: redbeat's lock in Redis lets one act while the other waits, and the waiting one takes
over when the first stops. Runs are counted through the audit log, written by the real worker."""

from __future__ import annotations

import itertools
import json
import secrets
import sys
import time
from datetime import timedelta

import sqlalchemy as sa

from core import db
from models import AuditEntry
from tests.processes import ManagedProcess

EVERY = 1.0  # seconds between runs of the test job


def start_beat(name: str, schedule: dict) -> ManagedProcess:
    return ManagedProcess(
        name,
        # --max-interval: how often a waiting beat retries the lock (and the longest tick).
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "--max-interval", "1"],
        {"BEAT_SCHEDULE_JSON": json.dumps(schedule)},
    )


def runs(actor: str) -> list:
    with db.session_scope() as session:
        return list(session.scalars(
            sa.select(AuditEntry.created_at).where(AuditEntry.actor == actor).order_by(AuditEntry.created_at)))


def wait_for_runs(actor: str, count: int, timeout: float = 30.0) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = runs(actor)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"only {len(runs(actor))} runs of the test job, expected {count}")


def test_two_beats_fire_each_job_once_and_the_second_takes_over(stack):
    actor = f"beat-test-{secrets.token_hex(4)}"
    schedule = {f"{actor}-cleanup": {"task": "maintenance.cleanup", "every": EVERY, "kwargs": {"actor": actor}}}
    first = start_beat("beat-a", schedule)
    second = None
    try:
        wait_for_runs(actor, 1)
        second = start_beat("beat-b", schedule)
        second.wait_for_output("is starting", timeout=30)
        time.sleep(1.0)  # let it reach the lock: a start-up step, with no event to wait for
        start, counted_from = time.monotonic(), len(runs(actor))
        wait_for_runs(actor, counted_from + 6)
        both_running = time.monotonic() - start
        fired = len(runs(actor)) - counted_from
        assert first.process.poll() is None and second.process.poll() is None
        # The second beat waits for the lock: it schedules nothing while the first holds it.
        assert "Sending due task" not in second.output()

        first.stop()  # a clean stop releases the lock
        handed_over = len(runs(actor))
        wait_for_runs(actor, handed_over + 3)
        assert "Sending due task" in second.output()
    finally:
        first.stop()
        if second is not None:
            second.stop()

    # With both beats firing it would be about two runs per period.
    assert fired <= both_running / EVERY + 2, (fired, both_running)
    times = runs(actor)
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    assert sum(gap < timedelta(seconds=EVERY * 0.3) for gap in gaps) <= 1, gaps
