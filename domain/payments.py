"""Payments: Stripe Checkout for held orders, Stripe's events, refunds, and reconciliation.

The money side of an order, on top of the reservation engine (``domain.reservations``), which
owns every stock and money movement and its ledger rows:

* **Checkout** (:func:`create_checkout`, task ``payments.create_checkout``): one Checkout Session
  per order. The idempotency key is derived from the order alone, and so are the parameters, so
  a retried or redelivered task, a lost answer or a second tap get the same session back. The
  customer receives a message with a Pay button (the session's URL). When the hold lapses the
  session is closed (:func:`expire_checkout`); a session Stripe reports as paid by then is
  settled as a payment instead.
* **Events** (:func:`handle_event`, task ``payments.handle_event``, fed by the gateway's
  ``POST /stripe/webhook``): each event id is recorded in ``stripe_events`` in the same
  transaction as its effects, so a duplicate has no effect, and every handler decides from the
  order's state rather than from what it expects came before, so events are safe in any order.
  A payment is recorded with :func:`domain.reservations.confirm_sale`: on time it sells the held
  units; after the hold lapsed it takes units that are still left, or else the money goes back
  (a refund follows automatically, and the customer is told).
* **Refunds** (:func:`refund_order`, task ``payments.refund_order``): for every order whose money
  came in but which is not (or no longer) paid: a late payment without stock, a cancellation by
  the customer (:func:`cancel_by_customer`) or by the business (:func:`call_off_paid_orders`).
  One refund per order (idempotency key), recorded with
  :func:`domain.reservations.record_refund` from Stripe's answer or from its ``refund.*`` event,
  whichever comes first.
* **Reconciliation** (:func:`reconcile_payments`, task ``maintenance.reconcile_payments``):
  refunds that are due, and Checkout Sessions of lapsed orders still open (which also catches a
  payment whose webhook never arrived).

Functions that call Stripe (:func:`create_checkout`, :func:`expire_checkout`,
:func:`refund_order`, :func:`refund_payment`) open their own short transactions around the call,
so no row stays locked while Stripe answers. The others run inside the caller's transaction and
send their follow-up tasks after it commits. Stripe I/O lives in ``core.stripe_api``.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from chat.cards import escape, format_window, local_time
from chat.registry import data
from core.outbox import Reply, button
from core import metrics, stripe_api
from core.db import after_commit, session_scope
from core.handover import enqueue_after_commit
from core.i18n import Translator
from core.logging import get_logger
from core.settings import get_settings
from domain import audit, reservations
from domain.money import format_money
from core.outbox import notify
from domain.reservations import RefundReason, ReleaseReason, SaleOutcome
from models import Business, Offer, Order, OrderStatus, StripeEvent, User

log = get_logger(__name__)

# Stripe wants a session to live at least 30 minutes; ours is closed when the hold lapses, and
# Stripe's own expiry is only the backstop: the hold's end plus this.
SESSION_BACKSTOP = timedelta(minutes=31)
# A scheduled close of the session runs this long after the hold's end (clocks differ a little).
CLOSE_DELAY_SECONDS = 2
RECONCILE_BATCH = 200


class EventNotReady(Exception):
    """An event that depends on another one not handled yet (a refund of a payment we have not
    recorded): the task tries again later, and the event counts as unhandled until then."""


def close_checkouts_after_commit(session: Session, order_ids: list[int]) -> None:
    """Released orders may still have an open Stripe Checkout Session: close each once this
    transaction commits, so nobody pays for units that went back on sale."""
    for order_id in order_ids:
        enqueue_after_commit(session, "payments.expire_checkout", order_id)


# --------------------------------------------------------------------------- what an order looks like


def order_key(order: Order) -> str:
    """Unique to this order for good (ids may repeat after a restore; the creation time with it
    does not): the base of its idempotency keys and the proof in the session's metadata."""
    return f"{order.id}-{int(order.created_at.timestamp() * 1_000_000)}"


def checkout_params(order: Order, offer: Offer, business: Business) -> dict[str, Any]:
    """The Checkout Session of an order. Derived from the order's own fixed values only, so a
    retry with the same idempotency key sends the very same request."""
    key = order_key(order)
    assert order.hold_expires_at is not None
    return_url = get_settings().checkout_return_url  # set whenever Stripe is (core.settings)
    return {
        "mode": "payment",
        "line_items": [{
            "price_data": {
                "currency": order.currency.lower(),
                "unit_amount": order.unit_price_minor,
                "product_data": {"name": offer.title[:120], "description": business.name[:120]},
            },
            "quantity": order.quantity,
        }],
        "client_reference_id": str(order.id),
        "metadata": {"order_id": str(order.id), "order_key": key, "offer_id": str(order.offer_id)},
        "payment_intent_data": {
            "metadata": {"order_id": str(order.id), "order_key": key},
            "description": f"Surplus order {order.id}",
        },
        "expires_at": int((order.hold_expires_at + SESSION_BACKSTOP).timestamp()),
        "success_url": return_url,
        "cancel_url": return_url,
        "submit_type": "pay",
    }


@dataclass
class _View:
    order: Order
    offer: Offer
    business: Business
    _: Translator

    @property
    def title(self) -> str:
        return escape(self.offer.title)

    @property
    def amount(self) -> str:
        return format_money(self.order.amount_minor, self.order.currency)

    def what(self) -> str:
        return f"<b>{self.order.quantity} × {self.title}</b> — {self.amount}"

    def where_and_when(self) -> str:
        window = format_window(self._, self.offer.pickup_start, self.offer.pickup_end, self.business.timezone,
                               datetime.now(UTC))
        return (f"🏪 {escape(self.business.name)}, {escape(self.business.address)}\n"
                + self._("🕒 Pickup {window}", window=window))


def _view(session: Session, order: Order, user_id: int | None = None) -> _View:
    offer = session.get(Offer, order.offer_id)
    business = session.get(Business, offer.business_id)
    user = session.get(User, user_id if user_id is not None else order.customer_id) \
        if (user_id or order.customer_id) else None
    return _View(order, offer, business, Translator(user.language if user else "en"))


def _orders_row(_: Translator) -> list[dict[str, str]]:
    return [button(_("🧾 My orders"), data("orders")), button(_("⬅️ Main menu"), data("menu"))]


def _tell_customer(session: Session, order: Order, what: str, reply: Reply) -> None:
    if order.customer_id is not None:
        notify(session, f"order:{order.id}:{what}", order.customer_id, reply)


def _lock_order(session: Session, order_id: int) -> Order | None:
    """The order, locked in the reservation engine's order (its offer first), read afresh."""
    reservations.lock_order(session, order_id)
    return session.execute(
        select(Order).where(Order.id == order_id).with_for_update(key_share=True)
        .execution_options(populate_existing=True)
    ).scalar_one_or_none()


def _reload(session: Session, order_id: int) -> Order:
    # The engine moves rows with plain SQL; read them afresh.
    return session.execute(
        select(Order).where(Order.id == order_id).execution_options(populate_existing=True)
    ).scalar_one()


def _hold_due(session: Session, order: Order) -> bool:
    """By the database's clock, as the reservation engine judges holds."""
    return order.hold_expires_at is None or bool(
        session.scalar(text("SELECT CAST(:t AS timestamptz) <= now()"), {"t": order.hold_expires_at})
    )


# --------------------------------------------------------------------------- checkout


class CheckoutOutcome(str, enum.Enum):
    CREATED = "created"  # the session exists and the customer has the Pay button
    EXISTING = "existing"  # it existed already: the Pay button was sent again
    NOT_HELD = "not_held"  # nothing to pay for (paid, released, lapsed, unknown)
    UNAVAILABLE = "unavailable"  # card payments cannot be taken: the hold was released


def create_checkout(order_id: int, request: str | None = None) -> CheckoutOutcome:
    """Give a held order its Checkout Session and send the customer the Pay button.

    ``request`` names the request (the task id): a redelivery of the same task sends nothing
    new, a new request (the customer tapped again) sends the button again.
    """
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is None or order.status != OrderStatus.HELD or order.customer_id is None \
                or _hold_due(session, order):
            return CheckoutOutcome.NOT_HELD
        if order.checkout_session_id and order.checkout_url:
            _send_pay_button(session, order, request)
            return CheckoutOutcome.EXISTING
        offer = session.get(Offer, order.offer_id)
        business = session.get(Business, offer.business_id)
        key = order_key(order)
        params = checkout_params(order, offer, business) if stripe_api.configured() else None
    try:
        if params is None:
            raise stripe_api.PaymentsUnavailable("STRIPE_SECRET_KEY is unset")
        checkout = stripe_api.create_checkout_session(params, idempotency_key=f"checkout-{key}")
    except (stripe_api.PaymentsUnavailable, stripe_api.StripeRefused) as error:
        log.error("checkout_not_created", order_id=order_id, error=str(error),
                  code=getattr(error, "code", None))
        with session_scope() as session:
            _give_up_checkout(session, order_id)
        return CheckoutOutcome.UNAVAILABLE
    with session_scope() as session:
        order = _lock_order(session, order_id)
        if order.checkout_session_id is None:
            order.checkout_session_id = checkout["id"]
        elif order.checkout_session_id != checkout["id"]:
            # Cannot happen with one key per order. The first stays; a payment through the
            # other one finds no order of its own and is refunded (handle_event).
            log.error("second_checkout_session", order_id=order_id, kept=order.checkout_session_id,
                      other=checkout["id"])
            return CheckoutOutcome.EXISTING
        order.checkout_url = checkout["url"]  # open at Stripe until expire_checkout closes it
        if order.status != OrderStatus.HELD or _hold_due(session, order):
            # Released while Stripe answered: nobody may pay it any more.
            enqueue_after_commit(session, "payments.expire_checkout", order_id)
            return CheckoutOutcome.NOT_HELD
        _send_pay_button(session, order, request)
        remaining = (order.hold_expires_at - datetime.now(UTC)).total_seconds()
        enqueue_after_commit(session, "payments.expire_checkout", order_id, countdown=max(remaining, 0) + CLOSE_DELAY_SECONDS)
    return CheckoutOutcome.CREATED


def _send_pay_button(session: Session, order: Order, request: str | None) -> None:
    view = _view(session, order)
    _ = view._
    deadline = local_time(order.hold_expires_at, view.business.timezone)
    text_ = "\n".join([
        _("🛒 Reserved for you: {what}", what=view.what()),
        view.where_and_when(),
        "",
        _("Please pay by <b>{time}</b>; after that the reservation lapses and the food goes back on sale.",
          time=f"{deadline:%H:%M}"),
    ])
    keyboard = [
        [{"text": _("💳 Pay {amount}", amount=view.amount), "url": order.checkout_url}],
        [button(_("✖️ Cancel reservation"), data("ocancel", order.id))],
        _orders_row(_),
    ]
    suffix = f":{request}" if request else ""
    _tell_customer(session, order, f"checkout{suffix}", Reply(text=text_, keyboard=keyboard, kind="checkout"))


def _give_up_checkout(session: Session, order_id: int) -> None:
    """Card payments cannot be taken for this order: let the units go and say so."""
    released = reservations.release(session, order_id, ReleaseReason.CANCELLED)
    if released.outcome != reservations.ReleaseOutcome.RELEASED:
        return
    order = _reload(session, order_id)
    view = _view(session, order)
    _ = view._
    _tell_customer(session, order, "checkout_failed", Reply(
        text=_("😕 Sorry, card payment is not available right now, so your reservation of {what} was "
               "released. Nothing was charged. Please try again later.", what=view.what()),
        keyboard=[_orders_row(_)], kind="checkout_failed",
    ))
    audit.record(session, "payments", "payments.create_checkout", "error", target=f"order:{order_id}")


class CloseOutcome(str, enum.Enum):
    CLOSED = "closed"  # the session was open and is expired now
    SETTLED = "settled"  # Stripe had it paid: the payment was recorded
    PROCESSING = "processing"  # paid with a delayed method that has not settled yet
    ALREADY_CLOSED = "already_closed"
    STILL_PAYABLE = "still_payable"  # the hold is still open: nothing done
    NO_SESSION = "no_session"


def expire_checkout(order_id: int) -> CloseOutcome:
    """Close the Checkout Session of an order nobody may pay for any more (released, or its hold
    is due), so a customer cannot pay for units that went back on sale. If Stripe says it was
    paid meanwhile, record that payment (as its webhook would). Idempotent."""
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is None or not order.checkout_session_id:
            return CloseOutcome.NO_SESSION
        if order.status == OrderStatus.HELD and not _hold_due(session, order):
            return CloseOutcome.STILL_PAYABLE
        if order.checkout_url is None and order.status != OrderStatus.HELD:
            return CloseOutcome.ALREADY_CLOSED
        session_id = order.checkout_session_id
    outcome = CloseOutcome.CLOSED
    if stripe_api.expire_checkout_session(session_id) is None:
        checkout = stripe_api.retrieve_checkout_session(session_id)
        if checkout.get("status") == "complete" and checkout.get("payment_status") == "paid":
            with session_scope() as session:
                order = _lock_order(session, order_id)
                _payment_arrived(session, order, checkout)
            return CloseOutcome.SETTLED
        outcome = CloseOutcome.PROCESSING if checkout.get("status") == "complete" else CloseOutcome.ALREADY_CLOSED
    with session_scope() as session:
        order = _lock_order(session, order_id)
        if order.checkout_session_id == session_id:
            order.checkout_url = None
    return outcome


# --------------------------------------------------------------------------- events


class EventOutcome(str, enum.Enum):
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
    kind = event.get("type")
    if kind == "checkout.session.completed":
        if obj.get("payment_status") == "paid":
            return _on_paid_session(session, obj)
        if obj.get("payment_status") == "unpaid":
            return _on_processing_session(session, obj)
    elif kind == "checkout.session.async_payment_succeeded":
        return _on_paid_session(session, obj)
    elif kind == "checkout.session.async_payment_failed":
        return _on_failed_session(session, obj)
    elif kind == "checkout.session.expired":
        order = _order_of_session(session, obj)
        if order is not None and order.checkout_session_id == obj.get("id"):
            order.checkout_url = None
            return EventOutcome.HANDLED
    elif kind in ("refund.created", "refund.updated"):
        return _on_refund(session, obj)
    return EventOutcome.IGNORED


def _order_of_session(session: Session, checkout: dict[str, Any]) -> Order | None:
    """The order a Checkout Session belongs to, locked: by the session id we stored, or (before
    it was stored) by the metadata we put on the session, which must name the very order."""
    order_id = session.scalar(select(Order.id).where(Order.checkout_session_id == checkout.get("id")))
    if order_id is not None:
        return _lock_order(session, order_id)
    metadata = checkout.get("metadata") or {}
    try:
        order_id = int(metadata.get("order_id", ""))
    except ValueError:
        return None
    order = _lock_order(session, order_id)
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
            enqueue_after_commit(session, "payments.refund_payment", checkout["payment_intent"], None, "unknown_order")
            return EventOutcome.HANDLED
        return EventOutcome.IGNORED
    return _payment_arrived(session, order, checkout)


def _payment_arrived(session: Session, order: Order, checkout: dict[str, Any]) -> EventOutcome:
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
    order = _reload(session, order.id)
    order.payment_intent_id = intent
    order.checkout_url = None
    view = _view(session, order)
    _ = view._
    if result.outcome in (SaleOutcome.PAID, SaleOutcome.PAID_LATE):
        lines = [_("✅ <b>Paid — thank you!</b>"), view.what(), view.where_and_when(), "",
                 _("Your pickup code: <b>{code}</b>\nShow it at the counter.", code=result.pickup_code)]
        if result.outcome is SaleOutcome.PAID_LATE:
            lines.insert(1, _("(Your reservation had lapsed, but there was still enough left.)"))
        _tell_customer(session, order, "paid", Reply(text="\n".join(lines), keyboard=[_orders_row(_)], kind="paid"))
        _tell_business(session, view)
    elif result.outcome is SaleOutcome.NEEDS_REFUND:
        reasons = {
            RefundReason.NO_STOCK_LEFT: _("Your payment for {what} arrived after your reservation had lapsed, "
                                          "and it is sold out now.", what=view.what()),
            RefundReason.OFFER_UNAVAILABLE: _("Your payment for {what} arrived, but the offer is no longer "
                                              "available.", what=view.what()),
            RefundReason.AMOUNT_MISMATCH: _("Your payment for {what} did not match the order.", what=view.what()),
        }
        _tell_customer(session, order, "refunding", Reply(
            text="😔 " + reasons[result.reason] + "\n" + _("We are refunding {amount} to you; nothing is lost.",
                                                          amount=format_money(amount, currency)),
            keyboard=[_orders_row(_)], kind="refunding",
        ))
        enqueue_after_commit(session, "payments.refund_order", order.id)
    return EventOutcome.HANDLED


def _tell_business(session: Session, view: _View) -> None:
    owner = view.business.owner_id
    user = session.get(User, owner)
    _ = Translator(user.language if user else "en")
    offer = session.get(Offer, view.offer.id, populate_existing=True)
    notify(session, f"order:{view.order.id}:paid:business", owner, Reply(
        text=_("🧾 New order: {count} × <b>{title}</b> ({amount}), paid. {left} left.",
               count=view.order.quantity, title=view.title,
               amount=format_money(view.order.amount_minor, view.order.currency), left=max(offer.units_left, 0)),
        keyboard=[[button(_("⬅️ Main menu"), data("menu"))]], kind="new_order",
    ))


def _on_processing_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is None or order.status in (OrderStatus.PAID, OrderStatus.COLLECTED, OrderStatus.REFUNDED):
        return EventOutcome.IGNORED  # the payment settled already (events came out of order), or is unknown
    order.checkout_url = None
    view = _view(session, order)
    _ = view._
    _tell_customer(session, order, "processing", Reply(
        text=_("⏳ Your bank payment for {what} is being processed. We send your pickup code as soon as "
               "it clears.", what=view.what()),
        keyboard=[_orders_row(_)], kind="processing",
    ))
    return EventOutcome.HANDLED


def _on_failed_session(session: Session, checkout: dict[str, Any]) -> EventOutcome:
    order = _order_of_session(session, checkout)
    if order is None:
        return EventOutcome.IGNORED
    order.checkout_url = None
    reservations.release(session, order.id, ReleaseReason.CANCELLED)
    order = _reload(session, order.id)
    if order.status in (OrderStatus.PAID, OrderStatus.COLLECTED, OrderStatus.REFUNDED):
        return EventOutcome.IGNORED
    view = _view(session, order)
    _ = view._
    _tell_customer(session, order, "payment_failed", Reply(
        text=_("❌ Your bank payment for {what} did not go through, so the reservation was released. "
               "Nothing was charged.", what=view.what()),
        keyboard=[_orders_row(_)], kind="payment_failed",
    ))
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
    return EventOutcome.HANDLED if _record_refund(session, order_id, refund) else EventOutcome.IGNORED


def _record_refund(session: Session, order_id: int, refund: dict[str, Any]) -> bool:
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
    after_commit(session, metrics.REFUNDS.inc)
    order = _reload(session, order_id)
    view = _view(session, order)
    _ = view._
    _tell_customer(session, order, "refunded", Reply(
        text=_("↩️ Refunded {amount} for {what}. It can take a few days to show on your statement.",
               amount=format_money(int(refund["amount"]), str(refund["currency"])), what=view.what()),
        keyboard=[_orders_row(_)], kind="refunded",
    ))
    return True


# --------------------------------------------------------------------------- refunds


class RefundOutcome(str, enum.Enum):
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
    (its units go back on sale; the business cancelled the offer, say); a collected one is not
    refunded here (the food is gone: an operator decides)."""
    with session_scope() as session:
        order = _lock_order(session, order_id)
        if order is not None and order.status == OrderStatus.PAID:
            reservations.cancel_paid(session, order_id)
        row = session.execute(_PAYMENT_TO_REFUND_SQL, {"id": order_id}).first()
        if row is None or row.status not in ("expired", "cancelled", "refunded"):
            return RefundOutcome.NOT_DUE
        if row.refunded:
            return RefundOutcome.ALREADY_DONE
        key = order_key(session.get(Order, order_id))
    refund = _refund_at_stripe(row.reference, row.amount_minor, f"refund-{key}", {"order_id": str(order_id)})
    with session_scope() as session:
        recorded = _record_refund(session, order_id, refund)
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


def _refund_at_stripe(payment_intent: str, amount: int | None, key: str, metadata: dict[str, str]) -> dict[str, Any]:
    try:
        return stripe_api.create_refund(payment_intent, amount, idempotency_key=key, metadata=metadata)
    except stripe_api.StripeRefused as refused:
        if refused.code != "charge_already_refunded":
            raise
        # Refunded before (our earlier attempt after its key expired, or by hand): use that refund.
        done = [r for r in stripe_api.refunds_of(payment_intent) if r.get("status") in ("succeeded", "pending")]
        if not done:
            raise
        return done[-1]


# --------------------------------------------------------------------------- cancellations


class CancellationOutcome(str, enum.Enum):
    CANCELLED = "cancelled"  # the units are back on sale, the refund is on its way
    TOO_LATE = "too_late"  # past the cancellation cut-off before pickup
    NOT_CANCELLABLE = "not_cancellable"  # not paid (any more): collected, refunded, unknown, not theirs


def cancel_by_customer(session: Session, order_id: int, customer_id: int, now: datetime) -> CancellationOutcome:
    """The customer calls off a paid order: allowed until ``cancellation_cutoff_minutes`` before
    pickup starts. The units go back on sale now, the money back after commit."""
    order = _lock_order(session, order_id)
    if order is None or order.customer_id != customer_id or order.status != OrderStatus.PAID:
        return CancellationOutcome.NOT_CANCELLABLE
    offer = session.get(Offer, order.offer_id)
    cutoff = offer.pickup_start - timedelta(minutes=get_settings().cancellation_cutoff_minutes)
    if now > cutoff:
        return CancellationOutcome.TOO_LATE
    result = reservations.cancel_paid(session, order_id)
    if result.outcome is not reservations.CancelOutcome.CANCELLED:
        return CancellationOutcome.NOT_CANCELLABLE
    order = _reload(session, order_id)
    view = _view(session, order, user_id=session.get(Business, offer.business_id).owner_id)
    _ = view._
    notify(session, f"order:{order_id}:cancelled:business", view.business.owner_id, Reply(
        text=_("✖️ An order was cancelled by the customer: {count} × <b>{title}</b>. The items are back on sale.",
               count=order.quantity, title=view.title),
        keyboard=[[button(_("⬅️ Main menu"), data("menu"))]], kind="order_cancelled",
    ))
    enqueue_after_commit(session, "payments.refund_order", order_id)
    return CancellationOutcome.CANCELLED


def describe_cancellation(_: Translator, outcome: CancellationOutcome) -> str:
    """What the customer reads after trying to cancel (short: it is shown as a button answer)."""
    if outcome is CancellationOutcome.CANCELLED:
        return _("Order cancelled. Your money is on its way back to your card.")
    if outcome is CancellationOutcome.TOO_LATE:
        return _("Sorry, a paid order can be cancelled only until {minutes} minutes before pickup starts.",
                 minutes=get_settings().cancellation_cutoff_minutes)
    return _("This order can't be cancelled any more.")


class CallOffReason(str, enum.Enum):
    OFFER_CANCELLED = "offer_cancelled"
    BUSINESS_SUSPENDED = "business_suspended"


def call_off_paid_orders(session: Session, order_ids: list[int],
                         reason: CallOffReason = CallOffReason.OFFER_CANCELLED) -> list[int]:
    """The business (or an admin) called off paid orders, e.g. by cancelling the offer: each one
    is cancelled (units back), its customer told, and its refund sent after commit. Returns the
    orders cancelled by this call. Idempotent. Lock order as the engine: orders, then offers."""
    cancelled = []
    for order_id in sorted(order_ids):
        order = _lock_order(session, order_id)
        if order is None or order.status != OrderStatus.PAID:
            continue
        if reservations.cancel_paid(session, order_id).outcome is not reservations.CancelOutcome.CANCELLED:
            continue
        cancelled.append(order_id)
        order = _reload(session, order_id)
        view = _view(session, order)
        _ = view._
        why = (_("The business cancelled this offer.") if reason is CallOffReason.OFFER_CANCELLED
               else _("This business is no longer on Surplus."))
        _tell_customer(session, order, "called_off", Reply(
            text="😔 " + _("Your order {what} was cancelled.", what=view.what()) + " " + why + "\n"
                 + _("You get {amount} back on your card.", amount=view.amount),
            keyboard=[_orders_row(_)], kind="called_off",
        ))
        enqueue_after_commit(session, "payments.refund_order", order_id)
    return cancelled


# --------------------------------------------------------------------------- reconciliation

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
