"""How an offer looks in the chat, the same for customers and for its business: a caption for
the deal card photo (or a text message when there is no photo yet)."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

from chat import tags
from core.i18n import Translator
from domain.money import discount_percent, format_money
from models import Business, Offer, OfferStatus

FSI, PDI = "\u2068", "\u2069"  # FIRST STRONG ISOLATE, POP DIRECTIONAL ISOLATE
_ISOLATE_MARKS = dict.fromkeys(map(ord, "\u2066\u2067\u2068\u2069"))


def escape(text: str) -> str:
    """Text in HTML parse mode (our replies use HTML), so it is not read as markup."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def isolate(text: str) -> str:
    """User-provided text (an offer's title, a business's name or address, a person's name) as a
    unit of its own direction, for a button label or a sentence: wrapped in FSI … PDI. Without
    it an Arabic or Hebrew title next to Latin words, digits and emoji reorders the line or the
    button around it. Isolate marks inside the text are dropped, so it cannot close ours early.
    Cut a long text (for a button) before isolating it, never after."""
    return FSI + text.translate(_ISOLATE_MARKS) + PDI


def user_text(text: str) -> str:
    """User-provided text inside an HTML reply: isolated (see `isolate`) and escaped."""
    return escape(isolate(text))


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


def format_rating(_: Translator, average: float, count: int) -> str:
    """"⭐ 4.6 (12 ratings)"."""
    return _.ngettext("⭐ {average} ({count} rating)", "⭐ {average} ({count} ratings)", count,
                      average=f"{average:.1f}", count=count)


def offer_caption(_: Translator, offer: Offer, business: Business, now: datetime,
                  distance_km: float | None = None, rating: tuple[float, int] | None = None) -> str:
    """The card's text; ``rating`` (average, count) only once it is shown (domain.ratings.MIN_SHOWN)."""
    price = format_money(offer.price_minor, offer.currency, _.language)
    original = format_money(offer.original_price_minor, offer.currency, _.language)
    discount = discount_percent(offer.price_minor, offer.original_price_minor)
    lines = [f"<b>{user_text(offer.title)}</b>"]
    if offer.description:
        lines.append(user_text(offer.description))
    lines.append("")
    lines.append(_("💶 <b>{price}</b> instead of <s>{original}</s> (−{discount} %)",
                   price=price, original=original, discount=discount))
    lines.append(_("🕒 Pickup {window}",
                   window=format_window(_, offer.pickup_start, offer.pickup_end, business.timezone, now)))
    lines.extend(tags.card_lines(_, offer.category, offer.diet, offer.allergens))
    place = f"🏪 {user_text(business.name)}, {user_text(business.address)}"
    if distance_km is not None:
        place += f" · {format_distance(distance_km)}"
    lines.append(place)
    if rating is not None:
        lines.append(format_rating(_, *rating))
    if offer.status == OfferStatus.ACTIVE:
        lines.append(_("📦 {count} left", count=offer.units_left))
    else:
        lines.append(_("Status: {status}", status=status_label(_, offer.status)))
    return "\n".join(lines)


def format_distance(km: float) -> str:
    return f"{km * 1000:.0f} m" if km < 1 else f"{km:.1f} km"
