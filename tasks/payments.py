"""The `payments` queue: Checkout Sessions, Stripe's events and refunds (rules in domain.payments).

Every task is idempotent (Stripe idempotency keys, event ids recorded with their effects, one
ledger row per movement), so a retry or a redelivery after a killed worker has one effect.
Stripe being unreachable raises `StripeUnavailable` (a ConnectionError): retried with backoff.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from chat import app_actions
from core.db import session_scope
from core.logging import get_logger
from domain import payments
from tasks.app import app
from tasks.base import BaseTask
from tasks.notifications import after_earlier_messages, send_now

log = get_logger(__name__)


@app.task(name="payments.create_checkout", base=BaseTask, bind=True)
def create_checkout(self: BaseTask, order_id: int, edit_message_id: int | None = None,
                    customer_id: int | None = None) -> str:
    """A held order gets its Checkout Session; the customer gets the Pay button, sent from here
    right after the commit, like a refusal from the reservation task. With ``edit_message_id`` the
    Pay button replaces that message (the customer's "⏳ Reserving…", in chat ``customer_id``), once
    it has been shown: it must not overtake the Pay button. A redelivery sends a button the task
    recorded and did not send."""
    if edit_message_id is not None and customer_id is not None:
        after_earlier_messages(int(customer_id), datetime.now(UTC))
    checkout = payments.create_checkout(int(order_id), request=self.request.id, edit_message_id=edit_message_id)
    if checkout.pay_message is not None:
        send_now([checkout.pay_message])
    return checkout.outcome.value


@app.task(name="payments.expire_checkout", base=BaseTask)
def expire_checkout(order_id: int) -> str:
    """Close the session of an order nobody may pay any more (or record the payment Stripe took)."""
    return payments.expire_checkout(int(order_id)).value


@app.task(name="payments.handle_event", base=BaseTask, bind=True, max_retries=40)
def handle_event(self: BaseTask, event: dict[str, Any]) -> str:
    """One Stripe event, as the gateway verified and queued it (trimmed: no personal data)."""
    try:
        with session_scope() as session:
            outcome = payments.handle_event(session, event)
    except payments.EventNotReady as waiting:
        log.info("stripe_event_not_ready", event_id=event.get("id"), reason=str(waiting))
        raise self.retry(countdown=min(2 ** self.request.retries, 120)) from waiting
    log.info("stripe_event_handled", event_id=event.get("id"), type=event.get("type"), outcome=outcome.value)
    return outcome.value


@app.task(name="payments.cancel_offer", base=BaseTask)
def cancel_offer(owner_id: int, offer_id: int, request_id: str) -> bool:
    """A business cancelled its offer in the Mini App: done as the chat's "🗑 Cancel offer" does
    (chat/app_actions.py); a redelivery finds it cancelled and does nothing again."""
    with session_scope() as session:
        return app_actions.cancel_offer(session, int(owner_id), int(offer_id), str(request_id))


@app.task(name="payments.refund_order", base=BaseTask)
def refund_order(order_id: int) -> str:
    return payments.refund_order(int(order_id)).value


@app.task(name="payments.refund_payment", base=BaseTask)
def refund_payment(payment_intent: str, order_id: int | None, reason: str) -> str:
    return payments.refund_payment(str(payment_intent), order_id, str(reason))


@app.task(name="payments.start_onboarding", base=BaseTask, bind=True)
def start_onboarding(self: BaseTask, business_id: int, owner_id: int, request: str | None = None,
                     edit_message_id: int | None = None) -> str:
    """The business's Stripe Connect account (made once) and a fresh onboarding link for its owner;
    the link replaces the owner's "⏳ Preparing…" message ``edit_message_id`` once that is shown."""
    if edit_message_id is not None:
        after_earlier_messages(int(owner_id), datetime.now(UTC))
    return payments.start_onboarding(int(business_id), int(owner_id), request=request or self.request.id,
                                     edit_message_id=edit_message_id).value


@app.task(name="payments.reconcile_connect", base=BaseTask)
def reconcile_connect() -> dict[str, Any]:
    """Compare the businesses' transfers and the platform's fees with Stripe's records; report
    differences to the admins (audited), never fix them."""
    return payments.reconcile.reconcile_connect()
