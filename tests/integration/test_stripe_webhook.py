"""`POST /stripe/webhook` against a real Redis: only events Stripe signed are queued, once each,
and without the customer's personal data."""

from __future__ import annotations

import base64
import itertools
import time

import orjson
import pytest
import redis
from starlette.testclient import TestClient

from bot.gateway import create_app
from bot.stripe_webhook import PAYMENTS_QUEUE
from core.settings import Settings
from localenv.services import RedisServer, free_port
from sandbox.stripe_fake import signature_header

SECRET = "whsec_gateway_test"
_ids = itertools.count(1)


def an_event(kind: str = "checkout.session.completed", event_id: str | None = None) -> dict:
    return {
        "id": event_id or f"evt_test{next(_ids):06d}",
        "object": "event",
        "type": kind,
        "created": int(time.time()),
        "livemode": False,
        "data": {"object": {
            "id": "cs_test_a1", "object": "checkout.session", "client_reference_id": "17",
            "metadata": {"order_id": "17", "order_key": "17-1"}, "payment_status": "paid",
            "payment_intent": "pi_1", "amount_total": 700, "currency": "eur", "status": "complete",
            "customer_details": {"email": "anna@example.com", "name": "Anna Example"},
        }},
    }


@pytest.fixture
def private_redis(tmp_path) -> RedisServer:
    server = RedisServer(tmp_path / "redis", free_port()).start()  # fresh: no earlier run's AOF
    yield server
    server.stop()


def make_client(redis_server: RedisServer, secret: str | None = SECRET):
    settings = Settings(redis_url=redis_server.url, telegram_webhook_secret="tg-secret", stripe_webhook_secret=secret)
    return TestClient(create_app(settings))


@pytest.fixture
def client(private_redis):
    with make_client(private_redis) as test_client:
        yield test_client


def post(client: TestClient, body: bytes | dict, *, secret: str = SECRET, timestamp: int | None = None,
         signature: str | None = None):
    payload = body if isinstance(body, bytes) else orjson.dumps(body)
    header = signature if signature is not None else signature_header(payload, secret, timestamp or int(time.time()))
    return client.post("/stripe/webhook", content=payload,
                       headers={"content-type": "application/json", "stripe-signature": header})


def queued(server: RedisServer) -> list[dict]:
    return [orjson.loads(item) for item in redis.Redis.from_url(server.url).lrange(PAYMENTS_QUEUE, 0, -1)]


def task_args(message: dict) -> list:
    args, _kwargs, _embed = orjson.loads(base64.b64decode(message["body"]))
    return args


def test_a_signed_event_is_queued_for_the_payments_worker_without_personal_data(client, private_redis):
    event = an_event()
    response = post(client, event)
    assert response.status_code == 200 and response.json() == {"ok": True}
    (message,) = queued(private_redis)
    assert message["headers"]["task"] == "payments.handle_event"
    assert message["headers"]["cid"] == f"stripe:{event['id']}"
    assert message["properties"]["delivery_info"]["routing_key"] == "payments"
    (queued_event,) = task_args(message)
    assert queued_event["id"] == event["id"] and queued_event["type"] == event["type"]
    obj = queued_event["data"]["object"]
    assert obj["payment_intent"] == "pi_1" and obj["amount_total"] == 700 and obj["metadata"]["order_id"] == "17"
    raw = orjson.dumps(message).decode() + base64.b64decode(message["body"]).decode()
    assert "anna@example.com" not in raw and "Anna Example" not in raw


def test_a_repeated_event_is_queued_once(client, private_redis):
    event = an_event()
    assert {post(client, event).status_code for _ in range(4)} == {200}
    assert len(queued(private_redis)) == 1


@pytest.mark.parametrize("how", ["missing", "garbage", "wrong secret", "too old", "body changed"])
def test_an_event_stripe_did_not_sign_is_refused(client, private_redis, how):
    event = an_event()
    payload = orjson.dumps(event)
    if how == "missing":
        response = post(client, payload, signature="")
    elif how == "garbage":
        response = post(client, payload, signature="t=1,v1=abc")
    elif how == "wrong secret":
        response = post(client, payload, secret="whsec_someone_else")
    elif how == "too old":  # a recorded delivery replayed later
        response = post(client, payload, timestamp=int(time.time()) - 600)
    else:
        header = signature_header(payload, SECRET, int(time.time()))
        tampered = payload.replace(b'"amount_total":700', b'"amount_total":1')
        response = post(client, tampered, signature=header)
    assert response.status_code == 400
    assert queued(private_redis) == []


@pytest.mark.parametrize("body", [b"not json", b"[1]", b"{}", b'{"id": "evt_1", "type": "x"}',
                                  b'{"id": 5, "type": "checkout.session.completed", "data": {"object": {}}}',
                                  b"\xff\xfe"])
def test_a_signed_body_that_is_no_event_is_refused(client, private_redis, body):
    assert post(client, body).status_code == 400
    assert queued(private_redis) == []


def test_event_types_we_do_not_act_on_are_acknowledged_and_dropped(client, private_redis):
    response = post(client, an_event("customer.created"))
    assert response.status_code == 200 and response.json()["ignored"] is True
    assert queued(private_redis) == []


def test_without_a_webhook_secret_every_event_is_refused(private_redis):
    with make_client(private_redis, secret=None) as unconfigured:
        assert post(unconfigured, an_event()).status_code == 401
    assert queued(private_redis) == []


def test_broker_down_answers_503_so_stripe_retries_and_nothing_is_lost(client, private_redis):
    event = an_event()
    private_redis.stop()
    assert post(client, event).status_code == 503
    private_redis.start()
    assert post(client, event).status_code == 200  # Stripe's retry
    assert [task_args(m)[0]["id"] for m in queued(private_redis)] == [event["id"]]
    assert 'gateway_stripe_events_total{outcome="broker_down"}' in client.get("/metrics").text


def test_connect_events_signed_by_the_connect_endpoint_are_queued_with_their_account(private_redis):
    """The platform's endpoint and its connected accounts' endpoint sign with their own secrets."""
    connect_secret = "whsec_connect_endpoint"
    with make_client(private_redis, secret=f"{SECRET}, {connect_secret}") as client:
        update = {**an_event("account.updated"), "account": "acct_1",
                  "data": {"object": {"id": "acct_1", "object": "account", "charges_enabled": True,
                                      "email": "owner@example.com"}}}
        assert post(client, update, secret=connect_secret).status_code == 200
        assert post(client, an_event(), secret=SECRET).status_code == 200
        assert post(client, an_event(), secret="whsec_someone_else").status_code == 400
    events = [task_args(message)[0] for message in queued(private_redis)]
    (event,) = [e for e in events if e["type"] == "account.updated"]
    assert len(events) == 2 and event["account"] == "acct_1" and event["data"]["object"] == {
        "id": "acct_1", "object": "account", "charges_enabled": True, "payouts_enabled": None,
        "details_submitted": None, "metadata": None}
