"""How a category, a dietary tag and an allergen read, in the reader's language (domain/tags.py
has the codes and their labels). One place, so the card, the list, the filters and /newoffer say
the same."""

from __future__ import annotations

from collections.abc import Iterable

from core.i18n import Translator
from domain.catalog import Filters
from domain.money import format_money
from domain.tags import ALLERGEN_LABELS, CATEGORY_LABELS, DIET_LABELS, FILTER_NAMES, WHEN_LABELS

__all__ = ["ALLERGEN_LABELS", "CATEGORY_LABELS", "DIET_LABELS", "FILTER_NAMES", "WHEN_LABELS"]

def category(_: Translator, code: str | None) -> str | None:
    return _(CATEGORY_LABELS[code]) if code in CATEGORY_LABELS else None


def diets(_: Translator, codes: Iterable[str]) -> str:
    """The tags in the list's own order (the same in every language), unknown codes left out."""
    chosen = set(codes)
    return ", ".join(_(label) for code, label in DIET_LABELS.items() if code in chosen)


def allergens(_: Translator, codes: Iterable[str]) -> str:
    chosen = set(codes)
    return ", ".join(_(label) for code, label in ALLERGEN_LABELS.items() if code in chosen)


def card_lines(_: Translator, category_code: str | None, diet: Iterable[str],
               allergen_codes: Iterable[str]) -> list[str]:
    """The card's lines about what the offer is: category and diet on one, allergens on the next."""
    lines = []
    eats = diets(_, diet)
    what = [part for part in (category(_, category_code), f"🌱 {eats}" if eats else "") if part]
    if what:
        lines.append(" · ".join(what))
    contains = allergens(_, allergen_codes)
    if contains:
        lines.append(_("⚠️ Contains: {allergens}", allergens=contains))
    return lines


def list_details(_: Translator, category_code: str | None, diet: Iterable[str],
                 allergen_codes: Iterable[str]) -> list[str]:
    """What an offer is, short, for a line of the deal list."""
    details = []
    label = category(_, category_code)
    if label:
        details.append(label)
    eats = diets(_, diet)
    if eats:
        details.append(f"🌱 {eats}")
    contains = allergens(_, allergen_codes)
    if contains:
        details.append(f"⚠️ {contains}")
    return details


def filter_name(_: Translator, name: str) -> str:
    return _(FILTER_NAMES[name]) if name in FILTER_NAMES else name


def price_limit(_: Translator, minor: int) -> str:
    return _("up to {price}", price=format_money(minor, "EUR", _.language))


def filter_summary(_: Translator, filters: Filters, words: str | None = None) -> str:
    """The active filters in a line: "“croissant” · 🥐 Bakery · 🌱 vegan · without gluten · ≤ 5 km"
    (``words``: the search, already made safe for HTML by the caller)."""
    parts = [f"“{words}”"] if words else []
    label = category(_, filters.category)
    if label:
        parts.append(label)
    if filters.diet:
        parts.append("🌱 " + diets(_, filters.diet))
    if filters.avoid:
        parts.append(_("without {allergens}", allergens=allergens(_, filters.avoid)))
    if filters.when is not None:
        parts.append("🕒 " + _(WHEN_LABELS[filters.when.value]))
    if filters.max_price_minor is not None:
        parts.append("💶 " + price_limit(_, filters.max_price_minor))
    if filters.radius_km is not None:
        parts.append(f"📍 ≤ {filters.radius_km} km")
    return " · ".join(parts)
