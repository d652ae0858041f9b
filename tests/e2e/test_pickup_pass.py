"""The pickup pass, end to end through the Telegram and Stripe fakes: a paid customer gets a QR code
after "✅ Paid"; the business owner's phone camera opens it as ``/start pickup_<code>``, which
confirms the pickup for that owner only; anyone else is refused in their language, and a second
scan says the order was collected already."""

from __future__ import annotations

import io
import time

import httpx
import sqlalchemy as sa
import zxingcpp
from PIL import Image

from core import db
from domain import reservations
from models import Order, OrderStatus
from tests.e2e.conftest import new_user_id
from tests.e2e.test_payments import plain, reserve_through_the_chat, wait_for_message, wait_until
from tests.factories import make_business, make_offer, make_user

BOT = "surplus_sandbox_bot"  # the sandbox bot (CHECKOUT_RETURN_URL defaults to its chat)


def bot_messages(stack, user: int) -> list[dict]:
    return [m for m in stack.telegram.messages(user) if m.get("from", {}).get("is_bot")]


def scan(stack, user: int, start_parameter: str) -> list[dict]:
    """What Telegram sends when a phone camera opens t.me/<bot>?start=<parameter>."""
    sent = stack.telegram.send_text(user, f"/start {start_parameter}")
    return stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)


def text_of(replies: list[dict]) -> str:
    return "\n".join(plain(m.get("text") or m.get("caption")) for m in replies)


def order_status(order_id: int) -> OrderStatus:
    with db.session_scope() as session:
        return session.get(Order, order_id).status


def paid_order(owner: int, buyer: int, title: str) -> tuple[int, str]:
    """A paid order of ``buyer`` at the business of ``owner``: (order id, pickup code)."""
    offer_id = make_offer(make_business(owner, name=f"Shop {owner}"), title, quantity=5)
    make_user(buyer, "Buyer")
    with db.session_scope() as session:
        held = reservations.reserve(session, offer_id, buyer, 2)
        sale = reservations.confirm_sale(session, held.order_id, 700, "EUR", f"pi_pickup_pass_{held.order_id}")
        assert sale.paid
        return held.order_id, sale.pickup_code


def decode_qr(stack, photo_message: dict) -> str:
    content = httpx.get(f"{stack.telegram_url}/_sandbox/files/{photo_message['photo'][-1]['file_id']}").content
    (found,) = zxingcpp.read_barcodes(Image.open(io.BytesIO(content)))
    return found.text


def sa_order(user: int) -> Order | None:
    with db.session_scope() as session:
        return session.scalars(sa.select(Order).where(Order.customer_id == user)).first()


def test_paying_brings_a_qr_code_that_the_owner_scans_to_confirm(stack, user):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    offer_id = make_offer(make_business(owner, name="Café Stern"), "Bagel box", quantity=4, price_minor=350)
    _pay, session_id = reserve_through_the_chat(stack, user, offer_id, 2)
    stack.stripe.pay(session_id)
    paid = wait_for_message(stack, user, "Your pickup code")
    order = wait_until(lambda: (o := sa_order(user)) and o.status == OrderStatus.PAID and o)

    def the_pass() -> dict | None:
        return next((m for m in bot_messages(stack, user) if m.get("photo") and "pickup pass" in m.get("caption", "")),
                    None)

    qr_message = wait_until(the_pass)
    assert qr_message["message_id"] > paid["message_id"]  # after "✅ Paid", never above it
    assert order.pickup_code in qr_message["caption"] and "2 × Bagel box" in qr_message["caption"]
    link = decode_qr(stack, qr_message)
    assert link == f"https://t.me/{BOT}?start=pickup_{order.pickup_code}"

    replies = scan(stack, owner, link.split("?start=", 1)[1])
    assert "The order is marked collected" in text_of(replies) and order.pickup_code in text_of(replies)
    assert order_status(order.id) == OrderStatus.COLLECTED
    wait_for_message(stack, user, "Enjoy your Bagel box")


def test_only_the_owner_confirms_and_a_second_scan_says_collected(stack):
    owner, buyer, other_owner, stranger = new_user_id(), new_user_id(), new_user_id(), new_user_id()
    for person in (owner, buyer, other_owner, stranger):
        stack.telegram.create_user(person, "Person")
    order_id, code = paid_order(owner, buyer, "Cake box")
    make_business(other_owner, name="Another shop")
    make_user(stranger, "Fremder", language="de")

    # The customer scanning their own pass, another business, a German passer-by: refused, nothing changes.
    for person in (buyer, other_owner):
        replies = scan(stack, person, f"pickup_{code}")
        assert "Only the business this order is from can confirm its pickup" in text_of(replies)
    replies = scan(stack, stranger, f"pickup_{code}")
    assert "Nur der Betrieb, bei dem diese Bestellung aufgegeben wurde" in text_of(replies)
    assert order_status(order_id) == OrderStatus.PAID
    assert code not in text_of(replies)

    replies = scan(stack, owner, f"pickup_{code.lower()}")
    assert "The order is marked collected" in text_of(replies) and "2× Cake box" in text_of(replies)
    assert order_status(order_id) == OrderStatus.COLLECTED

    replies = scan(stack, owner, f"pickup_{code}")
    assert "was already collected. Don't hand it over twice." in text_of(replies)
    assert order_status(order_id) == OrderStatus.COLLECTED
    def enjoy() -> list[dict]:
        return [m for m in bot_messages(stack, buyer) if "Enjoy your Cake box" in plain(m.get("text"))]

    wait_until(enjoy)
    time.sleep(0.5)
    assert len(enjoy()) == 1  # told once, not again on the second scan

    replies = scan(stack, owner, "pickup_NOSUCH")
    assert "Only the business this order is from" in text_of(replies)


def test_the_pass_can_be_shown_again_from_my_orders(stack):
    """The pass sent after "✅ Paid" may be far up the chat at the counter: /orders shows it again."""
    owner, buyer = new_user_id(), new_user_id()
    for person in (owner, buyer):
        stack.telegram.create_user(person, "Person")
    order_id, code = paid_order(owner, buyer, "Soup jar")
    sent = stack.telegram.send_text(buyer, "/orders")
    (orders,) = stack.telegram.wait_for_reply(buyer, sent["message_id"], timeout=15)
    (pass_button,) = [b for row in orders["reply_markup"]["inline_keyboard"] for b in row
                      if b.get("callback_data") == f"opass:{order_id}"]
    assert "Pickup pass: 2 × " in pass_button["text"] and "Soup jar" in pass_button["text"]

    pressed = stack.telegram.press_button(buyer, orders["message_id"], f"opass:{order_id}")
    (shown,) = stack.telegram.wait_for_reply(buyer, after_seq=pressed["seq"], timeout=15)
    assert shown["photo"] and code in shown["caption"]
    assert decode_qr(stack, shown) == f"https://t.me/{BOT}?start=pickup_{code}"

    # Once collected, the button (from the old list) says so instead of showing a spent pass.
    scan(stack, owner, f"pickup_{code}")
    assert order_status(order_id) == OrderStatus.COLLECTED
    wait_for_message(stack, buyer, "Enjoy your Soup jar")  # the collection's own message, first
    pressed = stack.telegram.press_button(buyer, orders["message_id"], f"opass:{order_id}")
    listing = stack.telegram.wait_for_reply(buyer, after_seq=pressed["seq"], timeout=15)[-1]
    assert "My orders" in plain(listing["text"]) and f"opass:{order_id}" not in str(listing.get("reply_markup"))
    answer = wait_until(lambda: next((q["answer"] for q in stack.telegram.callback_answers()
                                      if q["callback_query_id"] == pressed["callback_query_id"] and q.get("answer")),
                                     None))
    assert answer["text"] == "This order was collected already."
