"""What an offer is: one category, dietary tags, and the allergens it contains.

The values are stable codes stored on the offer (``offers.category``, ``offers.diet``,
``offers.allergens``); the chat words them in the reader's language (chat/tags.py). Allergens are
the fourteen the EU requires food businesses to declare (Regulation (EU) No 1169/2011, Annex II).
"""

from __future__ import annotations

from collections.abc import Iterable

from domain.offers import InvalidInput

CATEGORIES = ("bakery", "meals", "groceries", "produce", "dairy", "other")

DIETS = ("vegetarian", "vegan", "gluten_free", "lactose_free", "halal", "kosher", "organic")

ALLERGENS = (
    "gluten", "crustaceans", "eggs", "fish", "peanuts", "soy", "milk", "nuts",
    "celery", "mustard", "sesame", "sulphites", "lupin", "molluscs",
)  # fmt: skip


def check_category(value: str | None) -> str | None:
    if value is not None and value not in CATEGORIES:
        raise InvalidInput("category_unknown")
    return value


def _known(values: Iterable[str], known: tuple[str, ...], reason: str) -> list[str]:
    chosen = set(values)
    if not chosen <= set(known):
        raise InvalidInput(reason)
    return [value for value in known if value in chosen]  # in the list's order, once each


def check_diet(values: Iterable[str]) -> list[str]:
    return _known(values, DIETS, "diet_unknown")


def check_allergens(values: Iterable[str]) -> list[str]:
    return _known(values, ALLERGENS, "allergen_unknown")


def toggle(values: Iterable[str], value: str, known: tuple[str, ...]) -> list[str]:
    """A multi-select tap: ``value`` in if it was out, out if it was in (unknown values: unchanged)."""
    chosen = set(values)
    if value in known:
        chosen ^= {value}
    return [item for item in known if item in chosen]
