"""The running system for end-to-end tests: Telegram fake, gateway and a real Celery worker,
all talking over HTTP and Redis exactly as in production."""

from __future__ import annotations

import asyncio
import itertools
import os
from dataclasses import dataclass

import pytest

from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.processes import ManagedProcess, start_gateway, start_worker

_user_ids = itertools.count(5_000_000_001)


@dataclass
class Stack:
    telegram: TelegramFakeClient
    telegram_url: str
    gateway_url: str
    worker: ManagedProcess
    gateway: ManagedProcess


def new_user_id() -> int:
    """A fresh Telegram user (64-bit id) per test, so tests share the stack without interfering."""
    return next(_user_ids)


@pytest.fixture(scope="session")
def telegram_fake(migrated):
    fake = TelegramFake()
    fake.start()
    os.environ["TELEGRAM_API_URL"] = fake.url
    from core.settings import get_settings

    get_settings.cache_clear()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def stack(telegram_fake, migrated):
    worker = start_worker("e2e-worker")
    gateway, gateway_url = start_gateway()
    os.environ["PUBLIC_URL"] = gateway_url
    from bot import setup
    from core.settings import get_settings

    get_settings.cache_clear()
    asyncio.run(setup._main("webhook"))  # our own command registers the webhook with its secret
    client = TelegramFakeClient(telegram_fake.url)
    yield Stack(client, telegram_fake.url, gateway_url, worker, gateway)
    client.close()
    gateway.stop()
    worker.stop()
    os.environ.pop("PUBLIC_URL", None)
    get_settings.cache_clear()


@pytest.fixture
def user(stack) -> int:
    return new_user_id()
