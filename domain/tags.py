"""What an offer is: one category, dietary tags, and the allergens it contains.

The values are stable codes stored on the offer (``offers.category``, ``offers.diet``,
``offers.allergens``). Each has its label here, and so have the /deals filters: the one sentence the
chat (chat/tags.py) and the Mini App (webapp/) both translate for the reader, so the two say the
same. Allergens are the fourteen the EU requires food businesses to declare (Regulation (EU)
No 1169/2011, Annex II).
"""

from __future__ import annotations

from collections.abc import Iterable

from core.i18n import N_

CATEGORIES = ("bakery", "meals", "groceries", "produce", "dairy", "other")

DIETS = ("vegetarian", "vegan", "gluten_free", "lactose_free", "halal", "kosher", "organic")

ALLERGENS = (
    "gluten", "crustaceans", "eggs", "fish", "peanuts", "soy", "milk", "nuts",
    "celery", "mustard", "sesame", "sulphites", "lupin", "molluscs",
)  # fmt: skip


CATEGORY_LABELS = {
    "bakery": N_("🥐 Bakery"),
    "meals": N_("🍲 Meals"),
    "groceries": N_("🛒 Groceries"),
    "produce": N_("🥕 Fruit & vegetables"),
    "dairy": N_("🧀 Dairy"),
    "other": N_("📦 Other"),
}

DIET_LABELS = {
    "vegetarian": N_("vegetarian"),
    "vegan": N_("vegan"),
    "gluten_free": N_("gluten-free"),
    "lactose_free": N_("lactose-free"),
    "halal": N_("halal"),
    "kosher": N_("kosher"),
    "organic": N_("organic"),
}

ALLERGEN_LABELS = {
    "gluten": N_("gluten"),
    "crustaceans": N_("crustaceans"),
    "eggs": N_("eggs"),
    "fish": N_("fish"),
    "peanuts": N_("peanuts"),
    "soy": N_("soy"),
    "milk": N_("milk"),
    "nuts": N_("nuts"),
    "celery": N_("celery"),
    "mustard": N_("mustard"),
    "sesame": N_("sesame"),
    "sulphites": N_("sulphites"),
    "lupin": N_("lupin"),
    "molluscs": N_("molluscs"),
}

WHEN_LABELS = {
    "now": N_("now"),
    "tonight": N_("tonight"),
    "tomorrow": N_("tomorrow"),
}

FILTER_NAMES = {
    "words": N_("your search"),
    "category": N_("category"),
    "diet": N_("diet"),
    "avoid": N_("allergens to avoid"),
    "when": N_("pickup time"),
    "max_price_minor": N_("maximum price"),
    "radius_km": N_("distance"),
}


def category(value: str | None) -> str | None:
    """A known category, else None (no category)."""
    return value if value in CATEGORIES else None


def known(values: Iterable[str], vocabulary: tuple[str, ...]) -> list[str]:
    """The known values among ``values``, once each, in the vocabulary's order."""
    chosen = set(values)
    return [value for value in vocabulary if value in chosen]


def toggle(values: Iterable[str], value: str, vocabulary: tuple[str, ...]) -> list[str]:
    """A multi-select tap: ``value`` in if it was out, out if it was in (unknown values: unchanged)."""
    chosen = set(known(values, vocabulary))
    if value in vocabulary:
        chosen ^= {value}
    return known(chosen, vocabulary)
