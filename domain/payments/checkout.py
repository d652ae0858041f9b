"""Checkout: one Stripe Checkout Session per held order, and closing it when nobody may pay any more.

The idempotency key is derived from the order alone, and so are the parameters, so a retried or
redelivered task, a lost answer or a second tap get the same session back. The customer is sent
the Pay button (the session's URL). When the hold lapses the session is closed
(:func:`expire_checkout`); a session Stripe reports as paid by then is settled as a payment.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import text
from sqlalchemy.orm import Session

from core import stripe_api
from core.db import session_scope
from core.handover import enqueue_after_commit
from core.logging import get_logger
from core.settings import get_settings
from domain import audit, reservations
from domain.payments import connect, ledger, notices
from domain.payments.events import payment_arrived
from domain.payments.orders import (
    hold_due,
    lock_known_order,
    offer_and_business,
    order_key,
    pay_button_key,
    record_to_send,
    reload_order,
    tell_customer,
)
from domain.reservations import ReleaseReason
from models import Business, Offer, Order, OrderStatus

log = get_logger(__name__)

# Stripe wants a session to live at least 30 minutes; ours is closed when the hold lapses, and
# Stripe's own expiry is only the backstop: the hold's end plus this.
SESSION_BACKSTOP = timedelta(minutes=31)
# A scheduled close of the session runs this long after the hold's end (clocks differ a little).
CLOSE_DELAY_SECONDS = 2


def close_checkouts_after_commit(session: Session, order_ids: list[int]) -> None:
    """Released orders may still have an open Stripe Checkout Session: close each once this
    transaction commits, so nobody pays for units that went back on sale."""
    for order_id in order_ids:
        enqueue_after_commit(session, "payments.expire_checkout", order_id)


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
            **_destination_charge(order),
        },
        "expires_at": int((order.hold_expires_at + SESSION_BACKSTOP).timestamp()),
        "success_url": return_url,
        "cancel_url": return_url,
        "submit_type": "pay",
    }


def _destination_charge(order: Order) -> dict[str, Any]:
    """With a connected account the payment is a destination charge: it goes to the business,
    and the platform's fee comes back as the application fee (domain.payments.ledger)."""
    if not order.destination_account:
        return {}
    return {"transfer_data": {"destination": order.destination_account},
            "application_fee_amount": order.fee_minor or 0, "transfer_group": ledger.transfer_group(order)}


_ROUTE_SQL = text(
    "UPDATE orders SET fee_minor = :fee, destination_account = :destination "
    "WHERE id = :id AND fee_minor IS NULL"
)


def _route_money(session: Session, order: Order, business: Business) -> bool:
    """Decide once, for good, where the order's money goes (a retry sends the same request); False
    when the business cannot take payments now."""
    if order.fee_minor is None:
        route = connect.money_route(business, order.amount_minor)
        if route is None:
            return False
        session.execute(_ROUTE_SQL, {"id": order.id, "fee": route.fee_minor, "destination": route.destination})
        session.refresh(order)
    return True


class CheckoutOutcome(enum.StrEnum):
    CREATED = "created"  # the session exists and the customer has the Pay button
    EXISTING = "existing"  # it existed already: the Pay button was sent again
    NOT_HELD = "not_held"  # nothing to pay for (paid, released, lapsed, unknown)
    UNAVAILABLE = "unavailable"  # card payments cannot be taken: the hold was released


@dataclass(frozen=True)
class Checkout:
    outcome: CheckoutOutcome
    # The Pay message's outbox row, committed: the caller sends it straight away (None: nothing to send).
    pay_message: int | None = None


def create_checkout(order_id: int, request: str | None = None, edit_message_id: int | None = None) -> Checkout:
    """Give a held order its Checkout Session and record the customer's Pay button, for the caller
    to send straight after (``Checkout.pay_message``): in a flash sale a task of its own for each
    Pay message was a third of the work a sold unit made.

    ``request`` names the request (the task id): a redelivery of the same task records nothing
    new and hands back the button if it is still unsent, a new request (the customer tapped again)
    records the button again. ``edit_message_id``: the customer's "⏳ Reserving…" message, which
    becomes the Pay message (None: a new message).
    """
    with session_scope() as session:
        order = session.get(Order, order_id)
        if order is None or order.status != OrderStatus.HELD or order.customer_id is None \
                or hold_due(session, order):
            return Checkout(CheckoutOutcome.NOT_HELD)
        if order.checkout_session_id and order.checkout_url:
            return Checkout(CheckoutOutcome.EXISTING, _record_pay_button(session, order, request, edit_message_id))
        offer, business = offer_and_business(session, order)
        key = order_key(order)
        routed = _route_money(session, order, business)
        params = checkout_params(order, offer, business) if stripe_api.configured() and routed else None
    try:
        if not routed:
            raise stripe_api.PaymentsUnavailable(f"business {business.id} cannot take payments now (Connect)")
        if params is None:
            raise stripe_api.PaymentsUnavailable("STRIPE_SECRET_KEY is unset")
        checkout = stripe_api.create_checkout_session(params, idempotency_key=f"checkout-{key}")
    except (stripe_api.PaymentsUnavailable, stripe_api.StripeRefused) as error:
        log.error("checkout_not_created", order_id=order_id, error=str(error),
                  code=getattr(error, "code", None))
        with session_scope() as session:
            _give_up_checkout(session, order_id)
        return Checkout(CheckoutOutcome.UNAVAILABLE)
    with session_scope() as session:
        order = lock_known_order(session, order_id)
        if order.checkout_session_id is None:
            order.checkout_session_id = checkout["id"]
        elif order.checkout_session_id != checkout["id"]:
            # Cannot happen with one key per order. The first stays; a payment through the
            # other one finds no order of its own and is refunded (handle_event).
            log.error("second_checkout_session", order_id=order_id, kept=order.checkout_session_id,
                      other=checkout["id"])
            return Checkout(CheckoutOutcome.EXISTING)
        order.checkout_url = checkout["url"]  # open at Stripe until expire_checkout closes it
        if order.status != OrderStatus.HELD or hold_due(session, order):
            # Released while Stripe answered: nobody may pay it any more.
            enqueue_after_commit(session, "payments.expire_checkout", order_id)
            return Checkout(CheckoutOutcome.NOT_HELD)
        pay_message = _record_pay_button(session, order, request, edit_message_id)
        assert order.hold_expires_at is not None, "hold_due() was false, so the hold has an end"
        remaining = (order.hold_expires_at - datetime.now(UTC)).total_seconds()
        enqueue_after_commit(session, "payments.expire_checkout", order_id,
                             countdown=max(remaining, 0) + CLOSE_DELAY_SECONDS)
    return Checkout(CheckoutOutcome.CREATED, pay_message)


def _record_pay_button(session: Session, order: Order, request: str | None, edit_message_id: int | None) -> int | None:
    if order.customer_id is None:
        return None
    return record_to_send(session, pay_button_key(order.id, request), order.customer_id, notices.PayNow, order,
                          message_id=edit_message_id)


def _give_up_checkout(session: Session, order_id: int) -> None:
    """Card payments cannot be taken for this order: let the units go and say so."""
    released = reservations.release(session, order_id, ReleaseReason.CANCELLED)
    if released.outcome != reservations.ReleaseOutcome.RELEASED:
        return
    tell_customer(session, reload_order(session, order_id), "checkout_failed", notices.CardPaymentUnavailable)
    audit.record(session, "payments", "payments.create_checkout", "error", target=f"order:{order_id}")


class CloseOutcome(enum.StrEnum):
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
        if order.status == OrderStatus.HELD and not hold_due(session, order):
            return CloseOutcome.STILL_PAYABLE
        if order.checkout_url is None and order.status != OrderStatus.HELD:
            return CloseOutcome.ALREADY_CLOSED
        session_id = order.checkout_session_id
    outcome = CloseOutcome.CLOSED
    if stripe_api.expire_checkout_session(session_id) is None:
        checkout = stripe_api.retrieve_checkout_session(session_id)
        if checkout.get("status") == "complete" and checkout.get("payment_status") == "paid":
            with session_scope() as session:
                order = lock_known_order(session, order_id)
                payment_arrived(session, order, checkout)
            return CloseOutcome.SETTLED
        outcome = CloseOutcome.PROCESSING if checkout.get("status") == "complete" else CloseOutcome.ALREADY_CLOSED
    with session_scope() as session:
        order = lock_known_order(session, order_id)
        if order.checkout_session_id == session_id:
            order.checkout_url = None
    return outcome
