"""A gateway and a worker on a Redis of their own, which a test may stop and start without
disturbing any other test (the Redis fault tests)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from localenv.services import RedisServer, free_port
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.conftest import separate_database
from tests.processes import ROOT, ManagedProcess, start_gateway, start_worker, stop_all


@dataclass
class RedisFaultStack:
    client: TelegramFakeClient
    telegram_url: str
    redis: RedisServer
    worker: ManagedProcess
    gateway_url: str
    database_url: str


@contextmanager
def redis_fault_stack(database_url: str, directory: Path, name: str,
                      env: dict[str, str] | None = None) -> Iterator[RedisFaultStack]:
    """Telegram's fake, a Redis, a database ``surplus_<name>``, a worker on the updates and
    notifications queues with ``env``, and the gateway, with the bot's webhook set."""
    fake = TelegramFake(webhook_retry_initial=0.2, webhook_retry_max=1.0).start()
    redis = RedisServer(directory, free_port()).start()
    database = separate_database(database_url, f"surplus_{name}")
    env = {"TELEGRAM_API_URL": fake.url, "REDIS_URL": redis.url, "TELEGRAM_WEBHOOK_SECRET": f"{name}-secret",
           "DATABASE_URL": database, **(env or {})}
    worker = start_worker(f"{name}-worker", queues="updates,notifications", env=env)
    gateway, gateway_url = start_gateway(env)
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, **env, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    client = TelegramFakeClient(fake.url)
    try:
        yield RedisFaultStack(client, fake.url, redis, worker, gateway_url, database)
    finally:
        client.close()
        stop_all([gateway, worker])
        redis.stop()
        fake.stop()


def help_replies(client: TelegramFakeClient, user: int) -> list[dict]:
    """The bot's answers to /help in the user's chat."""
    return [m for m in client.messages(user) if m.get("from", {}).get("is_bot") and "How it works" in m["text"]]
