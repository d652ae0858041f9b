"""Reconciliation (task ``maintenance.reconcile_payments``): refunds that are due, and Checkout
Sessions of lapsed orders still open (closing one also catches a payment whose webhook never
arrived)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import stripe_api
from core.handover import enqueue_after_commit
from domain import reservations

RECONCILE_BATCH = 200

_OPEN_SESSIONS_TO_CLOSE_SQL = text(
    """
    SELECT id FROM orders
    WHERE checkout_session_id IS NOT NULL AND checkout_url IS NOT NULL
      AND ((status = 'held' AND hold_expires_at <= :now) OR status IN ('expired', 'cancelled'))
    ORDER BY id LIMIT :limit
    """
)


def reconcile_payments(session: Session, now: datetime) -> dict[str, Any]:
    """Catch up with what a lost webhook or a failed task left undone: refunds that are due, and
    Checkout Sessions of orders nobody may pay any more (closing them records a payment Stripe
    took meanwhile). The work goes to the payments queue after commit; every task is idempotent."""
    if not stripe_api.configured():
        return {"skipped": "STRIPE_SECRET_KEY is unset", "refunds_requested": 0, "checkouts_to_close": 0}
    refunds = reservations.orders_awaiting_refund(session, limit=RECONCILE_BATCH)
    to_close = list(session.scalars(_OPEN_SESSIONS_TO_CLOSE_SQL, {"now": now, "limit": RECONCILE_BATCH}))
    for order_id in refunds:
        enqueue_after_commit(session, "payments.refund_order", order_id)
    for order_id in to_close:
        enqueue_after_commit(session, "payments.expire_checkout", order_id)
    return {"refunds_requested": len(refunds), "checkouts_to_close": len(to_close)}
