"""Payments against real Postgres and the Stripe fake, through the real `stripe` library.

The follow-up tasks the payments code sends after a commit are collected instead of queued and
run here, in order, by the same domain functions the Celery tasks call; Stripe's events are
taken from the fake (as it would deliver them) and handed to the event handler, in any order and
as often as a test likes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
import sqlalchemy as sa

from chat.messages.orders import describe_cancellation
from core import handover, stripe_api
from core.i18n import Translator
from core.outbox import DELIVER_TASK
from core.settings import SANDBOX_BOT_TOKEN, get_settings, load_settings
from domain import catalog, offers, payments
from domain import reservations as rsv
from domain.payments import (
    CancellationOutcome,
    CheckoutOutcome,
    CloseOutcome,
    EventOutcome,
    OnboardingOutcome,
    RefundOutcome,
)
from models import (
    AuditEntry,
    Business,
    Notification,
    NotificationStatus,
    Offer,
    OfferStatus,
    Order,
    OrderStatus,
    PayoutsStatus,
    PhotoStatus,
    StripeEvent,
)
from sandbox.stripe_fake import PaymentDeclined, StripeFake
from sandbox.telegram_fake.state import BotIdentity
from tests.factories import make_business, make_offer, make_user

RETURN_URL = "https://t.me/surplus_test_bot"


def plain(text: str) -> str:
    """A message's text without the direction isolates around user text (chat.cards.isolate)."""
    return text.replace("\u2068", "").replace("\u2069", "")


@pytest.fixture(scope="module")
def fake():
    with StripeFake() as stripe_fake:
        yield stripe_fake


@dataclass
class Harness:
    fake: StripeFake
    db: Any
    queued: list[tuple[str, list, float | None]] = field(default_factory=list)
    handled: set[str] = field(default_factory=set)

    def hand_over(self, name: str, args: list, countdown: float | None = None, kwargs: dict | None = None,
                  task_id: str | None = None) -> None:
        """Stands in for core.handover.send_task. Outbox deliveries are left out: these tests read
        the messages from the outbox itself."""
        if name != DELIVER_TASK:
            self.queued.append((name, args, countdown))

    RUNNERS: ClassVar[dict[str, Callable[..., Any]]] = {
        "payments.create_checkout": payments.create_checkout,
        "payments.expire_checkout": payments.expire_checkout,
        "payments.refund_order": payments.refund_order,
        "payments.refund_payment": payments.refund_payment,
    }

    def run_tasks(self, *, include_delayed: bool = True) -> list[tuple[str, Any]]:
        """Run the queued follow-ups (and what they queue in turn) like a worker would."""
        done = []
        while self.queued:
            name, args, countdown = self.queued.pop(0)
            if countdown and not include_delayed:
                continue
            done.append((name, self.RUNNERS[name](*args)))
        return done

    def events(self, *types: str) -> list[dict]:
        return [e for e in self.fake.events() if not types or e["type"] in types]

    def deliver(self, events: list[dict] | None = None, times: int = 1) -> list[EventOutcome]:
        """Hand events to the handler as the gateway would queue them (trimmed)."""
        outcomes = []
        for event in events if events is not None else self.events():
            for _ in range(times):
                with self.db.session_scope() as session:
                    outcomes.append(payments.handle_event(session, stripe_api.slim_event(event)))
        return outcomes

    def deliver_new(self) -> list[EventOutcome]:
        new = [e for e in self.events() if e["id"] not in self.handled]
        self.handled.update(e["id"] for e in new)
        return self.deliver(new)


@pytest.fixture
def harness(db, fake, monkeypatch):
    fake.reset()
    with pytest.MonkeyPatch.context() as env:  # undone before the settings are read again below
        for name, value in {"STRIPE_API_URL": fake.url, "STRIPE_SECRET_KEY": "sk_test_integration",
                            "STRIPE_WEBHOOK_SECRET": "whsec_integration", "CHECKOUT_RETURN_URL": RETURN_URL}.items():
            env.setenv(name, value)
        get_settings.cache_clear()
        h = Harness(fake, db)
        monkeypatch.setattr(handover, "send_task", h.hand_over)
        yield h
    get_settings.cache_clear()


# --------------------------------------------------------------------------- helpers


def new_offer(quantity: int = 5, price: int = 350, starts_in: timedelta = timedelta(hours=2)) -> tuple[int, int]:
    business_id = make_business()
    return business_id, make_offer(business_id, quantity=quantity, price_minor=price, starts_in=starts_in)


def reserve(db, offer_id: int, customer_id: int, quantity: int = 1) -> int:
    with db.session_scope() as session:
        result = rsv.reserve(session, offer_id, customer_id, quantity)
    assert result.ok, result
    return result.order_id


def order(db, order_id: int) -> Order:
    with db.session_scope() as session:
        return session.get(Order, order_id)


def message(db, key: str) -> dict | None:
    with db.session_scope() as session:
        note = session.scalar(sa.select(Notification).where(Notification.idempotency_key == key))
        return note.payload if note else None


def messages_for(db, order_id: int) -> list[str]:
    with db.session_scope() as session:
        return sorted(session.scalars(sa.select(Notification.idempotency_key)
                                      .where(Notification.idempotency_key.like(f"order:{order_id}:%"))))


def lapse(db, order_id: int, *, sweep: bool = True) -> None:
    """Time passes for this hold (and the sweeper runs, unless told not to)."""
    with db.session_scope() as session:
        session.execute(sa.text("UPDATE orders SET hold_expires_at = now() - interval '1 second' WHERE id = :id"),
                        {"id": order_id})
    if sweep:
        with db.session_scope() as session:
            rsv.release_expired_holds(session, datetime.now(UTC))


def consistent(db, money: bool = True) -> None:
    with db.session_scope() as session:
        rsv.assert_ledger_consistent(session, money=money)


def checkout_of(h: Harness, order_id: int) -> dict:
    session_id = order(h.db, order_id).checkout_session_id
    assert session_id
    return next(s for s in h.fake.objects("checkout.session") if s["id"] == session_id)


def reserved_and_checked_out(h: Harness, quantity: int = 2, offer_quantity: int = 5) -> tuple[int, int, int]:
    _business, offer_id = new_offer(offer_quantity)
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer, quantity)
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.CREATED
    return offer_id, customer, order_id


# --------------------------------------------------------------------------- checkout


def test_a_held_order_gets_one_checkout_session_and_a_pay_button(harness):
    h = harness
    _offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=2)
    row = order(h.db, order_id)
    (stripe_session,) = h.fake.objects("checkout.session")
    assert row.checkout_session_id == stripe_session["id"] and row.checkout_url == stripe_session["url"]
    assert stripe_session["amount_total"] == 700 and stripe_session["currency"] == "eur"
    assert stripe_session["client_reference_id"] == str(order_id)
    assert stripe_session["metadata"]["order_key"] == payments.order_key(row)
    assert stripe_session["success_url"] == RETURN_URL
    # The session outlives the hold only as a backstop; it is closed when the hold ends.
    assert stripe_session["expires_at"] == int(row.hold_expires_at.timestamp()) + 31 * 60
    (name, args, countdown), = h.queued
    assert name == "payments.expire_checkout" and args == [order_id]
    assert 9 * 60 < countdown <= 10 * 60 + payments.CLOSE_DELAY_SECONDS

    pay = message(h.db, f"order:{order_id}:checkout")
    assert "2 × Croissant bag" in plain(pay["text"]) and "€7.00" in pay["text"]
    assert {"text": "💳 Pay €7.00", "url": stripe_session["url"]} in [b for r in pay["keyboard"] for b in r]
    assert f"ocancel:{order_id}" in [b.get("callback_data") for r in pay["keyboard"] for b in r]

    # A second tap (a new request) gets the same session, and the button once more. The task sends
    # the button itself: its redelivery hands back the same row while unsent, and nothing once sent.
    again = payments.create_checkout(order_id, request="tap-2")
    assert again.outcome is CheckoutOutcome.EXISTING and again.pay_message is not None
    redelivered = payments.create_checkout(order_id, request="tap-2")
    assert redelivered == again
    with h.db.session_scope() as session:
        session.execute(sa.update(Notification).where(Notification.id == again.pay_message)
                        .values(status=NotificationStatus.SENT))
    assert payments.create_checkout(order_id, request="tap-2") == payments.Checkout(CheckoutOutcome.EXISTING, None)
    assert len(h.fake.objects("checkout.session")) == 1
    assert messages_for(h.db, order_id) == [f"order:{order_id}:checkout", f"order:{order_id}:checkout:tap-2"]


def test_the_return_url_is_a_setting_that_stripe_needs_outside_the_sandbox(monkeypatch):
    monkeypatch.delenv("CHECKOUT_RETURN_URL", raising=False)
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.setenv("STRIPE_SECRET_KEY", "sk_test_settings")
    # The sandbox bot's chat, by the name the Telegram fake gives it: no getMe needed.
    assert load_settings().checkout_return_url == "https://t.me/surplus_sandbox_bot"
    assert BotIdentity.for_token(SANDBOX_BOT_TOKEN).username == "surplus_sandbox_bot"
    # A real bot's name is Telegram's to tell: without the setting, startup fails and says why.
    monkeypatch.setenv("BOT_TOKEN", "987654:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert "CHECKOUT_RETURN_URL" in str(exit_info.value)
    monkeypatch.setenv("CHECKOUT_RETURN_URL", "https://t.me/surplus_bot")
    assert load_settings().checkout_return_url == "https://t.me/surplus_bot"
    monkeypatch.delenv("STRIPE_SECRET_KEY")
    monkeypatch.delenv("CHECKOUT_RETURN_URL")
    assert load_settings().checkout_return_url is None  # no card payments: nothing to return from


def test_a_lost_answer_or_a_failing_stripe_never_makes_a_second_session(harness):
    h = harness
    _business, offer_id = new_offer()
    order_id = reserve(h.db, offer_id, make_user())
    with h.db.session_scope() as session:
        row = session.get(Order, order_id)
        offer = session.get(Offer, offer_id)
        params = payments.checkout_params(row, offer, offer.business)
        key = f"checkout-{payments.order_key(row)}"
    # The first attempt reached Stripe, but its answer (and the worker) got lost.
    first = stripe_api.create_checkout_session(params, idempotency_key=key)
    # Stripe fails the next attempts: the task fails with a retryable error and changes nothing.
    h.fake.add_fault("api_error", path="/v1/checkout/sessions", method="POST", count=None)
    with pytest.raises(ConnectionError):
        payments.create_checkout(order_id)
    assert order(h.db, order_id).checkout_session_id is None
    h.fake.clear_faults()
    # One 500 is retried by the library itself, with the same key.
    h.fake.add_fault("api_error", path="/v1/checkout/sessions", method="POST", count=1)
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.CREATED
    assert [s["id"] for s in h.fake.objects("checkout.session")] == [first["id"]]
    assert order(h.db, order_id).checkout_session_id == first["id"]


def test_no_checkout_for_an_order_that_is_not_held(harness):
    h = harness
    _business, offer_id = new_offer()
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer)
    with h.db.session_scope() as session:
        rsv.release(session, order_id, rsv.ReleaseReason.CANCELLED, customer_id=customer)
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.NOT_HELD
    assert payments.create_checkout(10**12).outcome is CheckoutOutcome.NOT_HELD
    other = reserve(h.db, offer_id, make_user())
    lapse(h.db, other, sweep=False)  # due, not swept yet: too late to start paying
    assert payments.create_checkout(other).outcome is CheckoutOutcome.NOT_HELD
    assert h.fake.objects("checkout.session") == []


def test_without_stripe_the_hold_is_released_and_the_customer_told(harness):
    h = harness
    _business, offer_id = new_offer()
    order_id = reserve(h.db, offer_id, make_user(), 2)
    os.environ.pop("STRIPE_SECRET_KEY")
    get_settings.cache_clear()
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.UNAVAILABLE
    assert order(h.db, order_id).status == OrderStatus.CANCELLED
    assert "not available" in message(h.db, f"order:{order_id}:checkout_failed")["text"]
    consistent(h.db)


# --------------------------------------------------------------------------- events


def test_payment_sells_the_units_and_issues_a_code_once_whatever_the_deliveries(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=2)
    h.fake.pay(checkout_of(h, order_id)["id"])
    events = h.events()
    assert [e["type"] for e in events] == ["charge.succeeded", "payment_intent.succeeded", "checkout.session.completed"]
    # Every event three times, newest first.
    outcomes = h.deliver(list(reversed(events)), times=3)
    assert outcomes.count(EventOutcome.HANDLED) == 1
    assert outcomes.count(EventOutcome.DUPLICATE) == 6
    row = order(h.db, order_id)
    assert row.status == OrderStatus.PAID and row.pickup_code and row.checkout_url is None
    assert row.payment_intent_id == checkout_of(h, order_id)["payment_intent"]
    with h.db.session_scope() as session:
        offer = session.get(Offer, offer_id)
        assert (offer.units_held, offer.units_sold) == (0, 2)
        assert session.scalar(sa.select(sa.func.count()).select_from(StripeEvent)) == 3
    paid = message(h.db, f"order:{order_id}:paid")
    assert row.pickup_code in paid["text"] and "Paid" in paid["text"]
    assert "2 × <b>Croissant bag</b>" in plain(message(h.db, f"order:{order_id}:paid:business")["text"])
    consistent(h.db)
    # Closing the session later finds nothing to do.
    assert payments.expire_checkout(order_id) is CloseOutcome.ALREADY_CLOSED


def test_the_same_event_handled_by_many_workers_at_once_has_one_effect(harness):
    h = harness
    _offer_id, _customer, order_id = reserved_and_checked_out(h)
    h.fake.pay(checkout_of(h, order_id)["id"])
    (completed,) = h.events("checkout.session.completed")
    barrier = threading.Barrier(8)
    outcomes: list[EventOutcome] = []

    def worker() -> None:
        barrier.wait(timeout=10)
        with h.db.session_scope() as session:
            outcomes.append(payments.handle_event(session, stripe_api.slim_event(completed)))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert sorted(outcomes) == sorted([EventOutcome.HANDLED] + [EventOutcome.DUPLICATE] * 7)
    assert order(h.db, order_id).status == OrderStatus.PAID
    consistent(h.db)


@pytest.mark.parametrize("newest_first", [False, True])
def test_a_delayed_bank_payment_is_confirmed_in_whatever_order_its_events_come(harness, newest_first):
    h = harness
    _offer_id, _customer, order_id = reserved_and_checked_out(h)
    session_id = checkout_of(h, order_id)["id"]
    h.fake.pay(session_id, asynchronous=True, outcome=None)
    h.fake.settle(session_id, "succeeded")
    events = h.events()
    assert "checkout.session.async_payment_succeeded" in [e["type"] for e in events]
    h.deliver(list(reversed(events)) if newest_first else events)
    assert order(h.db, order_id).status == OrderStatus.PAID
    said = messages_for(h.db, order_id)
    assert f"order:{order_id}:paid" in said
    # "Being processed" only makes sense before the payment cleared.
    assert (f"order:{order_id}:processing" in said) is (not newest_first)
    consistent(h.db)


def test_a_failed_bank_payment_releases_the_hold(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=2)
    session_id = checkout_of(h, order_id)["id"]
    h.fake.pay(session_id, asynchronous=True, outcome=None)
    h.fake.settle(session_id, "failed")
    h.deliver()
    assert order(h.db, order_id).status == OrderStatus.CANCELLED
    assert "did not go through" in message(h.db, f"order:{order_id}:payment_failed")["text"]
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_held == 0
    consistent(h.db)


def test_a_declined_card_changes_nothing_and_the_customer_can_pay_again(harness):
    h = harness
    _offer_id, _customer, order_id = reserved_and_checked_out(h)
    session_id = checkout_of(h, order_id)["id"]
    h.fake.decline(session_id)
    h.fake.add_fault("card_decline", decline_code="insufficient_funds")
    with pytest.raises(PaymentDeclined):
        h.fake.pay(session_id)
    h.deliver_new()
    assert order(h.db, order_id).status == OrderStatus.HELD
    h.fake.pay(session_id)
    h.deliver_new()
    assert order(h.db, order_id).status == OrderStatus.PAID


def test_a_late_payment_takes_stock_that_is_still_there(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=2, offer_quantity=3)
    lapse(h.db, order_id)  # released: the 2 units are back on sale, nobody took them
    assert order(h.db, order_id).status == OrderStatus.EXPIRED
    h.fake.pay(checkout_of(h, order_id)["id"])  # the customer still had the page open
    h.deliver()
    row = order(h.db, order_id)
    assert row.status == OrderStatus.PAID and row.pickup_code
    assert "still enough left" in message(h.db, f"order:{order_id}:paid")["text"]
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_sold == 2
    consistent(h.db)


def test_a_late_payment_without_stock_is_refunded_automatically_and_the_customer_told(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=1, offer_quantity=1)
    lapse(h.db, order_id)
    rival_order = reserve(h.db, offer_id, make_user())  # the last unit went to someone else
    h.queued.clear()
    checkout = checkout_of(h, order_id)
    h.fake.pay(checkout["id"])
    h.deliver_new()
    row = order(h.db, order_id)
    assert row.status == OrderStatus.EXPIRED and row.pickup_code is None
    assert "sold out" in message(h.db, f"order:{order_id}:refunding")["text"]
    assert h.queued == [("payments.refund_order", [order_id], None)]
    assert h.run_tasks() == [("payments.refund_order", RefundOutcome.REFUNDED)]
    (refund,) = h.fake.objects("refund")
    assert refund["payment_intent"] == order(h.db, order_id).payment_intent_id and refund["amount"] == 350
    assert order(h.db, order_id).status == OrderStatus.REFUNDED
    assert "Refunded €3.50" in message(h.db, f"order:{order_id}:refunded")["text"]
    # Stripe's refund events come afterwards and change nothing; a rerun of the task neither.
    assert EventOutcome.HANDLED not in h.deliver_new()
    assert payments.refund_order(order_id) is RefundOutcome.ALREADY_DONE
    assert len(h.fake.objects("refund")) == 1
    assert order(h.db, rival_order).status == OrderStatus.HELD
    consistent(h.db)


def test_a_refund_recorded_from_its_event_first_is_not_recorded_twice(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=1, offer_quantity=1)
    lapse(h.db, order_id)
    reserve(h.db, offer_id, make_user())
    h.fake.pay(checkout_of(h, order_id)["id"])
    h.deliver_new()
    # The refund is made, but the worker dies before it records Stripe's answer...
    intent = order(h.db, order_id).payment_intent_id
    with h.db.session_scope() as session:
        key = f"refund-{payments.order_key(session.get(Order, order_id))}"
    stripe_api.create_refund(intent, 350, idempotency_key=key, metadata={"order_id": str(order_id)})
    # ...its event records it, and the retried task finds the same refund (same key).
    h.deliver_new()
    assert order(h.db, order_id).status == OrderStatus.REFUNDED
    assert payments.refund_order(order_id) is RefundOutcome.ALREADY_DONE
    assert len(h.fake.objects("refund")) == 1
    consistent(h.db)


def test_a_refund_event_before_its_payment_waits_for_it(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=1, offer_quantity=1)
    lapse(h.db, order_id)
    reserve(h.db, offer_id, make_user())
    h.fake.pay(checkout_of(h, order_id)["id"])
    completed = h.events("checkout.session.completed")
    h.handled.update(e["id"] for e in h.events())
    intent = checkout_of(h, order_id)["payment_intent"]
    stripe_api.create_refund(intent, 350, idempotency_key="by-hand", metadata={"order_id": str(order_id)})
    refund_events = h.events("refund.created")
    with pytest.raises(payments.EventNotReady):
        h.deliver(refund_events)
    with h.db.session_scope() as session:  # not marked as handled: it is tried again later
        assert session.get(StripeEvent, refund_events[0]["id"]) is None
    h.deliver(completed)
    h.queued.clear()  # the refund the payment asks for exists already
    assert h.deliver(refund_events) == [EventOutcome.HANDLED]
    assert order(h.db, order_id).status == OrderStatus.REFUNDED
    consistent(h.db)


def test_money_for_an_order_we_do_not_know_goes_back(harness):
    h = harness
    params = {
        "mode": "payment", "client_reference_id": "999999",
        "line_items": [{"price_data": {"currency": "eur", "unit_amount": 500, "product_data": {"name": "Bag"}},
                        "quantity": 1}],
        "metadata": {"order_id": "999999", "order_key": "999999-1"},
    }
    stranger = stripe_api.create_checkout_session(params, idempotency_key="stranger")
    foreign = stripe_api.create_checkout_session({**params, "metadata": {"shop": "another product"}},
                                                 idempotency_key="foreign")
    h.fake.pay(stranger["id"])
    h.fake.pay(foreign["id"])
    h.deliver_new()
    # Ours (by its metadata) but no such order: refunded. Not ours at all: left alone.
    assert [name for name, _args, _c in h.queued] == ["payments.refund_payment"]
    h.run_tasks()
    (refund,) = h.fake.objects("refund")
    assert refund["payment_intent"] == next(s for s in h.fake.objects("checkout.session")
                                            if s["id"] == stranger["id"])["payment_intent"]
    with h.db.session_scope() as session:
        entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.action == "payments.refund_payment"))
        assert entry.details["reason"] == "unknown_order" and entry.details["amount"] == 500
    assert EventOutcome.HANDLED not in h.deliver_new()  # its refund event is recognised as such


# --------------------------------------------------------------------------- closing sessions


def test_a_lapsed_hold_closes_its_session_so_nobody_pays_for_units_back_on_sale(harness):
    h = harness
    _offer_id, _customer, order_id = reserved_and_checked_out(h)
    assert payments.expire_checkout(order_id) is CloseOutcome.STILL_PAYABLE
    lapse(h.db, order_id)
    assert payments.expire_checkout(order_id) is CloseOutcome.CLOSED
    assert checkout_of(h, order_id)["status"] == "expired"
    assert order(h.db, order_id).checkout_url is None
    assert payments.expire_checkout(order_id) is CloseOutcome.ALREADY_CLOSED
    h.deliver_new()  # checkout.session.expired
    assert order(h.db, order_id).status == OrderStatus.EXPIRED
    consistent(h.db)


def test_closing_a_session_that_was_paid_records_the_payment_whose_webhook_was_lost(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h, quantity=2)
    h.fake.pay(checkout_of(h, order_id)["id"])  # its events never arrive
    lapse(h.db, order_id, sweep=False)  # the scheduled close runs before the sweeper
    assert payments.expire_checkout(order_id) is CloseOutcome.SETTLED
    row = order(h.db, order_id)
    assert row.status == OrderStatus.PAID and row.pickup_code in message(h.db, f"order:{order_id}:paid")["text"]
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_sold == 2
    # When the events do arrive, they change nothing.
    assert EventOutcome.HANDLED not in h.deliver_new()
    consistent(h.db)


def test_reconciliation_catches_up_with_refunds_and_open_sessions(harness):
    h = harness
    # 1: paid late without stock, and Stripe was down when its refund was due.
    offer_id, _c, late = reserved_and_checked_out(h, quantity=1, offer_quantity=1)
    lapse(h.db, late)
    reserve(h.db, offer_id, make_user())
    h.fake.pay(checkout_of(h, late)["id"])
    h.deliver_new()
    h.fake.add_fault("api_error", path="/v1/refunds", method="POST", count=None)
    with pytest.raises(ConnectionError):
        h.run_tasks()
    h.fake.clear_faults()
    # 2: lapsed and swept, but its session was never closed (the close task was lost).
    _o, _c, lapsed = reserved_and_checked_out(h)
    lapse(h.db, lapsed)
    # 3: still held and payable: left alone.
    _o, _c, open_order = reserved_and_checked_out(h)
    h.queued.clear()

    with h.db.session_scope() as session:
        report = payments.reconcile_payments(session, datetime.now(UTC))
    assert report == {"refunds_requested": 1, "checkouts_to_close": 1}
    assert sorted((name, args) for name, args, _c in h.queued) == [
        ("payments.expire_checkout", [lapsed]), ("payments.refund_order", [late])]
    h.run_tasks()
    assert order(h.db, late).status == OrderStatus.REFUNDED
    assert checkout_of(h, lapsed)["status"] == "expired"
    assert checkout_of(h, open_order)["status"] == "open"
    with h.db.session_scope() as session:
        assert payments.reconcile_payments(session, datetime.now(UTC))["refunds_requested"] == 0
    consistent(h.db, money=True)


# --------------------------------------------------------------------------- cancellations


def paid_order(h: Harness, quantity: int = 1, starts_in: timedelta = timedelta(hours=2)) -> tuple[int, int, int]:
    _business, offer_id = new_offer(5, starts_in=starts_in)
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer, quantity)
    payments.create_checkout(order_id)
    h.fake.pay(checkout_of(h, order_id)["id"])
    h.deliver_new()
    h.queued.clear()
    assert order(h.db, order_id).status == OrderStatus.PAID
    return offer_id, customer, order_id


def test_a_customer_cancels_in_time_and_gets_the_money_back(harness):
    h = harness
    offer_id, customer, order_id = paid_order(h, quantity=2)
    with h.db.session_scope() as session:
        assert payments.cancel_by_customer(session, order_id, make_user(), datetime.now(UTC)) \
            is CancellationOutcome.NOT_CANCELLABLE  # someone else's order
        outcome = payments.cancel_by_customer(session, order_id, customer, datetime.now(UTC))
    assert outcome is CancellationOutcome.CANCELLED
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_sold == 0
    assert "cancelled by the customer" in message(h.db, f"order:{order_id}:cancelled:business")["text"]
    h.run_tasks()
    assert order(h.db, order_id).status == OrderStatus.REFUNDED
    assert h.fake.objects("refund")[0]["amount"] == 700
    with h.db.session_scope() as session:
        again = payments.cancel_by_customer(session, order_id, customer, datetime.now(UTC))
    assert again is CancellationOutcome.NOT_CANCELLABLE
    assert "back to your card" in describe_cancellation(Translator("en"), outcome)
    consistent(h.db)


def test_no_cancellation_close_to_pickup(harness):
    h = harness
    _offer_id, customer, order_id = paid_order(h, starts_in=timedelta(minutes=30))
    with h.db.session_scope() as session:
        outcome = payments.cancel_by_customer(session, order_id, customer, datetime.now(UTC))
    assert outcome is CancellationOutcome.TOO_LATE
    assert "60 minutes" in describe_cancellation(Translator("en"), outcome)
    assert order(h.db, order_id).status == OrderStatus.PAID and h.queued == []


def test_orders_called_off_by_the_business_are_refunded_and_their_customers_told(harness):
    h = harness
    offer_id, _c1, first = paid_order(h)
    with h.db.session_scope() as session:
        second = rsv.reserve(session, offer_id, make_user(), 2).order_id
    payments.create_checkout(second)
    h.fake.pay(checkout_of(h, second)["id"])
    h.deliver_new()
    h.queued.clear()
    with h.db.session_scope() as session:
        assert payments.call_off_paid_orders(session, [second, first, 10**12]) == [first, second]
    with h.db.session_scope() as session:
        assert payments.call_off_paid_orders(session, [first, second]) == []  # once
    assert "The business cancelled this offer" in message(h.db, f"order:{first}:called_off")["text"]
    h.run_tasks()
    assert {order(h.db, o).status for o in (first, second)} == {OrderStatus.REFUNDED}
    assert sorted(r["amount"] for r in h.fake.objects("refund")) == [350, 700]
    h.deliver_new()
    consistent(h.db)


def test_a_cancelled_offer_releases_and_refunds_its_buyers_and_tells_each(harness):
    """What the business's "cancel offer" does (the chat calls payments.cancel_offer)."""
    h = harness
    offer_id, _payer, paid = paid_order(h, quantity=2)
    held = reserve(h.db, offer_id, make_user())
    assert payments.create_checkout(held).outcome is CheckoutOutcome.CREATED
    h.queued.clear()
    with h.db.session_scope() as session:
        owner = session.get(Offer, offer_id).business.owner_id
        result = payments.cancel_offer(session, offer_id, owner)
        assert (result.released_order_ids, result.paid_order_ids) == ([held], [paid])
    assert "will be refunded" in message(h.db, f"order:{paid}:called_off")["text"]
    assert "you were not charged" in message(h.db, f"order:{held}:called_off")["text"]
    assert sorted((name, args) for name, args, _c in h.queued) == [
        ("payments.expire_checkout", [held]), ("payments.refund_order", [paid])]
    h.run_tasks()
    assert order(h.db, paid).status == OrderStatus.REFUNDED
    assert checkout_of(h, held)["status"] == "expired"
    h.deliver_new()
    consistent(h.db)


def test_a_session_that_is_not_the_orders_own_pays_nothing_and_is_refunded(harness):
    h = harness
    offer_id, _customer, order_id = reserved_and_checked_out(h)
    waiting = reserve(h.db, offer_id, make_user())  # held, no session yet
    with h.db.session_scope() as session:
        row, offer = session.get(Order, order_id), session.get(Offer, offer_id)
        params = payments.checkout_params(row, offer, offer.business)
        waiting_params = payments.checkout_params(session.get(Order, waiting), offer, offer.business)
    # A second session naming the order (say, made with an expired idempotency key) ...
    second = stripe_api.create_checkout_session(params, idempotency_key="second-session")
    # ... and one naming the other order with a key from another database (ids repeat after a restore).
    forged = stripe_api.create_checkout_session(
        {**waiting_params, "metadata": {**waiting_params["metadata"], "order_key": f"{waiting}-1"}},
        idempotency_key="old-database")
    h.queued.clear()
    h.fake.pay(second["id"])
    h.fake.pay(forged["id"])
    h.deliver_new()
    assert order(h.db, order_id).status == OrderStatus.HELD and order(h.db, waiting).status == OrderStatus.HELD
    assert order(h.db, waiting).checkout_session_id is None
    assert [name for name, _a, _c in h.queued] == ["payments.refund_payment"] * 2
    h.run_tasks()
    assert len(h.fake.objects("refund")) == 2
    h.fake.pay(checkout_of(h, order_id)["id"])  # the real one still works
    h.deliver_new()
    assert order(h.db, order_id).status == OrderStatus.PAID
    consistent(h.db)


def test_a_hold_released_while_stripe_answers_gets_its_new_session_closed(harness):
    h = harness
    _business, offer_id = new_offer()
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer)
    h.fake.add_fault("delay", path="/v1/checkout/sessions", method="POST", delay_seconds=1.0)

    def customer_lets_go() -> None:
        deadline = time.monotonic() + 5
        while not h.fake.objects("checkout.session") and time.monotonic() < deadline:
            time.sleep(0.02)
        with h.db.session_scope() as session:
            rsv.release(session, order_id, rsv.ReleaseReason.CANCELLED, customer_id=customer)

    releaser = threading.Thread(target=customer_lets_go)
    releaser.start()
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.NOT_HELD
    releaser.join()
    assert message(h.db, f"order:{order_id}:checkout") is None  # no Pay button for a released order
    assert h.run_tasks() == [("payments.expire_checkout", CloseOutcome.CLOSED)]
    assert checkout_of(h, order_id)["status"] == "expired" and order(h.db, order_id).checkout_url is None


def test_refunding_a_paid_order_calls_it_off_first(harness):
    """What the business's "cancel offer" sends for each paid order."""
    h = harness
    offer_id, _customer, order_id = paid_order(h, quantity=2)
    assert payments.refund_order(order_id) is RefundOutcome.REFUNDED
    assert order(h.db, order_id).status == OrderStatus.REFUNDED
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_sold == 0
    assert payments.refund_order(order_id) is RefundOutcome.ALREADY_DONE
    assert [r["amount"] for r in h.fake.objects("refund")] == [700]
    # A collected order keeps its money: the food is gone.
    _o, _c, collected = paid_order(h)
    with h.db.session_scope() as session:
        session.get(Order, collected).status = OrderStatus.COLLECTED
    assert payments.refund_order(collected) is RefundOutcome.NOT_DUE
    assert payments.refund_order(10**12) is RefundOutcome.NOT_DUE
    h.deliver_new()
    consistent(h.db)


@pytest.mark.parametrize("refund", [False, True])
def test_a_not_collected_order_is_refunded_only_when_the_operator_says_so(harness, monkeypatch, refund):
    h = harness
    monkeypatch.setenv("NO_SHOW_REFUND", "true" if refund else "false")
    get_settings.cache_clear()
    offer_id, _customer, order_id = paid_order(h, quantity=2, starts_in=-timedelta(minutes=30))
    with h.db.session_scope() as session:
        owner = session.get(Offer, offer_id).business.owner_id
        assert payments.mark_no_show(session, order_id, owner, datetime.now(UTC)) is payments.NoShowOutcome.CLOSED
    assert [name for name, _args, _c in h.queued] == (["payments.refund_order"] if refund else [])
    h.run_tasks()
    h.deliver_new()
    assert order(h.db, order_id).status == (OrderStatus.REFUNDED if refund else OrderStatus.NOT_COLLECTED)
    assert [r["amount"] for r in h.fake.objects("refund")] == ([700] if refund else [])
    with h.db.session_scope() as session:
        assert session.get(Offer, offer_id).units_sold == 2  # the food was kept aside either way
    consistent(h.db)


# --------------------------------------------------------------------------- Connect


def ledger_rows(db, order_id: int) -> dict[str, int]:
    with db.session_scope() as session:
        rows = session.execute(sa.text(
            "SELECT kind, amount_minor FROM ledger_entries WHERE order_id = :id AND kind NOT IN "
            "('hold', 'release', 'sale', 'restock')"), {"id": order_id})
        return {row.kind: row.amount_minor for row in rows}


def business_row(db, business_id: int) -> Business:
    with db.session_scope() as session:
        return session.get(Business, business_id)


def onboard(h: Harness, business_id: int, *, complete: bool = True, request: str = "t1") -> str:
    """The owner taps "Set up payouts" and goes through Stripe's page; its events arrive. The account id."""
    owner = business_row(h.db, business_id).owner_id
    assert payments.start_onboarding(business_id, owner, request) is OnboardingOutcome.LINK_SENT
    link = message(h.db, f"business:{business_id}:payouts-link:{request}")
    assert link is not None and "Set up payouts" in link["text"]
    h.fake.onboard(link["keyboard"][0][0]["url"], complete=complete)
    h.fake.advance_clock(1)  # Stripe's events are ordered by the second they were made in
    h.deliver_new()
    account = business_row(h.db, business_id).stripe_account_id
    assert account
    return account


def connected_offer(h: Harness, price: int = 450) -> tuple[int, int, str]:
    business_id, offer_id = new_offer(5, price=price)
    return business_id, offer_id, onboard(h, business_id)


def payouts_told(db, business_id: int) -> list[str]:
    with db.session_scope() as session:
        return [n.payload["text"] for n in session.scalars(
            sa.select(Notification).where(Notification.idempotency_key.like(f"business:{business_id}:payouts:%"))
            .order_by(Notification.id))]


def test_a_business_goes_through_onboarding_and_every_change_is_told(harness):
    h = harness
    business_id, _offer = new_offer()
    account = onboard(h, business_id, complete=False)
    assert business_row(h.db, business_id).payouts_status == PayoutsStatus.PENDING
    assert payouts_told(h.db, business_id) == []  # it was pending since the link was made
    assert onboard(h, business_id, request="t2") == account  # the same account, a new link
    business = business_row(h.db, business_id)
    assert (business.payouts_status, business.charges_enabled) == (PayoutsStatus.ACTIVE, True)
    assert "are active" in payouts_told(h.db, business_id)[-1]
    assert payments.start_onboarding(business_id, business.owner_id, "t3") is OnboardingOutcome.ALREADY_ACTIVE

    h.fake.restrict_account(account)
    h.fake.advance_clock(1)
    h.deliver_new()
    assert business_row(h.db, business_id).payouts_status == PayoutsStatus.RESTRICTED
    assert "restricted" in payouts_told(h.db, business_id)[-1]
    # Duplicated and out-of-order events change nothing: the "active" one again, and under a new id.
    updates = h.events("account.updated")
    assert set(h.deliver(updates)) == {EventOutcome.DUPLICATE}
    older = {**updates[-2], "id": "evt_replayed_older"}
    assert h.deliver([older]) == [EventOutcome.IGNORED]
    assert business_row(h.db, business_id).payouts_status == PayoutsStatus.RESTRICTED

    h.fake.deauthorize_account(account)
    h.fake.advance_clock(1)
    h.deliver_new()
    h.fake.restrict_account(account, restricted=False)  # whatever Stripe says later: we have no access
    h.fake.advance_clock(1)
    h.deliver_new()
    business = business_row(h.db, business_id)
    assert (business.payouts_status, business.charges_enabled) == (PayoutsStatus.DISCONNECTED, False)
    assert "disconnected" in payouts_told(h.db, business_id)[-1]
    assert len(payouts_told(h.db, business_id)) == 3
    assert payments.start_onboarding(business_id, make_user(), "t4") is OnboardingOutcome.NOT_ALLOWED


def test_publishing_waits_for_payouts_when_the_operator_requires_connect(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("PAYOUTS_REQUIRE_CONNECT", "true")
    get_settings.cache_clear()
    business_id = make_business()
    draft = make_offer(business_id, status=OfferStatus.DRAFT, photo_status=PhotoStatus.READY,
                       photo_card_file_id="card")
    owner = business_row(h.db, business_id).owner_id
    with h.db.session_scope() as session, pytest.raises(offers.PublishRefused) as refused:
        offers.publish(session, draft, owner, datetime.now(UTC))
    assert refused.value.reason == "payouts_not_ready"
    onboard(h, business_id)
    with h.db.session_scope() as session:
        assert offers.publish(session, draft, owner, datetime.now(UTC)).status == OfferStatus.ACTIVE


def test_offers_of_a_business_that_cannot_take_payments_are_not_listed(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("PAYOUTS_REQUIRE_CONNECT", "true")
    get_settings.cache_clear()
    _business, offer_id, account = connected_offer(h)
    new_offer()  # a business without a Connect account

    def listed() -> set[int]:
        with h.db.session_scope() as session:
            return {item.offer.id for item in catalog.browse(session, datetime.now(UTC), catalog.Sort.NEWEST).items}

    assert listed() == {offer_id}
    h.fake.restrict_account(account)
    h.fake.advance_clock(1)
    h.deliver_new()
    assert listed() == set()


def test_a_sale_pays_the_business_minus_the_fee_and_a_cancellation_takes_all_of_it_back(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("PLATFORM_FEE_PERCENT", "10")
    monkeypatch.setenv("PLATFORM_FEE_FIXED", "25")
    get_settings.cache_clear()
    _business, offer_id, account = connected_offer(h, price=455)
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer, 2)  # 9.10: 91 (10 %, 0.91) + 25 fixed = 116
    payments.create_checkout(order_id)
    h.fake.pay(checkout_of(h, order_id)["id"])
    h.deliver_new()
    assert ledger_rows(h.db, order_id) == {"payment": 910, "fee": 116, "transfer": 794}
    (transfer,) = [t for t in h.fake.objects("transfer") if t["destination"] == account]
    (fee,) = h.fake.objects("application_fee")
    assert (transfer["amount"], fee["amount"], transfer["transfer_group"]) == (910, 116, f"order-{order_id}")

    with h.db.session_scope() as session:
        assert payments.cancel_by_customer(session, order_id, customer, datetime.now(UTC)) \
            is CancellationOutcome.CANCELLED
    h.run_tasks()
    h.deliver_new()
    assert ledger_rows(h.db, order_id) == {"payment": 910, "fee": 116, "transfer": 794, "refund": 910,
                                           "fee_refund": 116, "reversal": 794}
    assert h.fake.balance(account) == {"eur": 0}  # the business gave it all back, and got its fee back
    with h.db.session_scope() as session:
        assert payments.ledger.split_problems(session) == []
    consistent(h.db)


def test_a_refunded_no_show_keeps_the_fee(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("NO_SHOW_REFUND", "true")
    get_settings.cache_clear()
    _business, offer_id, account = connected_offer(h, price=600)
    customer = make_user()
    order_id = reserve(h.db, offer_id, customer, 1)
    payments.create_checkout(order_id)
    h.fake.pay(checkout_of(h, order_id)["id"])
    h.deliver_new()
    h.queued.clear()
    with h.db.session_scope() as session:
        assert payments.closing.close_not_collected(session, order_id, datetime.now(UTC)) \
            is payments.NoShowOutcome.CLOSED
    h.run_tasks()
    assert ledger_rows(h.db, order_id) == {"payment": 600, "fee": 60, "transfer": 540, "refund": 600,
                                           "reversal": 600}
    assert h.fake.balance(account) == {"eur": -60}  # the business bears the fee of its no-show
    with h.db.session_scope() as session:
        assert payments.ledger.split_problems(session) == []


def test_an_account_restricted_mid_sale_takes_no_money_and_the_customer_is_told(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("PAYOUTS_REQUIRE_CONNECT", "true")
    get_settings.cache_clear()
    _business, offer_id, account = connected_offer(h)
    order_id = reserve(h.db, offer_id, make_user(), 1)
    h.fake.restrict_account(account)
    h.fake.advance_clock(1)
    h.deliver_new()
    assert payments.create_checkout(order_id).outcome is CheckoutOutcome.UNAVAILABLE
    assert order(h.db, order_id).status == OrderStatus.CANCELLED
    assert message(h.db, f"order:{order_id}:checkout_failed") is not None
    assert h.fake.objects("checkout.session") == [] and ledger_rows(h.db, order_id) == {}
    consistent(h.db)


def test_reconciliation_compares_transfers_and_fees_with_stripe_and_only_reports(harness, monkeypatch):
    h = harness
    monkeypatch.setenv("ADMIN_IDS", "4242")
    get_settings.cache_clear()
    make_user(4242, "Ada")
    _business, offer_id, account = connected_offer(h, price=600)
    kept, refunded = (reserve(h.db, offer_id, make_user(), 1) for _ in range(2))
    for order_id in (kept, refunded):
        payments.create_checkout(order_id)
        h.fake.pay(checkout_of(h, order_id)["id"])
    h.deliver_new()
    h.queued.clear()
    assert payments.refund_order(refunded) is RefundOutcome.REFUNDED
    h.fake.pay_out(account)  # its payout.paid event is lost: the reconciliation records it
    with h.db.session_scope() as session:
        assert payments.reconcile_payments(session, datetime.now(UTC))["connect_to_compare"] is True
    assert payments.reconcile.reconcile_connect() == {"businesses": 1, "orders_compared": 2, "mismatches": 0,
                                                     "payouts_recorded": 1, "accounts_synced": 1}
    with h.db.session_scope() as session:  # someone edits the ledger by hand
        session.execute(sa.text("UPDATE ledger_entries SET amount_minor = 500 "
                                "WHERE order_id = :id AND kind = 'fee'"), {"id": kept})
    report = payments.reconcile.reconcile_connect()
    assert (report["mismatches"], report["payouts_recorded"]) == (1, 0)
    told = message(h.db, next(k for k in notification_keys(h.db) if k.startswith("reconcile:")))
    assert told is not None and "1 difference" in told["text"] and f"order {kept}: fee is 500" in plain(told["text"])
    assert ledger_rows(h.db, kept)["fee"] == 500  # reported, never fixed
    with h.db.session_scope() as session:
        audited = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "payments.reconcile_connect",
                                                             AuditEntry.result == "mismatch")).all()
    assert len(audited) == 1 and audited[0].details["count"] == 1
    payments.reconcile.reconcile_connect()  # the same differences again: admins are not told twice
    assert sum(k.startswith("reconcile:") for k in notification_keys(h.db)) == 1


def notification_keys(db) -> list[str]:
    with db.session_scope() as session:
        return list(session.scalars(sa.select(Notification.idempotency_key).order_by(Notification.id)))
