"""Cancellations: by the customer, as the cancellation policy allows (a paid order until the cut-off
before pickup); by the business, which cancels an offer (every buyer released or refunded, and
told) or calls off paid orders. The units go back on sale at once, the money back after the
commit (task ``payments.refund_order``)."""

from __future__ import annotations

import enum
from datetime import datetime, timedelta

from sqlalchemy.orm import Session

from core.handover import enqueue_after_commit
from core.settings import get_settings
from domain import offers, reservations
from domain.payments import notices
from domain.payments.checkout import close_checkouts_after_commit
from domain.payments.notices import CallOffReason, PayButtonGone
from domain.payments.orders import (
    business_of,
    lock_order,
    offer_of,
    reload_order,
    spend_pay_buttons,
    tell,
    tell_customer,
)
from models import Offer, Order, OrderStatus


class CancelPolicy(enum.StrEnum):
    """What a customer may do about one of their orders, now."""

    LET_GO = "let_go"  # an unpaid reservation: released at once, nothing to give back
    REFUND = "refund"  # paid, before the cut-off: cancelled, and the money goes back
    TOO_LATE = "too_late"  # paid, but past the cut-off before pickup
    NOT_CANCELLABLE = "not_cancellable"  # collected, cancelled, refunded, lapsed, or not theirs


def cancellation_policy(order: Order, offer: Offer, customer_id: int, now: datetime) -> CancelPolicy:
    """Whether and how ``customer_id`` may cancel ``order`` (of ``offer``) at ``now``: the one place
    this is decided, for what the chat offers and for the cancellation itself. A paid order can be
    cancelled until ``cancellation_cutoff_minutes`` before pickup starts; a reservation any time."""
    if order.customer_id != customer_id:
        return CancelPolicy.NOT_CANCELLABLE
    if order.status == OrderStatus.HELD:
        return CancelPolicy.LET_GO
    if order.status != OrderStatus.PAID:
        return CancelPolicy.NOT_CANCELLABLE
    cutoff = offer.pickup_start - timedelta(minutes=get_settings().cancellation_cutoff_minutes)
    return CancelPolicy.TOO_LATE if now > cutoff else CancelPolicy.REFUND


class CancellationOutcome(enum.StrEnum):
    CANCELLED = "cancelled"  # the units are back on sale, the refund is on its way
    TOO_LATE = "too_late"  # past the cancellation cut-off before pickup
    NOT_CANCELLABLE = "not_cancellable"  # not paid (any more): collected, refunded, unknown, not theirs


def cancel_by_customer(session: Session, order_id: int, customer_id: int, now: datetime) -> CancellationOutcome:
    """The customer calls off a paid order, as :func:`cancellation_policy` allows, judged again
    with the order locked. The units go back on sale now, the money back after commit. (An unpaid
    reservation is let go with :func:`domain.ordering.cancel_hold`.)"""
    order = lock_order(session, order_id)
    if order is None:
        return CancellationOutcome.NOT_CANCELLABLE
    offer = offer_of(session, order)
    policy = cancellation_policy(order, offer, customer_id, now)
    if policy is CancelPolicy.TOO_LATE:
        return CancellationOutcome.TOO_LATE
    if policy is not CancelPolicy.REFUND:
        return CancellationOutcome.NOT_CANCELLABLE
    result = reservations.cancel_paid(session, order_id)
    if result.outcome is not reservations.CancelOutcome.CANCELLED:
        return CancellationOutcome.NOT_CANCELLABLE
    order = reload_order(session, order_id)
    owner = business_of(session, offer).owner_id
    tell(session, f"order:{order_id}:cancelled:business", owner, notices.CancelledByCustomer, order)
    enqueue_after_commit(session, "payments.refund_order", order_id)
    return CancellationOutcome.CANCELLED


def call_off_paid_orders(session: Session, order_ids: list[int],
                         reason: CallOffReason = CallOffReason.BY_BUSINESS) -> list[int]:
    """The business (or an admin) called off paid orders: each one is cancelled (units back), its
    customer told, and its refund sent after commit. Returns the orders cancelled by this call.
    Idempotent. Each order is locked as the engine locks it: its offer, then the order."""
    cancelled = []
    for order_id in sorted(order_ids):
        order = lock_order(session, order_id)
        if order is None or order.status != OrderStatus.PAID:
            continue
        if reservations.cancel_paid(session, order_id).outcome is not reservations.CancelOutcome.CANCELLED:
            continue
        cancelled.append(order_id)
        _called_off(session, order_id, reason)
    return cancelled


def cancel_offer(session: Session, offer_id: int, owner_id: int) -> offers.Cancellation:
    """The business cancels its offer (:func:`domain.offers.cancel`, which raises NotOwner or
    WrongState): nobody can order it any more; each reservation is released, its customer told and
    its Checkout Session closed after commit; each paid order is called off, its customer told and
    refunded after commit."""
    result = offers.cancel(session, offer_id, owner_id)
    for order_id in result.released_order_ids:
        order = reload_order(session, order_id)
        spend_pay_buttons(session, order_id, order.customer_id, PayButtonGone.CLOSED)
        tell_customer(session, order, "called_off", notices.ReservationCalledOff)
    close_checkouts_after_commit(session, result.released_order_ids)
    for order_id in result.paid_order_ids:
        _called_off(session, order_id, CallOffReason.OFFER_CANCELLED)
    return result


def _called_off(session: Session, order_id: int, reason: CallOffReason) -> None:
    """A paid order the business side cancelled: its customer is told, and refunded after commit."""
    tell_customer(session, reload_order(session, order_id), "called_off", notices.OrderCalledOff, reason=reason)
    enqueue_after_commit(session, "payments.refund_order", order_id)
