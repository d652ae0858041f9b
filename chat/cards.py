"""How an offer looks in the chat, the same for customers and for its business: a caption for
the deal card photo (or a text message when there is no photo yet)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from core.i18n import Translator
from domain.money import discount_percent, format_money
from models import Business, Offer, OfferStatus


def escape(text: str) -> str:
    """User-provided text in HTML parse mode (our replies use HTML)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def local_time(moment: datetime, timezone: str) -> datetime:
    return moment.astimezone(ZoneInfo(timezone))


def format_window(_: Translator, start: datetime, end: datetime, timezone: str, now: datetime) -> str:
    """"today 18:00–19:30", "tomorrow 08:00–09:00" or "Mon 24.11. 18:00–19:30", in the business's zone."""
    start_local, end_local = local_time(start, timezone), local_time(end, timezone)
    today = local_time(now, timezone).date()
    days = (start_local.date() - today).days
    if days == 0:
        day = _("today")
    elif days == 1:
        day = _("tomorrow")
    else:
        day = start_local.strftime("%d.%m.")
    return f"{day} {start_local:%H:%M}–{end_local:%H:%M}"


def status_label(_: Translator, status: OfferStatus) -> str:
    return {
        OfferStatus.DRAFT: _("draft"),
        OfferStatus.ACTIVE: _("active"),
        OfferStatus.PAUSED: _("paused"),
        OfferStatus.SOLD_OUT: _("sold out"),
        OfferStatus.EXPIRED: _("expired"),
        OfferStatus.CANCELLED: _("cancelled"),
    }[status]


def offer_caption(_: Translator, offer: Offer, business: Business, now: datetime,
                  distance_km: float | None = None) -> str:
    price = format_money(offer.price_minor, offer.currency, _.language)
    original = format_money(offer.original_price_minor, offer.currency, _.language)
    discount = discount_percent(offer.price_minor, offer.original_price_minor)
    lines = [f"<b>{escape(offer.title)}</b>"]
    if offer.description:
        lines.append(escape(offer.description))
    lines.append("")
    lines.append(_("💶 <b>{price}</b> instead of <s>{original}</s> (−{discount} %)",
                   price=price, original=original, discount=discount))
    lines.append(_("🕒 Pickup {window}",
                   window=format_window(_, offer.pickup_start, offer.pickup_end, business.timezone, now)))
    place = f"🏪 {escape(business.name)}, {escape(business.address)}"
    if distance_km is not None:
        place += f" · {format_distance(distance_km)}"
    lines.append(place)
    if offer.status == OfferStatus.ACTIVE:
        lines.append(_("📦 {count} left", count=offer.units_left))
    else:
        lines.append(_("Status: {status}", status=status_label(_, offer.status)))
    return "\n".join(lines)


def format_distance(km: float) -> str:
    return f"{km * 1000:.0f} m" if km < 1 else f"{km:.1f} km"
