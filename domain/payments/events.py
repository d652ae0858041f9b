"""Stripe's events (task ``payments.handle_event``, fed by the gateway's ``POST /stripe/webhook``).

Each event id is recorded in ``stripe_events`` in the same transaction as its effects, so a
duplicate has no effect, and every handler decides from the order's state rather than from what
it expects came before, so events are safe in any order. A payment is recorded with
:func:`domain.reservations.confirm_sale`: on time it sells the held units; after the hold lapsed
it takes units that are still left, or else the money goes back (a refund follows automatically,
and the customer is told).
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import metrics
from core.db import after_commit
from core.handover import enqueue_after_commit
from core.logging import get_logger
from domain import audit, reservations
from domain.payments import connect, ledger, notices
from domain.payments.notices import PayButtonGone
from domain.payments.orders import (
    business_of,
    lock_order,
    offer_of,
    order_key,
    reload_order,
    spend_pay_buttons,
    tell,
    tell_customer,
    tell_customer_in_order,
)
from domain.payments.refunds import record_refund
from domain.reservations import ReleaseReason, SaleOutcome
from models import Order, OrderStatus, StripeEvent

log = get_logger(__name__)

# An order whose payment settled: a late processing or failure event changes nothing.
_SETTLED = (OrderStatus.PAID, OrderStatus.COLLECTED, OrderStatus.NOT_COLLECTED, OrderStatus.REFUNDED)


class EventNotReady(Exception):
    """An event that depends on another one not handled yet (a refund of a payment we have not
    recorded): the task tries again later, and the event counts as unhandled until then."""


class EventOutcome(enum.StrEnum):
    HANDLED = "handled"
    DUPLICATE = "duplicate"  # this event id was handled before
    IGNORED = "ignored"  # not a type we act on, not one of our sessions, or nothing left to do


def handle_event(session: Session, event: dict[str, Any]) -> EventOutcome:
    """Act on one Stripe event (already verified by its signature), once per event id."""
    obj = event.get("data", {}).get("object", {}) or {}
    first_time = session.execute(
        insert(StripeEvent).values(id=event["id"], type=str(event.get("type"))[:100], object_id=obj.get("id"))
        .on_conflict_do_nothing().returning(StripeEvent.id)
    ).first()
    if first_time is None:
        return EventOutcome.DUPLICATE
    if event.get("type") in connect.EVENT_TYPES:  # about a business's connected account
        return EventOutcome.HANDLED if connect.handle_account_event(session, event) else EventOutcome.IGNORED
    handler = _HANDLERS.get(str(event.get("type")))
    return handler(session, obj) if handler is not None else EventOutcome.IGNORED


def _on_completed_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    if checkout.get("payment_status") == "paid":
        return _on_paid_session(session, checkout)
    if checkout.get("payment_status") == "unpaid":
        return _on_processing_session(session, checkout)
    return EventOutcome.IGNORED


def _on_expired_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is not None and order.checkout_session_id == checkout.get("id"):
        order.checkout_url = None
        return EventOutcome.HANDLED
    return EventOutcome.IGNORED


def _order_of_session(session: Session, checkout: dict[str, Any]) -> Order | None:
    """The order a Checkout Session belongs to, locked: by the session id we stored, or (before
    it was stored) by the metadata we put on the session, which must name the very order."""
    order_id = session.scalar(select(Order.id).where(Order.checkout_session_id == checkout.get("id")))
    if order_id is not None:
        return lock_order(session, order_id)
    metadata = checkout.get("metadata") or {}
    try:
        order_id = int(metadata.get("order_id", ""))
    except ValueError:
        return None
    order = lock_order(session, order_id)
    if order is None or order_key(order) != metadata.get("order_key"):
        return None
    if order.checkout_session_id is None:
        order.checkout_session_id = checkout.get("id")
    return order if order.checkout_session_id == checkout.get("id") else None


def _ours(checkout: dict[str, Any]) -> bool:
    return bool((checkout.get("metadata") or {}).get("order_key"))


def _on_paid_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is None:
        if _ours(checkout) and checkout.get("payment_intent"):
            # Money for an order we do not know (any more): it goes back.
            log.error("payment_without_order", checkout_session=checkout.get("id"))
            enqueue_after_commit(session, "payments.refund_payment", checkout["payment_intent"], None,
                                 "unknown_order")
            return EventOutcome.HANDLED
        return EventOutcome.IGNORED
    return payment_arrived(session, order, checkout)


def payment_arrived(session: Session, order: Order, checkout: dict[str, Any]) -> EventOutcome:
    """Money for ``order`` (locked) came in through ``checkout``: sell, or refund."""
    intent = checkout.get("payment_intent")
    amount, currency = int(checkout.get("amount_total") or 0), str(checkout.get("currency") or "")
    recorded = session.execute(
        text("SELECT reference FROM ledger_entries WHERE order_id = :id AND kind = 'payment'"), {"id": order.id}
    ).first()
    if recorded is not None:
        if intent and recorded.reference != intent:
            # A second payment for one order (cannot happen with one session per order): back it goes.
            log.error("second_payment_for_order", order_id=order.id, payment_intent=intent)
            enqueue_after_commit(session, "payments.refund_payment", intent, order.id, "duplicate")
            return EventOutcome.HANDLED
        return EventOutcome.IGNORED
    result = reservations.confirm_sale(session, order.id, amount, currency, intent)
    if result.outcome is not SaleOutcome.ALREADY_DONE:
        after_commit(session, lambda: metrics.PAYMENTS.labels(result.outcome.value).inc())
    order = reload_order(session, order.id)
    if result.outcome is not SaleOutcome.ALREADY_DONE:
        # The money came in (sold, or to be refunded): the fee and the transfer went with it.
        ledger.record_sale_split(session, order)
    order.payment_intent_id = intent
    order.checkout_url = None
    if result.outcome is not SaleOutcome.ALREADY_DONE:  # nothing left to pay: the Pay buttons go
        spend_pay_buttons(session, order.id, order.customer_id,
                          PayButtonGone.PAID if result.paid else PayButtonGone.CLOSED)
    if result.outcome in (SaleOutcome.PAID, SaleOutcome.PAID_LATE):
        tell_customer_in_order(
            session, order,
            ("paid", notices.OrderPaid, {"pickup_code": result.pickup_code,
                                         "late": result.outcome is SaleOutcome.PAID_LATE}),
            ("paid:pass", notices.PickupPass, {"pickup_code": result.pickup_code}),  # the QR code, after it
        )
        _tell_business(session, order)
    elif result.outcome is SaleOutcome.NEEDS_REFUND:
        tell_customer(session, order, "refunding", notices.PaymentToRefund, reason=result.reason,
                      amount_minor=amount, currency=currency)
        enqueue_after_commit(session, "payments.refund_order", order.id)
    return EventOutcome.HANDLED


def _tell_business(session: Session, order: Order) -> None:
    offer = offer_of(session, order, fresh=True)  # the engine just sold units
    owner = business_of(session, offer).owner_id
    tell(session, f"order:{order.id}:paid:business", owner, notices.NewPaidOrder, order,
         units_left=max(offer.units_left, 0))


def _on_processing_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is None or order.status in _SETTLED:
        return EventOutcome.IGNORED  # the payment settled already (events came out of order), or is unknown
    order.checkout_url = None
    tell_customer(session, order, "processing", notices.PaymentProcessing)
    return EventOutcome.HANDLED


def _on_failed_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is None:
        return EventOutcome.IGNORED
    order.checkout_url = None
    reservations.release(session, order.id, ReleaseReason.CANCELLED)
    order = reload_order(session, order.id)
    if order.status in _SETTLED:
        return EventOutcome.IGNORED
    spend_pay_buttons(session, order.id, order.customer_id, PayButtonGone.CLOSED)
    tell_customer(session, order, "payment_failed", notices.PaymentFailed)
    return EventOutcome.HANDLED


def _on_refund(session: Session, refund: dict[str, Any]) -> EventOutcome:
    if refund.get("status") not in ("succeeded", "pending"):
        if refund.get("status") in ("failed", "canceled"):
            log.error("refund_failed", refund=refund.get("id"), payment_intent=refund.get("payment_intent"))
            audit.record(session, "stripe", "payments.refund", "error", target=f"refund:{refund.get('id')}",
                         details={"status": refund.get("status"), "payment_intent": refund.get("payment_intent")})
        return EventOutcome.IGNORED
    metadata = refund.get("metadata") or {}
    if metadata.get("kind") == "stray":
        return EventOutcome.IGNORED  # a payment without an order of its own, refunded as such
    intent = refund.get("payment_intent")
    order_id = session.scalar(
        text("SELECT order_id FROM ledger_entries WHERE kind = 'payment' AND reference = :pi"), {"pi": intent}
    ) if intent else None
    if order_id is None:
        if metadata.get("order_id"):
            raise EventNotReady(f"refund {refund.get('id')} before its payment was recorded")
        return EventOutcome.IGNORED  # not a payment of ours
    return EventOutcome.HANDLED if record_refund(session, order_id, refund) else EventOutcome.IGNORED


# The event types acted on; any other is IGNORED.
_HANDLERS: dict[str, Callable[[Session, dict[str, Any]], EventOutcome]] = {
    "checkout.session.completed": _on_completed_session,
    "checkout.session.async_payment_succeeded": _on_paid_session,
    "checkout.session.async_payment_failed": _on_failed_session,
    "checkout.session.expired": _on_expired_session,
    "refund.created": _on_refund,
    "refund.updated": _on_refund,
}
