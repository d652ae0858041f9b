"""A customer's order from tap to payment link: reserve, then hand over to payments; or say why not."""

from __future__ import annotations

from sqlalchemy.orm import Session

from bot.conversation.cards import escape
from bot.conversation.registry import data
from bot.conversation.replies import Reply, button
from core.db import after_commit
from core.i18n import Translator
from core.settings import get_settings
from domain import notifications, reservations
from domain.reservations import ReleaseReason, ReserveOutcome, ReserveResult
from models import Offer, User

MAX_PER_ORDER = 5


def _send_task(name: str, *args: object) -> None:
    from tasks.app import app

    app.send_task(name, args=list(args))


def place_order(session: Session, offer_id: int, customer_id: int, quantity: int, request_key: str) -> ReserveResult:
    """Reserve for a customer. On success the payments queue creates the checkout (after commit);
    otherwise the customer is told why, once per request."""
    result = reservations.reserve(session, offer_id, customer_id, quantity,
                                  hold_minutes=get_settings().hold_minutes, per_order_cap=MAX_PER_ORDER)
    if result.outcome in (ReserveOutcome.RESERVED, ReserveOutcome.ALREADY_HELD):
        order_id = result.order_id
        after_commit(session, lambda: _send_task("payments.create_checkout", order_id))
        return result
    user = session.get(User, customer_id)
    offer = session.get(Offer, offer_id)
    _ = Translator(user.language if user else "en")
    title = escape(offer.title) if offer else ""
    more = [[button(_("🔎 More deals"), data("deals")), button(_("⬅️ Main menu"), data("menu"))]]
    if result.outcome is ReserveOutcome.SOLD_OUT:
        text = _("😔 Sorry, <b>{title}</b> just sold out.", title=title)
    elif result.outcome is ReserveOutcome.NOT_ENOUGH_LEFT:
        text = _("Only {count} left of <b>{title}</b>. Please choose a smaller quantity.",
                 count=result.units_left, title=title)
        more.insert(0, [button(_("Choose again"), data("offer", offer_id))])
    elif result.outcome is ReserveOutcome.OVER_LIMIT:
        text = _("You can reserve at most {count} at once.", count=MAX_PER_ORDER)
    else:
        text = _("This offer can't be ordered any more.")
    notifications.notify(session, f"reserve:{request_key}", customer_id, Reply(text=text, keyboard=more))
    return result


def cancel_hold(session: Session, order_id: int, customer_id: int) -> bool:
    """The customer lets an unpaid reservation go; its checkout session is expired after commit."""
    released = reservations.release(session, order_id, ReleaseReason.CANCELLED, customer_id=customer_id)
    if released.outcome is not reservations.ReleaseOutcome.RELEASED:
        return False
    from domain.payments import close_checkouts_after_commit

    close_checkouts_after_commit(session, [order_id])  # a no-op for an order without a session
    return True
