"""The pickup pass that follows "✅ Paid": the pickup code as a QR code the counter scans.

The QR code holds ``https://t.me/<bot>?start=pickup_<code>`` (``domain/pickup_pass.py``); the
business owner's phone camera opens the bot with it and the pickup is confirmed
(``chat/business/pickup.py``). The bot's username comes from ``CHECKOUT_RETURN_URL`` when that is
the bot's chat (``https://t.me/<bot>``, where Stripe Checkout sends customers back), else it is the
sandbox bot's. Without either the QR code holds the bare code, which the staff can still read off
their camera and type.
"""

from __future__ import annotations

import base64

from chat.cards import escape
from chat.menus import home_row
from chat.registry import data
from core.i18n import Translator
from core.logging import get_logger
from core.outbox import Reply, button, renders
from core.settings import get_settings
from domain.payments import notices
from domain.pickup_pass import bot_username, pickup_link, qr_png

log = get_logger(__name__)

@renders(notices.PickupPass)
def _pickup_pass(notice: notices.PickupPass) -> Reply:
    _ = Translator(notice.language)
    username = bot_username(get_settings())
    if username is None:
        log.warning("pickup_pass_without_link", order_id=notice.order.id,
                    fix="set CHECKOUT_RETURN_URL=https://t.me/<bot username>")
    link = pickup_link(username, notice.pickup_code) if username else notice.pickup_code
    what = f"<b>{notice.order.quantity} × {escape(notice.offer.title)}</b>"
    text = _("🔳 Your pickup pass for {what}: show this QR code at the counter. Scanning it with a phone camera "
             "confirms your pickup (or they type the code <b>{code}</b>).", what=what, code=notice.pickup_code)
    png = qr_png(link, label=notice.pickup_code)
    return Reply(text=text, photo_upload=base64.b64encode(png).decode(), kind="pickup_pass",
                 keyboard=[[button(_("🧾 My orders"), data("orders")), *home_row(_)]])
