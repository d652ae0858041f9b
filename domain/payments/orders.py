"""An order as the payments code handles it: its key, locked in the reservation engine's order,
read afresh, judged by the database's clock, and the notices that tell people about it."""

from __future__ import annotations

from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import outbox
from domain import reservations
from domain.payments.notices import OrderNotice, PayButtonGone, PayButtonSpent
from domain.shown import still_shown
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


def lock_known_order(session: Session, order_id: int) -> Order:
    """:func:`lock_order` for an order read before, in an earlier transaction: orders are never
    deleted, so it is still there (LookupError if not)."""
    order = lock_order(session, order_id)
    if order is None:
        raise LookupError(f"order {order_id} is missing, though it was read before")
    return order


def reload_order(session: Session, order_id: int) -> Order:
    # The engine moves rows with plain SQL; read them afresh.
    return session.execute(
        select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    ).scalar_one()


def hold_due(session: Session, order: Order) -> bool:
    """By the database's clock, as the reservation engine judges holds."""
    return hold_ended(session, order.hold_expires_at)


def hold_ended(session: Session, expires_at: datetime | None) -> bool:
    """Whether a hold ending at `expires_at` is over, by the database's clock (None: no hold)."""
    return expires_at is None or bool(
        session.scalar(text("SELECT CAST(:t AS timestamptz) <= now()"), {"t": expires_at})
    )


def offer_of(session: Session, order: Order, *, fresh: bool = False) -> Offer:
    """The order's offer (read afresh with ``fresh``). It exists: ``orders.offer_id`` is a non-null
    foreign key (LookupError if not)."""
    offer = session.get(Offer, order.offer_id, populate_existing=fresh)
    if offer is None:
        raise LookupError(f"offer {order.offer_id} of order {order.id} is missing")
    return offer


def business_of(session: Session, offer: Offer) -> Business:
    """The offer's business. It exists: ``offers.business_id`` is a non-null foreign key (LookupError
    if not)."""
    business = session.get(Business, offer.business_id)
    if business is None:
        raise LookupError(f"business {offer.business_id} of offer {offer.id} is missing")
    return business


def offer_and_business(session: Session, order: Order) -> tuple[Offer, Business]:
    """The order's offer and that offer's business (see :func:`offer_of`, :func:`business_of`)."""
    offer = offer_of(session, order)
    return offer, business_of(session, offer)


def _notice(session: Session, recipient: int, kind: type[NoticeT], order: Order, **facts: Any) -> NoticeT:
    offer, business = offer_and_business(session, order)
    user = session.get(User, recipient)
    return kind(order=order, offer=offer, business=business, language=user.language if user else "en", **facts)


def tell(session: Session, key: str, recipient: int, kind: type[NoticeT], order: Order, **facts: Any) -> None:
    """Notify ``recipient`` (once per ``key``) with a ``kind`` notice about ``order``, in their language."""
    outbox.notify(session, key, recipient, _notice(session, recipient, kind, order, **facts))


def record_to_send(session: Session, key: str, recipient: int, kind: type[NoticeT], order: Order,
                   **facts: Any) -> int | None:
    """Like :func:`tell`, for a task that sends the notice itself after its commit: the outbox row to
    send (also one a redelivered task recorded before and did not send), None if sent already."""
    return outbox.record_to_send(session, key, recipient, _notice(session, recipient, kind, order, **facts))


def tell_customer(session: Session, order: Order, what: str, kind: type[NoticeT], **facts: Any) -> None:
    """Notify the order's customer (if it still has one) under the key ``order:<id>:<what>``."""
    if order.customer_id is not None:
        tell(session, f"order:{order.id}:{what}", order.customer_id, kind, order, **facts)


def tell_customer_in_order(session: Session, order: Order,
                           *notices: tuple[str, type[OrderNotice], dict[str, Any]]) -> None:
    """Like :func:`tell_customer` for several notices, ``(what, kind, facts)`` each, sent one after
    the other in this order (one hand-over), so a follow-up never arrives above its message."""
    if order.customer_id is None:
        return
    ids = [outbox.record(session, f"order:{order.id}:{what}", order.customer_id,
                         _notice(session, order.customer_id, kind, order, **facts))
           for what, kind, facts in notices]
    outbox.deliver_after_commit(session, [note_id for note_id in ids if note_id is not None])


def pay_button_key(order_id: int, request: str | None) -> str:
    """The outbox key of an order's Pay message (PayNow), once per request that sent it."""
    return f"order:{order_id}:checkout" + (f":{request}" if request else "")


def spend_pay_buttons(session: Session, order_id: int, customer_id: int | None, why: PayButtonGone) -> None:
    """The order can't be paid or let go any more (``why``): each of its Pay messages the customer
    still sees is edited after commit to say so, without Pay and Cancel (once per message). Call it
    in the transaction that paid, released or expired the order."""
    if customer_id is None:
        return
    shown = still_shown(session, customer_id, key=pay_button_key(order_id, None),
                        key_prefix=pay_button_key(order_id, None) + ":")
    if not shown:
        return
    order = reload_order(session, order_id)
    for message in shown:
        tell(session, f"order:{order_id}:paybutton-spent:{message.message_id}", customer_id, PayButtonSpent, order,
             message_id=message.message_id, why=why)
