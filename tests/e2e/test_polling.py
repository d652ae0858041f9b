"""Polling instead of a webhook: the poller advances the getUpdates offset only after the update
is on the broker, so a Redis outage delays updates but loses none."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from localenv.services import RedisServer, free_port
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.conftest import separate_database
from tests.e2e.conftest import new_user_id
from tests.processes import ROOT, ManagedProcess, start_worker, stop_all


@pytest.fixture(scope="module")
def polling_stack(database_url, tmp_path_factory):
    fake = TelegramFake().start()
    redis = RedisServer(tmp_path_factory.mktemp("polling-redis"), free_port()).start()
    # Its own database: this fake numbers its updates from 1 again.
    env = {"TELEGRAM_API_URL": fake.url, "REDIS_URL": redis.url,
           "DATABASE_URL": separate_database(database_url, "surplus_polling")}
    subprocess.run([sys.executable, "-m", "bot.setup", "polling"], cwd=ROOT, env={**os.environ, **env},
                   check=True, capture_output=True)
    worker = start_worker("polling-worker", queues="updates,notifications", env=env)
    poller = ManagedProcess("poller", [sys.executable, "-m", "bot.poller"], env)
    poller.wait_for_output("poller_started")
    client = TelegramFakeClient(fake.url)
    yield client, redis, poller
    client.close()
    stop_all([poller, worker])
    redis.stop()
    fake.stop()


def test_commands_are_registered_in_every_language(polling_stack):
    client, _redis, _poller = polling_stack
    languages = {call["params"].get("language_code") for call in client.calls("setMyCommands")}
    assert languages == {None, "de"}


def test_start_through_the_poller(polling_stack):
    client, _redis, _poller = polling_stack
    user = new_user_id()
    sent = client.send_text(user, "/start")
    (reply,) = client.wait_for_reply(user, sent["message_id"], timeout=20)
    assert "What would you like to do?" in reply["text"]


def test_updates_sent_while_redis_is_down_arrive_once_it_is_back(polling_stack):
    client, redis, poller = polling_stack
    user = new_user_id()
    redis.stop()
    try:
        sent = client.send_text(user, "/help")
        time.sleep(2.0)  # the poller fetches the update and fails to enqueue it, more than once
        assert not [m for m in client.messages(user) if m.get("from", {}).get("is_bot")]
    finally:
        redis.start()
    replies = client.wait_for_reply(user, sent["message_id"], timeout=40)
    assert "How it works" in replies[0]["text"]
    time.sleep(1.0)
    assert len([m for m in client.messages(user) if m.get("from", {}).get("is_bot")]) == 1
    assert "broker_unavailable" in poller.output()
