"""Reconciliation (task ``maintenance.reconcile_payments``): refunds that are due, Checkout
Sessions of lapsed orders still open (closing one also catches a payment whose webhook never
arrived), and the money's way to the businesses compared with Stripe's records
(:func:`reconcile_connect`)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.orm import Session

from core import outbox, stripe_api
from core.db import session_scope
from core.handover import enqueue_after_commit
from core.settings import get_settings
from domain import audit, reservations
from domain.payments import connect
from models import Business, User

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
    report: dict[str, Any] = {"refunds_requested": len(refunds), "checkouts_to_close": len(to_close)}
    if session.scalar(select(Business.id).where(Business.stripe_account_id.is_not(None)).limit(1)) is not None:
        # Stripe is asked in a task of its own, outside this transaction.
        enqueue_after_commit(session, "payments.reconcile_connect")
        report["connect_to_compare"] = True
    return report


# --------------------------------------------------------------------------- Connect

CONNECT_WINDOW = timedelta(days=35)  # orders paid this recently are compared with Stripe's records


@dataclass(frozen=True)
class MoneyMismatch:
    """To an admin: the ledger and Stripe disagree about the money's way to businesses; nothing
    was changed (an operator looks). ``lines``: the first differences, one per line."""

    language: str
    count: int
    lines: tuple[str, ...]


_CONNECT_LEDGER_SQL = text(
    """
    SELECT o.id, o.destination_account AS account,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'fee'), 0) AS fee,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'transfer'), 0) AS transfer,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'reversal'), 0) AS reversal,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'fee_refund'), 0) AS fee_refund
    FROM orders o JOIN ledger_entries l ON l.order_id = o.id
    WHERE o.destination_account IS NOT NULL
      AND EXISTS (SELECT 1 FROM ledger_entries p WHERE p.order_id = o.id AND p.kind = 'payment'
                  AND p.created_at >= :since)
    GROUP BY o.id, o.destination_account
    """
)


def reconcile_connect(now: datetime | None = None) -> dict[str, Any]:
    """Compare every connected business's transfers and the platform's fees with Stripe's records
    (task ``payments.reconcile_connect``, handed over by ``maintenance.reconcile_payments``): per
    order, Stripe's transfer less its application fee is the ledger's transfer, the fee its fee,
    the reversed part less the fee given back its reversal, the fee refunded its fee refund; and
    every transfer Stripe made belongs to an order of ours. Differences are audited and told to
    the admins, never fixed. Payouts Stripe made that we missed (a lost ``payout.paid``) are
    recorded, and audited as such; each account's state is read afresh, as its newest event."""
    now = now or datetime.now(UTC)
    since = now - CONNECT_WINDOW
    with session_scope() as session:
        accounts: dict[str, int] = dict(session.execute(  # type: ignore[arg-type]
            select(Business.stripe_account_id, Business.id).where(Business.stripe_account_id.is_not(None))
        ).all())
        ours = {row.id: row for row in session.execute(_CONNECT_LEDGER_SQL, {"since": since})}
    # Each account as Stripe has it now: a lost account.updated (or a platform without webhooks,
    # polling) still moves the business to its state.
    states = {account: stripe_api.retrieve_account(account) for account in accounts}
    fees = {fee["charge"]: fee for fee in stripe_api.application_fees_since(int(since.timestamp()))}
    problems: list[str] = []
    seen: set[int] = set()
    payouts: dict[int, list[dict[str, Any]]] = {}
    for account, business_id in accounts.items():
        for transfer in stripe_api.transfers_to(account):
            if int(transfer.get("created") or 0) < since.timestamp():
                continue
            problems += _compare_transfer(transfer, fees.get(transfer.get("source_transaction")), ours, seen)
        payouts[business_id] = stripe_api.payouts_of(account)
    problems += [f"order {order_id}: the ledger has a transfer of {row.transfer} to {row.account}, Stripe has none"
                 for order_id, row in sorted(ours.items()) if order_id not in seen and row.transfer]
    with session_scope() as session:
        stamp = int(now.timestamp())
        synced = sum(connect.handle_account_event(session, {
            "id": f"sync-{account}-{stamp}", "type": "account.updated", "created": stamp, "account": account,
            "data": {"object": state}}) for account, state in states.items())
        caught_up = sum(connect.record_payout(session, business_id, payout)
                        for business_id, listed in payouts.items() for payout in listed)
        if caught_up:
            audit.record(session, "payments", "payments.reconcile_connect", "payouts_recorded",
                         details={"payouts": caught_up})
        if problems:
            _report(session, problems)
    return {"businesses": len(accounts), "orders_compared": len(seen), "mismatches": len(problems),
            "payouts_recorded": caught_up, "accounts_synced": synced}


def _compare_transfer(transfer: dict[str, Any], fee: dict[str, Any] | None, ours: dict[int, Any],
                      seen: set[int]) -> list[str]:
    group = str(transfer.get("transfer_group") or "")
    order_id = int(group.removeprefix("order-")) if group.startswith("order-") and group[6:].isdigit() else None
    row = ours.get(order_id) if order_id is not None else None
    if row is None:
        return [(f"transfer {transfer.get('id')} of {transfer.get('amount')} to {transfer.get('destination')} "
                f"belongs to no order in the ledger ({group or 'no transfer group'})")]
    seen.add(row.id)
    fee_amount, fee_back = (int(fee["amount"]), int(fee["amount_refunded"])) if fee else (0, 0)
    stripe_side = {"fee": fee_amount, "transfer": int(transfer["amount"]) - fee_amount,
                   "reversal": int(transfer.get("amount_reversed") or 0) - fee_back, "fee_refund": fee_back}
    return [f"order {row.id}: {kind} is {getattr(row, kind)} in the ledger, {value} at Stripe"
            for kind, value in stripe_side.items() if getattr(row, kind) != value]


def _report(session: Session, problems: list[str]) -> None:
    audit.record(session, "payments", "payments.reconcile_connect", "mismatch",
                 details={"count": len(problems), "differences": problems[:50]})
    digest = hashlib.sha256("\n".join(sorted(problems)).encode()).hexdigest()[:16]
    for admin_id in sorted(get_settings().admin_ids):
        user = session.get(User, admin_id)
        outbox.notify(session, f"reconcile:{digest}:{admin_id}", admin_id,
                      MoneyMismatch(user.language if user else "en", len(problems), tuple(problems[:10])))
