"""A Pay message loses its buttons once they can do nothing: the hold lapsed, the customer let it
go, or the business cancelled the offer — recorded in the transaction that decided it, as an edit
of each Pay message the customer still sees (against real Postgres; nothing is sent)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from domain import maintenance, ordering, payments
from domain import reservations as rsv
from models import Notification, NotificationStatus, Order
from tests.factories import make_business, make_offer, make_user


@pytest.fixture(autouse=True)
def nothing_published(monkeypatch):
    """Hand-overs are recorded instead of published: no worker runs them here."""
    from core import handover

    monkeypatch.setattr(handover, "send_task", lambda *args, **kwargs: None)


def sent(session, key: str, chat_id: int, message_id: int, **payload) -> None:
    """An outbox row as it is once Telegram took it."""
    session.add(Notification(idempotency_key=key, chat_id=chat_id, kind="checkout", payload=payload,
                             status=NotificationStatus.SENT, telegram_message_id=message_id))


def held_with_pay_messages(db, owner: int | None = None) -> tuple[int, int, int]:
    """A held order whose customer got two Pay messages (ids 77 and 78); 78 was since turned into a
    menu by a tap. Returns (order id, customer, offer id)."""
    customer = make_user()
    offer_id = make_offer(make_business(owner), "Bagel box", quantity=3)
    with db.session_scope() as session:
        result = rsv.reserve(session, offer_id, customer, 2)
        assert result.ok
        order_id = result.order_id
        pay = {"text": "🛒 Reserved for you", "keyboard": [[{"text": "💳 Pay €7.00", "url": "https://pay"}]]}
        sent(session, f"order:{order_id}:checkout:task-1", customer, 77, **pay)
        sent(session, f"order:{order_id}:checkout:task-2", customer, 78, **pay)
        sent(session, f"order:{order_id}:checkout_failed", customer, 79, text="not a Pay message")
        sent(session, "update:1:0", customer, 78, text="🧾 My orders", edit_message_id=78)
    return order_id, customer, offer_id


def edits(db, order_id: int) -> dict[int, dict]:
    with db.session_scope() as session:
        rows = session.scalars(sa.select(Notification).where(
            Notification.idempotency_key.like(f"order:{order_id}:paybutton-spent:%"))).all()
        return {row.payload["edit_message_id"]: row.payload for row in rows}


def offered(payload: dict) -> set[str]:
    return {b.get("callback_data") or b.get("url") for row in payload.get("keyboard") or [] for b in row}


def test_a_lapsed_hold_takes_the_buttons_off_its_pay_message(db):
    order_id, _customer, _offer = held_with_pay_messages(db)
    with db.session_scope() as session:
        session.execute(sa.update(Order).where(Order.id == order_id)
                        .values(hold_expires_at=datetime.now(UTC) - timedelta(minutes=1)))
    with db.session_scope() as session:
        assert maintenance.release_expired_holds(session, datetime.now(UTC))["holds_released"] == 1
    spent = edits(db, order_id)
    assert list(spent) == [77]  # 78 shows a menu now: left as it is; 79 was no Pay message
    assert "Not paid in time" in spent[77]["text"] and "Bagel box" in spent[77]["text"]
    assert offered(spent[77]) == {"orders", "menu"}
    with db.session_scope() as session:  # a second sweep finds nothing more to say
        maintenance.release_expired_holds(session, datetime.now(UTC))
    assert list(edits(db, order_id)) == [77]


def test_letting_the_reservation_go_takes_the_buttons_off(db):
    order_id, customer, _offer = held_with_pay_messages(db)
    with db.session_scope() as session:
        assert ordering.cancel_hold(session, order_id, customer)
    assert "Reservation cancelled" in edits(db, order_id)[77]["text"]


def test_a_cancelled_offer_takes_the_buttons_off(db):
    owner = make_user()
    order_id, _customer, offer_id = held_with_pay_messages(db, owner)
    with db.session_scope() as session:
        payments.cancel_offer(session, offer_id, owner)
    spent = edits(db, order_id)
    assert list(spent) == [77] and "💳" not in str(spent[77]["keyboard"])
