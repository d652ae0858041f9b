"""Verification requests: each admin is asked to review a business that registers, and one who
could not be reached then (Telegram answered 403: they blocked the bot, or never started it) is
asked again when they next open the bot, once per business and application.

The requests themselves are outbox messages (kind "admin") keyed by business, application and
admin; what counts as received is read from them: sent, or still on its way (pending, or failed
and to be retried). A dropped one was not received.
"""

from __future__ import annotations

from collections.abc import Collection

from sqlalchemy import exists, or_, select
from sqlalchemy.orm import Session

from domain import businesses
from models import Business, Notification, NotificationStatus

KIND = "admin"
PENDING_LOOKED_AT = 50


def request_key(business_id: int, application: str, admin_id: int, *, again: bool = False) -> str:
    """The outbox key of one admin's request for one application (`application`: the update that
    submitted it; "0" when no request was recorded at all). Asked again: a key of its own."""
    return f"business:{business_id}:{'again' if again else 'submitted'}:{application}:admin:{admin_id}"


def _application(session: Session, business_id: int, admin_ids: Collection[int]) -> str:
    """The latest application, as named in the keys of the requests sent for it (a rejected
    business may apply again)."""
    if not admin_ids:
        return "0"
    latest = session.scalar(
        select(Notification.idempotency_key)
        .where(Notification.chat_id.in_(list(admin_ids)), Notification.kind == KIND,
               Notification.idempotency_key.startswith(f"business:{business_id}:submitted:", autoescape=True))
        .order_by(Notification.id.desc())
        .limit(1)
    )
    return latest.split(":")[3] if latest else "0"


def not_received(session: Session, admin_id: int, admin_ids: Collection[int],
                 limit: int = 10) -> list[tuple[Business, str]]:
    """Businesses still pending whose latest application this admin was not told about and was not
    asked about again yet, oldest first, each with that application."""
    waiting: list[tuple[Business, str]] = []
    for business in businesses.pending(session, limit=PENDING_LOOKED_AT):
        application = _application(session, business.id, admin_ids)
        received = session.scalar(select(exists().where(or_(
            (Notification.idempotency_key == request_key(business.id, application, admin_id))
            & (Notification.status != NotificationStatus.DROPPED),
            Notification.idempotency_key == request_key(business.id, application, admin_id, again=True),
        ))))
        if not received:
            waiting.append((business, application))
            if len(waiting) >= limit:
                break
    return waiting
