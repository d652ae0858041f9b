"""Orders that close: a paid order nobody collected becomes "not collected".

The rules, written down:

* **When.** ``PICKUP_GRACE_MINUTES`` (30) after its offer's pickup window ends, a still-paid order
  is closed by the ``maintenance.close_uncollected_orders`` sweeper (beat, every minute). The
  business may close it earlier with "🚫 Didn't come", once the pickup window has started.
* **Money.** Not refunded by default: the food was kept aside and is lost. ``NO_SHOW_REFUND=true``
  refunds it in full (``payments.refund_order``, after the commit). The units stay sold either way.
* **Late pickup.** The business can still confirm the pickup code of a not-collected (and not
  refunded) order: it becomes collected, and it no longer counts as a no-show.
* **No-shows.** A customer's not-collected orders over the last ``NO_SHOW_WINDOW`` (30 days)
  count. At ``NO_SHOW_WARN_AT`` (2) the not-collected message warns them; from
  ``NO_SHOW_LIMIT_AT`` (3) on they may have only ``OPEN_ORDERS_WHEN_LIMITED`` (1) open order
  (held or paid) at a time, until the oldest of them is more than 30 days old.

Closing is one guarded ``UPDATE … WHERE status = 'paid'``: two sweepers, or a sweeper and the
business's "didn't come", close an order once, and a pickup confirmed under the row lock either
comes first (the order is collected and the sweeper skips it) or after (a late pickup). Every
message carries an idempotency key.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from core import db
from core.handover import enqueue_after_commit
from core.settings import get_settings
from domain.payments.notices import OrderNotice
from domain.payments.orders import reload_order, tell_customer
from models import Business, Offer, Order, OrderStatus

NO_SHOW_WINDOW = timedelta(days=30)
NO_SHOW_WARN_AT = 2
NO_SHOW_LIMIT_AT = 3
OPEN_ORDERS_WHEN_LIMITED = 1
BATCH = 500


class Standing(enum.StrEnum):
    """Where a customer stands after their no-shows of the last 30 days."""

    FINE = "fine"
    WARNED = "warned"  # NO_SHOW_WARN_AT or more: told that one more limits them
    LIMITED = "limited"  # NO_SHOW_LIMIT_AT or more: one open order at a time


def standing(no_shows: int) -> Standing:
    if no_shows >= NO_SHOW_LIMIT_AT:
        return Standing.LIMITED
    if no_shows >= NO_SHOW_WARN_AT:
        return Standing.WARNED
    return Standing.FINE


@dataclass(frozen=True)
class NotCollected(OrderNotice):
    """To the customer: nobody collected the order, which is now closed. ``no_shows``: theirs in the
    last 30 days, this one included; ``refunded``: whether the money goes back (the operator's
    setting)."""

    no_shows: int
    standing: Standing
    refunded: bool


class NoShowOutcome(enum.StrEnum):
    CLOSED = "closed"
    NOT_OPEN = "not_open"  # no longer paid: collected, refunded, cancelled, or closed already
    TOO_EARLY = "too_early"  # the pickup window has not started


class NotYours(PermissionError):
    """The order is not of this owner's business (or does not exist)."""


def no_shows(session: Session, customer_id: int, now: datetime) -> int:
    """The customer's not-collected orders over the last ``NO_SHOW_WINDOW``."""
    return session.scalar(
        select(func.count()).select_from(Order)
        .where(Order.customer_id == customer_id, Order.no_show_at.is_not(None),
               Order.no_show_at > now - NO_SHOW_WINDOW)
    ) or 0


def limited_now(session: Session, customer_id: int, offer_id: int, now: datetime) -> bool:
    """Whether the no-show limit refuses this customer a new order of ``offer_id`` now: they are
    limited and already have their one open order (a hold of this same offer is the same order
    again, so a repeated tap is not refused)."""
    if standing(no_shows(session, customer_id, now)) is not Standing.LIMITED:
        return False
    # One of this customer's reservations at a time, until the caller's transaction ends (its hold
    # commits before): else two taps on two offers at once both count no open order and both reserve.
    # The chat's lock is the person's: their updates take it too, for as short.
    db.lock_chat(session, customer_id)
    open_orders = session.scalar(
        select(func.count()).select_from(Order).where(
            Order.customer_id == customer_id,
            Order.status.in_([OrderStatus.HELD, OrderStatus.PAID]),
            ~((Order.status == OrderStatus.HELD) & (Order.offer_id == offer_id)),
        )
    ) or 0
    return open_orders >= OPEN_ORDERS_WHEN_LIMITED


_CLOSE_SQL = text(
    "UPDATE orders SET status = 'not_collected', closed_at = :now, no_show_at = :now "
    "WHERE id = :id AND status = 'paid' RETURNING id"
)


def close_not_collected(session: Session, order_id: int, now: datetime) -> NoShowOutcome:
    """Close one paid order as not collected (once), tell its customer, and refund it if the
    operator says so."""
    if session.execute(_CLOSE_SQL, {"id": order_id, "now": now}).first() is None:
        return NoShowOutcome.NOT_OPEN
    order = reload_order(session, order_id)
    refund = get_settings().no_show_refund
    if order.customer_id is not None:
        count = no_shows(session, order.customer_id, now)
        tell_customer(session, order, "not-collected", NotCollected, no_shows=count, standing=standing(count),
                      refunded=refund)
    if refund:
        enqueue_after_commit(session, "payments.refund_order", order_id)
    return NoShowOutcome.CLOSED


def close_uncollected_orders(session: Session, now: datetime, grace: timedelta | None = None) -> dict[str, Any]:
    """The sweeper: every paid order whose pickup window ended more than ``grace`` ago is closed
    as not collected. Safe to run twice at once (rows are claimed with SKIP LOCKED, and closing
    is guarded)."""
    if grace is None:
        grace = timedelta(minutes=get_settings().pickup_grace_minutes)
    closed: list[int] = []
    for _round in range(20):  # drain a backlog, bounded
        due = session.scalars(
            select(Order.id).join(Offer, Offer.id == Order.offer_id)
            .where(Order.status == OrderStatus.PAID, Offer.pickup_end <= now - grace)
            .order_by(Order.id).limit(BATCH).with_for_update(of=Order, skip_locked=True)
        ).all()
        closed += [order_id for order_id in due
                   if close_not_collected(session, order_id, now) is NoShowOutcome.CLOSED]
        if len(due) < BATCH:
            break
    return {"orders_not_collected": len(closed), "order_ids": closed[:100]}


def mark_no_show(session: Session, order_id: int, owner_id: int, now: datetime) -> NoShowOutcome:
    """The business says the customer didn't come: allowed once the pickup window has started."""
    row = session.execute(
        select(Order.id, Offer.pickup_start).join(Offer, Offer.id == Order.offer_id)
        .join(Business, Business.id == Offer.business_id)
        .where(Order.id == order_id, Business.owner_id == owner_id)
    ).first()
    if row is None:
        raise NotYours(order_id)
    if now < row.pickup_start:
        return NoShowOutcome.TOO_EARLY
    return close_not_collected(session, order_id, now)
