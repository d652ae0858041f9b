"""The pickup pass: the customer's pickup code as a QR code that the counter can scan.

The QR code holds a Telegram deep link, ``https://t.me/<bot>?start=pickup_<code>``. Scanned with
the business owner's phone camera, it opens the bot with ``/start pickup_<code>``, and the chat
(``chat/business/pickup.py``) confirms the pickup through ``domain.offers.confirm_pickup``, exactly
as typing the code in "✅ Confirm pickup" does. Anyone else who scans it is refused.

Pure functions: text in, PNG bytes out.
"""

from __future__ import annotations

import io
import re

import qrcode
from PIL import Image
from qrcode.constants import ERROR_CORRECT_M
from qrcode.image.pil import PilImage

from core.settings import SANDBOX_BOT_USERNAME, Settings
from domain.card_text import draw_text, text_width

__all__ = ["DEEP_LINK_PREFIX", "bot_username", "code_of_scan", "pickup_link", "qr_png"]

DEEP_LINK_PREFIX = "pickup_"
MODULE_PX = 12  # one QR module, in pixels: large enough for a phone camera after Telegram's JPEG
QUIET_ZONE = 4  # modules of white around the code, as the QR standard asks


# Telegram usernames: 5-32 characters, letters, digits and underscores, starting with a letter.
_BOT_CHAT = re.compile(r"https://t\.me/([A-Za-z][A-Za-z0-9_]{4,31})/?")


def bot_username(settings: Settings) -> str | None:
    """The bot's username for t.me links: from CHECKOUT_RETURN_URL if it is the bot's chat, else
    the sandbox bot's in the sandbox; None when neither tells."""
    match = _BOT_CHAT.fullmatch(settings.checkout_return_url or "")
    if match:
        return match.group(1)
    return SANDBOX_BOT_USERNAME if settings.sandbox else None


def pickup_link(bot_username: str, code: str) -> str:
    """The deep link that opens the bot with ``/start pickup_<code>``."""
    return f"https://t.me/{bot_username}?start={DEEP_LINK_PREFIX}{code}"


_SCANNED_LINK = re.compile(r"https?://t\.me/([A-Za-z][A-Za-z0-9_]{4,31})/?\?(?:.*&)?start=" + DEEP_LINK_PREFIX
                           + r"([A-Za-z0-9-]{1,16})(?:&.*)?")
_SCANNED_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,15}")


def code_of_scan(text: str, bot: str | None) -> str | None:
    """The pickup code a scanned QR code holds: a pass's deep link to ``bot`` (any bot's, when
    ``bot`` is None), or a bare code (the pass of a deployment without the bot's username). None
    for anything else: another bot's link, a web address, a payment code, …"""
    text = text.strip()
    link = _SCANNED_LINK.fullmatch(text)
    if link is not None:
        if bot is not None and link.group(1).lower() != bot.lower():
            return None
        return link.group(2).replace("-", "").upper()
    if _SCANNED_CODE.fullmatch(text):
        return re.sub(r"[\s-]", "", text).upper()
    return None


def _qr(data: str) -> qrcode.QRCode:
    # Medium error correction: a scratched screen or a glare still scans; the version (size) is the
    # smallest that holds the data.
    qr = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=MODULE_PX, border=QUIET_ZONE,
                       image_factory=PilImage)
    qr.add_data(data)
    qr.make(fit=True)
    return qr


def qr_png(data: str, label: str = "") -> bytes:
    """A PNG of the QR code for ``data``, with ``label`` (the pickup code, for people) under it."""
    code = _qr(data).make_image().get_image().convert("L")
    if not label:
        out = io.BytesIO()
        code.save(out, "PNG", optimize=True)
        return out.getvalue()
    size = MODULE_PX * 5
    space = size + QUIET_ZONE * MODULE_PX
    im = Image.new("L", (code.width, code.height + space), 255)
    im.paste(code, (0, 0))
    x = max(0, (code.width - text_width(label, size, bold=True)) // 2)
    draw_text(im, x, code.height + size, label, size=size, fill=0, bold=True, shadow=False)
    out = io.BytesIO()
    im.save(out, "PNG", optimize=True)
    return out.getvalue()
