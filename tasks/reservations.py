"""The `reservations` queue: turning a customer's tap into a held order."""

from __future__ import annotations

from core.db import session_scope
from domain import ordering
from tasks.app import app
from tasks.base import BaseTask
from tasks.notifications import send_now


@app.task(name="reservations.place_order", base=BaseTask)
def place_order(offer_id: int, customer_id: int, quantity: int, request_key: str,
                edit_message_id: int | None = None) -> str:
    """Idempotent: a redelivery finds the customer's open hold (ALREADY_HELD), and the refusal
    message is keyed by the request, so it is sent once.

    A refusal ("just sold out") is sent from here, right after the commit, like an update's own
    replies: in a flash sale most taps end this way, and a task per refusal would double the work.
    With ``edit_message_id`` (the customer's "⏳ Reserving…") the answer replaces that message at
    once: the outbox never lets the earlier "⏳ Reserving…" arrive after it (a later edit of a
    message supersedes an earlier one), so it need not wait for it.
    """
    with session_scope() as session:
        placed = ordering.place_order(session, offer_id, customer_id, quantity, request_key,
                                      edit_message_id=edit_message_id)
    if placed.refusal_id is not None:
        send_now([placed.refusal_id])
    return placed.result.outcome.value
