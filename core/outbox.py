"""The outbox: the one way anything is sent to a person.

Every outbound message is a row (with an idempotency key) before it is sent. It is recorded in the
same transaction as the change that caused it, and sent after that transaction committed. Sending
takes the row with FOR UPDATE SKIP LOCKED, so two workers never send the same message at once,
and a sent row is never sent again.

What is recorded is a `Reply`: the message as data (text, buttons, a photo or an image to upload,
a document). The chat builds replies itself; the domain instead says *what happened* with a notice
(a plain dataclass of its own, e.g. "this order was paid"), and the chat's renderer for that notice
type, registered with `renders`, turns it into the reply in the recipient's language as it is
recorded. That keeps the domain free of wording and button names while the text still lands in the
same transaction.

Messages go out after the commit (`notify`, `deliver_after_commit`, `deliver`), except for a sender
that needs Telegram's answer inside its transaction: `deliver_now` records and sends at once, with
the same handling of every Bot API answer, and reports what Telegram returned (an uploaded photo's
file_id).

The answer to a button press (answerCallbackQuery) is owed to Telegram like a message, so it is a
row too (`answer_row`, kind ``callback_answer``), recorded in the update's transaction: the
update task answers it at once (`start_answer`), and a redelivered update that finds the row still
pending answers it through `deliver`. Telegram refuses an answer that comes too late ("query is too
old"): that is final, and the row is dropped.
"""

from __future__ import annotations

import base64
import concurrent.futures
import contextlib
import enum
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

import redis
from sqlalchemy import Connection, select, update
from sqlalchemy import exc as sa_exc
from sqlalchemy.orm import Session

from core import db, faults, handover, marks, metrics, redis_client
from core import telegram as tg
from core.handover import enqueue_after_commit
from core.logging import get_logger
from core.ratelimit import RateLimitTimeout, rate_limiter
from models import Notification, NotificationStatus

log = get_logger(__name__)


# --------------------------------------------------------------------------- what is sent

Keyboard = list[list[dict[str, str]]]


def button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


def web_app_button(text: str, url: str) -> dict[str, str]:
    """A button that opens the Mini App at ``url`` inside Telegram (``web_app``), kept flat like the
    others in the outbox; core.telegram turns it into Telegram's ``web_app: {url}``."""
    return {"text": text, "web_app_url": url}


@dataclass
class Reply:
    text: str
    keyboard: Keyboard | None = None
    # Set when answering a button press: the menu message is edited in place.
    edit_message_id: int | None = None
    photo: str | None = None  # a Telegram file_id
    # An image to upload as the photo, base64 (a freshly rendered deal card). Once it is sent the
    # row keeps Telegram's file_id for it in `photo` instead, which is what the sender reads back.
    photo_upload: str | None = None
    # A file to send with `text` as its caption: {"filename": ..., "content_b64": ...} (small files
    # only, e.g. a CSV export: the outbox keeps it until it is sent).
    document: dict[str, str] | None = None
    # A keyboard under the input field with one button that shares the user's location
    # (inline keyboards cannot ask for it); `remove_keyboard` takes such a keyboard away again.
    location_request: str | None = None
    remove_keyboard: bool = False
    # A map pin with a name and an address (sendVenue): {"latitude", "longitude", "title", "address"};
    # `text` is then what a chat that can't show the pin reads instead.
    venue: dict[str, Any] | None = None
    # Sent as a Telegram paid broadcast (`allow_paid_broadcast`): past the free 30 messages/s, up to
    # 1,000/s, for a fee (deal alerts to a large audience, see domain.announcements).
    paid_broadcast: bool = False
    kind: str = "reply"

    def to_payload(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False) and k != "kind"}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], kind: str = "reply") -> Reply:
        return cls(kind=kind, **payload)


# --------------------------------------------------------------------------- notices

NoticeT = TypeVar("NoticeT")
_RENDERERS: dict[type, Callable[[Any], Reply]] = {}


def renders(notice_type: type[NoticeT]) -> Callable[[Callable[[NoticeT], Reply]], Callable[[NoticeT], Reply]]:
    """Register how a domain notice reads (used by `chat.messages`, once per notice type)."""
    def register(render: Callable[[NoticeT], Reply]) -> Callable[[NoticeT], Reply]:
        if notice_type in _RENDERERS:
            raise ValueError(f"{notice_type.__name__} has a renderer already")
        _RENDERERS[notice_type] = render
        return render

    return register


def render(message: Reply | object) -> Reply:
    """The reply for a message: a `Reply` as it is, a notice through its registered renderer."""
    if isinstance(message, Reply):
        return message
    try:
        renderer = _RENDERERS[type(message)]
    except KeyError:
        raise LookupError(f"nothing renders {type(message).__name__}: is chat.messages imported?") from None
    return renderer(message)


# A send that must wait longer than this goes back to the queue (with a countdown) instead of
# holding a worker that other users' updates are waiting for.
MAX_INLINE_WAIT_SECONDS = 0.25
DELIVER_TASK = "notifications.deliver_in_order"


class Delivery(enum.Enum):
    SENT = "sent"
    ALREADY_DONE = "already_done"  # sent or dropped earlier, or being sent by another worker
    DROPPED = "dropped"


class RetryLater(Exception):
    """Telegram asked us to wait (429) or could not be reached; try again after `delay` seconds.
    `pacing`: only waiting for our turn under the rate limits, which is no failure at all."""

    def __init__(self, delay: float, reason: str, *, pacing: bool = False) -> None:
        super().__init__(reason)
        self.delay = delay
        self.pacing = pacing


def record(session: Session, key: str, chat_id: int, message: Reply | object) -> int | None:
    """Add a message (a `Reply` or a domain notice) to the outbox; returns its id, or None if that
    key was recorded before. Nothing is sent: the caller hands the id on (see `notify`)."""
    return record_rows(session, [reply_row(key, chat_id, message)])[0]


# One outbox row to record: its idempotency key, the chat, its kind and its payload.
Outgoing = tuple[str, int, str, dict[str, Any]]


def reply_row(key: str, chat_id: int, message: Reply | object) -> Outgoing:
    """The row for a message (a `Reply`, or a domain notice rendered now), for `record_rows`."""
    reply = render(message)
    return key, chat_id, reply.kind, reply.to_payload()


def record_rows(session: Session, rows: list[Outgoing]) -> list[int | None]:
    """Record several rows in one statement, with ids in the order given (a redelivery sends what is
    pending in id order); each one's id, or None where its key was recorded before. Straight to the
    driver: every update records its answer and replies, and building ORM inserts cost more than
    the round trips (bench/report.md)."""
    if not rows:
        return []
    keys = [key for key, _, _, _ in rows]
    result = session.connection().exec_driver_sql(_RECORD_ROWS, {
        "keys": keys, "chat_ids": [chat_id for _, chat_id, _, _ in rows], "kinds": [kind for _, _, kind, _ in rows],
        "payloads": [json.dumps(payload) for _, _, _, payload in rows]})
    recorded: dict[str, int] = {row[0]: row[1] for row in result}
    return [recorded.get(key) for key in keys]


_RECORD_ROWS = (
    "INSERT INTO notifications (idempotency_key, chat_id, kind, payload)"
    " SELECT key, chat_id, kind, payload::jsonb"
    " FROM unnest(%(keys)s::text[], %(chat_ids)s::bigint[], %(kinds)s::text[], %(payloads)s::text[])"
    " WITH ORDINALITY AS given (key, chat_id, kind, payload, position) ORDER BY position"
    " ON CONFLICT (idempotency_key) DO NOTHING RETURNING idempotency_key, id")


def notify(session: Session, key: str, chat_id: int, message: Reply | object) -> int | None:
    """Record a message for `chat_id` and send it through the notifications queue once this
    transaction commits. The key makes it once-only: the same key never sends twice."""
    note_id = record(session, key, chat_id, message)
    if note_id is not None:
        deliver_after_commit(session, [note_id])
    return note_id


def deliver_after_commit(session: Session, notification_ids: list[int]) -> None:
    """Send these recorded messages, in this order, through the notifications queue after commit."""
    if notification_ids:
        enqueue_after_commit(session, DELIVER_TASK, list(notification_ids))


def record_to_send(session: Session, key: str, chat_id: int, message: Reply | object) -> int | None:
    """`record` for a message its caller sends itself straight after the commit (`send_now`): the id
    to send, also when a redelivered task finds it recorded and not sent yet (None: sent already)."""
    note_id = record(session, key, chat_id, message)
    if note_id is not None:
        return note_id
    return session.connection().exec_driver_sql(_PENDING_BY_KEY, {"key": key}).scalar()


_PENDING_BY_KEY = "SELECT id FROM notifications WHERE idempotency_key = %(key)s AND status = 'pending'"


def pending_ids(session: Session, key_prefix: str) -> list[int]:
    return list(
        session.scalars(
            select(Notification.id)
            .where(Notification.idempotency_key.startswith(key_prefix, autoescape=True))
            .where(Notification.status == NotificationStatus.PENDING)
            .order_by(Notification.id)
        )
    )


# --------------------------------------------------------------------------- button answers

ANSWER_KIND = "callback_answer"


def answer_row(key: str, chat_id: int, callback_query_id: str, *, text: str | None = None,
               show_alert: bool = False) -> Outgoing:
    """The row for the answer to a button press, for `record_rows` (sent by `start_answer`, or by
    `deliver` for a row still pending)."""
    return key, chat_id, ANSWER_KIND, {"callback_query_id": callback_query_id, "text": text, "show_alert": show_alert}


INLINE_KIND = "inline_answer"


def record_inline_answer(session: Session, key: str, chat_id: int, inline_query_id: str,
                         results: list[dict[str, str]]) -> int | None:
    """Record the answer to an inline query (`@bot croissant` typed in any chat): result articles,
    each {"id", "title", "description", "text" (HTML), "url", "url_text"}. Sent by `deliver` like a
    button's answer: not a message, so it takes no turn under the rate limits."""
    payload = {"inline_query_id": inline_query_id, "results": results}
    return record_rows(session, [(key, chat_id, INLINE_KIND, payload)])[0]


ANSWER_KINDS = (ANSWER_KIND, INLINE_KIND)


class Answering:
    """An answer on its way to Telegram (`start_answer`); `finish` records what became of it."""

    def __init__(self, notification_id: int, future: concurrent.futures.Future[bool]) -> None:
        self.notification_id = notification_id
        self.future = future

    def finish(self, timeout: float = 60.0) -> Delivery | None:
        """Wait for Telegram, then mark the row (soon, in a batch: core.marks): sent, or dropped when
        Telegram refused it (too old, answered already: the spinner is gone either way). A network
        failure or a 429 leaves it pending for the notifications queue (None)."""
        try:
            self.future.result(timeout)
        except (tg.RetryAfter, tg.TimedOut, tg.NetworkError, concurrent.futures.TimeoutError) as error:
            log.info("callback_answer_retried", notification_id=self.notification_id, error=str(error))
            handover.send_task(DELIVER_TASK, [[self.notification_id]], countdown=1.0)
            return None
        except tg.TelegramError as error:
            log.info("callback_answer_failed", notification_id=self.notification_id, error=str(error))
            marks.later(ANSWER_DROPPED, [self.notification_id])
            return Delivery.DROPPED
        faults.kill_point(faults.MID_SEND, ANSWER_KIND)
        marks.later(ANSWER_SENT, [self.notification_id])
        return Delivery.SENT


def start_answer(notification_id: int, callback_query_id: str, *, text: str | None = None,
                 show_alert: bool = False) -> Answering:
    """Send a recorded answer now, in the background: the caller sends its replies meanwhile (two
    Bot API calls in flight at once) and then calls `finish`. Answers take no turn under the
    message rate limits."""
    future = tg.telegram_api().start_answer_callback_query(callback_query_id, text=text, show_alert=show_alert)
    return Answering(notification_id, future)


# A lost mark leaves the row pending: a redelivered update answers again, and Telegram refuses it.
ANSWER_SENT = "callback_answers_sent"
ANSWER_DROPPED = "callback_answers_dropped"
marks.register(ANSWER_SENT, "UPDATE notifications SET status = 'sent', sent_at = now(), attempts = attempts + 1"
                            " WHERE id = ANY(:ids) AND status = 'pending'")
marks.register(ANSWER_DROPPED, "UPDATE notifications SET status = 'dropped', attempts = attempts + 1,"
                               " last_error = 'refused by Telegram (too old or answered)'"
                               " WHERE id = ANY(:ids) AND status = 'pending'")


@dataclass(frozen=True)
class Sent:
    """What became of one send, with what Telegram returned."""

    delivery: Delivery
    message_id: int | None = None
    photo: str | None = None  # the photo's file_id on Telegram (an upload's new one)
    blocked: bool = False  # dropped because the user blocked the bot (403)
    error: str | None = None  # why it was dropped


def deliver(notification_id: int, connection: Connection | None = None) -> Delivery:
    """Send one outbox message through the Bot API, at most once unless a crash hits mid-send; in a
    transaction of its own, on `connection` when the caller holds one (`db.connected`)."""
    try:
        delivery = _deliver(notification_id, connection)
    except RetryLater:
        metrics.NOTIFICATIONS.labels("retry_later").inc()
        raise
    if delivery is not Delivery.ALREADY_DONE:
        metrics.NOTIFICATIONS.labels(delivery.value).inc()
    return delivery


def deliver_now(session: Session, key: str, chat_id: int, message: Reply | object, *,
                max_wait: float = MAX_INLINE_WAIT_SECONDS) -> Sent:
    """Record a message and send it at once, inside the caller's transaction, for a sender that
    needs Telegram's answer before it commits: the photo task keeps the file_id of the deal card it
    uploads, and holds the offer's row until then. Sent or dropped, the row commits (or rolls
    back) with the caller's changes; a crash before that commit loses it with them, and the
    caller's retry sends again. Waits up to `max_wait` for its turn under the rate limits; raises
    `RetryLater` as `deliver` does (the caller rolls back and retries)."""
    note_id = record(session, key, chat_id, message)
    if note_id is None:  # recorded and committed before: report what became of it
        earlier = session.scalars(select(Notification).where(Notification.idempotency_key == key)).one()
        return Sent(Delivery.ALREADY_DONE, earlier.telegram_message_id, (earlier.payload or {}).get("photo"),
                    error=earlier.last_error)
    conn = session.connection()
    row = _take(conn, note_id)
    assert row is not None, "a row this transaction inserted is pending and locked by it"
    try:
        _take_turn(chat_id, max_wait)
        sent = _attempt(conn, row, {})
    except RetryLater:
        metrics.NOTIFICATIONS.labels("retry_later").inc()
        raise
    metrics.NOTIFICATIONS.labels(sent.delivery.value).inc()
    return sent


def _deliver(notification_id: int, connection: Connection | None) -> Delivery:
    progress: dict[str, int | None] = {}
    try:
        return _send_and_record(notification_id, progress, connection).delivery
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        if "message_id" not in progress:
            raise
        # Telegram has the message; only the commit that records it failed (Postgres went away
        # right then). Note that in Redis first: if Postgres stays away longer than this task may
        # wait, the next attempt at the row finds the note and marks it instead of sending again.
        # Then record it on a fresh connection rather than let a retry send it again.
        _note_sent_unrecorded(notification_id, progress["message_id"])
        _record_sent(notification_id, progress["message_id"])
        return Delivery.SENT


# A send Telegram took whose "sent" could not be written: notification id → Telegram's message id
# ("" for none), kept a week (far beyond any retry or the outbox sweeper's). `_record_sent` deletes
# it once it records the send; one a later attempt finds is left to expire, as that attempt's mark
# commits only after it returns (the marked row is never taken again).
_SENT_UNRECORDED_KEY = "outbox:sent_unrecorded:{}"
_SENT_UNRECORDED_TTL_S = 7 * 24 * 3600


def _note_sent_unrecorded(notification_id: int, message_id: int | None) -> None:
    try:
        redis_client.client().set(_SENT_UNRECORDED_KEY.format(notification_id),
                                  "" if message_id is None else str(message_id), ex=_SENT_UNRECORDED_TTL_S)
    except redis.RedisError as error:  # a second fault: the message may go out twice, as before
        log.error("notification_send_not_noted", notification_id=notification_id, error=repr(error))


def _sent_unrecorded(notification_id: int) -> tuple[bool, int | None]:
    """Whether an earlier attempt sent this row without recording it, and Telegram's message id."""
    try:
        noted = redis_client.client().get(_SENT_UNRECORDED_KEY.format(notification_id))
    except redis.RedisError:
        return False, None  # Redis away: send (a note could only exist after a second fault)
    if noted is None:
        return False, None
    return True, int(noted) if noted else None


def _forget_sent_unrecorded(notification_id: int) -> None:
    # Redis away: the note expires, and the row is marked, so it is never taken again.
    with contextlib.suppress(redis.RedisError):
        redis_client.client().delete(_SENT_UNRECORDED_KEY.format(notification_id))


def _record_sent(notification_id: int, message_id: int | None, patience_s: float = 60.0) -> None:
    deadline = time.monotonic() + patience_s
    pause = 0.2
    while True:
        try:
            with db.session_scope() as session:
                session.execute(
                    update(Notification)
                    .where(Notification.id == notification_id, Notification.status == NotificationStatus.PENDING)
                    .values(status=NotificationStatus.SENT, sent_at=datetime.now(UTC),
                            telegram_message_id=message_id, attempts=Notification.attempts + 1)
                )
            log.warning("notification_recorded_late", notification_id=notification_id)
            _forget_sent_unrecorded(notification_id)
            return
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            if time.monotonic() + pause > deadline:
                raise  # the message may go out twice: better than never
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _send_and_record(notification_id: int, progress: dict[str, int | None], connection: Connection | None) -> Sent:
    with db.transaction(connection) as conn:
        row = _take(conn, notification_id)
        if row is None:
            return Sent(Delivery.ALREADY_DONE)
        if row.kind not in ANSWER_KINDS:  # answers are not messages: no turn under the rate limits
            sent_before, message_id = _sent_unrecorded(row.id)
            if sent_before:  # Telegram has it from an attempt whose record Postgres lost
                _mark(conn, row.id, NotificationStatus.SENT, sent_at=datetime.now(UTC), message_id=message_id)
                log.warning("notification_recorded_late", notification_id=row.id, by="a later attempt")
                return Sent(Delivery.SENT, message_id)
            _take_turn(row.chat_id, MAX_INLINE_WAIT_SECONDS, paid=bool(row.payload.get("paid_broadcast")))
        return _attempt(conn, row, progress)


@dataclass(frozen=True)
class _Taken:
    """A pending outbox row, locked for sending until its transaction ends."""

    id: int
    chat_id: int
    kind: str
    payload: dict[str, Any]


SUPERSEDED = "superseded by a later edit of the same message"


def _take(conn: Connection, notification_id: int) -> _Taken | None:
    """Lock a pending row for sending (FOR UPDATE SKIP LOCKED: None when it is sent, dropped, or
    being sent by another worker), and for an edit drop the earlier edits of the same message that
    are not sent yet, in one statement straight to the driver (every reply and answer goes through
    here; the ORM's load, flush and bulk UPDATE cost more than the round trips, bench/report.md).

    Telegram shows whichever edit of a message arrives last, so an edit recorded earlier must never
    arrive after this one ("⏳ Reserving…" over "Sold out" left a customer waiting forever): this
    one says what is true now. One being sent at this moment holds its row lock until its send is
    recorded; the UPDATE waits for that, then finds it sent and leaves it, so this edit arrives
    after it. Locks are only ever waited for towards smaller ids, so two deliveries never wait on
    each other."""
    row = _TAKE(conn, {"id": notification_id, "why": SUPERSEDED}).first()
    return None if row is None else _Taken(notification_id, row.chat_id, row.kind, row.payload)


# Prepared, as _MARK: the two statements of every reply. Unprepared, Postgres spent 0.40 ms of CPU
# parsing, planning and running the pair; prepared, 0.15–0.19 ms (bench/report.md, section 2).
_TAKE = db.PreparedStatement(
    "outbox_take",
    "WITH taken AS (SELECT id, chat_id, kind, payload FROM notifications"
    " WHERE id = :id AND status = 'pending' FOR UPDATE SKIP LOCKED),"
    " superseded AS (UPDATE notifications SET status = 'dropped', last_error = :why FROM taken"
    f" WHERE taken.kind NOT IN ('{ANSWER_KIND}', '{INLINE_KIND}') AND taken.payload ? 'edit_message_id'"
    " AND notifications.chat_id = taken.chat_id AND notifications.id < taken.id"
    " AND notifications.status IN ('pending', 'failed')"
    " AND CAST(notifications.payload ->> 'edit_message_id' AS INTEGER)"
    " = CAST(taken.payload ->> 'edit_message_id' AS INTEGER))"
    " SELECT chat_id, kind, payload FROM taken",
    {"id": "bigint", "why": "text"},
)


def _take_turn(chat_id: int, max_wait: float, paid: bool = False) -> None:
    """Telegram's limits are shared by every worker: wait our turn here up to `max_wait`, else later.
    A paid broadcast waits for its own, faster, global turn."""
    try:
        rate_limiter().acquire(chat_id, max_wait=max_wait, paid=paid)
    except RateLimitTimeout as error:
        raise RetryLater(error.wait, "rate limit", pacing=True) from error


def _attempt(conn: Connection, row: _Taken, progress: dict[str, int | None]) -> Sent:
    """Send a taken row and record the outcome on it (in `conn`'s transaction); how every Bot API
    answer is taken: 429 waits (every worker holds off), 403 stops writing to the user, 400 drops
    the message, a network failure is retried (nothing is written: the caller rolls back)."""
    reply = Reply.from_payload(row.payload, kind=row.kind) if row.kind not in ANSWER_KINDS else None
    try:
        message_id, uploaded = _send(row.chat_id, reply) if reply is not None else _answer(row.kind, row.payload)
    except tg.RetryAfter as error:
        metrics.TELEGRAM_FLOOD.inc()
        rate_limiter().penalize(tg.retry_after_seconds(error))  # every worker holds off
        raise RetryLater(tg.retry_after_seconds(error), "telegram flood control", pacing=True) from error
    except tg.Forbidden as error:
        # The user blocked the bot: stop writing to them until they come back.
        reason = _drop(conn, row, f"403 {error.message}")
        conn.exec_driver_sql(_UNREACHABLE, {"user_id": row.chat_id})
        return Sent(Delivery.DROPPED, blocked=True, error=reason)
    except tg.BadRequest as error:
        if reply is not None and "message is not modified" in error.message.lower():
            _mark(conn, row.id, NotificationStatus.SENT, sent_at=datetime.now(UTC))
            return Sent(Delivery.SENT, reply.edit_message_id, reply.photo)
        return Sent(Delivery.DROPPED, error=_drop(conn, row, f"400 {error.message}"))
    except (tg.TimedOut, tg.NetworkError) as error:
        raise RetryLater(2.0, f"network: {error}") from error
    faults.kill_point(faults.MID_SEND, row.kind)
    progress["message_id"] = message_id
    # Keep Telegram's file_id instead of the bytes of an upload: showing the photo again costs no upload.
    payload = None if uploaded is None else {
        **{k: v for k, v in row.payload.items() if k != "photo_upload"}, "photo": uploaded}
    _mark(conn, row.id, NotificationStatus.SENT, sent_at=datetime.now(UTC), message_id=message_id, payload=payload)
    return Sent(Delivery.SENT, message_id, uploaded or (reply.photo if reply is not None else None))


def _mark(conn: Connection, notification_id: int, status: NotificationStatus, *, sent_at: datetime | None = None,
          message_id: int | None = None, payload: dict[str, Any] | None = None, error: str | None = None) -> None:
    """What became of an attempt, on its row (one more attempt)."""
    _MARK(conn, {
        "id": notification_id, "status": status.value, "sent_at": sent_at, "message_id": message_id,
        "payload": None if payload is None else json.dumps(payload), "error": error})


_MARK = db.PreparedStatement(
    "outbox_mark",
    "UPDATE notifications SET status = :status, attempts = attempts + 1, sent_at = COALESCE(:sent_at, sent_at),"
    " telegram_message_id = COALESCE(:message_id, telegram_message_id), payload = COALESCE(:payload, payload),"
    " last_error = COALESCE(:error, last_error) WHERE id = :id",
    {"status": "text", "sent_at": "timestamptz", "message_id": "bigint", "payload": "jsonb", "error": "text",
     "id": "bigint"},
)
_UNREACHABLE = "UPDATE users SET reachable = false WHERE id = %(user_id)s"


def _drop(conn: Connection, row: _Taken, reason: str) -> str:
    """Drop a row Telegram refused for good; the reason, as recorded."""
    reason = reason[:500]
    _mark(conn, row.id, NotificationStatus.DROPPED, error=reason)
    log.warning("notification_dropped", notification_id=row.id, chat_id=row.chat_id, reason=reason)
    return reason


def _answer(kind: str, payload: dict[str, Any]) -> tuple[None, None]:
    """Answer a button press (an `answer_row` row) or an inline query (`record_inline_answer`)."""
    if kind == INLINE_KIND:
        tg.telegram_api().answer_inline_query(payload["inline_query_id"], payload["results"])
        return None, None
    tg.telegram_api().start_answer_callback_query(
        payload["callback_query_id"], text=payload.get("text"), show_alert=bool(payload.get("show_alert"))
    ).result(timeout=60)
    return None, None


def _send(chat_id: int, reply: Reply) -> tuple[int | None, str | None]:
    """Send a reply; its message id and, for an uploaded photo, the file_id Telegram gave it."""
    api = tg.telegram_api()
    if reply.venue is not None:
        venue = reply.venue
        return api.send_venue(chat_id, float(venue["latitude"]), float(venue["longitude"]), str(venue["title"]),
                              str(venue["address"]), keyboard=reply.keyboard).message_id, None
    if reply.document is not None:
        content = base64.b64decode(reply.document["content_b64"])
        return api.send_document(chat_id, reply.document["filename"], content, caption=reply.text,
                                 keyboard=reply.keyboard).message_id, None
    if reply.photo_upload is not None:
        message = api.send_photo(chat_id, base64.b64decode(reply.photo_upload), caption=reply.text,
                                 keyboard=reply.keyboard)
        return message.message_id, message.photo[-1].file_id
    if reply.edit_message_id is not None:
        # A text is edited as text; a photo (its file_id in `photo`) keeps its picture and gets a new
        # caption and buttons.
        try:
            if reply.photo is None:
                result = api.edit_message_text(chat_id, reply.edit_message_id, reply.text, reply.keyboard)
            else:
                result = api.edit_message_caption(chat_id, reply.edit_message_id, reply.text, reply.keyboard)
            return (result.message_id if hasattr(result, "message_id") else reply.edit_message_id), None
        except tg.BadRequest as error:
            text = error.message.lower()
            # A photo card can't become text, and very old messages can't be edited: send anew.
            if "message is not modified" in text:
                raise
            if "there is no text in the message" not in text and "there is no caption in the message" not in text \
                    and "message can't be edited" not in text and "message to edit not found" not in text:
                raise
    if reply.photo is not None:
        try:
            return api.send_photo(chat_id, reply.photo, caption=reply.text, keyboard=reply.keyboard,
                                  paid_broadcast=reply.paid_broadcast).message_id, None
        except tg.BadRequest as error:
            text = error.message.lower()
            if not any(marker in text for marker in ("wrong file identifier", "wrong remote file identifier",
                                                     "file reference", "type of file mismatch")):
                raise
            # Telegram no longer knows this file_id (the Bot API server or the sandbox fake lost it,
            # or it was another bot's): the same words and buttons as a text message, not nothing.
            log.warning("photo_sent_as_text", chat_id=chat_id, photo=reply.photo[:24], error=error.message)
    return api.send_message(chat_id, reply.text, reply.keyboard, location_request=reply.location_request,
                            remove_keyboard=reply.remove_keyboard, paid_broadcast=reply.paid_broadcast).message_id, None
