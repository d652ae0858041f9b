"""The gateway against a real Redis: what it acknowledges is on the queue, exactly once."""

from __future__ import annotations

import base64
import itertools
import json
from datetime import timedelta

import orjson
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from bot.gateway import SECRET_HEADER, create_app
from bot.publisher import UPDATES_QUEUE
from core.settings import Settings
from localenv.services import RedisServer, free_port

SECRET = "s3cret-for-tests"
_ids = itertools.count(1000)


UNSENT_WITHIN = timedelta(minutes=10)


def an_update(update_id: int | None = None, text: str = "/start") -> dict:
    update_id = next(_ids) if update_id is None else update_id
    return {
        "update_id": update_id,
        "message": {
            "message_id": 1, "date": 1700000000, "text": text,
            "chat": {"id": 42, "type": "private", "first_name": "Ann"},
            "from": {"id": 42, "is_bot": False, "first_name": "Ann"},
        },
    }


@pytest.fixture
def private_redis(tmp_path_factory) -> RedisServer:
    # A fresh directory each time: an append-only file left by an earlier run would refill the queue.
    server = RedisServer(tmp_path_factory.mktemp("gateway-redis"), free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def client(private_redis: RedisServer):
    settings = Settings(redis_url=private_redis.url, telegram_webhook_secret=SECRET)
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def post(client: TestClient, body: bytes | dict, secret: str | None = SECRET):
    headers = {"content-type": "application/json"}
    if secret is not None:
        headers[SECRET_HEADER] = secret
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return client.post("/telegram/webhook", content=content, headers=headers)


def queued(server: RedisServer) -> list[dict]:
    raw = redis.Redis.from_url(server.url).lrange(UPDATES_QUEUE, 0, -1)
    return [orjson.loads(item) for item in raw]


def queued_update_ids(server: RedisServer) -> list[int]:
    """The update ids on the queue, whether in a message of their own or in one they share."""
    ids = []
    for message in queued(server):
        (argument,), _kwargs, _embed = orjson.loads(base64.b64decode(message["body"]))
        ids += [update["update_id"] for update in (argument if isinstance(argument, list) else [argument])]
    return ids


def test_update_is_queued_as_a_celery_task(client, private_redis):
    update = an_update()
    response = post(client, update)
    assert response.status_code == 200
    (message,) = queued(private_redis)
    assert message["headers"]["task"] == "updates.handle_update"
    assert message["headers"]["cid"] == f"tg:{update['update_id']}"
    assert "Ann" not in message["headers"]["argsrepr"]  # no personal data where Flower shows it
    args, kwargs, _embed = orjson.loads(base64.b64decode(message["body"]))
    assert args == [update] and kwargs == {}


@pytest.mark.parametrize("secret", [None, "", "wrong", SECRET + "x"])
def test_missing_or_wrong_secret_is_refused(client, private_redis, secret):
    assert post(client, an_update(), secret=secret).status_code == 401
    assert queued(private_redis) == []


@pytest.mark.parametrize(
    "body",
    [b"", b"not json", b"[1, 2]", b'"text"', b"{}", b'{"update_id": "7"}', b'{"update_id": true}',
     b'{"update_id": -1}', b'{"update_id": 1.5}', b'{"update_id": 99999999999999999999}', b"\xff\xfe"],
)
def test_malformed_body_gets_400_and_nothing_is_queued(client, private_redis, body):
    assert post(client, body).status_code == 400
    assert queued(private_redis) == []


def test_oversized_body_is_refused(client, private_redis):
    update = an_update(text="x" * (1 << 20))
    assert post(client, update).status_code == 413
    assert queued(private_redis) == []


def test_repeated_update_id_has_one_effect(client, private_redis):
    update = an_update()
    for _ in range(5):
        assert post(client, update).status_code == 200
    assert len(queued(private_redis)) == 1


def test_concurrent_duplicates_are_queued_once(client, private_redis):
    from concurrent.futures import ThreadPoolExecutor

    updates = [an_update() for _ in range(50)]
    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(lambda u: post(client, u).status_code, updates * 4))
    assert set(statuses) == {200}
    ids = queued_update_ids(private_redis)
    assert sorted(ids) == sorted(u["update_id"] for u in updates)  # each once, alone or with others


def test_broker_down_answers_503_and_recovers_without_loss(client, private_redis):
    before = an_update()
    assert post(client, before).status_code == 200
    private_redis.stop()
    during = an_update()
    assert post(client, during).status_code == 503  # Telegram will deliver it again
    private_redis.start()  # append-only file: what was acknowledged survives the restart
    assert post(client, during).status_code == 200
    assert sorted(queued_update_ids(private_redis)) == sorted([before["update_id"], during["update_id"]])


def test_health_and_metrics(client):
    assert client.get("/healthz").json() == {"status": "alive"}
    post(client, an_update())
    metrics = client.get("/metrics").text
    assert 'gateway_updates_total{outcome="enqueued"}' in metrics


def _encode(value) -> bytes:
    return json.dumps(value).encode()  # the standard library also writes integers beyond 64 bits


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)
_BODIES = st.one_of(
    st.binary(max_size=300),
    _JSON.map(_encode),
    st.fixed_dictionaries({"update_id": _JSON}, optional={"message": _JSON, "callback_query": _JSON}).map(_encode),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=_BODIES)
def test_fuzzed_bodies_never_get_a_5xx_and_refused_ones_queue_nothing(client, private_redis, body):
    before = len(queued(private_redis))
    response = post(client, body)
    assert response.status_code in (200, 400, 413), response.text
    if response.status_code != 200:
        assert len(queued(private_redis)) == before


def test_an_update_lost_from_the_queue_after_its_acknowledgement_is_queued_again(client, private_redis, migrated):
    """kombu takes a message with BRPOP, then records it as unacknowledged: a worker's main process
    killed in between leaves no copy in the queue. The gateway's inbox keeps one until the update is
    processed; the sweeper queues it again, and forgets it once processed."""
    import sqlalchemy as sa

    from core import db, inbox

    lost, slow, done = an_update(), an_update(), an_update()
    for update in (lost, slow, done):
        assert post(client, update).status_code == 200
    broker = redis.Redis.from_url(private_redis.url)
    (taken,) = [orjson.loads(broker.rpop(UPDATES_QUEUE))]  # the dying worker's BRPOP: the oldest, `lost`
    assert taken["headers"]["argsrepr"] == f"(update {lost['update_id']})"
    with db.session_scope() as session:
        session.execute(sa.text("INSERT INTO processed_updates (update_id) VALUES (:id)"), {"id": done["update_id"]})
    # Copies are looked at once they settled; make them older than that, as time would.
    for update in (lost, slow, done):
        broker.zincrby(inbox.TIMES_KEY, -10_000, str(update["update_id"]))

    with db.session_scope() as session:
        swept = inbox.sweep(broker, session, UPDATES_QUEUE, requeue_after_s=5, unsent_within=UNSENT_WITHIN)
    assert swept.forgotten == 1  # `done`: processed, its copy gone
    assert sorted(swept.requeued) == sorted([lost["update_id"], slow["update_id"]])
    again = [m for m in queued(private_redis) if m["headers"]["id"] == taken["headers"]["id"]]
    assert len(again) == 1  # the same task, so a redelivery of it...
    assert again[0]["properties"]["delivery_tag"] != taken["properties"]["delivery_tag"]  # ...with a tag of its own
    assert inbox.size(broker) == 2

    # Requeued just now: not again at the next sweep. Processed: forgotten.
    with db.session_scope() as session:
        session.execute(sa.text("INSERT INTO processed_updates (update_id) VALUES (:a), (:b)"),
                        {"a": lost["update_id"], "b": slow["update_id"]})
        for update in (lost, slow):
            broker.zincrby(inbox.TIMES_KEY, -3_000, str(update["update_id"]))
        swept = inbox.sweep(broker, session, UPDATES_QUEUE, requeue_after_s=5, unsent_within=UNSENT_WITHIN)
    assert (swept.forgotten, swept.requeued, inbox.size(broker)) == (2, [], 0)


def test_a_processed_update_whose_reply_is_unsent_is_queued_again_until_it_is_sent(client, private_redis, migrated):
    """A worker killed between an update's commit and its sending leaves the update processed and
    its reply pending (its message waits for kombu's sweep, a visibility timeout away). The inbox
    keeps the copy and queues it again; that delivery finds the update processed and sends the
    reply. A reply older than the window is the outbox sweeper's, not the inbox's."""
    import sqlalchemy as sa

    from core import db, inbox

    unsent, stale_reply, answered = an_update(), an_update(), an_update()
    for update in (unsent, stale_reply, answered):
        assert post(client, update).status_code == 200
    broker = redis.Redis.from_url(private_redis.url)
    broker.delete(UPDATES_QUEUE)  # taken by the worker that is killed
    rows = {unsent["update_id"]: ("pending", "0 seconds"), stale_reply["update_id"]: ("pending", "11 minutes"),
            answered["update_id"]: ("sent", "0 seconds")}
    with db.session_scope() as session:
        for update_id, (status, age) in rows.items():
            session.execute(sa.text("INSERT INTO processed_updates (update_id) VALUES (:id)"), {"id": update_id})
            session.execute(sa.text(
                "INSERT INTO notifications (idempotency_key, chat_id, kind, payload, status, created_at)"
                " VALUES (:key, 42, 'reply', '{}', :status, now() - CAST(:age AS interval))"),
                {"key": f"{inbox.own_rows_key(update_id)}0", "status": status, "age": age})
    for update in (unsent, stale_reply, answered):
        broker.zincrby(inbox.TIMES_KEY, -10_000, str(update["update_id"]))

    with db.session_scope() as session:
        swept = inbox.sweep(broker, session, UPDATES_QUEUE, requeue_after_s=5, unsent_within=UNSENT_WITHIN)
    assert (swept.forgotten, swept.requeued) == (2, [unsent["update_id"]])
    assert [m["headers"]["argsrepr"] for m in queued(private_redis)] == [f"(update {unsent['update_id']})"]

    # The delivery queued again sent it: the next sweep forgets the copy.
    with db.session_scope() as session:
        session.execute(sa.text("UPDATE notifications SET status = 'sent' WHERE idempotency_key = :key"),
                        {"key": f"{inbox.own_rows_key(unsent['update_id'])}0"})
    broker.zincrby(inbox.TIMES_KEY, -10_000, str(unsent["update_id"]))
    with db.session_scope() as session:
        swept = inbox.sweep(broker, session, UPDATES_QUEUE, requeue_after_s=5, unsent_within=UNSENT_WITHIN)
    assert (swept.forgotten, swept.requeued, inbox.size(broker)) == (1, [], 0)


def test_an_update_dropped_on_purpose_is_forgotten(client, private_redis):
    from core import inbox

    update = an_update()
    assert post(client, update).status_code == 200
    broker = redis.Redis.from_url(private_redis.url)
    assert inbox.size(broker) == 1
    inbox.forget(broker, update["update_id"])
    assert inbox.size(broker) == 0 and broker.hlen(inbox.MESSAGES_KEY) == 0


def _publish_together(server: RedisServer, updates: list[dict], *, window_s: float = 0.0,
                      max_batch: int = 50) -> list[bool]:
    """Publish these updates from concurrent requests of one event loop; whether each was new."""
    import asyncio

    from bot.publisher import UpdatePublisher
    from core.celery_app import app

    async def run() -> list[bool]:
        publisher = UpdatePublisher(server.url, app, 3600, window_s=window_s, max_batch=max_batch)
        try:
            results = await asyncio.gather(*(publisher.publish(u["update_id"], orjson.dumps(u)) for u in updates))
        finally:
            await publisher.close()
        return [result.new for result in results]

    return asyncio.run(run())


def test_updates_arriving_together_are_one_task_and_each_keeps_its_own_copy(private_redis):
    from core import inbox

    updates = [an_update() for _ in range(7)]
    assert _publish_together(private_redis, updates) == [True] * 7
    (message,) = queued(private_redis)
    assert message["headers"]["task"] == "updates.handle_updates"
    ids = [u["update_id"] for u in updates]
    assert message["headers"]["argsrepr"] == "(updates " + ", ".join(map(str, ids)) + ")"
    assert "Ann" not in message["headers"]["argsrepr"]
    (argument,), kwargs, _embed = orjson.loads(base64.b64decode(message["body"]))
    assert argument == updates and kwargs == {}  # in the order they came
    # The inbox keeps each update's own message: what is queued again if the batch is lost.
    broker = redis.Redis.from_url(private_redis.url)
    for update in updates:
        own = orjson.loads(broker.hget(inbox.MESSAGES_KEY, update["update_id"]))
        assert own["headers"]["task"] == "updates.handle_update"
        assert orjson.loads(base64.b64decode(own["body"]))[0] == [update]
    assert inbox.size(broker) == 7


def test_a_repeat_among_them_is_dropped_and_the_new_ones_go_one_by_one(private_redis):
    seen = an_update()
    assert _publish_together(private_redis, [seen]) == [True]
    redis.Redis.from_url(private_redis.url).delete(UPDATES_QUEUE)  # taken by a worker
    first, second = an_update(), an_update()
    assert _publish_together(private_redis, [first, seen, second]) == [True, False, True]
    assert [m["headers"]["task"] for m in queued(private_redis)] == ["updates.handle_update"] * 2
    assert sorted(queued_update_ids(private_redis)) == sorted([first["update_id"], second["update_id"]])


def test_no_task_takes_more_than_the_most_a_batch_may_hold(private_redis):
    updates = [an_update() for _ in range(12)]
    assert _publish_together(private_redis, updates, window_s=0.05, max_batch=5) == [True] * 12
    sizes = sorted(len(orjson.loads(base64.b64decode(m["body"]))[0][0]) if m["headers"]["task"].endswith("s")
                   else 1 for m in queued(private_redis))
    assert sum(sizes) == 12 and max(sizes) == 5
    assert sorted(queued_update_ids(private_redis)) == sorted(u["update_id"] for u in updates)


def test_a_busy_gateway_gathers_the_requests_of_its_window(private_redis):
    """After a flush, requests within the window wait for each other: the first alone (nothing was
    waiting), the two that follow it within the window together."""
    import asyncio

    from bot.publisher import UpdatePublisher
    from core.celery_app import app

    first, second, third = an_update(), an_update(), an_update()

    async def run() -> None:
        publisher = UpdatePublisher(private_redis.url, app, 3600, window_s=1.0)
        try:
            alone = asyncio.ensure_future(publisher.publish(first["update_id"], orjson.dumps(first)))
            await asyncio.sleep(0)  # its flush goes out in this tick
            later = [asyncio.ensure_future(publisher.publish(second["update_id"], orjson.dumps(second)))]
            await asyncio.sleep(0.05)  # a later tick, still within the window
            later.append(asyncio.ensure_future(publisher.publish(third["update_id"], orjson.dumps(third))))
            await asyncio.gather(alone, *later)
        finally:
            await publisher.close()

    asyncio.run(run())
    tasks = sorted((m["headers"]["task"], m["headers"]["argsrepr"]) for m in queued(private_redis))
    assert tasks == [("updates.handle_update", f"(update {first['update_id']})"),
                     ("updates.handle_updates", f"(updates {second['update_id']}, {third['update_id']})")]
