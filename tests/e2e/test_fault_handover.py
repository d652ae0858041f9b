"""A worker process SIGKILLed at each fault point (core/faults.py) while customers tap "Reserve":
after a normal worker takes over, every customer has exactly one final answer (the Pay button or
"sold out"), every button press is answered, stock is exact, and no payment is doubled.

The first worker runs with the point armed and a once-file, so exactly one of its processes dies
there, once (its pool child, as under the OOM killer; the main process sees the child lost and
puts the message back). It is then stopped cleanly and a normal worker carries on. The stack has
its own Redis, Telegram and Stripe fakes and gateway; five customers tap at once for three units.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from kombu import Connection

from core import db
from core.settings import SANDBOX_BOT_TOKEN
from localenv.services import RedisServer, free_port
from models import AuditEntry, Handover, LedgerEntry, LedgerKind, Offer, Order, OrderStatus
from sandbox.stripe_fake import StripeFake
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tasks.app import app
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer
from tests.processes import ROOT, ManagedProcess, start_worker
from tests.support.waiting import bot_texts, wait_until

pytestmark = pytest.mark.slow

STRIPE_SECRET = "whsec_handover_test"
CUSTOMERS = 5
UNITS = 3
PAY = "Please pay by"
PAY_SPENT = "Your reservation:"  # the Pay message as it reads once paid (its buttons are gone)
SOLD_OUT = "sold out"
PAID = "pickup code"


@pytest.fixture(scope="module")
def fault_stack(migrated, tmp_path_factory):
    telegram = TelegramFake().start()
    stripe = StripeFake().start()
    redis = RedisServer(tmp_path_factory.mktemp("handover-redis"), free_port()).start()
    env = {"TELEGRAM_API_URL": telegram.url, "REDIS_URL": redis.url, "TELEGRAM_WEBHOOK_SECRET": "handover-secret",
           "STRIPE_API_URL": stripe.url, "STRIPE_SECRET_KEY": "sk_test_handover",
           "STRIPE_WEBHOOK_SECRET": STRIPE_SECRET}
    from tests.processes import start_gateway

    gateway, gateway_url = start_gateway(env)
    subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT,
                   env={**os.environ, **env, "PUBLIC_URL": gateway_url}, check=True, capture_output=True)
    stripe.configure_webhook(url=f"{gateway_url}/stripe/webhook", secret=STRIPE_SECRET, retry_base_delay=0.2)
    client = TelegramFakeClient(telegram.url)
    yield client, stripe, env
    client.close()
    gateway.stop()
    redis.stop()
    stripe.stop()
    telegram.stop()


def _finals(client: TelegramFakeClient, chat_id: int) -> list[str]:
    return [text for text in bot_texts(client, chat_id) if PAY in text or PAY_SPENT in text or SOLD_OUT in text]


def _reserve_button(telegram_url: str, chat_id: int, offer_id: int, price_minor: int) -> int:
    """The offer's confirm screen in the customer's chat (as the bot would have shown it): one
    message with the "Reserve" button; its message id."""
    answer = httpx.post(f"{telegram_url}/bot{SANDBOX_BOT_TOKEN}/sendMessage", json={
        "chat_id": chat_id, "text": "1 × Croissant bag",
        "reply_markup": {"inline_keyboard": [[{"text": "✅ Reserve",
                                               "callback_data": f"buy:{offer_id}:1:{price_minor}"}]]},
    }, timeout=10).json()
    return answer["result"]["message_id"]


def _stop_cleanly(worker: ManagedProcess) -> None:
    """Warm shutdown: the main process alone gets SIGTERM and lets its running task finish (the
    whole group's SIGTERM would kill pool children mid-task, another crash than the one tested)."""
    if worker.process.poll() is None:
        worker.process.send_signal(signal.SIGTERM)
        with contextlib.suppress(subprocess.TimeoutExpired):
            worker.process.wait(30)
    worker.stop()


def _checkout_session(client: TelegramFakeClient, chat_id: int, stripe_url: str) -> str:
    for message in client.messages(chat_id):
        for row in (message.get("reply_markup") or {}).get("inline_keyboard", []):
            for button in row:
                if (button.get("url") or "").startswith(f"{stripe_url}/checkout/"):
                    return button["url"].rsplit("/", 1)[1]
    raise AssertionError(f"no Pay button in chat {chat_id}")


def _unsent_handovers(since: datetime, task_name: str | None = None) -> int:
    with db.session_scope() as session:
        query = sa.select(sa.func.count()).select_from(Handover).where(Handover.sent_at.is_(None),
                                                                       Handover.created_at >= since)
        if task_name:
            query = query.where(Handover.task_name == task_name)
        return session.scalar(query) or 0


def _audit_details(actor: str) -> dict | None:
    with db.session_scope() as session:
        entry = session.scalars(sa.select(AuditEntry).where(
            AuditEntry.actor == actor, AuditEntry.action == "maintenance.resend_handovers")).first()
        return entry.details if entry is not None and entry.result == "ok" else None


def _taps_through_a_fault(fault_stack, tmp_path: Path, arm: str, *, sweep: bool = False,
                          recovered_by: str | None = None) -> None:
    client, stripe, env = fault_stack
    started = datetime.now(UTC)
    offer_id = make_offer(make_business(), "Croissant bag", quantity=UNITS)
    customers = [new_user_id() for _ in range(CUSTOMERS)]
    screens = {}
    for customer in customers:
        client.create_user(customer, first_name="Kim")
        screens[customer] = _reserve_button(env["TELEGRAM_API_URL"], customer, offer_id, 350)

    once = tmp_path / "fault-armed"
    once.write_text(arm)
    armed = start_worker("handover-armed", concurrency=1,
                         env={**env, "FAULT_KILL_AT": arm, "FAULT_KILL_ONCE_FILE": str(once)})
    normal = None
    try:
        presses = {c: client.press_button(c, screens[c], f"buy:{offer_id}:1:350") for c in customers}
        wait_until(lambda: not once.exists(), 40, f"the fault point {arm} reached")
        wait_until(lambda: "fault_point_fired" in armed.output(), 5, "the fault logged")
        _stop_cleanly(armed)
        if sweep:
            # The sweeper publishes the hand-over the killed process committed. It runs before any
            # worker takes the redelivered task, which would publish the hand-over itself first
            # (BaseTask.before_start). The redelivery then hands the checkout over again: one effect.
            sweeper = start_worker("handover-sweeper", queues="maintenance", concurrency=1, env=env)
            try:
                actor = f"fault-test-{offer_id}"
                with Connection(env["REDIS_URL"]) as broker:
                    app.send_task("maintenance.resend_handovers", kwargs={"actor": actor, "grace_seconds": 0},
                                  connection=broker)
                report = wait_until(lambda: _audit_details(actor), 30, "the sweeper's audit entry")
            finally:
                sweeper.stop()
            assert report["tasks"].get("payments.create_checkout"), report
        normal = start_worker("handover-normal", concurrency=2, env={**env, "BROKER_VISIBILITY_TIMEOUT": "1"})

        for customer in customers:
            wait_until(lambda c=customer: _finals(client, c), 40, f"a final answer for customer {customer}")

        def paying() -> list[int] | None:
            with_pay = [c for c in customers if any(PAY in t for t in bot_texts(client, c))]
            return with_pay if len(with_pay) == UNITS else None

        buyers = wait_until(paying, 30, "a Pay button for each unit")
        # Every buyer pays once (Stripe's webhooks reach the gateway, the payments queue confirms).
        for customer in buyers:
            stripe.pay(_checkout_session(client, customer, stripe.url))
        for customer in buyers:
            wait_until(lambda c=customer: any(PAID in t for t in bot_texts(client, c)), 30, f"{customer} paid")
        answered_ids = {p["callback_query_id"] for p in presses.values()}
        wait_until(lambda: answered_ids <= {q["callback_query_id"] for q in client.callback_answers()
                                             if q["answered"]}, 20, "every button press answered")
        wait_until(lambda: _unsent_handovers(started) == 0, 20, "every hand-over sent")
        time.sleep(2.0)  # a second delivery of anything would show by now

        for customer in customers:
            finals = _finals(client, customer)
            assert len(finals) == 1, (customer, bot_texts(client, customer))
            assert sum(PAID in t for t in bot_texts(client, customer)) == (1 if customer in buyers else 0)
        assert sorted(c for c in customers if SOLD_OUT in _finals(client, c)[0]) == sorted(set(customers) - set(buyers))
        with db.session_scope() as session:
            offer = session.get_one(Offer, offer_id)
            assert offer.units_sold + offer.units_held <= offer.quantity
            assert (offer.units_sold, offer.units_held) == (UNITS, 0)
            orders = session.scalars(sa.select(Order).where(Order.offer_id == offer_id)).all()
            assert sorted(o.customer_id or 0 for o in orders) == sorted(buyers)
            assert all(o.status == OrderStatus.PAID and o.quantity == 1 for o in orders)
            ledger = Counter(session.scalars(sa.select(LedgerEntry.kind).where(LedgerEntry.offer_id == offer_id)))
            # Each payment once, with its platform fee (no transfer: this business takes no Connect payouts).
            assert ledger == Counter({LedgerKind.HOLD: UNITS, LedgerKind.SALE: UNITS, LedgerKind.PAYMENT: UNITS,
                                      LedgerKind.FEE: UNITS})
        order_ids = {str(o.id) for o in orders}
        sessions = [s for s in stripe.objects("checkout.session") if s.get("metadata", {}).get("order_id") in order_ids]
        assert sorted(s["metadata"]["order_id"] for s in sessions) == sorted(order_ids)  # one Checkout Session each
        intents = {s.get("payment_intent") for s in sessions}
        assert len(intents) == UNITS and not [r for r in stripe.objects("refund") if r.get("payment_intent") in intents]
        if recovered_by:
            assert recovered_by in armed.output() + normal.output()
    finally:
        _stop_cleanly(armed)
        if normal is not None:
            normal.stop()


def test_killed_after_commit_before_enqueue(fault_stack, tmp_path):
    """The bug this file was written for: the tap's transaction committed and the reservation task
    was never published. The redelivered update finds itself done and must still hand it over."""
    _taps_through_a_fault(fault_stack, tmp_path, "after_commit_before_enqueue", recovered_by="handovers_resent")


def test_killed_after_enqueue_before_ack(fault_stack, tmp_path):
    _taps_through_a_fault(fault_stack, tmp_path, "after_enqueue_before_ack")


def test_killed_mid_send(fault_stack, tmp_path):
    _taps_through_a_fault(fault_stack, tmp_path, "mid_send")


def test_a_hand_over_nobody_redelivers_is_published_by_the_sweeper(fault_stack, tmp_path):
    """The reservation task dies after committing its hand-over of the checkout: the sweeper publishes
    it, the task's redelivery hands the checkout over again; one Checkout Session."""
    _taps_through_a_fault(fault_stack, tmp_path, "after_commit_before_enqueue:payments.create_checkout", sweep=True)
