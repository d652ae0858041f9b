"""A user's own data: export it (a JSON document) and erase it.

Erasure removes or anonymises what identifies a person: the users row keeps only its id (the
Telegram id, needed to recognise a returning user), language and ``deleted_at``; follows,
conversation state and old chat messages are deleted; orders are kept for accounting with
``customer_id`` cleared, and the ledger is untouched. Both functions are idempotent.
"""

from __future__ import annotations

import enum
import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core.db import rows_affected
from core.handover import enqueue_after_commit
from domain import reservations
from domain.payments import close_checkouts_after_commit
from models import (
    Business,
    ConversationState,
    Follow,
    Notification,
    NotificationStatus,
    Offer,
    Order,
    OrderStatus,
    Rating,
    User,
)

EXPORT_VERSION = 1


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat() if moment else None


def export_user_data(session: Session, user_id: int, now: datetime | None = None) -> dict[str, Any] | None:
    """Everything we keep about this person, as JSON-friendly data; None if we don't know them."""
    user = session.get(User, user_id)
    if user is None:
        return None
    now = now or datetime.now(UTC)
    business = session.scalar(select(Business).where(Business.owner_id == user_id))
    follows = session.execute(
        select(Follow.business_id, Business.name, Follow.created_at)
        .join(Business, Business.id == Follow.business_id)
        .where(Follow.user_id == user_id).order_by(Follow.created_at)
    ).all()
    orders = session.execute(
        select(Order, Offer.title, Business.name)
        .join(Offer, Offer.id == Order.offer_id).join(Business, Business.id == Offer.business_id)
        .where(Order.customer_id == user_id).order_by(Order.id)
    ).all()
    state = session.get(ConversationState, user_id)
    return {
        "export_version": EXPORT_VERSION,
        "exported_at": _iso(now),
        "user": {
            "telegram_id": user.id,
            "first_name": user.first_name,
            "username": user.username,
            "language": user.language,
            "location": ({"latitude": user.latitude, "longitude": user.longitude,
                          "updated_at": _iso(user.location_updated_at)}
                         if user.latitude is not None else None),
            "deal_alerts_km": user.deal_alerts_km,
            "deal_filters": user.deal_filters,
            "reachable": user.reachable,
            "created_at": _iso(user.created_at),
            "last_seen_at": _iso(user.last_seen_at),
            "deleted_at": _iso(user.deleted_at),
        },
        "business": ({
            "id": business.id, "name": business.name, "address": business.address, "phone": business.phone,
            "latitude": business.latitude, "longitude": business.longitude, "timezone": business.timezone,
            "currency": business.currency, "status": business.status.value, "created_at": _iso(business.created_at),
        } if business else None),
        "follows": [{"business_id": b, "business_name": name, "since": _iso(since)} for b, name, since in follows],
        "orders": [{
            "id": order.id, "offer": title, "business": business_name, "quantity": order.quantity,
            "amount_minor": order.amount_minor, "currency": order.currency, "status": order.status.value,
            "pickup_code": order.pickup_code, "created_at": _iso(order.created_at), "paid_at": _iso(order.paid_at),
            "closed_at": _iso(order.closed_at),
        } for order, title, business_name in orders],
        "ratings": [{
            "order_id": rating.order_id, "stars": rating.stars, "reasons": list(rating.reasons),
            "comment": rating.comment, "created_at": _iso(rating.created_at), "updated_at": _iso(rating.updated_at),
        } for rating in session.scalars(select(Rating).where(Rating.customer_id == user_id).order_by(Rating.id))],
        "conversation": ({"flow": state.flow, "step": state.step} if state and state.flow else None),
    }


def export_document(data: dict[str, Any]) -> bytes:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False).encode()


class DeleteOutcome(enum.StrEnum):
    DELETED = "deleted"
    NOT_FOUND = "not_found"
    OPEN_ORDERS = "open_orders"  # paid orders still to be collected: erase after the pickup
    BUSINESS_OWNER = "business_owner"  # runs a business: an admin closes it first


@dataclass
class DeleteResult:
    outcome: DeleteOutcome
    holds_released: int = 0
    orders_anonymised: int = 0
    follows_deleted: int = 0
    messages_deleted: int = 0
    open_orders: list[int] = field(default_factory=list)

    def report(self) -> dict[str, Any]:
        return {"outcome": self.outcome.value, "holds_released": self.holds_released,
                "orders_anonymised": self.orders_anonymised, "follows_deleted": self.follows_deleted,
                "messages_deleted": self.messages_deleted, "open_orders": self.open_orders}


def open_paid_orders(session: Session, user_id: int, now: datetime) -> list[int]:
    """Paid orders whose pickup has not ended: erasing the customer would lose their pickup code."""
    return list(session.scalars(
        select(Order.id).join(Offer, Offer.id == Order.offer_id)
        .where(Order.customer_id == user_id, Order.status == OrderStatus.PAID, Offer.pickup_end > now)
        .order_by(Order.id)
    ))


def delete_user_data(session: Session, user_id: int, now: datetime | None = None, *,
                     force: bool = False) -> DeleteResult:
    """Erase a person's data (see the module docstring). Refuses while they have paid orders to
    collect or own a business, unless ``force`` (an admin acting on a request)."""
    now = now or datetime.now(UTC)
    # FOR NO KEY UPDATE: a plain FOR UPDATE would block the foreign-key check that every
    # reservation runs against its customer's row.
    user = session.get(User, user_id, with_for_update={"key_share": True})
    if user is None:
        return DeleteResult(DeleteOutcome.NOT_FOUND)
    if not force:
        if session.scalar(select(Business.id).where(Business.owner_id == user_id)) is not None:
            return DeleteResult(DeleteOutcome.BUSINESS_OWNER)
        still_open = open_paid_orders(session, user_id, now)
        if still_open:
            return DeleteResult(DeleteOutcome.OPEN_ORDERS, open_orders=still_open)
    result = DeleteResult(DeleteOutcome.DELETED)
    held = session.scalars(
        select(Order.id).where(Order.customer_id == user_id, Order.status == OrderStatus.HELD).order_by(Order.id)
    ).all()
    released_with_checkout = []
    for order_id in held:
        released = reservations.release(session, order_id, reservations.ReleaseReason.CANCELLED)
        if released.outcome == reservations.ReleaseOutcome.RELEASED:
            result.holds_released += 1
            released_with_checkout.append(order_id)
    if released_with_checkout:
        has_checkout = session.scalars(select(Order.id).where(
            Order.id.in_(released_with_checkout), Order.checkout_session_id.is_not(None))).all()
        close_checkouts_after_commit(session, list(has_checkout))
    # Their ratings keep counting for the business's average, but no longer say who or what they wrote.
    session.execute(update(Rating).where(Rating.customer_id == user_id).values(customer_id=None, comment=None))
    result.orders_anonymised = rows_affected(
        session, update(Order).where(Order.customer_id == user_id).values(customer_id=None)
    )
    result.follows_deleted = rows_affected(session, delete(Follow).where(Follow.user_id == user_id))
    session.execute(delete(ConversationState).where(ConversationState.chat_id == user_id))
    # Old chat messages (texts with names, pickup codes); messages still to be sent stay.
    result.messages_deleted = rows_affected(
        session,
        delete(Notification).where(Notification.chat_id == user_id,
                                   Notification.status != NotificationStatus.PENDING),
    )
    user.first_name = None
    user.username = None
    user.latitude = None
    user.longitude = None
    user.location_updated_at = None
    user.deal_alerts_km = None
    user.deal_filters = {}
    if user.deleted_at is None:
        user.deleted_at = now
    # The chat's own "/" menu (set in the language they chose) goes too: their app's language
    # decides again, as for anyone new.
    enqueue_after_commit(session, "notifications.set_chat_commands", user_id)
    return result
