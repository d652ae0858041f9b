"""A scanned pickup pass: ``/start pickup_<code>``, which Telegram sends when the business owner's
phone camera opens the QR code the customer got with "✅ Paid" (``domain/pickup_pass.py``).

The owner of the business the order is from gets the pickup confirmed, through the same domain
function as typing the code under "✅ Confirm pickup" (``domain.offers.confirm_pickup``), and the
same answers: handed over, already collected, not paid. Anyone else who scans it (the customer,
another business, a passer-by) is politely refused, and nothing changes or is revealed.
"""

from __future__ import annotations

from chat.business.manage import show_offer, tell_collected
from chat.business.texts import now
from chat.cards import escape
from chat.context import Context
from chat.menus import home_row
from chat.registry import deep_link
from domain import offers
from domain.pickup_pass import DEEP_LINK_PREFIX


@deep_link(DEEP_LINK_PREFIX)
def scan_pickup_pass(ctx: Context, rest: str) -> None:
    _ = ctx._
    code = offers.normalize_pickup_code(rest)
    offer_id = offers.offer_of_pickup_code(ctx.session, ctx.user.id, code) if code.isalnum() else None
    if offer_id is None:
        ctx.reply(_("🔒 Only the business this order is from can confirm its pickup. If it is your order, "
                    "show this QR code at the counter."), [home_row(_)])
        return
    result = offers.confirm_pickup(ctx.session, offer_id, ctx.user.id, code, now())
    offer = offers.owned_offer(ctx.session, offer_id, ctx.user.id)
    shown = escape(code)
    if result.outcome == "collected":
        order = result.order
        assert order is not None, "confirm_pickup() returns the order it marked collected"
        tell_collected(ctx.session, offer, order)
        show_offer(ctx, offer, _("✅ Code {code} is valid: hand over {quantity}× {title}. The order is marked "
                                 "collected.", code=shown, quantity=order.quantity, title=escape(offer.title)))
    elif result.outcome == "already_collected":
        show_offer(ctx, offer, _("⚠️ The order with code {code} was already collected. Don't hand it over twice.",
                                 code=shown))
    else:  # "not_paid": found by its code, so never "not_found"
        show_offer(ctx, offer, _("⚠️ The order with code {code} is not paid (or was cancelled). Don't hand it over.",
                                 code=shown))
