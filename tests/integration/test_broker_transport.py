"""The worker's Redis transport (core/broker.py): a Redis restart while a task is in flight neither
kills the worker nor parks the task's message for the whole visibility timeout."""

from __future__ import annotations

import time

import pytest
import redis

from localenv.services import RedisServer, free_port
from tests.processes import ManagedProcess
from tests.support.slow_task_app import app as slow_app

pytestmark = pytest.mark.slow


def _worker(redis_url: str) -> ManagedProcess:
    worker = ManagedProcess(
        "slow-task-worker",
        [".venv/bin/celery", "-A", "tests.support.slow_task_app", "worker", "-Q", "updates", "-c", "2",
         "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        {"REDIS_URL": redis_url},
    )
    worker.wait_for_output("ready.", timeout=60)
    return worker


def _wait_for(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_task_in_flight_during_a_redis_restart_is_put_back_when_redis_returns(tmp_path):
    server = RedisServer(tmp_path / "redis", free_port()).start()
    worker = _worker(server.url)
    marker = tmp_path / "runs"
    try:
        slow_app.conf.broker_url = server.url
        slow_app.send_task("updates.slow_marker", args=[2.0, str(marker)])
        worker.wait_for_output("received", timeout=10)
        server.stop()
        time.sleep(1.5)
        server.start()

        # The run that was in flight finishes; its message (unacknowledged, Redis was gone) is put
        # back as soon as the worker reconnects, runs again, and this time is acknowledged.
        assert _wait_for(lambda: marker.exists() and len(marker.read_text().split()) == 2, 20), worker.output()
        client = redis.Redis.from_url(server.url)
        assert _wait_for(lambda: client.hlen("unacked") == 0 and client.llen("updates") == 0, 10)
        assert "broker_restore_done" in worker.output()

        # The same worker process keeps consuming.
        slow_app.send_task("updates.slow_marker", args=[0.0, str(marker)])
        assert _wait_for(lambda: len(marker.read_text().split()) == 3, 10), worker.output()
        assert worker.process.poll() is None
        assert "Unrecoverable error" not in worker.output()
    finally:
        worker.stop()
        server.stop()


def test_a_message_taken_just_as_redis_stops_is_put_back_when_redis_returns(tmp_path, monkeypatch):
    """Redis hands a message over (BRPOP) and stops before the consumer has recorded it as
    unacknowledged: popped from its queue, in no unacked set, so nothing in Redis would ever give it
    back. The transport keeps it and puts it back on its queue once Redis returns."""
    import kombu

    from core import broker

    broker.install()
    server = RedisServer(tmp_path / "redis", free_port()).start()
    queue = kombu.Queue("updates", routing_key="updates")
    record_unacknowledged = broker.QoS.append
    stopped: list[bool] = []

    def redis_stops_first(qos, message, delivery_tag):
        if not stopped:
            stopped.append(True)
            server.stop()  # the message is in this process only
        return record_unacknowledged(qos, message, delivery_tag)

    monkeypatch.setattr(broker.QoS, "append", redis_stops_first)
    received: list[dict] = []

    def consume_once(url: str, timeout: float) -> None:
        with kombu.Connection(url) as connection, connection.Consumer(
                queue, callbacks=[lambda body, message: (received.append(body), message.ack())], accept=["json"]):
            connection.drain_events(timeout=timeout)

    try:
        with kombu.Connection(server.url) as connection:
            connection.Producer().publish({"update_id": 1}, routing_key="updates", declare=[queue],
                                          serializer="json")
        with pytest.raises(redis.ConnectionError):
            consume_once(server.url, 10)
        assert stopped and received == []
        server.start()
        consume_once(server.url, 10)  # a new channel, as a worker's consumer makes when it reconnects
        assert received == [{"update_id": 1}]
        client = redis.Redis.from_url(server.url)
        assert client.llen("updates") == 0 and client.hlen("unacked") == 0
    finally:
        server.stop()


def test_a_worker_of_several_queues_takes_a_reservation_before_waiting_updates(tmp_path):
    """Round robin would give the reservation its turn after the next update; a customer's started
    work (the follow-up queues) goes first, and the other queues still take turns."""
    from kombu import Connection, Consumer, Queue

    from core.broker import FollowUpsFirstCycle
    from tasks.app import app

    server = RedisServer(tmp_path / "redis", free_port()).start()
    try:
        names = ["updates", "notifications", "reservations", "payments"]
        with Connection(server.url, transport_options=app.conf.broker_transport_options) as connection:
            channel = connection.default_channel
            assert isinstance(channel._queue_cycle, FollowUpsFirstCycle)
            producer = connection.Producer(channel)
            for body, queue in [("update 1", "updates"), ("update 2", "updates"), ("alert", "notifications"),
                                ("update 3", "updates"), ("reserve", "reservations"), ("checkout", "payments")]:
                producer.publish(body, routing_key=queue, declare=[Queue(queue, routing_key=queue)])
            taken: list[str] = []

            def take(body, message) -> None:
                taken.append(body)
                message.ack()

            with Consumer(channel, [Queue(name, routing_key=name) for name in names], callbacks=[take]):
                while len(taken) < 6:
                    connection.drain_events(timeout=5)
        assert taken[:2] == ["reserve", "checkout"]
        # Then round robin: an update, the alert, then the updates left.
        assert taken[2:] == ["update 1", "alert", "update 2", "update 3"]
    finally:
        server.stop()
