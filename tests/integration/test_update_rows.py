"""The rows an update writes about its sender and chat (chat/engine.py), straight through the worker's
update handler against real Postgres: the user's row is made at first contact and brought up to
date after, but not written again when nothing changed; the `User` a handler gets reads exactly
as the ORM would load it; a chat's state is written only once it holds a step.
"""

from __future__ import annotations

import itertools
import time
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from chat import engine
from core import outbox
from core.db import session_scope
from core.outbox import Reply
from models import ConversationState, Notification, User

_update_ids = itertools.count(9_300_000_000)


def _message(user: int, text: str, *, first_name: str = "Ada", language_code: str = "de") -> dict:
    return {"update_id": next(_update_ids), "message": {
        "message_id": next(_update_ids) % 1_000_000, "date": int(time.time()), "text": text,
        "chat": {"id": user, "type": "private", "first_name": first_name},
        "from": {"id": user, "is_bot": False, "first_name": first_name, "language_code": language_code}}}


def _handle(update: dict) -> tuple[dict, bool, int]:
    """Handle one update; what its handler's `User` read (every column but the geography point),
    and the row's xmin afterwards (changes whenever the row is written)."""
    seen: dict = {}
    original = engine._upsert_users

    def watching(session, senders):
        users = original(session, senders)
        ((user, first),) = users.values()
        seen.update({key: getattr(user, key) for key in _columns()}, first_contact=first)
        return users

    engine._upsert_users = watching
    try:
        with session_scope() as session:
            engine.handle(session, engine.parse(update))
    finally:
        engine._upsert_users = original
    first_contact = seen.pop("first_contact")
    chat = update["message"]["chat"]["id"]
    with session_scope() as session:
        xmin = session.execute(sa.text("SELECT xmin::text::bigint FROM users WHERE id = :id"), {"id": chat}).scalar()
    return seen, first_contact, xmin


def _columns() -> list[str]:
    return [c.key for c in User.__table__.columns if c.key != "location"]


def _loaded(user_id: int) -> dict:
    with session_scope() as session:
        user = session.get_one(User, user_id)
        return {key: getattr(user, key) for key in _columns()}


def test_the_user_is_made_at_first_contact_and_reads_as_the_orm_loads_it(db):
    seen, first_contact, _ = _handle(_message(8_300_000_001, "/start"))
    assert first_contact is True
    assert seen == _loaded(8_300_000_001)
    assert seen["language"] == "de" and seen["first_name"] == "Ada" and seen["reachable"] is True

    seen, first_contact, _ = _handle(_message(8_300_000_001, "/help"))
    assert first_contact is False
    assert seen == _loaded(8_300_000_001)


def test_an_unchanged_user_is_not_written_again_and_a_changed_one_is(db):
    user = 8_300_000_002
    _, _, written = _handle(_message(user, "/start"))
    seen, _, xmin = _handle(_message(user, "/help"))
    assert xmin == written, "an unchanged row was written again"
    assert seen == _loaded(user)

    seen, first_contact, xmin = _handle(_message(user, "/help", first_name="Ada L."))
    assert xmin != written and first_contact is False
    assert seen["first_name"] == "Ada L." == _loaded(user)["first_name"]


def test_last_seen_is_kept_to_the_minute(db):
    user = 8_300_000_003
    _handle(_message(user, "/start"))
    an_hour_ago = datetime.now(UTC) - timedelta(hours=1)
    with session_scope() as session:
        session.execute(sa.update(User).where(User.id == user).values(last_seen_at=an_hour_ago))
    seen, _, _ = _handle(_message(user, "/help"))
    assert seen["last_seen_at"] > an_hour_ago + timedelta(minutes=59)


def test_writing_again_undoes_a_block_and_an_erasure(db):
    user = 8_300_000_004
    _handle(_message(user, "/start"))
    with session_scope() as session:  # erased after choosing English, and blocked us since
        session.execute(sa.update(User).where(User.id == user).values(
            language="en", first_name=None, deleted_at=datetime.now(UTC), reachable=False))
    seen, first_contact, _ = _handle(_message(user, "/start", language_code="de"))
    assert first_contact is False
    assert (seen["language"], seen["first_name"], seen["deleted_at"], seen["reachable"]) == ("de", "Ada", None, True)
    assert seen == _loaded(user)


def test_the_language_chosen_in_the_chat_wins_over_telegrams(db):
    user = 8_300_000_005
    _handle(_message(user, "/start"))
    with session_scope() as session:
        session.execute(sa.update(User).where(User.id == user).values(language="en"))
    seen, _, _ = _handle(_message(user, "/help", first_name="Ada L.", language_code="de"))
    assert seen["language"] == "en" == _loaded(user)["language"]


def test_a_chat_in_no_flow_has_no_state_row_and_one_in_a_flow_has(db):
    user = 8_300_000_006
    _handle(_message(user, "/start"))
    with session_scope() as session:
        assert session.get(ConversationState, user) is None
    _handle(_message(user, "/register"))
    with session_scope() as session:
        state = session.get_one(ConversationState, user)
        assert state.flow is not None
        started = state.updated_at
    _handle(_message(user, "/cancel"))
    with session_scope() as session:
        state = session.get_one(ConversationState, user)
        assert state.flow is None and state.updated_at > started


def test_rows_recorded_together_keep_their_order_and_are_recorded_once(db):
    with session_scope() as session:
        first = outbox.record_rows(session, [
            outbox.answer_row("rows:answer", 8_300_000_007, "query"),
            outbox.reply_row("rows:0", 8_300_000_007, Reply(text="one")),
            outbox.reply_row("rows:1", 8_300_000_007, Reply(text="two")),
        ])
    assert None not in first and first == sorted(first), "the answer first, then the replies as given"
    with session_scope() as session:
        again = outbox.record_rows(session, [outbox.reply_row("rows:1", 8_300_000_007, Reply(text="two")),
                                             outbox.reply_row("rows:2", 8_300_000_007, Reply(text="three"))])
        kinds = session.execute(sa.select(Notification.idempotency_key, Notification.kind, Notification.payload)
                                .where(Notification.chat_id == 8_300_000_007).order_by(Notification.id)).all()
    assert again[0] is None and again[1] is not None and again[1] > first[2]
    assert [(key, kind, payload.get("text")) for key, kind, payload in kinds] == [
        ("rows:answer", outbox.ANSWER_KIND, None), ("rows:0", "reply", "one"), ("rows:1", "reply", "two"),
        ("rows:2", "reply", "three")]


def _xmin(user: int) -> int:
    with session_scope() as session:
        return session.execute(sa.text("SELECT xmin::text::bigint FROM users WHERE id = :id"), {"id": user}).scalar()


def test_updates_handled_together_read_and_write_their_rows_as_one_by_one(db):
    """Several senders' rows are upserted in one statement and several chats' states read in one;
    a chat's second update in the batch sees what its first one changed."""
    newcomer, regular, registering = 8_300_000_011, 8_300_000_012, 8_300_000_013
    _handle(_message(regular, "/start"))
    regular_written = _xmin(regular)
    updates = [_message(newcomer, "/start"), _message(regular, "/help"), _message(registering, "/register"),
               _message(newcomer, "/help", first_name="Ann"), _message(registering, "/cancel")]
    with session_scope() as session:
        handled = engine.handle_batch(session, [engine.parse(update) for update in updates])
    assert [h.update_id for h in handled] == [u["update_id"] for u in updates]
    assert all(h.notification_ids and not h.duplicate for h in handled)
    assert _xmin(regular) == regular_written, "an unchanged row was written again"
    assert _loaded(newcomer)["first_name"] == "Ann"  # the second update's name, written after the first's
    with session_scope() as session:
        state = session.get_one(ConversationState, registering)
        assert state.flow is None, "the /cancel saw the flow its /register started"
        chats = dict(session.execute(sa.select(Notification.id, Notification.chat_id).where(
            Notification.id.in_([i for h in handled for i in h.notification_ids]))).all())
    recorded = [i for h in handled for i in h.notification_ids]
    assert recorded == sorted(recorded), "recorded in the updates' order"
    assert [{chats[i] for i in h.notification_ids} for h in handled] == [
        {newcomer}, {regular}, {registering}, {newcomer}, {registering}]

    with session_scope() as session:  # the same batch again: each found done, nothing recorded twice
        again = engine.handle_batch(session, [engine.parse(update) for update in updates])
    assert all(h.duplicate for h in again)
