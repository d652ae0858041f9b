"""Outbound messages from every worker stay within Telegram's limits (the fake enforces them and
answers 429 beyond), none is lost, none is sent twice, and a user who blocked the bot is dropped."""

from __future__ import annotations

import time

import sqlalchemy as sa

from bot.conversation.replies import Reply
from core import db
from domain import notifications
from models import Notification, NotificationStatus, User
from tests.e2e.conftest import new_user_id
from tests.factories import make_user


def _bot_texts(stack, chat_id: int) -> list[str]:
    return [m["text"] for m in stack.telegram.messages(chat_id) if m.get("from", {}).get("is_bot")]


def _wait(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError("not reached in time")


def test_a_flood_stays_within_the_limits_and_loses_nothing(stack):
    stack.telegram.set_rate_limit(True)  # Telegram's 30/s overall and 1/s per chat, with bursts
    before = stack.telegram.stats()["too_many_requests"]
    chats = [new_user_id() for _ in range(30)]
    hot_chat = chats[0]
    try:
        for chat in chats:
            stack.telegram.create_user(chat)
            make_user(chat)
        with db.session_scope() as session:
            for chat in chats:  # 60 messages over 30 chats ...
                for n in range(2):
                    notifications.notify(session, f"flood:{chat}:{n}", chat, Reply(text=f"deal {n}"))
            for n in range(2, 6):  # ... and 4 more for one chat, well over its 1 per second
                notifications.notify(session, f"flood:{hot_chat}:{n}", hot_chat, Reply(text=f"deal {n}"))
        _wait(lambda: all(len(_bot_texts(stack, c)) >= 2 for c in chats) and len(_bot_texts(stack, hot_chat)) == 6,
              timeout=40)
        assert stack.telegram.stats()["too_many_requests"] == before  # never over the limits
        # Each exactly once (separate notifications may overtake each other while throttled).
        assert sorted(_bot_texts(stack, hot_chat)) == [f"deal {n}" for n in range(6)]
        assert all(len(_bot_texts(stack, c)) == 2 for c in chats[1:])
    finally:
        stack.telegram.set_rate_limit(False)


def test_a_blocked_user_stops_receiving(stack):
    chat = new_user_id()
    stack.telegram.create_user(chat)
    make_user(chat)
    stack.telegram.block(chat, True, notify=False)
    with db.session_scope() as session:
        note_id = notifications.notify(session, f"blocked:{chat}", chat, Reply(text="hello?"))
    _wait(lambda: _status(note_id) != NotificationStatus.PENDING, timeout=15)
    assert _status(note_id) == NotificationStatus.DROPPED
    with db.session_scope() as session:
        assert session.get(User, chat).reachable is False
        assert session.scalar(sa.select(Notification.last_error).where(Notification.id == note_id)).startswith("403")


def _status(note_id: int) -> NotificationStatus:
    with db.session_scope() as session:
        return session.get(Notification, note_id).status
