"""Handling one Telegram update in a worker, exactly once in effect.

One transaction per update: take the chat's advisory lock (updates of one chat are handled one
at a time, in any number of workers), record the update id, run the handler, and record in the
outbox its replies and the answer to the button press (if it was one); the tasks it hands over are
recorded too (core.handover). After the commit the tasks are published and the replies and the
answer sent. A redelivered update (its worker died after the commit) finds its id recorded and only
finishes what the first attempt left undone: replies and answer still pending, hand-overs unsent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar, cast

from sqlalchemy import inspect
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session, make_transient_to_detached
from telegram import Update

from chat import inline, menus, router
from chat.context import Context
from core import handover, inbox, metrics, outbox
from core.i18n import DEFAULT_LANGUAGE, Translator, pick_language
from core.outbox import Reply
from core.settings import get_settings
from models import Base, ConversationState, ProcessedUpdate, User


class MalformedUpdate(ValueError):
    """The payload is not a Telegram update we can read; there is nobody to answer."""


@dataclass
class Handled:
    update_id: int
    chat_id: int | None
    notification_ids: list[int] = field(default_factory=list)
    # The answer to the button press, recorded by this attempt (None for a redelivered update, whose
    # pending answer, if any, is among notification_ids).
    answer_id: int | None = None
    callback_query_id: str | None = None
    callback_text: str | None = None
    callback_alert: bool = False
    duplicate: bool = False


# What the bot reads of the message under a pressed button: which message it is (to edit it), its
# chat and sender, and whether it shows a photo (chat/customer.py). The rest, such as a deal card's
# text, entities and keyboard, is left out before parsing: it was a third of parsing a tap.
PRESSED_MESSAGE_FIELDS = frozenset({"message_id", "date", "chat", "from", "photo", "message_thread_id"})


def parse(raw: dict[str, Any]) -> Update:
    if not isinstance(raw, dict) or not isinstance(raw.get("update_id"), int):
        raise MalformedUpdate("no integer update_id")
    query = raw.get("callback_query")
    if isinstance(query, dict) and isinstance(query.get("message"), dict):
        pressed = {key: value for key, value in query["message"].items() if key in PRESSED_MESSAGE_FIELDS}
        raw = {**raw, "callback_query": {**query, "message": pressed}}
    try:
        return Update.de_json(raw, None)
    except (KeyError, TypeError, ValueError, AttributeError) as error:
        raise MalformedUpdate(str(error)) from error


def origin(update_id: int) -> str:
    """Who hands over in an update's transaction (core.handover), so its redelivery finds them."""
    return f"update:{update_id}"


def handle(session: Session, update: Update) -> Handled:
    """Interpret one update (as :func:`parse` made it) inside the caller's transaction."""
    return handle_batch(session, [update])[0]


def handle_batch(session: Session, updates: list[Update]) -> list[Handled]:
    """Interpret updates that arrived together (distinct update ids, in the order received) inside
    the caller's one transaction: every chat's lock and every update id first, in one round trip,
    then each update in turn, as if alone. A chat's updates are handled in their order; each
    update's effects are its own (its replies keyed by its id, its hand-overs by its origin), so a
    redelivered batch finishes what each left undone. An exception rolls back the whole batch: the
    caller handles the updates one by one instead (tasks/updates.py).

    Round trips shared by the batch: each sender's row (upserted) and each chat's state (locked)
    for the first update of each, and every update's answer and reply rows, recorded together at
    the end. A sender's or chat's later update in the batch reads them again, after the flush, as
    it would alone."""
    first_times = _lock_chats_and_record(session, updates)
    conversing = _first_of_each_person([update for update in updates if update.update_id in first_times])
    known = _Known(users=_upsert_users(session, [update.effective_user for update in conversing]),
                   states=_read_states(session, [update.update_id for update in conversing],
                                       [_chat_id(update) for update in conversing]))
    handled = []
    outcomes: list[_Outcome] = []
    for position, update in enumerate(updates):
        if position:
            # The statements straight to the driver (the chat's state, the sender's row) do not flush
            # the session: what the update before changed (maybe in the same chat) is written first.
            session.flush()
        handled.append(_handle_recorded(session, update, update.update_id in first_times, known, outcomes))
    _record_outcomes(session, outcomes)
    return handled


@dataclass
class _Known:
    """What the batch read for the first update of each sender and chat, by sender and by update."""

    users: dict[int, tuple[User, bool]]
    states: dict[int, ConversationState]  # by update id


def _in_conversation(update: Update) -> bool:
    """An update a person sent in their private chat with the bot (what the router handles)."""
    chat, sender = update.effective_chat, update.effective_user
    return update.inline_query is None and chat is not None and sender is not None and not sender.is_bot \
        and chat.type == "private"


def _chat_id(update: Update) -> int:
    assert update.effective_chat is not None, "an update in a conversation has a chat"
    return update.effective_chat.id


def _first_of_each_person(updates: list[Update]) -> list[Update]:
    """The updates in a conversation whose sender and chat have no earlier one among these."""
    first: list[Update] = []
    senders: set[int] = set()
    chats: set[int] = set()
    for update in updates:
        if not _in_conversation(update) or update.effective_user is None:
            continue
        sender, chat = update.effective_user.id, _chat_id(update)
        if sender not in senders and chat not in chats:
            first.append(update)
        senders.add(sender)
        chats.add(chat)
    return first


def _handle_recorded(session: Session, update: Update, first_time: bool, known: _Known,
                     outcomes: list[_Outcome]) -> Handled:
    """One update, its chat locked and its id recorded (`first_time`: not handled before); its answer
    and reply rows added to `outcomes`."""
    chat = update.effective_chat
    sender = update.effective_user
    query = update.callback_query
    handled = Handled(
        update_id=update.update_id,
        chat_id=chat.id if chat else None,
        callback_query_id=query.id if query else None,
    )
    handover.set_origin(session, origin(update.update_id))
    if not first_time:
        # Done before: finish what that attempt may have left undone when its process died after the
        # commit (the button's answer and replies still pending, tasks never published).
        handled.duplicate = True
        handled.notification_ids = outbox.pending_ids(session, inbox.own_rows_key(update.update_id))
        handover.resend_after_commit(session, origin(update.update_id))
        return handled
    if update.inline_query is not None:
        _record_inline_answer(session, update, handled)
        return handled
    if chat is None or sender is None or not _in_conversation(update):
        outcomes.append(_outcome(update, handled, []))  # a press in a group: answered, without a word
        return handled  # channel posts, groups, service updates: nothing to say
    state = known.states.pop(update.update_id, None)
    user, first_contact = known.users.pop(sender.id) if state is not None else _upsert_user(session, sender)
    if first_contact and user.language != DEFAULT_LANGUAGE and get_settings().webapp_url:
        # Telegram's default menu button ("🗺 Map") is in English: this chat gets its own, in its
        # person's language (with the "/" menu, by the same task).
        handover.enqueue_after_commit(session, "notifications.set_chat_commands", user.id)
    if state is None:
        state = _read_state(session, chat.id)
    ctx = Context(
        session=session, update=update, user=user, chat_id=chat.id, state=state,
        settings=get_settings(), _=Translator(user.language),
    )
    router.route(ctx)
    _keep_state(session, state)
    handled.callback_text = ctx.outcome.callback_text
    handled.callback_alert = ctx.outcome.callback_alert
    outcomes.append(_outcome(update, handled, ctx.outcome.replies))
    return handled


# Every chat's advisory lock, then the update ids, in one round trip: the locks are taken (in the
# order of the chat ids, so two batches never wait on each other's chat locks in a circle) while the
# rows to insert are computed, so the dedup check runs under them. Updates without a chat (inline
# queries) take no lock.
_LOCK_AND_RECORD = (
    "WITH chats AS MATERIALIZED (SELECT DISTINCT chat_id FROM unnest(%(chat_ids)s::bigint[]) AS chat_id"
    " ORDER BY chat_id), chat_locks AS (SELECT count(pg_advisory_xact_lock(chat_id)) FROM chats)"
    " INSERT INTO processed_updates (update_id) SELECT update_id"
    " FROM unnest(%(update_ids)s::bigint[]) AS update_id, chat_locks"
    " ON CONFLICT (update_id) DO NOTHING RETURNING update_id")


def _read_state(session: Session, chat_id: int) -> ConversationState:
    """The chat's state, its row locked until the commit; a new one (not added to the session: see
    `_keep_state`) for a chat in no flow. Straight to the driver, as the sender's row."""
    row = session.connection().exec_driver_sql(_READ_STATE, {"chat_id": chat_id}).first()
    if row is None:
        return ConversationState(chat_id=chat_id, flow=None, step=None, data={})
    return _state(session, chat_id, row)


def _read_states(session: Session, update_ids: list[int], chat_ids: list[int]) -> dict[int, ConversationState]:
    """`_read_state` for several chats (one update each) in one round trip: by update id."""
    if not chat_ids:
        return {}
    rows = {row[0]: row[1:] for row in session.connection().exec_driver_sql(_READ_STATES, {"chat_ids": chat_ids})}
    return {update_id: _state(session, chat_id, rows[chat_id]) if chat_id in rows
            else ConversationState(chat_id=chat_id, flow=None, step=None, data={})
            for update_id, chat_id in zip(update_ids, chat_ids, strict=True)}


def _state(session: Session, chat_id: int, row: Any) -> ConversationState:
    """A chat's state from its row (flow, step, data, updated_at), as the ORM would load it."""
    flow, step, data, updated_at = row
    return _as_loaded(session, ConversationState(chat_id=chat_id, flow=flow, step=step, data=data,
                                                 updated_at=updated_at))


_READ_STATE = "SELECT flow, step, data, updated_at FROM conversation_states WHERE chat_id = %(chat_id)s FOR UPDATE"
_READ_STATES = ("SELECT chat_id, flow, step, data, updated_at FROM conversation_states"
                " WHERE chat_id = ANY(%(chat_ids)s::bigint[]) ORDER BY chat_id FOR UPDATE")


def _keep_state(session: Session, state: ConversationState) -> None:
    """Write the chat's state only when the update changed it: most updates (a tap on a menu, a
    flash sale's "Reserve") are in no flow, and an INSERT or UPDATE of a state that says nothing new
    was a statement and an ORM flush on every one of them. A chat without a row is in no flow."""
    if state in session:
        if session.is_modified(state):
            state.updated_at = datetime.now(UTC)
    elif state.flow is not None or state.step is not None or state.data:
        session.add(state)


def _lock_chats_and_record(session: Session, updates: list[Update]) -> set[int]:
    """Take the chats' locks (updates of one chat one at a time; timed as `db.lock_chat` times it)
    and record the update ids: those recorded now, the first time."""
    chat_ids = [update.effective_chat.id for update in updates if update.effective_chat is not None]
    started = time.perf_counter()
    try:
        rows = session.connection().exec_driver_sql(
            _LOCK_AND_RECORD, {"chat_ids": chat_ids, "update_ids": [update.update_id for update in updates]})
        return {row[0] for row in rows}
    finally:
        if chat_ids:
            metrics.CHAT_LOCK_WAIT_SECONDS.observe(time.perf_counter() - started)


def handle_failure(session: Session, update: Update) -> Handled:
    """After a handler failed for good: mark the update done and tell the user, in their language."""
    chat = update.effective_chat
    query = update.callback_query
    handled = Handled(update_id=update.update_id, chat_id=chat.id if chat else None,
                      callback_query_id=query.id if query else None)
    session.execute(insert(ProcessedUpdate).values(update_id=update.update_id).on_conflict_do_nothing())
    if chat is None or chat.type != "private":
        _record_outcomes(session, [_outcome(update, handled, [])])
        return handled
    user = session.get(User, chat.id)
    _ = Translator(user.language if user else pick_language(getattr(update.effective_user, "language_code", None)))
    text = _("😕 Sorry, something went wrong on our side and your last action was not completed. "
             "Please try again in a moment.")
    handled.callback_text = _("Something went wrong.")
    _record_outcomes(session, [_outcome(update, handled, [Reply(text=text, keyboard=[menus.home_row(_)], kind="error")],
                                        suffix="error")])
    return handled


def slow_down(session: Session, update: Update, tell: bool) -> Handled:
    """The answer to a flooding user's update: a note on the button, and (once a minute) a message."""
    chat = update.effective_chat
    query = update.callback_query
    sender = update.effective_user
    assert sender is not None, "only a sender's updates are counted as flooding"
    user = session.get(User, sender.id)
    _ = Translator(user.language if user else pick_language(sender.language_code))
    handled = Handled(update_id=update.update_id, chat_id=chat.id if chat else None,
                      callback_query_id=query.id if query else None,
                      callback_text=_("Too fast — please wait a moment."))
    session.execute(insert(ProcessedUpdate).values(update_id=update.update_id).on_conflict_do_nothing())
    replies = []
    if tell and chat is not None and chat.type == "private":
        replies.append(Reply(text=_("🐢 You're sending messages very fast, so I'm skipping some. "
                                    "Please wait a few seconds, then carry on."), kind="flood"))
    _record_outcomes(session, [_outcome(update, handled, replies, suffix="flood")])
    return handled


@dataclass
class _Outcome:
    """An update's answer (if it was a button press) and replies, to be recorded in the outbox."""

    handled: Handled
    rows: list[outbox.Outgoing]
    answered: bool


def _outcome(update: Update, handled: Handled, replies: list[Reply], suffix: str = "") -> _Outcome:
    """The answer owed to a button press and the replies, as rows: the answer first (a redelivery
    sends what is pending in order, and the spinner should stop first)."""
    query = update.callback_query
    rows = []
    if query is not None:
        answer_chat = handled.chat_id if handled.chat_id is not None else query.from_user.id
        rows.append(outbox.answer_row(f"{inbox.own_rows_key(update.update_id)}answer", answer_chat, query.id,
                                      text=handled.callback_text, show_alert=handled.callback_alert))
    if replies:
        assert handled.chat_id is not None, "replies go to the update's chat"
        rows += [outbox.reply_row(f"{inbox.own_rows_key(update.update_id)}{suffix}{index}", handled.chat_id, reply)
                 for index, reply in enumerate(replies)]
    return _Outcome(handled, rows, query is not None)


def _record_outcomes(session: Session, outcomes: list[_Outcome]) -> None:
    """Record the updates' answers and replies in one statement, each update's in its order, and
    give each `Handled` its rows' ids."""
    ids = outbox.record_rows(session, [row for outcome in outcomes for row in outcome.rows])
    for outcome in outcomes:
        own, ids = ids[:len(outcome.rows)], ids[len(outcome.rows):]
        if outcome.answered:
            outcome.handled.answer_id, own = own[0], own[1:]
        outcome.handled.notification_ids = [note_id for note_id in own if note_id is not None]


def _record_inline_answer(session: Session, update: Update, handled: Handled) -> None:
    """The deals answering `@bot words` (chat/inline.py), sent after the commit like a reply."""
    query = update.inline_query
    assert query is not None, "called for inline queries"
    note = outbox.record_inline_answer(session, f"{inbox.own_rows_key(update.update_id)}inline", query.from_user.id,
                                       query.id, inline.results(session, query))
    if note is not None:
        handled.notification_ids = [note]


def _upsert_user(session: Session, sender) -> tuple[User, bool]:
    """The sender's row, and whether it was made just now (their first contact).

    The language is chosen from Telegram's language_code at first contact only (and again after an
    erasure: the user starts afresh); later the user's own choice (/language) wins. Writing to us
    again undoes a block or an erasure. A row that would not change is not written (last_seen_at
    is kept to the minute), and it is read in the same round trip instead. Straight to the driver,
    and the `User` made from the row without the ORM's loading: every update does this, and the
    ORM's upsert with RETURNING was the most expensive step of a tap (bench/report.md)."""
    values = _user_values(sender)
    row = session.connection().exec_driver_sql(_UPSERT_USER, values).first()
    if row is None:  # the row came from another transaction after this statement began: read it now
        row = session.connection().exec_driver_sql(_READ_USER, values).one()
    *columns, inserted = row
    # `location`, not read here, loads when a handler asks for it.
    return _as_loaded(session, User(**dict(zip(_USER_KEYS, columns, strict=True)))), bool(inserted)


def _upsert_users(session: Session, senders: list[Any]) -> dict[int, tuple[User, bool]]:
    """`_upsert_user` for several senders (each once) in one round trip: by sender id."""
    if not senders:
        return {}
    values = [_user_values(sender) for sender in senders]
    rows = {row[0]: row for row in session.connection().exec_driver_sql(_UPSERT_USERS, {
        key: [each[key] for each in values] for key in ("id", "first_name", "username", "language")})}
    users: dict[int, tuple[User, bool]] = {}
    for sender in senders:
        row = rows.get(sender.id)
        if row is None:  # the row came from another transaction after this statement began
            users[sender.id] = _upsert_user(session, sender)
            continue
        *columns, inserted = row
        users[sender.id] = _as_loaded(session, User(**dict(zip(_USER_KEYS, columns, strict=True)))), bool(inserted)
    return users


def _user_values(sender) -> dict[str, Any]:
    return {"id": sender.id, "first_name": (sender.first_name or "")[:128], "username": sender.username,
            "language": pick_language(sender.language_code)}


Loaded = TypeVar("Loaded", bound=Base)


def _as_loaded(session: Session, instance: Loaded) -> Loaded:
    """An instance made from a row read straight from the driver, in the session as if the ORM had
    loaded it (no changes pending; the columns not given load when first read). One this session
    has loaded already is refreshed and kept instead."""
    loaded = session.identity_map.get(inspect(type(instance)).identity_key_from_instance(instance))
    if loaded is not None:
        session.refresh(loaded)
        return cast(Loaded, loaded)
    make_transient_to_detached(instance)
    session.add(instance)
    return instance


# Every column of users but the computed geography point (read from the ORM when a handler asks).
_USER_KEYS = [column.key for column in User.__table__.columns if column.key != "location"]
_USER_COLUMNS = ", ".join(f"users.{key}" for key in _USER_KEYS)
_READ_USER = f"SELECT {_USER_COLUMNS}, false FROM users WHERE users.id = %(id)s"
_ON_CONFLICT_USER = (
    " ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, username = excluded.username,"
    " language = CASE WHEN users.deleted_at IS NOT NULL THEN excluded.language ELSE users.language END,"
    " last_seen_at = now(), deleted_at = NULL, reachable = true"
    " WHERE users.first_name IS DISTINCT FROM excluded.first_name"
    " OR users.username IS DISTINCT FROM excluded.username OR users.deleted_at IS NOT NULL"
    " OR NOT users.reachable OR users.last_seen_at < now() - interval '1 minute'"
    f" RETURNING {_USER_COLUMNS}, xmax = 0 AS inserted")
_UPSERT_USER = (
    "WITH upserted AS (INSERT INTO users (id, first_name, username, language)"
    f" VALUES (%(id)s, %(first_name)s, %(username)s, %(language)s){_ON_CONFLICT_USER})"
    " SELECT * FROM upserted"
    f" UNION ALL {_READ_USER} AND NOT EXISTS (SELECT FROM upserted)")
# The same for several senders (distinct ids): those not written are read in the same statement.
_UPSERT_USERS = (
    "WITH given AS (SELECT * FROM unnest(%(id)s::bigint[], %(first_name)s::text[], %(username)s::text[],"
    " %(language)s::text[]) AS given (id, first_name, username, language)),"
    " upserted AS (INSERT INTO users (id, first_name, username, language)"
    f" SELECT id, first_name, username, language FROM given{_ON_CONFLICT_USER})"
    " SELECT * FROM upserted"
    f" UNION ALL SELECT {_USER_COLUMNS}, false FROM users JOIN given ON given.id = users.id"
    " WHERE NOT EXISTS (SELECT FROM upserted WHERE upserted.id = users.id)")
