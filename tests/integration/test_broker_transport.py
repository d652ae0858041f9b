"""The worker's Redis transport (core/broker.py): a Redis restart while a task is in flight neither
kills the worker nor parks the task's message for the whole visibility timeout."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import time

import pytest
import redis
from celery import Celery

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


@pytest.fixture
def copying(tmp_path):
    """A kombu channel through the project's transport and options, on a Redis of its own, and a
    plain client to look at (and tamper with) what is in that Redis."""
    from kombu import Connection

    from core import broker
    from tasks.app import app

    broker.install()
    server = RedisServer(tmp_path / "redis", free_port()).start()
    try:
        with Connection(server.url, transport_options=app.conf.broker_transport_options) as connection:
            yield connection.default_channel, redis.Redis.from_url(server.url)
    finally:
        server.stop()


def _publish(channel, body: str, queue: str) -> None:
    from kombu import Producer, Queue

    Producer(channel).publish(body, routing_key=queue, declare=[Queue(queue, routing_key=queue)], serializer="json")


def _sweep_later(channel, client, rounds: int = 1) -> None:
    """The copies' sweep as it runs `rounds` grace periods from now."""
    channel.put_back_lost_in_handover(client, time.time() + rounds * (channel.lost_message_grace + 1))


def test_a_task_message_lost_between_its_queue_and_its_consumer_is_pushed_back_once(copying):
    """kombu takes a message off its queue (BRPOP) and records it as unacknowledged in a second
    command. A message taken and never recorded (the BRPOP's reply lost as Redis stopped, or the
    consumer killed in between) is in no queue and no unacked set. Its copy in `undelivered` brings
    it back, once; a message still waiting in its queue or recorded by its consumer is left alone."""
    channel, client = copying
    for body in ("lost", "recorded", "waiting"):
        _publish(channel, body, "reservations")
    assert client.hlen("undelivered") == 3

    # A consumer that never records what it took: the oldest message, as BRPOP takes it.
    taken_off = json.loads(client.rpop("reservations"))
    assert base64.b64decode(taken_off["body"]) == b'"lost"'
    recorded = channel.basic_get("reservations", no_ack=False)  # taken and recorded, not acked
    assert recorded.payload == "recorded"
    assert not client.hexists("undelivered", recorded.delivery_tag)
    assert client.hexists("unacked", recorded.delivery_tag)

    # Within the grace period nothing is touched: a live consumer records within milliseconds.
    channel.put_back_lost_in_handover(client, time.time())
    assert client.llen("reservations") == 1

    _sweep_later(channel, client)
    assert client.llen("reservations") == 2  # "lost" is back; "waiting" is not doubled
    _sweep_later(channel, client, rounds=2)
    assert client.llen("reservations") == 2  # back in its queue now: not pushed again

    taken = []
    while (message := channel.basic_get("reservations", no_ack=False)) is not None:
        taken.append(message.payload)
        message.ack()
    recorded.ack()
    assert taken == ["lost", "waiting"]  # the lost one first: where BRPOP takes next
    assert client.hlen("undelivered") == 0 and client.zcard("undelivered_index") == 0
    assert client.hlen("unacked") == 0


def test_a_message_given_back_after_its_worker_died_is_copied_again(copying):
    """A dead worker's message, given back to its queue by the sweep of unacknowledged messages, can
    be lost in the hand-over to the next worker like a new one; it has a copy again until then."""
    channel, client = copying
    _publish(channel, "again", "payments")
    held = channel.basic_get("payments", no_ack=False)  # recorded: no copy any more
    assert client.hlen("undelivered") == 0
    channel.qos.restore_by_tag(held.delivery_tag)  # its worker died: the sweep gives it back
    assert client.llen("payments") == 1 and client.hexists("undelivered", held.delivery_tag)

    client.rpop("payments")  # and the next worker's hand-over loses it
    _sweep_later(channel, client)
    again = channel.basic_get("payments", no_ack=False)
    assert again is not None and again.payload == "again"
    assert again.headers.get("redelivered") is True  # as kombu gave it back
    again.ack()
    assert client.hlen("undelivered") == 0 and client.hlen("unacked") == 0


def test_a_queue_longer_than_the_search_limit_is_searched_once_it_is_shorter(copying, monkeypatch):
    """The sweep searches a queue for each old copy's message; a backlog longer than the limit is
    not searched (Redis would spend milliseconds per copy), and its lost message comes back once the
    backlog is short enough."""
    from core import broker

    monkeypatch.setattr(broker, "_SEARCH_DEPTH", 1)
    channel, client = copying
    for body in ("lost", "first", "second"):
        _publish(channel, body, "notifications")
    client.rpop("notifications")  # "lost", never recorded
    _sweep_later(channel, client)
    assert client.llen("notifications") == 2  # longer than the limit: not searched, nothing pushed
    channel.basic_get("notifications", no_ack=False).ack()
    _sweep_later(channel, client, rounds=2)
    taken = []
    while (message := channel.basic_get("notifications", no_ack=False)) is not None:
        taken.append(message.payload)
        message.ack()
    assert taken == ["lost", "second"]


def test_kombus_sweep_still_gives_back_a_dead_workers_message_when_the_copies_sweep_fails(copying, monkeypatch):
    """On a Redis too old for the copies' script (before 6.2), the failure is logged and the sweep
    of unacknowledged messages, in the same lock, still runs."""
    from core import broker

    monkeypatch.setattr(broker, "_LOST_IN_HANDOVER", "return redis.call('LPOS_UNKNOWN_HERE')")
    channel, client = copying
    _publish(channel, "held", "reservations")
    held = channel.basic_get("reservations", no_ack=False)  # its worker then died
    client.zadd("unacked_index", {held.delivery_tag: time.time() - 3600})
    channel.qos.restore_visible(interval=1)
    assert client.llen("reservations") == 1 and client.hlen("unacked") == 0


def test_purging_a_task_queue_forgets_the_copies_of_its_messages(copying):
    """An operator's purge empties the queue for good: the sweep must not find the purged messages
    missing from their queue and push them back."""
    channel, client = copying
    for body, name in [("a", "maintenance"), ("b", "maintenance"), ("c", "images")]:
        _publish(channel, body, name)
    assert channel.queue_purge("maintenance") == 2
    _sweep_later(channel, client)
    assert client.llen("maintenance") == 0
    assert client.hlen("undelivered") == 1 and client.llen("images") == 1  # other queues keep theirs


def test_a_reply_queue_of_remote_control_keeps_no_copies(copying):
    """Remote control's replies are consumed without acknowledgement, so nothing would ever remove
    a copy: only the task queues are copied."""
    channel, client = copying
    _publish(channel, "pong", "abc.reply.celery.pidbox")
    assert client.llen("abc.reply.celery.pidbox") == 1 and client.hlen("undelivered") == 0


def _gateway_publishes(url: str, updates: list[dict] | None = None, event: dict | None = None) -> list[bool]:
    """The gateway's publishers, as its requests use them: these updates together (one flush), or
    this Stripe event; whether each was new."""
    import asyncio

    import orjson

    from bot.publisher import UpdatePublisher
    from bot.stripe_webhook import EventPublisher
    from core.celery_app import app

    async def run() -> list[bool]:
        if event is not None:
            events = EventPublisher(url, app, 3600)
            try:
                return [await events.publish(event)]
            finally:
                await events.close()
        publisher = UpdatePublisher(url, app, 3600)
        try:
            published = await asyncio.gather(*(publisher.publish(u["update_id"], orjson.dumps(u))
                                               for u in updates or []))
        finally:
            await publisher.close()
        return [each.new for each in published]

    return asyncio.run(run())


def _url(client: redis.Redis) -> str:
    where = client.connection_pool.connection_kwargs
    return f"redis://{where['host']}:{where['port']}/0"


def _tap(update_id: int) -> dict:
    user = {"id": 42, "is_bot": False, "first_name": "Ann"}
    return {"update_id": update_id, "callback_query": {"id": f"cq{update_id}", "from": user, "chat_instance": "1",
                                                      "data": "menu"}}


def test_the_gateways_update_messages_are_copied_until_a_worker_records_them(copying):
    """The gateway pushes updates with a script of its own, not through kombu: it copies them too. A
    batch lost between the queue and a worker comes back from its copy within the grace period (not
    only from the inbox, a minute or more later); one a worker recorded leaves no copy. A repeated
    update pushes nothing and copies nothing; the new ones beside it go one by one, each copied."""
    channel, client = copying
    url = _url(client)
    assert _gateway_publishes(url, [_tap(1), _tap(2)]) == [True, True]
    assert client.llen("updates") == 1 and client.hlen("undelivered") == 1
    client.rpop("updates")  # taken by a BRPOP whose reply never arrived
    _sweep_later(channel, client)
    batch = channel.basic_get("updates", no_ack=False)
    assert batch.headers["task"] == "updates.handle_updates"
    assert [update["update_id"] for update in batch.payload[0][0]] == [1, 2]
    assert client.hlen("undelivered") == 0  # recorded as unacknowledged: the copy is gone
    batch.ack()

    assert _gateway_publishes(url, [_tap(3), _tap(1), _tap(4)]) == [True, False, True]
    assert client.llen("updates") == 2 and client.hlen("undelivered") == 2
    taken = []
    while (message := channel.basic_get("updates", no_ack=False)) is not None:
        taken.append(message.payload[0][0]["update_id"])
        message.ack()
    assert taken == [3, 4]
    assert client.hlen("undelivered") == 0 and client.zcard("undelivered_index") == 0
    _sweep_later(channel, client, rounds=2)
    assert client.llen("updates") == 0  # nothing was lost: nothing comes back


def test_a_stripe_event_lost_between_its_queue_and_a_worker_comes_back_from_its_copy(copying):
    """Stripe has its 200 once the event is queued and never sends it again: an event Redis hands to
    a BRPOP and loses would be gone (the payment found only when its hold lapses). Its copy brings
    it back; a repeated event id pushes and copies nothing."""
    channel, client = copying
    url = _url(client)
    event = {"id": "evt_copy_1", "type": "checkout.session.completed", "data": {"object": {"id": "cs_1"}}}
    assert _gateway_publishes(url, event=event) == [True]
    assert _gateway_publishes(url, event=event) == [False]
    assert client.llen("payments") == 1 and client.hlen("undelivered") == 1
    client.rpop("payments")
    channel.put_back_lost_in_handover(client, time.time())
    assert client.llen("payments") == 0  # within the grace period: a live worker records in milliseconds
    _sweep_later(channel, client)
    back = channel.basic_get("payments", no_ack=False)
    assert back.headers["task"] == "payments.handle_event" and back.payload[0] == [event]
    back.ack()
    assert client.hlen("undelivered") == 0 and client.hlen("unacked") == 0


def test_a_task_message_whose_worker_died_between_brpop_and_its_record_runs_on_the_next_worker(tmp_path):
    """The real thing, end to end: a worker's main process stopped with its BRPOP waiting, a task
    published (Redis hands it to that BRPOP, off the queue), the worker SIGKILLed before it could
    record it. Nothing in Redis's queues or unacked set has it; its copy does, and the next worker's
    sweep pushes it back and runs it, once (the copy backdated past the grace period, as if the kill
    had been that long ago)."""
    server = RedisServer(tmp_path / "redis", free_port()).start()
    marker = tmp_path / "runs"
    client = redis.Redis.from_url(server.url)
    producer_app = Celery("producer", set_as_current=False)  # slow_app's pool knows earlier servers
    producer_app.config_from_object("celeryconfig")
    producer_app.conf.broker_url = server.url
    dying, worker = _worker(server.url), None
    try:
        for _attempt in range(10):
            assert _wait_for(lambda: any(c.get("cmd") == "brpop" and "b" in c.get("flags", "")
                                         for c in client.client_list()), 10), dying.output()
            os.kill(dying.process.pid, signal.SIGSTOP)  # the main process: its BRPOP stays registered
            producer_app.send_task("updates.slow_marker", args=[0.0, str(marker)])
            if _wait_for(lambda: client.llen("updates") == 0, 1):
                break  # handed to the stopped BRPOP
            # Its BRPOP timed out between the look and the stop: let it run and take this one.
            os.kill(dying.process.pid, signal.SIGCONT)
            assert _wait_for(marker.exists, 10), dying.output()
            marker.unlink()
        else:
            pytest.fail("the stopped worker's BRPOP never took the message")
        dying.kill()  # the group: main process and pool
        dying.process.wait(10)
        assert client.llen("updates") == 0 and client.hlen("unacked") == 0  # gone from kombu's view
        (tag,) = client.zrange("undelivered_index", 0, -1)
        client.zadd("undelivered_index", {tag: time.time() - 3600})

        worker = _worker(server.url)
        assert _wait_for(marker.exists, 20), worker.output()
        assert "broker_put_back_lost_in_handover" in worker.output()
        assert _wait_for(lambda: client.hlen("undelivered") == 0 and client.hlen("unacked") == 0, 10)
        time.sleep(1)
        assert len(marker.read_text().split()) == 1  # once
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(dying.process.pid, signal.SIGCONT)
        dying.stop()
        if worker is not None:
            worker.stop()
        server.stop()
