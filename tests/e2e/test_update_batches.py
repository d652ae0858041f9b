"""Updates queued together (`updates.handle_updates`, as the gateway queues the updates that arrive
together) in a real worker: each is answered once, a chat's updates in their order, a task queued
again has no second effect, and one update that fails fails alone."""

from __future__ import annotations

import itertools
import time

import sqlalchemy as sa

from core import db
from models import DeadLetter, ProcessedUpdate
from tests.e2e.conftest import new_user_id
from tests.e2e.test_backbone import _wait_until, bot_messages, buttons

_update_ids = itertools.count(9_100_000_000 + int(time.time()) % 1_000_000 * 100)


def _text(user: int, text: str, *, username: str | None = None) -> dict:
    sender = {"id": user, "is_bot": False, "first_name": "Batch", "language_code": "en"}
    if username is not None:
        sender["username"] = username
    return {"update_id": next(_update_ids), "message": {
        "message_id": next(_update_ids) % 1_000_000, "date": int(time.time()), "text": text,
        "chat": {"id": user, "type": "private", "first_name": "Batch"}, "from": sender}}


def _queue_together(updates: list[dict]) -> None:
    from tasks.app import app

    app.send_task("updates.handle_updates", args=[updates])


def test_updates_queued_together_are_each_answered_once_and_in_their_chat_order(stack):
    first, second = new_user_id(), new_user_id()
    for user in (first, second):
        stack.telegram.create_user(user, "Batch", language_code="en")
    updates = [_text(first, "/help"), _text(second, "/start"), _text(first, "/language")]
    _queue_together(updates)
    _wait_until(lambda: len(bot_messages(stack, first)) == 2 and len(bot_messages(stack, second)) == 1, timeout=15)
    help_text, picker = bot_messages(stack, first)
    assert "How it works" in help_text["text"]  # the chat's first update answered first
    assert "Choose your language" in picker["text"]
    assert "What would you like to do?" in bot_messages(stack, second)[0]["text"]

    _queue_together(updates)  # the same task again (its worker died after the commit, say)
    time.sleep(1.5)  # give any wrongly repeated handling time to show up
    assert len(bot_messages(stack, first)) == 2 and len(bot_messages(stack, second)) == 1
    with db.session_scope() as session:
        done = session.scalars(sa.select(ProcessedUpdate.update_id).where(
            ProcessedUpdate.update_id.in_([u["update_id"] for u in updates])))
        assert sorted(done) == sorted(u["update_id"] for u in updates)


def test_one_failing_update_fails_alone_and_is_kept_to_replay_alone(stack):
    poisoned, fine, other = new_user_id(), new_user_id(), new_user_id()
    for user in (poisoned, fine, other):
        stack.telegram.create_user(user, "Batch", language_code="en")
    # Telegram usernames have at most 32 characters; this one breaks the handler (a poison update).
    poison = _text(poisoned, "/start", username="x" * 300)
    updates = [_text(fine, "/help"), poison, _text(other, "/start")]
    _queue_together(updates)
    _wait_until(lambda: all(bot_messages(stack, user) for user in (poisoned, fine, other)), timeout=15)
    time.sleep(0.5)  # nothing more comes
    (sorry,) = bot_messages(stack, poisoned)
    assert "something went wrong" in sorry["text"] and buttons(sorry) == ["menu"]
    (help_text,) = bot_messages(stack, fine)
    assert "How it works" in help_text["text"]
    (menu,) = bot_messages(stack, other)
    assert "What would you like to do?" in menu["text"]
    with db.session_scope() as session:
        (letter,) = session.scalars(sa.select(DeadLetter).where(
            DeadLetter.reference == f"update:{poison['update_id']}")).all()
        # Kept as the one update, so that an operator's replay runs it alone.
        assert letter.task_name == "updates.handle_update"
        assert letter.payload["args"] == [poison]


def test_many_chats_together_each_get_their_replies_in_order(stack):
    """More chats than a worker sends to side by side: each still gets its replies in its order."""
    people = [new_user_id() for _ in range(9)]
    for user in people:
        stack.telegram.create_user(user, "Batch", language_code="en")
    _queue_together([_text(user, "/help") for user in people] + [_text(user, "/language") for user in people])
    _wait_until(lambda: all(len(bot_messages(stack, user)) == 2 for user in people), timeout=20)
    for user in people:
        first, second = bot_messages(stack, user)
        assert "How it works" in first["text"] and "Choose your language" in second["text"]
