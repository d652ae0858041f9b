"""Inline mode: typing `@bot croissant` in any chat offers the matching deals as cards; sending one
posts the deal with a button that opens it in the bot (t.me/<bot>?start=offer_<id>).

The words are searched as /deals searches them (domain.catalog, newest first); no words: the
newest deals. Nothing is remembered: the person may not even have talked to the bot yet.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session
from telegram import InlineQuery

from chat.cards import offer_caption
from chat.messages.pickup import bot_username
from core.i18n import Translator, pick_language
from core.settings import get_settings
from domain import catalog
from domain.catalog import Filters, Sort
from domain.money import format_money
from models import User


def results(session: Session, query: InlineQuery) -> list[dict[str, str]]:
    """The articles answering an inline query, in the asker's language (empty without a bot username)."""
    username = bot_username(get_settings())
    if username is None:
        return []
    user = session.get(User, query.from_user.id)
    _ = Translator(user.language if user is not None else pick_language(query.from_user.language_code))
    now = datetime.now(UTC)
    page = catalog.browse(session, now, Sort.NEWEST, filters=Filters(words=catalog.search_words(query.query or "")))
    articles = []
    for item in page.items:
        offer, business = item.offer, item.business
        price = format_money(offer.price_minor, offer.currency, _.language)
        articles.append({
            "id": str(offer.id),
            "title": f"{offer.title} · {price}",
            "description": _("{business} · {left} left", business=business.name, left=offer.units_left),
            "text": offer_caption(_, offer, business, now),
            "url": f"https://t.me/{username}?start=offer_{offer.id}",
            "url_text": _("🛒 Open in the bot"),
        })
    return articles
