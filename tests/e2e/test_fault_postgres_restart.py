"""Postgres restarted under load: tasks retry and finish, and no order, payment or ledger row is
lost or doubled. Customers reserve while Postgres restarts, then pay while it restarts again.
Everything here has its own Postgres cluster, Redis and fakes, so no other test sees the restarts."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from kombu import Connection

from core import db
from core.settings import get_settings
from localenv.services import PostgresServer, RedisServer, free_port
from models import LedgerEntry, LedgerKind, Offer, Order, OrderStatus
from sandbox.stripe_fake import StripeFake
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tasks.app import app
from tests.conftest import migrate
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer, make_user
from tests.processes import ROOT, start_gateway, start_worker, stop_all

pytestmark = pytest.mark.slow

UNITS = 12
CUSTOMERS = 18
STRIPE_SECRET = "whsec_pg_restart"


@pytest.fixture(scope="module")
def pg_fault_stack(tmp_path_factory):
    postgres = PostgresServer(Path(".run") / f"pg-fault-{free_port()}", free_port(), database="surplus_fault").start()
    migrate(postgres.url)
    redis = RedisServer(tmp_path_factory.mktemp("pg-fault-redis"), free_port()).start()
    telegram = TelegramFake().start()
    stripe = StripeFake().start()
    env = {"DATABASE_URL": postgres.url, "REDIS_URL": redis.url, "TELEGRAM_API_URL": telegram.url,
           "TELEGRAM_WEBHOOK_SECRET": "pg-secret", "STRIPE_API_URL": stripe.url,
           "STRIPE_SECRET_KEY": "sk_test_pg", "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    # This test process reads and seeds the private cluster too.
    environment = pytest.MonkeyPatch()
    for name, value in env.items():
        environment.setenv(name, value)
    get_settings.cache_clear()
    db.reset_engine()
    gateway, gateway_url = start_gateway()
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    stripe.configure_webhook(url=f"{gateway_url}/stripe/webhook", secret=STRIPE_SECRET, retry_base_delay=0.2)
    worker = start_worker("pg-fault-worker", concurrency=4)
    client = TelegramFakeClient(telegram.url)
    try:
        yield client, stripe, postgres, redis
    finally:
        client.close()
        stop_all([worker, gateway])
        environment.undo()
        get_settings.cache_clear()
        db.reset_engine()
        stripe.stop()
        telegram.stop()
        redis.stop()
        postgres.stop()
        shutil.rmtree(postgres.directory, ignore_errors=True)


def _restart_soon(postgres: PostgresServer, after: float, down_for: float = 2.0) -> threading.Thread:
    def restart() -> None:
        time.sleep(after)
        postgres.stop("fast")  # drops every connection, as a crash or a failover would
        time.sleep(down_for)
        postgres.start()

    thread = threading.Thread(target=restart)
    thread.start()
    return thread


def _texts(client: TelegramFakeClient, chat_id: int) -> list[str]:
    return [m.get("text") or "" for m in client.messages(chat_id) if m.get("from", {}).get("is_bot")]


def _count(client: TelegramFakeClient, chat_id: int, needle: str) -> int:
    return sum(needle in text for text in _texts(client, chat_id))


def _wait_until(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if value := predicate():
                return value
        except sa.exc.OperationalError:
            pass  # our own reads while Postgres is down
        time.sleep(0.2)
    raise AssertionError(f"not reached in {timeout:.0f} s: {what}")


def _orders(offer_id: int) -> list[Order]:
    with db.session_scope() as session:
        return list(session.scalars(sa.select(Order).where(Order.offer_id == offer_id).order_by(Order.id)))


def test_postgres_restarts_while_customers_reserve_and_pay(pg_fault_stack):
    client, stripe, postgres, redis = pg_fault_stack
    owner = new_user_id()
    customers = [new_user_id() for _ in range(CUSTOMERS)]
    for user in (owner, *customers):
        client.create_user(user, first_name="Sam")
        make_user(user)
    offer = make_offer(make_business(owner), "Pastry box", quantity=UNITS)

    # 1. Every customer taps Order (one unit) while Postgres restarts.
    restart = _restart_soon(postgres, after=0.3)
    with Connection(redis.url) as broker:
        for customer in customers:
            app.send_task("reservations.place_order", args=[offer, customer, 1, f"pg-{customer}"], connection=broker)
            time.sleep(0.05)
    restart.join()
    answered = lambda: all(_count(client, c, "Please pay by") + _count(client, c, "just sold out") >= 1  # noqa: E731
                           for c in customers)
    _wait_until(answered, 90, "every customer has a Pay button or a sold-out answer")

    holders = [c for c in customers if _count(client, c, "Please pay by")]
    assert len(holders) == UNITS
    for customer in customers:
        assert _count(client, customer, "Please pay by") + _count(client, customer, "just sold out") == 1

    # 2. Every holder pays while Postgres restarts again.
    sessions = {s["metadata"]["order_id"]: s["id"] for s in stripe.objects("checkout.session")}
    assert len(sessions) == UNITS
    restart = _restart_soon(postgres, after=0.2)
    for session_id in sessions.values():
        stripe.pay(session_id)
    restart.join()
    _wait_until(lambda: all(_count(client, c, "Your pickup code") for c in holders), 90, "every pickup code")
    time.sleep(2.0)  # anything handled twice would show up now

    orders = _orders(offer)
    assert sorted(o.customer_id for o in orders) == sorted(holders)
    assert all(o.status == OrderStatus.PAID for o in orders)
    assert len({o.pickup_code for o in orders}) == UNITS
    for customer in holders:
        assert _count(client, customer, "Your pickup code") == 1
    with db.session_scope() as session:
        ledger = session.execute(sa.select(LedgerEntry.order_id, LedgerEntry.kind)
                                 .where(LedgerEntry.offer_id == offer)).all()
        stock = session.get(Offer, offer)
        assert (stock.units_held, stock.units_sold) == (0, UNITS)
    for order in orders:
        kinds = sorted(kind.value for order_id, kind in ledger if order_id == order.id)
        # Once each, the payment with its platform fee (this business takes no Connect payouts).
        assert kinds == sorted([LedgerKind.HOLD.value, LedgerKind.SALE.value, LedgerKind.PAYMENT.value,
                                LedgerKind.FEE.value])
