"""Redis stopped for some seconds under a stream of updates: the gateway answers 503 while it is down
(so Telegram redelivers), the worker reconnects by itself (no restart), and every update sent is
handled exactly once. The stack here has its own Redis, so stopping it disturbs no other test."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import pytest

from localenv.services import RedisServer, free_port
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.conftest import separate_database
from tests.e2e.conftest import new_user_id
from tests.processes import ROOT, start_gateway, start_worker

pytestmark = pytest.mark.slow

USERS = 12
MESSAGES_PER_USER = 6


@pytest.fixture(scope="module")
def redis_fault_stack(database_url, tmp_path_factory):
    fake = TelegramFake(webhook_retry_initial=0.2, webhook_retry_max=1.0).start()
    redis = RedisServer(tmp_path_factory.mktemp("fault-redis"), free_port()).start()
    env = {"TELEGRAM_API_URL": fake.url, "REDIS_URL": redis.url, "TELEGRAM_WEBHOOK_SECRET": "fault-secret",
           "DATABASE_URL": separate_database(database_url, "surplus_redis_fault")}
    worker = start_worker("redis-fault-worker", queues="updates,notifications", env=env)
    gateway, gateway_url = start_gateway(env)
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, **env, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    client = TelegramFakeClient(fake.url)
    yield client, fake.url, redis, worker, gateway_url
    client.close()
    gateway.stop()
    worker.stop()
    redis.stop()
    fake.stop()


def _help_replies(client: TelegramFakeClient, user: int) -> list[dict]:
    return [m for m in client.messages(user) if m.get("from", {}).get("is_bot") and "How it works" in m["text"]]


def test_a_redis_restart_under_a_stream_of_updates_loses_and_repeats_nothing(redis_fault_stack):
    client, fake_url, redis, worker, gateway_url = redis_fault_stack
    users = [new_user_id() for _ in range(USERS)]
    worker_pid = worker.process.pid

    def stream(user: int) -> None:
        with TelegramFakeClient(fake_url) as own:
            for _ in range(MESSAGES_PER_USER):
                own.send_text(user, "/help")
                time.sleep(0.5)

    senders = [threading.Thread(target=stream, args=(user,)) for user in users]
    for sender in senders:
        sender.start()
    time.sleep(0.8)  # the stream is flowing and some updates are being handled
    redis.stop()
    try:
        time.sleep(3.0)
        readiness = httpx.get(f"{gateway_url}/readyz", timeout=5)
        assert readiness.status_code == 503, readiness.text
    finally:
        redis.start()
    for sender in senders:
        sender.join(30)

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if all(len(_help_replies(client, user)) >= MESSAGES_PER_USER for user in users):
            break
        time.sleep(0.25)
    time.sleep(2.0)  # anything redelivered late would show up as a seventh reply
    counts = {user: len(_help_replies(client, user)) for user in users}
    assert counts == dict.fromkeys(users, MESSAGES_PER_USER), worker.output()[-3000:]

    metrics = httpx.get(f"{gateway_url}/metrics", timeout=5).text
    refused = [line for line in metrics.splitlines() if line.startswith('gateway_updates_total{outcome="broker_down"}')]
    assert refused and float(refused[0].split()[-1]) > 0, "the gateway never answered 503 while Redis was down"
    assert worker.process.poll() is None and worker.process.pid == worker_pid, "the worker exited"
    assert "Unrecoverable error" not in worker.output()
