"""An update's whole journey: Telegram fake → gateway → Redis → real worker → Postgres → Bot API."""

from __future__ import annotations

import os
import time

import redis
import sqlalchemy as sa

from core import db
from models import DeadLetter, ProcessedUpdate, User


def buttons(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def test_start_gets_the_main_menu_from_a_worker(stack, user):
    sent = stack.telegram.send_text(user, "/start")
    (reply,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    assert "What would you like to do?" in reply["text"]
    assert {"help", "lang"} <= set(buttons(reply))
    with db.session_scope() as session:
        assert session.get(User, user) is not None
        assert session.get(ProcessedUpdate, sent["update_id"]) is not None


def test_an_update_handled_by_a_worker_leaves_no_task_result_in_redis(stack, user):
    # Results are ignored by configuration; a message that asked for one anyway would cost two
    # Redis writes per update and a key kept for a day.
    results = redis.Redis.from_url(os.environ["REDIS_URL"])
    before = set(results.scan_iter("celery-task-meta-*"))
    sent = stack.telegram.send_text(user, "/start")
    stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    time.sleep(0.3)  # the task returns just after the reply goes out
    assert set(results.scan_iter("celery-task-meta-*")) - before == set()
    results.close()


def test_button_press_is_answered_and_edits_the_menu(stack, user):
    sent = stack.telegram.send_text(user, "/start")
    (menu,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    pressed = stack.telegram.press_button(user, menu["message_id"], "lang")
    edited = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)
    assert edited[-1]["message_id"] == menu["message_id"]  # edited in place, not a new message
    assert "Choose your language" in edited[-1]["text"]
    _wait_until(lambda: answer_to(stack, pressed) is not None)


def test_switching_language_answers_in_the_new_language(stack, user):
    sent = stack.telegram.send_text(user, "/language")
    (picker,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    pressed = stack.telegram.press_button(user, picker["message_id"], "lang:de")
    replies = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)
    assert "Was möchtest du tun?" in replies[-1]["text"]
    sent = stack.telegram.send_text(user, "/help")
    (help_message,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    assert "So funktioniert's" in help_message["text"]


def test_forged_button_data_gets_a_fresh_menu(stack, user):
    sent = stack.telegram.send_text(user, "/help")
    (help_message,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
    pressed = stack.telegram.press_button(user, help_message["message_id"], "admin:verify:1", forge=True)
    replies = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)
    assert replies[-1]["message_id"] == help_message["message_id"]
    assert "What would you like to do?" in replies[-1]["text"]
    _wait_until(lambda: "out of date" in ((answer_to(stack, pressed) or {}).get("text") or ""))


def test_redelivered_update_has_one_effect(stack, user):
    stack.telegram.create_user(user, "Twice")
    update = {
        "update_id": 7_000_000_000 + user % 1_000_000,
        "message": {"message_id": 1, "date": int(time.time()), "text": "/help",
                    "chat": {"id": user, "type": "private", "first_name": "Twice"},
                    "from": {"id": user, "is_bot": False, "first_name": "Twice"}},
    }
    for _ in range(3):
        stack.telegram.send_update(update)
    _wait_until(lambda: bot_messages(stack, user), timeout=15)
    time.sleep(1.0)  # give any wrongly repeated handling time to show up
    assert len(bot_messages(stack, user)) == 1


def test_a_failing_update_reaches_the_user_as_a_message_and_an_operator_as_a_dead_letter(stack, user):
    stack.telegram.create_user(user, "Poison")
    # Telegram usernames have at most 32 characters; this one breaks the handler (a poison update).
    update = {
        "update_id": 8_000_000_000 + user % 1_000_000,
        "message": {"message_id": 1, "date": int(time.time()), "text": "/start",
                    "chat": {"id": user, "type": "private", "first_name": "Poison"},
                    "from": {"id": user, "is_bot": False, "first_name": "Poison", "username": "x" * 300}},
    }
    stack.telegram.send_update(update)
    _wait_until(lambda: bot_messages(stack, user), timeout=15)
    (reply,) = bot_messages(stack, user)
    assert "something went wrong" in reply["text"]
    assert buttons(reply) == ["menu"]
    with db.session_scope() as session:
        letters = session.scalars(sa.select(DeadLetter).where(DeadLetter.reference == f"update:{update['update_id']}"))
        assert len(list(letters)) == 1


def bot_messages(stack, user: int) -> list[dict]:
    return [m for m in stack.telegram.messages(user) if m.get("from", {}).get("is_bot")]


def answer_to(stack, pressed: dict) -> dict | None:
    """How the bot answered a button press (None while unanswered)."""
    for query in stack.telegram.callback_answers():
        if query["callback_query_id"] == pressed["callback_query_id"]:
            return query["answer"]
    return None


def _wait_until(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def test_a_flooding_user_is_slowed_down_and_others_are_still_served(stack, user):
    from chat.flood import max_updates_per_window
    from models import Notification
    from tests.e2e.conftest import new_user_id

    for _ in range(max_updates_per_window() + 15):
        stack.telegram.send_text(user, "/help")
    other = new_user_id()
    sent = stack.telegram.send_text(other, "/start")
    # The other user is answered while the flood is still being worked through.
    stack.telegram.wait_for_reply(other, sent["message_id"], timeout=10)

    def recorded(kind: str | None = None) -> int:
        with db.session_scope() as session:
            query = sa.select(sa.func.count()).select_from(Notification).where(Notification.chat_id == user)
            return session.scalar(query.where(Notification.kind == kind) if kind else query)

    _wait_until(lambda: recorded("flood") == 1, timeout=20)
    time.sleep(1.0)
    assert recorded("flood") == 1  # told once, not once per dropped update
    assert recorded() <= max_updates_per_window() + 1  # the rest was dropped, not handled
