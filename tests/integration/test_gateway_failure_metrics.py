"""The gateway counts every webhook request it does not accept, by webhook and reason
(gateway_webhook_failures_total), the series the "webhooks failing" alerts read; each series exists
before its first failure, so rate() sees the first one too."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families
from starlette.testclient import TestClient

from bot.gateway import SECRET_HEADER, create_app
from core.settings import Settings
from localenv.services import RedisServer, free_port

SECRET = "s3cret-for-tests"


@pytest.fixture
def private_redis(tmp_path_factory) -> RedisServer:
    server = RedisServer(tmp_path_factory.mktemp("gateway-redis"), free_port()).start()
    yield server
    server.stop()


@pytest.fixture
def client(private_redis: RedisServer):
    settings = Settings(redis_url=private_redis.url, telegram_webhook_secret=SECRET)  # no Stripe secret
    with TestClient(create_app(settings)) as test_client:
        yield test_client


def failures(client: TestClient) -> dict[tuple[str, str], float]:
    text = client.get("/metrics").text
    return {(s.labels["webhook"], s.labels["reason"]): s.value for family in text_string_to_metric_families(text)
            for s in family.samples if s.name == "gateway_webhook_failures_total"}


def telegram(client: TestClient, body: bytes, secret: str = SECRET):
    return client.post("/telegram/webhook", content=body,
                       headers={"content-type": "application/json", SECRET_HEADER: secret})


def test_each_refused_webhook_request_is_counted_by_reason(client, private_redis):
    before = failures(client)
    assert {("telegram", "broker_down"), ("stripe", "unauthorized"), ("stripe", "bad_request")} <= set(before)

    update = orjson.dumps({"update_id": 7, "message": {"text": "hi"}})
    assert telegram(client, update).status_code == 200
    assert telegram(client, update, secret="wrong").status_code == 401
    assert telegram(client, b"[1, 2]").status_code == 400
    assert client.post("/stripe/webhook", content=b"{}").status_code == 401  # STRIPE_WEBHOOK_SECRET unset
    private_redis.stop()
    assert telegram(client, orjson.dumps({"update_id": 8})).status_code == 503

    after = failures(client)
    changed = {key: after[key] - before.get(key, 0) for key in after if after[key] != before.get(key, 0)}
    assert changed == {("telegram", "unauthorized"): 1, ("telegram", "bad_request"): 1,
                       ("stripe", "unauthorized"): 1, ("telegram", "broker_down"): 1}
