"""Redis away for longer than the task time limits, while a task is running: the worker carries on.

With Celery's own limits (timers in the worker's main process) an outage longer than the soft limit
wedged workers for good: the main process, stuck reconnecting, never read the results of tasks that
finished meanwhile, and when Redis came back the overdue timers signalled pool processes whose
tasks were long done (bench/chaos.py, Redis stopped 60 s; core/time_limits.py). Here the limits
are a few seconds, so an outage of a few seconds outlasts them."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa

from tests.e2e.conftest import new_user_id
from tests.support.redis_fault_stack import help_replies, redis_fault_stack
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

SOFT_LIMIT_S = 2
HARD_LIMIT_S = 4
OUTAGE_S = HARD_LIMIT_S + 3


@pytest.fixture(scope="module")
def short_limits_stack(database_url, tmp_path_factory):
    limits = {"TASK_SOFT_TIME_LIMIT_SECONDS": str(SOFT_LIMIT_S), "TASK_TIME_LIMIT_SECONDS": str(HARD_LIMIT_S)}
    with redis_fault_stack(database_url, tmp_path_factory.mktemp("limits-redis"), "time_limits", limits) as stack:
        engine = sa.create_engine(stack.database_url)
        yield stack.client, stack.redis, stack.worker, engine
        engine.dispose()


def _waiting_for_advisory_lock(engine: sa.Engine) -> bool:
    with engine.connect() as connection:
        return bool(connection.execute(sa.text(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted")).scalar())


def test_a_task_that_ends_during_an_outage_longer_than_its_limits_wedges_nothing(short_limits_stack):
    client, redis, worker, engine = short_limits_stack
    held, later = new_user_id(), new_user_id()
    worker_pid = worker.process.pid

    # The held customer's update waits for their chat's lock, which the test holds (a private chat's
    # id is its user's), so the task is running when Redis stops and ends while Redis is away.
    with engine.connect() as blocker:
        transaction = blocker.begin()
        blocker.execute(sa.text("SELECT pg_advisory_xact_lock(:chat)"), {"chat": held})
        client.send_text(held, "/help")
        wait_until(lambda: _waiting_for_advisory_lock(engine), timeout=30,
                   what="the update's task never waited for the chat's lock")
        redis.stop()
        transaction.commit()
    try:
        time.sleep(OUTAGE_S)
    finally:
        redis.start()

    # Everything goes on: the held update is answered once, and the worker still takes new work.
    client.send_text(later, "/help")
    wait_until(lambda: help_replies(client, later) and help_replies(client, held), timeout=45,
               what="both customers answered after Redis came back", process=worker)
    time.sleep(1.0)  # a second answer, if any, would arrive by now
    assert len(help_replies(client, held)) == 1
    assert len(help_replies(client, later)) == 1
    assert worker.process.poll() is None and worker.process.pid == worker_pid, "the worker exited"
    assert "Pool process error" not in worker.output()
