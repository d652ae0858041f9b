"""Orders that close, through the chat: the business marks a paid order "didn't come", the
customer is told kindly and sees it in /orders, and a late pickup still goes through."""

from __future__ import annotations

from datetime import timedelta

from core import db
from domain import reservations
from models import Order, OrderStatus
from tests.e2e.conftest import new_user_id
from tests.e2e.test_customer_flows import say, tap
from tests.e2e.test_payments import plain, wait_for_message
from tests.e2e.test_pickup_pass import scan, text_of
from tests.factories import make_business, make_offer, make_user


def with_button(messages: list[dict], data: str) -> dict:
    return next(m for m in reversed(messages) for row in (m.get("reply_markup") or {}).get("inline_keyboard", [])
                for b in row if b.get("callback_data") == data)


def test_didnt_come_then_a_late_pickup(stack):
    owner, buyer = new_user_id(), new_user_id()
    for person in (owner, buyer):
        stack.telegram.create_user(person, "Person")
    make_user(buyer, "Buyer")
    offer_id = make_offer(make_business(owner, name="Café Mond"), "Soup jar", starts_in=-timedelta(hours=1),
                          lasts=timedelta(hours=2))
    with db.session_scope() as session:
        order_id = reservations.reserve(session, offer_id, buyer, 1).order_id
        code = reservations.confirm_sale(session, order_id, 350, "EUR", f"pi_e2e_{order_id}").pickup_code

    shown = tap(stack, owner, with_button(say(stack, owner, "/myoffers"), f"bizoffer:show:{offer_id}"),
                f"bizoffer:show:{offer_id}")
    shown = tap(stack, owner, with_button(shown, f"bizoffer:orders:{offer_id}"), f"bizoffer:orders:{offer_id}")
    asked = tap(stack, owner, with_button(shown, f"bizns:{order_id}"), f"bizns:{order_id}")
    done = tap(stack, owner, with_button(asked, f"biznsok:{order_id}"), f"biznsok:{order_id}")
    assert f"Order #{order_id} is marked as not collected" in plain(done[-1]["text"])
    wait_for_message(stack, buyer, "We missed you")
    orders = plain(say(stack, buyer, "/orders")[-1]["text"])
    assert "🚫 not collected" in orders and f"Show the code {code}" in orders

    assert "The order is marked collected" in text_of(scan(stack, owner, f"pickup_{code}"))
    with db.session_scope() as session:
        assert session.get(Order, order_id).status == OrderStatus.COLLECTED
