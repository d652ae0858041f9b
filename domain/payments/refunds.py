"""Refunds (task ``payments.refund_order``): for every order whose money came in but which is not
(or no longer) paid: a late payment without stock, a cancellation by the customer or by the
business. One refund per order (idempotency key), recorded with
:func:`domain.reservations.record_refund` from Stripe's answer or from its ``refund.*`` event,
whichever comes first. A payment that belongs to no order is given back by
:func:`refund_payment`, with an audit entry instead of a ledger row.
"""

from __future__ import annotations

import enum
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import metrics, stripe_api
from core.db import after_commit, session_scope
from core.logging import get_logger
from domain import audit, reservations
from domain.payments import ledger, notices
from domain.payments.orders import lock_order, order_key, reload_order, tell_customer
from models import OrderStatus

log = get_logger(__name__)


class RefundOutcome(enum.StrEnum):
    REFUNDED = "refunded"
    ALREADY_DONE = "already_done"
    NOT_DUE = "not_due"  # nothing was paid, or the order was collected


_PAYMENT_TO_REFUND_SQL = text(
    """
    SELECT o.status, o.created_at, p.amount_minor, p.currency, p.reference,
           EXISTS (SELECT 1 FROM ledger_entries r WHERE r.order_id = o.id AND r.kind = 'refund') AS refunded
    FROM orders o JOIN ledger_entries p ON p.order_id = o.id AND p.kind = 'payment'
    WHERE o.id = :id
    """
)


def refund_order(order_id: int) -> RefundOutcome:
    """Give back the money of an order: one refund per order. A paid order is called off first
    (its units go back on sale; the business cancelled the offer, say); a not-collected one is
    refunded with its units kept sold (when ``NO_SHOW_REFUND`` says so); a collected one is not
    refunded here (the food is gone: an operator decides)."""
    with session_scope() as session:
        order = lock_order(session, order_id)
        if order is not None and order.status == OrderStatus.PAID:
            reservations.cancel_paid(session, order_id)
        row = session.execute(_PAYMENT_TO_REFUND_SQL, {"id": order_id}).first()
        if row is None or row.status not in ("expired", "cancelled", "refunded", "not_collected"):
            return RefundOutcome.NOT_DUE
        if row.refunded:
            return RefundOutcome.ALREADY_DONE
        assert order is not None, "the payment row above was found through this order"
        key = order_key(order)
        connected = bool(order.destination_account)
        fee_back = ledger.fee_goes_back(row.status)
    refund = _refund_at_stripe(row.reference, row.amount_minor, f"refund-{key}", {"order_id": str(order_id)},
                               reverse_transfer=connected, refund_application_fee=fee_back)
    with session_scope() as session:
        recorded = record_refund(session, order_id, refund)
    return RefundOutcome.REFUNDED if recorded else RefundOutcome.ALREADY_DONE


def refund_payment(payment_intent: str, order_id: int | None, reason: str) -> str:
    """Give back a payment that belongs to no order of ours (or is a second one for an order).
    No ledger row (the ledger holds one payment per order); the audit log keeps it."""
    refund = _refund_at_stripe(payment_intent, None, f"refund-pi-{payment_intent}",
                               {"kind": "stray", "reason": reason, "order_id": str(order_id or "")})
    with session_scope() as session:
        audit.record(session, "payments", "payments.refund_payment", "ok", target=f"payment:{payment_intent}",
                     details={"refund": refund.get("id"), "amount": refund.get("amount"), "reason": reason,
                              "order_id": order_id})
    return str(refund.get("id"))


def _refund_at_stripe(payment_intent: str, amount: int | None, key: str, metadata: dict[str, str], *,
                     reverse_transfer: bool = False, refund_application_fee: bool = False) -> dict[str, Any]:
    try:
        return stripe_api.create_refund(payment_intent, amount, idempotency_key=key, metadata=metadata,
                                        reverse_transfer=reverse_transfer,
                                        refund_application_fee=refund_application_fee)
    except stripe_api.StripeRefused as refused:
        if refused.code != "charge_already_refunded":
            raise
        # Refunded before (our earlier attempt after its key expired, or by hand): use that refund.
        done = [r for r in stripe_api.refunds_of(payment_intent) if r.get("status") in ("succeeded", "pending")]
        if not done:
            raise
        return done[-1]


def record_refund(session: Session, order_id: int, refund: dict[str, Any]) -> bool:
    """Record a refund Stripe made for the order (from its answer or its event) and tell the
    customer; False if it was recorded before or cannot be (for an operator, then)."""
    locked = lock_order(session, order_id)  # as reservations.record_refund locks it: the state before
    before = locked.status.value if locked is not None else ""
    try:
        result = reservations.record_refund(session, order_id, int(refund["amount"]), str(refund["currency"]),
                                            refund.get("id"))
    except ValueError as error:  # a second, partial refund from the dashboard: for an operator
        log.error("refund_not_recorded", order_id=order_id, refund=refund.get("id"), error=str(error))
        audit.record(session, "stripe", "payments.refund", "error", target=f"order:{order_id}",
                     details={"refund": refund.get("id"), "error": str(error)[:300]})
        return False
    if result.outcome is not reservations.RefundOutcome.RECORDED:
        return False
    ledger.record_refund_split(session, reload_order(session, order_id), fee_back=ledger.fee_goes_back(before))
    after_commit(session, metrics.REFUNDS.inc)
    tell_customer(session, reload_order(session, order_id), "refunded", notices.Refunded,
                  amount_minor=int(refund["amount"]), currency=str(refund["currency"]))
    return True
