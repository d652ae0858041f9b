"""Orders and payments: reservations refused, the Pay button, paid, refunds, cancellations."""

from __future__ import annotations

from chat.cards import escape
from chat.registry import data
from core.i18n import Translator
from core.outbox import Reply, button, renders
from domain.ordering import MAX_PER_ORDER, ReservationRefused
from domain.reservations import ReserveOutcome

# --------------------------------------------------------------------------- reserving


def refusal(_: Translator, outcome: ReserveOutcome, offer_id: int, title: str, units_left: int | None) -> Reply:
    """Why a reservation was refused, in the customer's language (``title`` as the business typed it)."""
    title = escape(title)
    more = [[button(_("🔎 More deals"), data("deals")), button(_("⬅️ Main menu"), data("menu"))]]
    if outcome is ReserveOutcome.SOLD_OUT:
        text = _("😔 Sorry, <b>{title}</b> just sold out.", title=title)
    elif outcome is ReserveOutcome.NOT_ENOUGH_LEFT:
        text = _("Only {count} left of <b>{title}</b>. Please choose a smaller quantity.",
                 count=units_left, title=title)
        more.insert(0, [button(_("Choose again"), data("offer", offer_id))])
    elif outcome is ReserveOutcome.OVER_LIMIT:
        text = _("You can reserve at most {count} at once.", count=MAX_PER_ORDER)
    else:
        text = _("This offer can't be ordered any more.")
    return Reply(text=text, keyboard=more)


@renders(ReservationRefused)
def _refused(notice: ReservationRefused) -> Reply:
    return refusal(Translator(notice.language), notice.outcome, notice.offer_id, notice.title, notice.units_left)
