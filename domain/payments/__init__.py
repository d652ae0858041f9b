"""Payments: Stripe Checkout for held orders, Stripe's events, refunds, cancellations, reconciliation.

The money side of an order, on top of the reservation engine (``domain.reservations``), which
owns every stock and money movement and its ledger rows. One module per seam:

* ``checkout``: one Checkout Session per held order, closed when nobody may pay any more.
* ``events``: Stripe's events, once per event id and safe in any order.
* ``refunds``: one refund per order whose money came in but which is not (or no longer) paid.
* ``cancellation``: the customer's cancellation, as the policy allows; an offer the business
  cancels (every buyer released or refunded, and told) and paid orders it calls off.
* ``connect``: a business's Stripe Connect account, its onboarding and events, and where an
  order's money goes; ``ledger``: the fee, transfer, reversal and fee refund rows, and the fee policy.
* ``closing``: paid orders nobody collected close as "not collected"; no-shows and their limit.
* ``reconcile``: what a lost webhook or a failed task left undone.
* ``notices``: what happened, as the chat renders it for the people concerned (no wording here).

Functions that call Stripe (:func:`create_checkout`, :func:`expire_checkout`,
:func:`refund_order`, :func:`refund_payment`) open their own short transactions around the call,
so no row stays locked while Stripe answers. The others run inside the caller's transaction and
hand their follow-up tasks over after it commits (``core.handover``). Stripe I/O lives in
``core.stripe_api``.
"""

from __future__ import annotations

from domain.payments.cancellation import (
    CancellationOutcome,
    CancelPolicy,
    call_off_paid_orders,
    cancel_by_customer,
    cancel_offer,
    cancellation_policy,
)
from domain.payments.checkout import (
    CLOSE_DELAY_SECONDS,
    Checkout,
    CheckoutOutcome,
    CloseOutcome,
    checkout_params,
    close_checkouts_after_commit,
    create_checkout,
    expire_checkout,
)
from domain.payments.closing import NoShowOutcome, NotYours, close_uncollected_orders, mark_no_show
from domain.payments.connect import OnboardingOutcome, start_onboarding
from domain.payments.events import EventNotReady, EventOutcome, handle_event
from domain.payments.notices import CallOffReason, PayButtonGone
from domain.payments.orders import hold_ended, order_key, spend_pay_buttons
from domain.payments.reconcile import reconcile_payments
from domain.payments.refunds import RefundOutcome, refund_order, refund_payment

__all__ = [
    "CLOSE_DELAY_SECONDS",
    "CallOffReason",
    "CancelPolicy",
    "CancellationOutcome",
    "Checkout",
    "CheckoutOutcome",
    "CloseOutcome",
    "EventNotReady",
    "EventOutcome",
    "NoShowOutcome",
    "NotYours",
    "OnboardingOutcome",
    "PayButtonGone",
    "RefundOutcome",
    "call_off_paid_orders",
    "cancel_by_customer",
    "cancel_offer",
    "cancellation_policy",
    "checkout_params",
    "close_checkouts_after_commit",
    "close_uncollected_orders",
    "create_checkout",
    "expire_checkout",
    "handle_event",
    "hold_ended",
    "mark_no_show",
    "order_key",
    "reconcile_payments",
    "refund_order",
    "refund_payment",
    "spend_pay_buttons",
    "start_onboarding",
]
