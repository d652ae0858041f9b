"""/privacy through the whole stack: the export arrives as a JSON document with the person's
data; deleting (after a confirmation) erases it; a pickup still to come blocks the deletion."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import httpx
import sqlalchemy as sa

from core import db
from domain import reservations as rsv
from models import AuditEntry, Business, BusinessStatus, ConversationState, Follow, Offer, OfferStatus, Order, User


def buttons(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def wait_for_message(stack, user: int, predicate, after_id: int, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for message in stack.telegram.messages(user):
            if message["message_id"] > after_id and message.get("from", {}).get("is_bot") and predicate(message):
                return message
        time.sleep(0.05)
    raise AssertionError(f"no such message in chat {user}: {stack.telegram.messages(user)[-3:]}")


def open_privacy(stack, user: int) -> dict:
    sent = stack.telegram.send_text(user, "/privacy")
    # A new message: a late edit of an earlier screen may also arrive after this command.
    screen = wait_for_message(stack, user, lambda m: "privacy:export" in buttons(m), sent["message_id"])
    assert "Your data" in screen["text"]
    assert buttons(screen)[:2] == ["privacy:export", "privacy:delete"]
    return screen


def a_business_with_an_offer(owner: int) -> tuple[int, int]:
    with db.session_scope() as session:
        session.add(User(id=owner, first_name="Owner"))
        session.flush()
        business = Business(owner_id=owner, name="Corner Bakery", address="Main St 1", phone="+49 30 1",
                            status=BusinessStatus.VERIFIED)
        session.add(business)
        session.flush()
        now = datetime.now(UTC)
        offer = Offer(business_id=business.id, title="Bread bag", price_minor=300, original_price_minor=900,
                      currency="EUR", quantity=5, pickup_start=now + timedelta(hours=2),
                      pickup_end=now + timedelta(hours=3), status=OfferStatus.ACTIVE, published_at=now)
        session.add(offer)
        session.flush()
        return business.id, offer.id


def test_export_sends_my_data_as_a_json_document_and_delete_erases_it(stack, user):
    stack.telegram.create_user(user, "Grace", username="grace_h")
    sent = stack.telegram.send_text(user, "/start")
    stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    business_id, offer_id = a_business_with_an_offer(user + 1_000_000)
    with db.session_scope() as session:
        session.execute(sa.update(User).where(User.id == user).values(latitude=48.1, longitude=11.5))
        session.add(Follow(user_id=user, business_id=business_id))
        held = rsv.reserve(session, offer_id, user, 2).order_id

    screen = open_privacy(stack, user)
    pressed = stack.telegram.press_button(user, screen["message_id"], "privacy:export")
    document = wait_for_message(stack, user, lambda m: "document" in m, screen["message_id"])
    assert document["document"]["file_name"].endswith(".json")
    raw = httpx.get(f"{stack.telegram_url}/_sandbox/files/{document['document']['file_id']}", timeout=10).content
    data = json.loads(raw)
    assert data["user"]["telegram_id"] == user and data["user"]["first_name"] == "Grace"
    assert data["user"]["username"] == "grace_h" and data["user"]["location"]["latitude"] == 48.1
    assert [f["business_name"] for f in data["follows"]] == ["Corner Bakery"]
    assert [(o["id"], o["offer"], o["status"]) for o in data["orders"]] == [(held, "Bread bag", "held")]
    assert pressed["seq"] < document["seq"]

    screen = open_privacy(stack, user)
    pressed = stack.telegram.press_button(user, screen["message_id"], "privacy:delete")
    confirm = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
    assert "Delete your data?" in confirm["text"]
    assert buttons(confirm) == ["privacy:delete:yes", "privacy"]
    with db.session_scope() as session:  # nothing happens before the confirmation
        assert session.get(User, user).first_name == "Grace"

    stack.telegram.press_button(user, confirm["message_id"], "privacy:delete:yes")
    done = wait_for_message(stack, user, lambda m: "personal data was deleted" in (m.get("text") or ""),
                            confirm["message_id"])
    assert done
    with db.session_scope() as session:
        person = session.get(User, user)
        assert (person.first_name, person.username, person.latitude, person.longitude) == (None, None, None, None)
        assert person.deleted_at is not None
        assert session.get(ConversationState, user) is None
        assert session.scalars(sa.select(Follow).where(Follow.user_id == user)).all() == []
        order = session.get(Order, held)
        assert order.customer_id is None and order.status.value == "cancelled"
        actions = session.scalars(sa.select(AuditEntry.action).where(AuditEntry.target == f"user:{user}")).all()
        assert {"privacy.export_requested", "maintenance.export_user_data", "privacy.delete_requested",
                "maintenance.delete_user_data"} <= set(actions)
        rsv.assert_ledger_consistent(session, offer_id)


def test_a_pickup_still_to_come_blocks_deletion_and_forged_data_does_nothing(stack, user):
    stack.telegram.create_user(user, "Linus")
    sent = stack.telegram.send_text(user, "/start")
    stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    _business_id, offer_id = a_business_with_an_offer(user + 1_000_000)
    with db.session_scope() as session:
        order_id = rsv.reserve(session, offer_id, user, 1).order_id
        assert rsv.confirm_sale(session, order_id, 300, "EUR", f"pi_e2e_{order_id}").outcome == rsv.SaleOutcome.PAID

    screen = open_privacy(stack, user)
    pressed = stack.telegram.press_button(user, screen["message_id"], "privacy:delete")
    shown = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
    assert "paid orders still to be collected" in shown["text"]
    assert "privacy:delete:yes" not in buttons(shown)
    # Tapping a forged "yes" is checked again, and stale/forged arguments get a fresh menu.
    screen = open_privacy(stack, user)
    pressed = stack.telegram.press_button(user, screen["message_id"], "privacy:delete:yes", forge=True)
    shown = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
    assert "paid orders still to be collected" in shown["text"]
    pressed = stack.telegram.press_button(user, shown["message_id"], "privacy:drop:all", forge=True)
    shown = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
    assert "What would you like to do?" in shown["text"]
    with db.session_scope() as session:
        assert session.get(User, user).first_name == "Linus"
        assert session.get(Order, order_id).customer_id == user
