"""The outbox: the one way anything is sent to a person.

Every outbound message is a row (with an idempotency key) before it is sent. It is recorded in the
same transaction as the change that caused it, and sent after that transaction committed. Sending
takes the row with FOR UPDATE SKIP LOCKED, so two workers never send the same message at once,
and a sent row is never sent again.

What is recorded is a `Reply`: the message as data (text, buttons, photo, document). The chat
builds replies itself; the domain instead says *what happened* with a notice (a plain dataclass
of its own, e.g. "this order was paid"), and the chat's renderer for that notice type, registered
with `renders`, turns it into the reply in the recipient's language as it is recorded. That keeps
the domain free of wording and button names while the text still lands in the same transaction.
"""

from __future__ import annotations

import base64
import enum
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc
from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import metrics
from core import telegram as tg
from core.db import session_scope
from core.handover import enqueue_after_commit
from core.logging import get_logger
from core.ratelimit import rate_limiter
from models import Notification, NotificationStatus, User

log = get_logger(__name__)


# --------------------------------------------------------------------------- what is sent

Keyboard = list[list[dict[str, str]]]


def button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


@dataclass
class Reply:
    text: str
    keyboard: Keyboard | None = None
    # Set when answering a button press: the menu message is edited in place.
    edit_message_id: int | None = None
    photo: str | None = None  # a Telegram file_id
    # A file to send with `text` as its caption: {"filename": ..., "content_b64": ...} (small files
    # only, e.g. a CSV export: the outbox keeps it until it is sent).
    document: dict[str, str] | None = None
    # A keyboard under the input field with one button that shares the user's location
    # (inline keyboards cannot ask for it); `remove_keyboard` takes such a keyboard away again.
    location_request: str | None = None
    remove_keyboard: bool = False
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
    reply = render(message)
    row = session.execute(
        insert(Notification)
        .values(idempotency_key=key, chat_id=chat_id, kind=reply.kind, payload=reply.to_payload())
        .on_conflict_do_nothing(index_elements=["idempotency_key"])
        .returning(Notification.id)
    ).first()
    return row[0] if row else None


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


def pending_ids(session: Session, key_prefix: str) -> list[int]:
    return list(
        session.scalars(
            select(Notification.id)
            .where(Notification.idempotency_key.startswith(key_prefix, autoescape=True))
            .where(Notification.status == NotificationStatus.PENDING)
            .order_by(Notification.id)
        )
    )


def deliver(notification_id: int) -> Delivery:
    """Send one outbox message through the Bot API, at most once unless a crash hits mid-send."""
    try:
        delivery = _deliver(notification_id)
    except RetryLater:
        metrics.NOTIFICATIONS.labels("retry_later").inc()
        raise
    if delivery is not Delivery.ALREADY_DONE:
        metrics.NOTIFICATIONS.labels(delivery.value).inc()
    return delivery


def _deliver(notification_id: int) -> Delivery:
    sent: dict[str, int | None] = {}
    try:
        return _send_and_record(notification_id, sent)
    except (sa_exc.OperationalError, sa_exc.InterfaceError):
        if "message_id" not in sent:
            raise
        # Telegram has the message; only the commit that records it failed (Postgres went away
        # right then). Record it on a fresh connection rather than let a retry send it again.
        _record_sent(notification_id, sent["message_id"])
        return Delivery.SENT


def _record_sent(notification_id: int, message_id: int | None, patience_s: float = 60.0) -> None:
    deadline = time.monotonic() + patience_s
    pause = 0.2
    while True:
        try:
            with session_scope() as session:
                session.execute(
                    update(Notification)
                    .where(Notification.id == notification_id, Notification.status == NotificationStatus.PENDING)
                    .values(status=NotificationStatus.SENT, sent_at=datetime.now(UTC),
                            telegram_message_id=message_id, attempts=Notification.attempts + 1)
                )
            log.warning("notification_recorded_late", notification_id=notification_id)
            return
        except (sa_exc.OperationalError, sa_exc.InterfaceError):
            if time.monotonic() + pause > deadline:
                raise  # the message may go out twice: better than never
            time.sleep(pause)
            pause = min(pause * 2, 5.0)


def _send_and_record(notification_id: int, sent: dict[str, int | None]) -> Delivery:
    with session_scope() as session:
        note = session.execute(
            select(Notification)
            .where(Notification.id == notification_id, Notification.status == NotificationStatus.PENDING)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if note is None:
            return Delivery.ALREADY_DONE
        # Telegram's limits are shared by every worker: wait our turn, briefly here, else later.
        wait = rate_limiter().try_acquire(note.chat_id)
        if wait > MAX_INLINE_WAIT_SECONDS:
            raise RetryLater(wait, "rate limit", pacing=True)
        if wait > 0:
            time.sleep(wait)
            if rate_limiter().try_acquire(note.chat_id) > 0:
                raise RetryLater(wait, "rate limit", pacing=True)
        note.attempts += 1
        reply = Reply.from_payload(note.payload, kind=note.kind)
        try:
            message_id = _send(note.chat_id, reply)
        except tg.RetryAfter as error:
            metrics.TELEGRAM_FLOOD.inc()
            note.last_error = "429 retry after"
            rate_limiter().penalize(tg.retry_after_seconds(error))  # every worker holds off
            raise RetryLater(tg.retry_after_seconds(error), "telegram flood control", pacing=True) from error
        except tg.Forbidden as error:
            # The user blocked the bot: stop writing to them until they come back.
            _drop(session, note, f"403 {error.message}")
            session.execute(update(User).where(User.id == note.chat_id).values(reachable=False))
            return Delivery.DROPPED
        except tg.BadRequest as error:
            if "message is not modified" in error.message.lower():
                note.status = NotificationStatus.SENT
                note.sent_at = datetime.now(UTC)
                return Delivery.SENT
            _drop(session, note, f"400 {error.message}")
            return Delivery.DROPPED
        except (tg.TimedOut, tg.NetworkError) as error:
            raise RetryLater(2.0, f"network: {error}") from error
        sent["message_id"] = message_id
        note.status = NotificationStatus.SENT
        note.sent_at = datetime.now(UTC)
        note.telegram_message_id = message_id
        return Delivery.SENT


def _drop(session: Session, note: Notification, reason: str) -> None:
    note.status = NotificationStatus.DROPPED
    note.last_error = reason[:500]
    log.warning("notification_dropped", notification_id=note.id, chat_id=note.chat_id, reason=reason)


def _send(chat_id: int, reply: Reply) -> int | None:
    api = tg.telegram_api()
    if reply.document is not None:
        content = base64.b64decode(reply.document["content_b64"])
        return api.send_document(chat_id, reply.document["filename"], content, caption=reply.text,
                                 keyboard=reply.keyboard).message_id
    if reply.edit_message_id is not None and reply.photo is None:
        try:
            result = api.edit_message_text(chat_id, reply.edit_message_id, reply.text, reply.keyboard)
            return result.message_id if hasattr(result, "message_id") else reply.edit_message_id
        except tg.BadRequest as error:
            text = error.message.lower()
            # A photo card can't become text, and very old messages can't be edited: send anew.
            if "message is not modified" in text:
                raise
            if "there is no text in the message" not in text and "message can't be edited" not in text \
                    and "message to edit not found" not in text:
                raise
    if reply.photo is not None:
        return api.send_photo(chat_id, reply.photo, caption=reply.text, keyboard=reply.keyboard).message_id
    return api.send_message(chat_id, reply.text, reply.keyboard, location_request=reply.location_request,
                            remove_keyboard=reply.remove_keyboard).message_id
