"""What an offer is: one category, dietary tags, and the allergens it contains.

The values are stable codes stored on the offer (``offers.category``, ``offers.diet``,
``offers.allergens``); the chat words them in the reader's language (chat/tags.py). Allergens are
the fourteen the EU requires food businesses to declare (Regulation (EU) No 1169/2011, Annex II).
"""

from __future__ import annotations

from collections.abc import Iterable

CATEGORIES = ("bakery", "meals", "groceries", "produce", "dairy", "other")

DIETS = ("vegetarian", "vegan", "gluten_free", "lactose_free", "halal", "kosher", "organic")

ALLERGENS = (
    "gluten", "crustaceans", "eggs", "fish", "peanuts", "soy", "milk", "nuts",
    "celery", "mustard", "sesame", "sulphites", "lupin", "molluscs",
)  # fmt: skip


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
