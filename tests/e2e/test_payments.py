"""Paying for a reservation, end to end: the customer taps through the chat, pays on the Stripe
fake's Checkout page, Stripe's webhooks reach the gateway, and the payments worker answers in
the chat — with duplicate and out-of-order deliveries switched on."""

from __future__ import annotations

import time

import httpx
import pytest
import sqlalchemy as sa

from core import db
from domain import reservations as rsv
from models import Order, OrderStatus
from sandbox.stripe_fake import SandboxError, signature_header
from tests.e2e.conftest import STRIPE_WEBHOOK_SECRET, new_user_id
from tests.factories import make_business, make_offer


def buttons(message: dict) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    return {b["text"]: b.get("callback_data") or b.get("url") for row in markup.get("inline_keyboard", [])
            for b in row}


def plain(text: str | None) -> str:
    """A message's text without the direction isolates around user text (see chat.cards.isolate)."""
    return (text or "").replace("\u2068", "").replace("\u2069", "")


def wait_for_message(stack, user: int, needle: str, after_id: int = 0, timeout: float = 20.0) -> dict:
    """The newest bot message (as it reads now, edits included) containing ``needle``. Replies are
    found by their text, not by their order: a payment message may overtake a menu's edit."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in reversed(stack.telegram.messages(user)):
            if message.get("from", {}).get("is_bot") and message["message_id"] > after_id \
                    and needle in plain(message.get("text")):
                return message
        time.sleep(0.05)
    texts = [m.get("text") for m in stack.telegram.messages(user)]
    raise AssertionError(f"no message with {needle!r} in chat {user}: {texts}")


def say(stack, user: int, text: str, needle: str) -> dict:
    sent = stack.telegram.send_text(user, text)
    return wait_for_message(stack, user, needle, after_id=sent["message_id"])


def tap(stack, user: int, message: dict, data: str, needle: str) -> dict:
    stack.telegram.press_button(user, message["message_id"], data)
    return wait_for_message(stack, user, needle)


def wait_until(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def message(stack, user: int, message_id: int) -> dict:
    """A message of the chat as it reads now (edits included)."""
    return next(m for m in stack.telegram.messages(user) if m["message_id"] == message_id)


def order_of(user: int) -> Order | None:
    with db.session_scope() as session:
        return session.scalars(sa.select(Order).where(Order.customer_id == user)).first()


def reserve_through_the_chat(stack, user: int, offer_id: int, quantity: int) -> tuple[dict, str]:
    """Open the offer, choose the quantity, reserve; returns the Pay message and its session id."""
    card = say(stack, user, f"/start offer_{offer_id}", "left")
    chosen = next(d for d in buttons(card).values() if d and d.startswith(f"qty:{offer_id}:{quantity}:"))
    confirm = tap(stack, user, card, chosen, "You then have")
    buy = next(d for d in buttons(confirm).values() if d and d.startswith(f"buy:{offer_id}:{quantity}:"))
    stack.telegram.press_button(user, confirm["message_id"], buy)
    pay = wait_for_message(stack, user, "Please pay by")
    assert pay["message_id"] == confirm["message_id"]  # in place of "⏳ Reserving…"
    url = next(value for text, value in buttons(pay).items() if text.startswith("💳 Pay"))
    assert url.startswith(stack.stripe.url + "/checkout/cs_")
    return pay, url.rsplit("/", 1)[1]


@pytest.fixture
def rough_webhooks(stack):
    """Stripe at its worst: every event twice, and batches delivered newest first."""
    stack.stripe.configure_webhook(duplicates=2, out_of_order=True, reorder_window=0.3)
    yield
    stack.stripe.configure_webhook(duplicates=1, out_of_order=False)


def test_reserve_pay_get_a_code_then_cancel_and_get_the_money_back(stack, user, rough_webhooks):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    offer_id = make_offer(make_business(owner, name="Café <Mond>"), "Bagel box", quantity=4, price_minor=350)

    pay, session_id = reserve_through_the_chat(stack, user, offer_id, 2)
    assert "2 × Bagel box" in plain(pay["text"]) and "€7.00" in pay["text"] and "Café <Mond>" in pay["text"]
    order = order_of(user)
    assert order.status == OrderStatus.HELD and order.checkout_session_id == session_id

    stack.stripe.pay(session_id)
    paid = wait_for_message(stack, user, "Your pickup code")
    order = wait_until(lambda: (o := order_of(user)).status == OrderStatus.PAID and o)
    assert order.pickup_code in paid["text"] and "2 × Bagel box" in plain(paid["text"])
    assert "New order: 2 × Bagel box" in plain(wait_for_message(stack, owner, "New order")["text"])
    assert stack.stripe.wait_for_deliveries(timeout=10)
    time.sleep(0.5)  # the duplicate deliveries are handled too: still one code, one message
    assert len([m for m in stack.telegram.messages(user) if "Your pickup code" in (m.get("text") or "")]) == 1
    # Paid: the Pay message no longer offers Pay or "Cancel reservation"; it says it is paid.
    spent = wait_until(lambda: "✅ Paid." in (m := message(stack, user, pay["message_id"]))["text"] and m)
    assert order.pickup_code in spent["text"] and "2 × Bagel box" in plain(spent["text"])
    assert buttons(spent) == {"🧾 My orders": "orders", "⬅️ Main menu": "menu"}

    orders = say(stack, user, "/orders", "My orders")
    assert order.pickup_code in orders["text"]
    sure = tap(stack, user, orders, f"ocancel:{order.id}", "Cancel your order")
    tap(stack, user, sure, f"ocancelok:{order.id}", "My orders")
    refunded = wait_for_message(stack, user, "Refunded €7.00")
    assert "Bagel box" in refunded["text"]
    assert "cancelled by the customer" in wait_for_message(stack, owner, "cancelled by the customer")["text"]
    (refund,) = [r for r in stack.stripe.objects("refund") if r["metadata"].get("order_id") == str(order.id)]
    assert refund["amount"] == 700
    wait_until(lambda: order_of(user).status == OrderStatus.REFUNDED)
    with db.session_scope() as session:
        rsv.assert_ledger_consistent(session, offer_id)


def test_a_released_reservation_can_no_longer_be_paid(stack, user):
    offer_id = make_offer(make_business(), "Soup", quantity=2)
    pay, session_id = reserve_through_the_chat(stack, user, offer_id, 1)
    order = order_of(user)
    orders = say(stack, user, "/orders", "My orders")
    sure = tap(stack, user, orders, f"ocancel:{order.id}", "Let go of your reservation")
    tap(stack, user, sure, f"ocancelok:{order.id}", "My orders")
    wait_until(lambda: next(s for s in stack.stripe.objects("checkout.session") if s["id"] == session_id)["status"]
               == "expired")
    with pytest.raises(SandboxError):
        stack.stripe.pay(session_id)  # the Checkout page says it is no longer open
    wait_until(lambda: order_of(user).checkout_url is None)
    assert order_of(user).status == OrderStatus.CANCELLED
    spent = wait_until(lambda: "Reservation cancelled" in (m := message(stack, user, pay["message_id"]))["text"] and m)
    assert not any(text.startswith("💳 Pay") for text in buttons(spent))


def test_the_gateway_takes_only_events_stripe_signed(stack):
    event = {"id": "evt_forged_1", "object": "event", "type": "checkout.session.completed", "created": 1,
             "data": {"object": {"id": "cs_forged", "object": "checkout.session", "payment_status": "paid",
                                 "metadata": {"order_id": "1", "order_key": "1-1"}, "payment_intent": "pi_x",
                                 "amount_total": 1, "currency": "eur"}}}
    payload = httpx.Request("POST", "http://x", json=event).content
    url = f"{stack.gateway_url}/stripe/webhook"
    forged = httpx.post(url, content=payload, headers={
        "stripe-signature": signature_header(payload, "whsec_guess", int(time.time()))})
    assert forged.status_code == 400
    unsigned = httpx.post(url, content=payload)
    assert unsigned.status_code == 400
    ignored = {**event, "id": "evt_other_1", "type": "customer.created"}
    body = httpx.Request("POST", "http://x", json=ignored).content
    signed = httpx.post(url, content=body, headers={
        "stripe-signature": signature_header(body, STRIPE_WEBHOOK_SECRET, int(time.time()))})
    assert signed.status_code == 200 and signed.json()["ignored"] is True
