"""A customer's order from tap to payment link: reserve, then hand over to payments; or say why not."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from core import outbox
from core.db import autocommit_connection
from core.handover import enqueue_after_commit
from core.settings import get_settings
from domain import reservations
from domain.payments import PayButtonGone, close_checkouts_after_commit, closing, hold_ended, spend_pay_buttons
from domain.reservations import ReleaseReason, ReserveOutcome, ReserveResult
from models import Offer, OfferStatus, User

MAX_PER_ORDER = 5


@dataclass
class Placed:
    """What `place_order` did: the engine's result, and the refusal message (an outbox row) the
    caller sends itself right after the commit (None when there is nothing to say)."""

    result: ReserveResult
    refusal_id: int | None = None


@dataclass(frozen=True)
class ReservationRefused:
    """Notice: the reservation engine said no (``outcome``) to a customer reading ``language``.
    ``title`` is the offer's as its business typed it (empty for an unknown offer). ``message_id``:
    the customer's "⏳ Reserving…" message, which becomes the answer (None: a new message)."""

    language: str
    outcome: ReserveOutcome
    offer_id: int
    title: str
    units_left: int | None
    message_id: int | None = None


@dataclass(frozen=True)
class Sight:
    """An offer as a tap sees it, read without locking its row (advice only: the reservation
    engine's guarded update decides every reservation)."""

    offer_id: int
    title: str
    status: OfferStatus
    units_left: int
    pickup_end: datetime


def at_sight(session: Session, offer_id: int) -> Sight | None:
    """The offer's title, state and units left (None: no such offer), in one statement straight to
    the driver: read on every tap on "Reserve", most of them in a flash sale, where loading the whole
    `Offer` through the ORM cost more than the round trip."""
    row = session.connection().exec_driver_sql(_AT_SIGHT, {"id": offer_id}).first()
    if row is None:
        return None
    title, status, units_left, pickup_end = row
    return Sight(offer_id, title, OfferStatus(status), units_left, pickup_end)


_AT_SIGHT = "SELECT title, status, quantity - units_sold - units_held, pickup_end FROM offers WHERE id = %(id)s"


def refusal_key(request_key: str) -> str:
    return f"reserve:{request_key}"


def place_order(session: Session, offer_id: int, customer_id: int, quantity: int, request_key: str, *,
                edit_message_id: int | None = None) -> Placed:
    """Reserve for a customer. On success the payments queue creates the checkout (after commit).
    Otherwise the reason is recorded in the outbox, once per request, for the caller to send
    straight after the commit (`Placed.refusal_id`): no extra task for a refusal. Either answer
    replaces the customer's "⏳ Reserving…" message ``edit_message_id`` when it is given.

    The hold commits on its own connection, before and whatever the session does: the shortest
    path through the offer's row lock (see `reservations.reserve`). A redelivered task finds it
    (ALREADY_HELD), so nothing depends on the session's commit for it."""
    if closing.limited_now(session, customer_id, offer_id, datetime.now(UTC)):
        result = ReserveResult(ReserveOutcome.NO_SHOW_LIMIT)
        return Placed(result, _refuse(session, offer_id, customer_id, result, request_key=request_key,
                                   edit_message_id=edit_message_id))
    with autocommit_connection(session) as conn:
        result = reservations.reserve(conn, offer_id, customer_id, quantity,
                                      hold_minutes=get_settings().hold_minutes, per_order_cap=MAX_PER_ORDER)
    if result.outcome is ReserveOutcome.ALREADY_HELD and hold_ended(session, result.hold_expires_at):
        result = _reserve_after_lapsed_hold(session, result, offer_id, customer_id, quantity)
    if result.outcome in (ReserveOutcome.RESERVED, ReserveOutcome.ALREADY_HELD):
        replacing = {"edit_message_id": edit_message_id, "customer_id": customer_id} if edit_message_id else None
        enqueue_after_commit(session, "payments.create_checkout", result.order_id, kwargs=replacing)
        return Placed(result)
    return Placed(result, _refuse(session, offer_id, customer_id, result, request_key=request_key,
                                   edit_message_id=edit_message_id))


def _reserve_after_lapsed_hold(session: Session, lapsed: ReserveResult, offer_id: int, customer_id: int,
                               quantity: int) -> ReserveResult:
    """The customer taps again after their hold lapsed and before the once-a-minute sweep released
    it. Handing back that order would leave them at "⏳ Reserving…" (nobody may pay a lapsed hold,
    so no Pay button comes). Release it as the sweep would (its Pay messages say it lapsed, its
    checkout closes), then reserve again, both in this transaction."""
    assert lapsed.order_id is not None, "ALREADY_HELD names the open order"
    released = reservations.release(session, lapsed.order_id, ReleaseReason.EXPIRED)
    if released.outcome is reservations.ReleaseOutcome.RELEASED:
        spend_pay_buttons(session, lapsed.order_id, customer_id, PayButtonGone.LAPSED)
        close_checkouts_after_commit(session, [lapsed.order_id])
    return reservations.reserve(session, offer_id, customer_id, quantity,
                                hold_minutes=get_settings().hold_minutes, per_order_cap=MAX_PER_ORDER)


def _refuse(session: Session, offer_id: int, customer_id: int, result: ReserveResult, *, request_key: str,
            edit_message_id: int | None) -> int | None:
    """Record why not, once per request; the outbox row to send (None: nothing pending)."""
    user = session.get(User, customer_id)
    offer = session.get(Offer, offer_id)
    refused = ReservationRefused(user.language if user else "en", result.outcome, offer_id,
                                 offer.title if offer else "", result.units_left, edit_message_id)
    # A redelivered task finds the refusal recorded: it may still be waiting to be sent.
    return outbox.record_to_send(session, refusal_key(request_key), customer_id, refused)


def cancel_hold(session: Session, order_id: int, customer_id: int) -> bool:
    """The customer lets an unpaid reservation go; its checkout session is expired after commit,
    and its Pay messages lose their buttons."""
    released = reservations.release(session, order_id, ReleaseReason.CANCELLED, customer_id=customer_id)
    if released.outcome is not reservations.ReleaseOutcome.RELEASED:
        return False
    spend_pay_buttons(session, order_id, customer_id, PayButtonGone.CANCELLED)
    close_checkouts_after_commit(session, [order_id])  # a no-op for an order without a session
    return True
