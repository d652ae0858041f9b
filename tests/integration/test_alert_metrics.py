"""What the alerts read, as the workers' exporter reports it at scrape time: queue lengths and
beat's last tick from Redis, the oldest unsent outbox message and the dead letters from Postgres;
a source that is down or too slow is reported as `*_up 0` and the scrape still succeeds, quickly."""

from __future__ import annotations

import sys
import time

import httpx
import pytest
import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.pool import NullPool

from core.metrics import BEAT_LAST_TICK_KEY
from localenv.services import RedisServer, free_port
from tasks.metrics_exporter import SystemCollector
from tests.processes import ManagedProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"), free_port()).start()
    yield server.url
    server.stop()


@pytest.fixture
def client(broker):
    client = redis.Redis.from_url(broker)
    client.flushdb()
    yield client
    client.close()


def scrape(collector: SystemCollector) -> dict[tuple[str, tuple], float]:
    registry = CollectorRegistry()
    registry.register(collector)
    text = generate_latest(registry).decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def scrape_once(broker: str, db) -> dict[tuple[str, tuple], float]:
    collector = SystemCollector(broker, str(db.engine().url.render_as_string(hide_password=False)))
    try:
        return scrape(collector)
    finally:
        collector.close()


def unreachable_database() -> str:
    return f"postgresql+psycopg2://postgres@127.0.0.1:{free_port()}/nothing"


def test_queues_beat_outbox_and_dead_letters_are_reported(db, client, broker):
    client.rpush("updates", *["m"] * 3)
    client.rpush("payments", "m")
    client.rpush("payments\x06\x163", "m")  # a message of priority 3: still waiting in payments
    client.hset("unacked", mapping={"tag-1": "m", "tag-2": "m"})
    client.set(BEAT_LAST_TICK_KEY, repr(time.time() - 42))
    with db.engine().begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO notifications (idempotency_key, chat_id, kind, payload, status, created_at) VALUES"
            " ('a', 1, 'reply', '{}', 'pending', now() - interval '10 minutes'),"
            " ('b', 1, 'reply', '{}', 'pending', now() - interval '1 minute'),"
            " ('c', 1, 'reply', '{}', 'sent', now() - interval '1 hour')"))
        connection.execute(sa.text(
            "INSERT INTO dead_letters (task_name, task_id, error) VALUES ('t', 'id-1', 'e'), ('t', 'id-2', 'e')"))
    samples = scrape_once(broker, db)

    lengths = {dict(labels)["queue"]: value for (name, labels), value in samples.items()
               if name == "celery_queue_length"}
    assert lengths == {"updates": 3, "reservations": 0, "payments": 2, "images": 0, "notifications": 0,
                       "maintenance": 0}
    assert samples[("celery_unacked_messages", ())] == 2
    assert 42 <= samples[("beat_last_tick_age_seconds", ())] < 60
    assert samples[("redis_up", ())] == samples[("database_up", ())] == 1
    assert 600 <= samples[("outbox_oldest_pending_age_seconds", ())] < 700
    assert samples[("outbox_pending_messages", ())] == 2
    assert samples[("dead_letters_rows", ())] == 2


def test_nothing_pending_and_a_beat_that_never_ticked(db, client, broker):
    samples = scrape_once(broker, db)
    assert samples[("outbox_oldest_pending_age_seconds", ())] == 0
    assert samples[("beat_last_tick_age_seconds", ())] == float("inf")


def test_postgres_down_leaves_its_figures_out_and_the_scrape_goes_on(client, broker):
    collector = SystemCollector(broker, unreachable_database(), timeout=0.5)
    started = time.monotonic()
    try:
        samples = scrape(collector)
    finally:
        collector.close()
    assert time.monotonic() - started < 5
    assert samples[("database_up", ())] == 0
    assert not {name for name, _ in samples if name.startswith(("outbox_", "dead_letters"))}
    assert samples[("redis_up", ())] == 1
    assert ("celery_queue_length", (("queue", "updates"),)) in samples


def test_a_postgres_that_does_not_answer_in_time_counts_as_down(db, broker):
    url = db.engine().url.render_as_string(hide_password=False)
    other = sa.create_engine(url, poolclass=NullPool)
    collector = SystemCollector(broker, url, timeout=0.5)
    try:
        with other.begin() as connection:
            connection.execute(sa.text("LOCK TABLE dead_letters IN ACCESS EXCLUSIVE MODE"))  # a migration, say
            started = time.monotonic()
            samples = scrape(collector)
            assert time.monotonic() - started < 3
        assert samples[("database_up", ())] == 0
        assert scrape(collector)[("database_up", ())] == 1  # and back once it answers
    finally:
        collector.close()
        other.dispose()


def test_redis_down_leaves_its_figures_out_and_the_scrape_goes_on(db):
    collector = SystemCollector(f"redis://127.0.0.1:{free_port()}/0",
                                db.engine().url.render_as_string(hide_password=False), timeout=0.5)
    try:
        samples = scrape(collector)
    finally:
        collector.close()
    assert samples[("redis_up", ())] == 0
    assert not {name for name, _ in samples if name.startswith(("celery_", "beat_"))}
    assert samples[("database_up", ())] == 1


def test_the_exporter_process_serves_them_next_to_the_workers_metrics(db, client, broker, tmp_path):
    client.rpush("images", "m")
    port = free_port()
    exporter = ManagedProcess("metrics-exporter", [sys.executable, "-m", "tasks.metrics_exporter"],
                              {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "WORKER_METRICS_PORT": str(port),
                               "REDIS_URL": broker})
    try:
        exporter.wait_for_output("metrics_exporter_started")
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10).text
    finally:
        exporter.stop()
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for family in text_string_to_metric_families(text) for s in family.samples}
    assert samples[("celery_queue_length", (("queue", "images"),))] == 1
    assert samples[("database_up", ())] == samples[("redis_up", ())] == 1


def test_the_oldest_task_waiting_per_queue_and_the_oldest_unsent_hand_over(db, client, broker):
    """Tasks published by Celery carry when they were published; the gauge is the age of each queue's
    oldest. A hand-over recorded but never published is counted from its row."""
    import orjson

    from core.celery_app import PUBLISHED_AT_HEADER
    from core.celery_app import app as celery_app

    with celery_app.connection_for_write(broker) as connection:
        for name in ("maintenance.cleanup", "maintenance.cleanup", "payments.expire_checkout"):
            celery_app.send_task(name, args=[], connection=connection)
    # The maintenance queue's oldest message was published 90 s ago (as if nobody consumed it).
    oldest = orjson.loads(client.lindex("maintenance", -1))
    assert isinstance(oldest["headers"][PUBLISHED_AT_HEADER], float)
    oldest["headers"][PUBLISHED_AT_HEADER] -= 90
    client.lset("maintenance", -1, orjson.dumps(oldest))
    with db.engine().begin() as connection:
        connection.execute(sa.text(
            "INSERT INTO handovers (task_id, task_name, created_at, sent_at) VALUES"
            " ('t-1', 'reservations.place_order', now() - interval '3 minutes', NULL),"
            " ('t-2', 'reservations.place_order', now() - interval '1 hour', now())"))
    samples = scrape_once(broker, db)
    waited = {dict(labels)["queue"]: value for (name, labels), value in samples.items()
              if name == "celery_queue_oldest_task_age_seconds"}
    assert 90 <= waited["maintenance"] < 100
    assert 0 <= waited["payments"] < 10
    assert waited["updates"] == 0  # empty
    assert 180 <= samples[("handovers_oldest_unsent_age_seconds", ())] < 200
