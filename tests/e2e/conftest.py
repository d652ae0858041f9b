"""The running system for end-to-end tests: Telegram and Stripe fakes, gateway and a real Celery
worker, all talking over HTTP and Redis exactly as in production. Started once for this package
and stopped after it, so no worker of it is left consuming while other tests run."""

from __future__ import annotations

import asyncio
import itertools
import os
import secrets
from dataclasses import dataclass

import pytest

from localenv.services import free_port
from sandbox.stripe_fake import StripeFake
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tests.processes import ManagedProcess, start_gateway, start_worker, stop_all

_user_ids = itertools.count(5_000_000_001)


@dataclass
class Stack:
    telegram: TelegramFakeClient
    telegram_url: str
    gateway_url: str
    worker: ManagedProcess
    gateway: ManagedProcess
    stripe: StripeFake | None = None  # the Stripe fake; its webhooks go to the gateway


def new_user_id() -> int:
    """A fresh Telegram user (64-bit id) per test, so tests share the stack without interfering."""
    return next(_user_ids)


@pytest.fixture(scope="package", autouse=True)
def celery_app_configured_for_the_session():
    """Load the test process's Celery configuration now, from the session's Redis. Celery reads it
    on first use: were that first use inside a fault test's stack (which points REDIS_URL at its
    own Redis for a while), every later test would subscribe to results on a Redis that is gone."""
    from tasks.app import app

    assert app.conf.result_backend == os.environ["REDIS_URL"]


@pytest.fixture(scope="package")
def telegram_fake(migrated):
    fake = TelegramFake()
    fake.start()
    os.environ["TELEGRAM_API_URL"] = fake.url
    from core.settings import get_settings

    get_settings.cache_clear()
    yield fake
    fake.stop()
    os.environ.pop("TELEGRAM_API_URL", None)
    get_settings.cache_clear()


STRIPE_WEBHOOK_SECRET = "whsec_e2e_" + secrets.token_hex(8)


@pytest.fixture(scope="package")
def stripe_fake(migrated):
    """The Stripe fake for the session; workers and gateway get its URL, a key and the secret."""
    fake = StripeFake()
    fake.start()
    os.environ.update({"STRIPE_API_URL": fake.url, "STRIPE_SECRET_KEY": "sk_test_e2e",
                       "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET})
    from core.settings import get_settings

    get_settings.cache_clear()
    yield fake
    fake.stop()
    for variable in ("STRIPE_API_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET"):
        os.environ.pop(variable, None)
    get_settings.cache_clear()


@pytest.fixture(scope="package")
def stack(telegram_fake, stripe_fake, migrated):
    os.environ["ADMIN_IDS"] = "4242"  # the e2e admin (tests/e2e/test_admin*.py)
    # Where the bot's "🗺 Map" button points; the Mini App's tests start it there (start_webapp).
    os.environ["WEBAPP_URL"] = f"http://127.0.0.1:{free_port()}"
    worker = start_worker("e2e-worker")
    gateway, gateway_url = start_gateway()
    os.environ["PUBLIC_URL"] = gateway_url
    from bot import setup
    from core.settings import get_settings

    get_settings.cache_clear()
    asyncio.run(setup._main("webhook"))  # our own command registers the webhook with its secret
    # Quick retries: a delivery the gateway refused comes back within a second or two.
    stripe_fake.configure_webhook(url=f"{gateway_url}/stripe/webhook", secret=STRIPE_WEBHOOK_SECRET,
                                  retry_base_delay=0.2, timeout=5.0)
    client = TelegramFakeClient(telegram_fake.url)
    yield Stack(client, telegram_fake.url, gateway_url, worker, gateway, stripe_fake)
    client.close()
    stop_all([gateway, worker])
    for variable in ("PUBLIC_URL", "ADMIN_IDS", "WEBAPP_URL"):
        os.environ.pop(variable, None)
    get_settings.cache_clear()


@pytest.fixture
def user(stack) -> int:
    return new_user_id()
