"""An admin Telegram would not let us reach when a business registered (they had blocked the bot:
403, the request dropped, the admin marked unreachable) gets the verification request when they
come back: on /start, or on /admin; once per business, and only while it is still pending."""

from __future__ import annotations

import time

import sqlalchemy as sa

from core import db
from models import Business, BusinessStatus, Notification, NotificationStatus, ProcessedUpdate
from tests.e2e.conftest import new_user_id

ADMIN = 4242  # ADMIN_IDS of the e2e worker (tests/e2e/conftest.py)


def datas(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def bot_messages(stack, user: int) -> list[dict]:
    return [m for m in stack.telegram.messages(user) if m.get("from", {}).get("is_bot")]


def handled(stack, user: int, text: str) -> None:
    """Say something and wait until the worker has handled it and sent every reply."""
    sent = stack.telegram.send_text(user, text)

    def done() -> bool:
        with db.session_scope() as session:
            if session.get(ProcessedUpdate, sent["update_id"]) is None:
                return False
            return not session.scalar(sa.select(sa.func.count()).select_from(Notification).where(
                Notification.idempotency_key.startswith(f"update:{sent['update_id']}:"),
                Notification.status == NotificationStatus.PENDING))

    wait_for(done)


def register(stack, owner: int, name: str) -> int:
    stack.telegram.create_user(owner, "Owner")
    for text in ("/register", name, "Marktplatz 3, 50667 Köln"):
        handled(stack, owner, text)
    question = wait_for(lambda: [m for m in bot_messages(stack, owner) if "flow:pick:location:skip" in datas(m)])[-1]
    stack.telegram.press_button(owner, question["message_id"], "flow:pick:location:skip")
    wait_for(lambda: any("phone number" in text_of(m) for m in bot_messages(stack, owner)))
    handled(stack, owner, "+49 221 555 1234")
    with db.session_scope() as session:
        business = session.scalar(sa.select(Business).where(Business.owner_id == owner))
        assert business is not None and business.status == BusinessStatus.PENDING
        return business.id


def request_status(business_id: int) -> NotificationStatus | None:
    with db.session_scope() as session:
        return session.scalar(sa.select(Notification.status).where(
            Notification.chat_id == ADMIN,
            Notification.idempotency_key.startswith(f"business:{business_id}:submitted:")))


def requests_for(stack, business_id: int) -> list[dict]:
    return [m for m in bot_messages(stack, ADMIN) if f"bizrev:verify:{business_id}" in datas(m)]


def test_an_admin_who_had_blocked_the_bot_gets_the_waiting_request_when_back(stack):
    stack.telegram.create_user(ADMIN, "Admin")
    handled(stack, ADMIN, "/start")  # whatever was waiting from earlier tests is out of the way
    stack.telegram.block(ADMIN, True, notify=False)
    try:
        bakery = register(stack, new_user_id(), "Late Bakery")
        wait_for(lambda: request_status(bakery) == NotificationStatus.DROPPED)  # Telegram said 403
    finally:
        stack.telegram.block(ADMIN, False, notify=False)
    assert requests_for(stack, bakery) == []

    handled(stack, ADMIN, "/start")
    (request,) = wait_for(lambda: requests_for(stack, bakery))
    assert "waiting for your verification" in text_of(request) and "Late Bakery" in text_of(request)
    assert {f"bizrev:reject:{bakery}", f"bizrev:suspend:{bakery}"} <= set(datas(request))
    handled(stack, ADMIN, "/start")
    time.sleep(1.0)  # a second request would be on its way by now
    assert len(requests_for(stack, bakery)) == 1

    # Blocked again while another registers; /admin brings that one, and not the first again.
    stack.telegram.block(ADMIN, True, notify=False)
    try:
        cafe = register(stack, new_user_id(), "Late Café")
        wait_for(lambda: request_status(cafe) == NotificationStatus.DROPPED)
    finally:
        stack.telegram.block(ADMIN, False, notify=False)
    handled(stack, ADMIN, "/admin")
    (request,) = wait_for(lambda: requests_for(stack, cafe))
    assert "Late Café" in text_of(request)
    time.sleep(1.0)
    assert len(requests_for(stack, bakery)) == 1

    # The request works: verify both from it. A verified business is never asked about again.
    for business_id, message in ((bakery, requests_for(stack, bakery)[0]), (cafe, request)):
        stack.telegram.press_button(ADMIN, message["message_id"], f"bizrev:verify:{business_id}")
        wait_for(lambda b=business_id: _status(b) == BusinessStatus.VERIFIED)
    before = len(bot_messages(stack, ADMIN))
    handled(stack, ADMIN, "/start")
    time.sleep(1.0)
    assert len(bot_messages(stack, ADMIN)) == before + 1  # the main menu, and nothing else


def _status(business_id: int) -> BusinessStatus:
    with db.session_scope() as session:
        return session.get(Business, business_id).status
