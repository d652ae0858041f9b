"""What a chat still shows: messages we sent (outbox rows with Telegram's message id) that no later
message of ours has edited into something else.

A message whose buttons can no longer do anything (a Pay button after the payment, an offer's
preview after publishing) is edited when its moment passes. That must not overwrite what the
person has turned the message into since (a menu edited in place by a later tap), so only the
messages still showing what was sent are returned.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, and_, exists, or_, select
from sqlalchemy.orm import Session, aliased

from models import Notification, NotificationStatus


@dataclass(frozen=True)
class Shown:
    message_id: int  # Telegram's id of the message in the chat
    payload: dict[str, Any]  # what was sent (a `core.outbox.Reply` as recorded)


def still_shown(session: Session, chat_id: int, *, key: str | None = None,
                key_prefix: str | None = None) -> list[Shown]:
    """The messages sent to ``chat_id`` under the idempotency ``key`` (or any key starting with
    ``key_prefix``) that still show what was sent: no later outbox row edits them (one waiting to be
    sent counts, one Telegram refused does not). Oldest first."""
    if key is None and key_prefix is None:
        raise ValueError("still_shown needs a key or a key prefix")
    later = aliased(Notification)
    edited_since = exists().where(
        later.chat_id == Notification.chat_id,
        later.id > Notification.id,
        later.payload["edit_message_id"].astext.cast(BigInteger) == Notification.telegram_message_id,
        or_(later.status == NotificationStatus.PENDING,
            and_(later.status == NotificationStatus.SENT,
                 later.telegram_message_id == Notification.telegram_message_id)),
    )
    keys = []
    if key is not None:
        keys.append(Notification.idempotency_key == key)
    if key_prefix is not None:
        keys.append(Notification.idempotency_key.startswith(key_prefix, autoescape=True))
    rows = session.execute(
        select(Notification.telegram_message_id, Notification.payload)
        .where(Notification.chat_id == chat_id, Notification.status == NotificationStatus.SENT,
               Notification.telegram_message_id.is_not(None), or_(*keys), ~edited_since)
        .order_by(Notification.id)
    ).all()
    return [Shown(int(message_id), dict(payload or {})) for message_id, payload in rows]
