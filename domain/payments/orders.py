"""An order as the payments code handles it: its key, locked in the reservation engine's order,
read afresh, judged by the database's clock, and the notices that tell people about it."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import outbox
from domain import reservations
from domain.payments.notices import OrderNotice
from models import Business, Offer, Order, User

NoticeT = TypeVar("NoticeT", bound=OrderNotice)


def order_key(order: Order) -> str:
    """Unique to this order for good (ids may repeat after a restore; the creation time with it
    does not): the base of its idempotency keys and the proof in the session's metadata."""
    return f"{order.id}-{int(order.created_at.timestamp() * 1_000_000)}"


def lock_order(session: Session, order_id: int) -> Order | None:
    """The order, locked in the reservation engine's order (its offer first), read afresh."""
    reservations.lock_order(session, order_id)
    return session.execute(
        select(Order).where(Order.id == order_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def reload_order(session: Session, order_id: int) -> Order:
    # The engine moves rows with plain SQL; read them afresh.
    return session.execute(
        select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    ).scalar_one()


def hold_due(session: Session, order: Order) -> bool:
    """By the database's clock, as the reservation engine judges holds."""
    return order.hold_expires_at is None or bool(
        session.scalar(text("SELECT CAST(:t AS timestamptz) <= now()"), {"t": order.hold_expires_at})
    )


def tell(session: Session, key: str, recipient: int, kind: type[NoticeT], order: Order, **facts: Any) -> None:
    """Notify ``recipient`` (once per ``key``) with a ``kind`` notice about ``order``, in their language."""
    offer = session.get(Offer, order.offer_id)
    business = session.get(Business, offer.business_id)
    user = session.get(User, recipient)
    notice = kind(order=order, offer=offer, business=business, language=user.language if user else "en", **facts)
    outbox.notify(session, key, recipient, notice)


def tell_customer(session: Session, order: Order, what: str, kind: type[NoticeT], **facts: Any) -> None:
    """Notify the order's customer (if it still has one) under the key ``order:<id>:<what>``."""
    if order.customer_id is not None:
        tell(session, f"order:{order.id}:{what}", order.customer_id, kind, order, **facts)
