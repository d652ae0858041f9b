"""The money's way to the business, in the ledger: the platform fee, the transfer, and on a refund
the reversal and the fee given back. One row of each kind per order (the ledger's unique key),
so a replayed event or task cannot write one twice.

The rows, for an order of amount A with platform fee F:

* at the sale: ``fee`` F, and for a destination charge (the business has a Connect account)
  ``transfer`` A − F: what the business got net (Stripe transfers A and takes F back as the
  application fee). Without Connect there is no transfer: the platform holds A − F for the
  business and pays it by hand (``PAYOUTS_REQUIRE_CONNECT=false``).
* at a refund of A (refunds here are always whole): ``fee_refund`` F when the fee goes back
  (see :func:`fee_goes_back`), and for a destination charge ``reversal``: what the business
  gave back net, A − F when the fee went back to it, A when the platform kept it.

So for every order, and every business, ``payment = fee + transfer`` (with Connect) and
``refund = fee_refund + reversal``: charged = fee + transferred − reversed, net of refunds.

The fee policy (:func:`fee_goes_back`): the platform gives its fee back whenever the order is
called off, whoever calls it off, so a customer who cancels within the policy, or whose order the
business cancels, gets everything back and the business pays no fee on food it did not sell.
The one exception is a not-collected order refunded by the operator's choice
(``NO_SHOW_REFUND``): the sale happened and the food was kept aside, so the fee stays.
"""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.orm import Session

from models import Order, OrderStatus

_ROW_SQL = text(
    """
    INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor, currency, reference)
    VALUES (:order_id, :offer_id, :kind, 0, :amount, :currency, :reference)
    ON CONFLICT ON CONSTRAINT uq_ledger_order_kind DO NOTHING
    """
)


def _row(session: Session, order: Order, kind: str, amount: int, reference: str | None) -> None:
    session.execute(_ROW_SQL, {"order_id": order.id, "offer_id": order.offer_id, "kind": kind, "amount": amount,
                               "currency": order.currency, "reference": reference})


def transfer_group(order: Order) -> str:
    """How Stripe groups the order's transfer (the reconciliation finds it by this)."""
    return f"order-{order.id}"


def _amount(session: Session, order: Order, kind: str) -> int | None:
    return session.scalar(text("SELECT amount_minor FROM ledger_entries WHERE order_id = :id AND kind = :kind"),
                          {"id": order.id, "kind": kind})


def record_sale_split(session: Session, order: Order) -> None:
    """The order's money came in (its ``payment`` row): write its fee and, with Connect, its
    transfer of the rest (once). Nothing without a payment row."""
    paid = _amount(session, order, "payment")
    if paid is None:
        return
    fee = min(order.fee_minor or 0, paid)
    _row(session, order, "fee", fee, None)
    if order.destination_account:
        _row(session, order, "transfer", paid - fee, order.destination_account)


def fee_goes_back(status_before_refund: str) -> bool:
    """Whether a refund of an order in this state gives the platform fee back (module doc)."""
    return status_before_refund != OrderStatus.NOT_COLLECTED.value


def record_refund_split(session: Session, order: Order, *, fee_back: bool) -> None:
    """The order's money went back to the customer (its ``refund`` row): write the fee given back
    and, with Connect, the reversal (once). Nothing for an order that had no fee row."""
    fee, refunded = _amount(session, order, "fee"), _amount(session, order, "refund")
    if fee is None or refunded is None:
        return
    if fee_back and fee:
        _row(session, order, "fee_refund", fee, None)
    if order.destination_account:
        _row(session, order, "reversal", refunded - (fee if fee_back else 0), order.destination_account)


_SPLIT_SQL = text(
    """
    SELECT o.id, o.destination_account, b.id AS business_id,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'payment'), 0) AS payment,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'refund'), 0) AS refund,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'fee'), 0) AS fee,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'transfer'), 0) AS transfer,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'reversal'), 0) AS reversal,
           coalesce(sum(l.amount_minor) FILTER (WHERE l.kind = 'fee_refund'), 0) AS fee_refund,
           bool_or(l.kind = 'fee') AS has_fee, bool_or(l.kind = 'refund') AS has_refund
    FROM orders o JOIN offers f ON f.id = o.offer_id JOIN businesses b ON b.id = f.business_id
    JOIN ledger_entries l ON l.order_id = o.id
    WHERE CAST(:business_id AS bigint) IS NULL OR b.id = :business_id
    GROUP BY o.id, o.destination_account, b.id
    HAVING bool_or(l.kind = 'payment')
    ORDER BY o.id
    """
)


def split_problems(session: Session, business_id: int | None = None) -> list[str]:
    """Where the money's way to the businesses does not add up (empty: it does), per order:
    every payment has its fee; with Connect, payment = fee + transfer, and a refund = fee given
    back + reversal; without, no transfer and no reversal. Sums per business follow."""
    problems = []
    for r in session.execute(_SPLIT_SQL, {"business_id": business_id}):
        name = f"order {r.id} (business {r.business_id})"
        if not r.has_fee:
            problems.append(f"{name}: payment {r.payment} without a fee row")
            continue
        if r.destination_account:
            if r.payment != r.fee + r.transfer:
                problems.append(f"{name}: charged {r.payment} != fee {r.fee} + transferred {r.transfer}")
            if r.has_refund and r.refund != r.fee_refund + r.reversal:
                problems.append(f"{name}: refunded {r.refund} != fee back {r.fee_refund} + reversed {r.reversal}")
        elif r.transfer or r.reversal:
            problems.append(f"{name}: a transfer without a connected account")
    return problems
