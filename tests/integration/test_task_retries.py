"""A task whose transaction hits a real deadlock, a real serialization failure or an exhausted
connection pool is retried by BaseTask (autoretry with backoff), says why in its log, and ends
correct: each first attempt is made to collide with this test's own transaction (two real
connections), and the retry runs straight through. Without the retry the task would fail for good,
leave a dead letter, and the rows would miss its work.

The worker is a real one (`celery worker`, threads pool, two threads) on its own Redis, with a
one-connection pool per process so that two tasks compete for it."""

from __future__ import annotations

import json
import secrets

import pytest
import redis
import sqlalchemy as sa
from kombu import Connection
from sqlalchemy.pool import NullPool

from localenv.services import RedisServer, free_port
from tests.processes import ManagedProcess
from tests.support.db_fault_app import app as fault_app
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

POOL_TIMEOUT = 0.5


@pytest.fixture(scope="module")
def stack(migrated, tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port()).start()
    worker = ManagedProcess(
        "db-fault-worker",
        [".venv/bin/celery", "-A", "tests.support.db_fault_app", "worker", "-Q", "maintenance", "-P", "threads",
         "-c", "2", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        {"REDIS_URL": server.url, "DB_POOL_SIZE": "1", "DB_MAX_OVERFLOW": "0",
         "DB_POOL_TIMEOUT_SECONDS": str(POOL_TIMEOUT)},
    )
    try:
        worker.wait_for_output("ready.", timeout=60)
        yield worker, server.url
    finally:
        worker.stop()
        server.stop()


@pytest.fixture
def probe(stack, db):
    """guard_probe with rows 1..3 at zero, and a connection of this test's own."""
    test_engine = sa.create_engine(db.engine().url, poolclass=NullPool)
    with test_engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE IF EXISTS guard_probe"))
        connection.execute(sa.text("CREATE TABLE guard_probe (id int PRIMARY KEY, n int NOT NULL)"))
        connection.execute(sa.text("INSERT INTO guard_probe VALUES (1, 0), (2, 0), (3, 0)"))
    yield test_engine
    with test_engine.begin() as connection:
        connection.execute(sa.text("DROP TABLE guard_probe"))
    test_engine.dispose()


def send(redis_url: str, name: str, *args) -> None:
    with Connection(redis_url) as broker:
        fault_app.send_task(name, args=list(args), connection=broker)


def rows(test_engine) -> dict[int, int]:
    with test_engine.connect() as connection:
        return dict(connection.execute(sa.text("SELECT id, n FROM guard_probe")).all())


def events(worker: ManagedProcess, name: str) -> list[dict]:
    found = []
    for line in worker.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("event") == name:
                found.append(record)
    return found


def dead_letters(test_engine) -> list:
    with test_engine.connect() as connection:
        return connection.execute(sa.text("SELECT task_name, error FROM dead_letters")).all()


def test_a_task_that_loses_a_deadlock_is_retried_and_ends_correct(stack, probe):
    worker, redis_url = stack
    client = redis.Redis.from_url(redis_url)
    key = f"deadlock-{secrets.token_hex(4)}"
    with probe.connect() as mine:
        mine.execute(sa.text("UPDATE guard_probe SET n = n + 100 WHERE id = 2"))  # row 2 is ours
        send(redis_url, "maintenance.probe_deadlock", key)
        assert client.blpop([f"{key}:ready"], 30), worker.output()  # row 1 is the task's
        client.rpush(f"{key}:go", 1)

        def task_waits_for_row_2() -> bool:
            with probe.connect() as watcher:
                return bool(watcher.scalar(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                    " AND query LIKE 'UPDATE guard_probe SET n = n + 10 %'")))

        wait_until(task_waits_for_row_2, 10, "the task waiting for row 2", worker)
        # Now each waits for the other. The task has waited longer, so its deadlock check (after
        # deadlock_timeout, 1 s) runs first and aborts its own transaction; ours then goes on.
        mine.execute(sa.text("UPDATE guard_probe SET n = n + 1000 WHERE id = 1"))
        mine.commit()

    wait_until(lambda: rows(probe) == {1: 1001, 2: 110, 3: 0}, 30, "the retried task's commit", worker)
    retries = events(worker, "task_retrying")
    assert [(r["task"], r["reason"]) for r in retries] == [("maintenance.probe_deadlock", "deadlock")], retries
    assert "deadlock detected" in retries[0]["error"]
    assert dead_letters(probe) == []


def test_a_task_that_hits_a_serialization_failure_is_retried_and_loses_no_update(stack, probe):
    worker, redis_url = stack
    client = redis.Redis.from_url(redis_url)
    key = f"serialization-{secrets.token_hex(4)}"
    send(redis_url, "maintenance.probe_read_modify_write", key)
    assert client.blpop([f"{key}:ready"], 30), worker.output()  # the task has read n = 0
    with probe.begin() as mine:
        mine.execute(sa.text("UPDATE guard_probe SET n = n + 100 WHERE id = 1"))
    client.rpush(f"{key}:go", 1)  # the task now writes 0 + 1 over our 100: refused, then retried

    wait_until(lambda: rows(probe)[1] == 101, 30, "the retried task's commit", worker)
    retries = [r for r in events(worker, "task_retrying") if r["task"] == "maintenance.probe_read_modify_write"]
    assert [r["reason"] for r in retries] == ["serialization_failure"], retries
    assert "could not serialize access" in retries[0]["error"]
    assert dead_letters(probe) == []


def test_a_task_that_finds_the_pool_exhausted_fails_fast_and_is_retried(stack, probe):
    worker, redis_url = stack
    client = redis.Redis.from_url(redis_url)
    key = f"pool-{secrets.token_hex(4)}"
    # The worker process's only pooled connection is busy for 2 s in one thread...
    send(redis_url, "maintenance.probe_hold_connection", key, 2.0)
    assert client.blpop([f"{key}:holding"], 30), worker.output()
    # ...when a task in the other thread needs one.
    send(redis_url, "maintenance.probe_increment", 3)

    wait_until(lambda: rows(probe)[3] == 1, 60, "the retried task's commit", worker)
    exhausted = events(worker, "db_pool_exhausted")
    assert exhausted, worker.output()[-6000:]
    assert all(e["waited"] < POOL_TIMEOUT + 1.0 for e in exhausted), exhausted  # a fast failure, no hang
    retries = [r for r in events(worker, "task_retrying") if r["task"] == "maintenance.probe_increment"]
    assert retries and {r["reason"] for r in retries} == {"db_pool_exhausted"}, retries
    assert "QueuePool limit" in retries[0]["error"]
    assert dead_letters(probe) == []
