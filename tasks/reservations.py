"""The `reservations` queue: turning a customer's tap into a held order."""

from __future__ import annotations

from core.db import session_scope
from domain import ordering
from tasks.app import app
from tasks.base import BaseTask


@app.task(name="reservations.place_order", base=BaseTask)
def place_order(offer_id: int, customer_id: int, quantity: int, request_key: str) -> str:
    """Idempotent: a redelivery finds the customer's open hold (ALREADY_HELD), and the refusal
    message is keyed by the request, so it is sent once."""
    with session_scope() as session:
        return ordering.place_order(session, offer_id, customer_id, quantity, request_key).outcome.value
