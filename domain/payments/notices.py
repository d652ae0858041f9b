"""What the payments code tells people, as notices: what happened to an order, with the facts the
chat needs to say it (``chat.messages.orders`` renders each type in the recipient's language).

A notice is recorded in the outbox within the transaction that decided it and rendered right
then, so it may carry the ORM rows as they are in that transaction.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from domain.reservations import RefundReason
from models import Business, Offer, Order


@dataclass(frozen=True)
class OrderNotice:
    """About one order, for one person (its customer, or its business), who reads ``language``."""

    order: Order
    offer: Offer
    business: Business
    language: str


# --------------------------------------------------------------------------- paying


@dataclass(frozen=True)
class PayNow(OrderNotice):
    """The order is held and its Checkout Session open (``order.checkout_url``): pay before the
    hold ends (``order.hold_expires_at``), or let it go. ``message_id``: the customer's message to
    turn into it (their "⏳ Reserving…"), or None for a new message."""

    message_id: int | None = None


class PayButtonGone(enum.StrEnum):
    """Why a Pay message's buttons can do nothing any more."""

    PAID = "paid"  # the payment came in and sold the order
    LAPSED = "lapsed"  # not paid in time: the hold ended
    CANCELLED = "cancelled"  # the customer let the reservation go
    CLOSED = "closed"  # released otherwise (the offer was cancelled, the payment failed or came too late)


@dataclass(frozen=True)
class PayButtonSpent(OrderNotice):
    """The Pay message ``message_id`` (a PayNow) still offers Pay and Cancel, which can do nothing
    any more (``why``): it is edited to say so, without them."""

    message_id: int
    why: PayButtonGone


@dataclass(frozen=True)
class CardPaymentUnavailable(OrderNotice):
    """No Checkout Session could be made: the reservation was released, nothing was charged."""


@dataclass(frozen=True)
class OrderPaid(OrderNotice):
    """The payment sold the units; ``late``: after the hold had lapsed, but enough was left."""

    pickup_code: str
    late: bool


@dataclass(frozen=True)
class PickupPass(OrderNotice):
    """Right after ``OrderPaid``: the customer's pickup pass, ``pickup_code`` as something the
    counter can scan (the chat sends it as a QR code of the pickup deep link)."""

    pickup_code: str


@dataclass(frozen=True)
class NewPaidOrder(OrderNotice):
    """To the business: an order of its offer was paid; ``units_left`` remain on sale."""

    units_left: int


@dataclass(frozen=True)
class PaymentProcessing(OrderNotice):
    """A delayed (bank) payment was submitted and has not cleared yet."""


@dataclass(frozen=True)
class PaymentFailed(OrderNotice):
    """A delayed payment failed: the reservation was released, nothing was charged."""


# --------------------------------------------------------------------------- refunds


@dataclass(frozen=True)
class PaymentToRefund(OrderNotice):
    """Money came in that cannot buy the order (``reason``): ``amount_minor`` goes back."""

    reason: RefundReason
    amount_minor: int
    currency: str


@dataclass(frozen=True)
class Refunded(OrderNotice):
    """Stripe refunded ``amount_minor`` for the order."""

    amount_minor: int
    currency: str


# --------------------------------------------------------------------------- cancellations


class CallOffReason(enum.StrEnum):
    """Why the business side called off an order (each reads differently to the customer)."""

    OFFER_CANCELLED = "offer_cancelled"  # the business cancelled the whole offer (cancel_offer)
    BY_BUSINESS = "by_business"  # the business called off these orders (call_off_paid_orders)
    BUSINESS_SUSPENDED = "business_suspended"  # the business is no longer on the platform


@dataclass(frozen=True)
class CancelledByCustomer(OrderNotice):
    """To the business: the customer cancelled a paid order; its units are back on sale."""


@dataclass(frozen=True)
class OrderCalledOff(OrderNotice):
    """The business (or an admin) called off a paid order, for ``reason``: the money goes back."""

    reason: CallOffReason


@dataclass(frozen=True)
class ReservationCalledOff(OrderNotice):
    """The business cancelled the offer of an unpaid reservation: released, nothing was charged."""
