"""A tap held by a worker that was SIGKILLed outright (main process and pool children, so nobody puts
its message back) is answered by the next worker within the updates queue's visibility timeout plus
one sweep (core/broker.py, docs/redelivery.md), and once.

The worker holds the tap for real: the test holds the chat's advisory lock, which every update of
that chat takes first. The stack has its own Redis, gateway and Telegram fake, so the kill disturbs
no other test. The timeout is set to 8 s here instead of the 60 s default."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import sqlalchemy as sa

from core import db
from localenv.services import RedisServer, free_port
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.e2e.conftest import new_user_id
from tests.processes import ROOT, start_gateway, start_worker
from tests.support.waiting import wait_until

pytestmark = pytest.mark.slow

UPDATES_TIMEOUT = 8
SWEEP_INTERVAL = 5  # celeryconfig: unacked_restore_interval
SLACK = 12  # a worker's start on a busy machine, and the handling itself


def _advisory_waiters(engine: sa.Engine) -> int:
    with engine.connect() as connection:
        return connection.scalar(sa.text(
            "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND wait_event = 'advisory' "
            "AND datname = current_database()"))


@pytest.fixture
def tap_stack(migrated, tmp_path):
    telegram = TelegramFake().start()
    redis = RedisServer(tmp_path / "redis", free_port()).start()
    env = {"TELEGRAM_API_URL": telegram.url, "REDIS_URL": redis.url, "TELEGRAM_WEBHOOK_SECRET": "tap-secret",
           "BROKER_VISIBILITY_TIMEOUTS": f"updates={UPDATES_TIMEOUT}"}
    gateway, gateway_url = start_gateway(env)
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, **env, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    client = TelegramFakeClient(telegram.url)
    yield client, env
    client.close()
    gateway.stop()
    redis.stop()
    telegram.stop()


def test_a_tap_held_by_a_killed_worker_is_answered_within_the_timeout(tap_stack):
    client, env = tap_stack
    user = new_user_id()
    client.create_user(user, "Tapper")
    worker = start_worker("tap-worker-a", queues="updates", env=env)
    engine = sa.create_engine(db.engine().url)
    lock = engine.connect()
    try:
        sent = client.send_text(user, "/help")
        (help_message,) = client.wait_for_reply(user, sent["message_id"], timeout=15)
        lock.execute(sa.text("SELECT pg_advisory_lock(:chat)"), {"chat": user})
        pressed = client.press_button(user, help_message["message_id"], "menu")
        tapped_at = time.monotonic()
        wait_until(lambda: _advisory_waiters(engine) == 1, 10, "the worker waiting for the chat's lock")
        worker.kill()  # SIGKILL to the whole group: no warm shutdown gives the message back
        worker.process.wait(10)
    finally:
        worker.stop()
        lock.execute(sa.text("SELECT pg_advisory_unlock_all()"))
        lock.close()
        engine.dispose()

    def answered() -> list[dict]:
        return [a for a in client.callback_answers()
                if a["callback_query_id"] == pressed["callback_query_id"] and a.get("answer") is not None]

    assert not answered()
    survivor = start_worker("tap-worker-b", queues="updates", env=env)
    try:
        wait_until(answered, UPDATES_TIMEOUT + SWEEP_INTERVAL + SLACK, "the tap answered")
        elapsed = time.monotonic() - tapped_at
        wait_until(lambda: "What would you like to do?" in (client.messages(user)[-1].get("text") or ""), 5,
                    "the main menu shown")
        assert elapsed >= UPDATES_TIMEOUT - 1, "answered before the timeout: by what?"
        time.sleep(2.0)  # a second handling would show up by now
        assert len(answered()) == 1
        menus = [m for m in client.messages(user) if "What would you like to do?" in (m.get("text") or "")]
        assert len(menus) == 1
    finally:
        survivor.stop()
