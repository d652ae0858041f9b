"""BaseTask counts what the alerts and dashboards read: each retry by its reason, each dead
letter recorded (once per task id, as the row)."""

from __future__ import annotations

import psycopg2.errors
import sqlalchemy as sa
from celery import Celery
from prometheus_client import REGISTRY

from tasks.base import BaseTask

app = Celery("task-failure-metrics")


@app.task(name="maintenance.metrics_probe", base=BaseTask, bind=True)
def probe(self) -> None:
    return None


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_a_recorded_dead_letter_is_counted_once(db):
    before = sample("worker_dead_letters_total", task="maintenance.metrics_probe")
    probe.record_dead_letter("task-id-1", RuntimeError("gave up"))
    probe.record_dead_letter("task-id-1", RuntimeError("gave up"))  # the same task again: no second row
    assert sample("worker_dead_letters_total", task="maintenance.metrics_probe") == before + 1
    with db.engine().connect() as connection:
        assert connection.scalar(sa.text("SELECT count(*) FROM dead_letters")) == 1


def test_a_retry_is_counted_by_its_reason():
    deadlock = sa.exc.DBAPIError.instance("UPDATE ...", {}, psycopg2.errors.DeadlockDetected("boom"), psycopg2.Error)
    pool = sa.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")
    before = {reason: sample("worker_transient_errors_total", task="maintenance.metrics_probe", reason=reason)
              for reason in ("db_unavailable", "db_pool_exhausted")}
    probe.on_retry(deadlock, "task-id-2", (), {}, None)  # no pgcode on a hand-made error: a database error
    probe.on_retry(pool, "task-id-2", (), {}, None)
    probe.on_retry(None, "task-id-2", (), {}, None)  # the task asked for it (self.retry): not an error
    after = {reason: sample("worker_transient_errors_total", task="maintenance.metrics_probe", reason=reason)
             for reason in before}
    assert after == {reason: value + 1 for reason, value in before.items()}
