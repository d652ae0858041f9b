"""Translations through gettext catalogs (locales/<lang>/LC_MESSAGES/messages.po).

The .po files are compiled in memory on first use with Babel, so there is no build step and no
stale .mo file. English is the source language; other languages fall back to it per message.
"""

from __future__ import annotations

import functools
import gettext
import io
from pathlib import Path

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

LOCALES_DIR = Path(__file__).resolve().parent.parent / "locales"
DEFAULT_LANGUAGE = "en"
LANGUAGE_NAMES = {"en": "English", "de": "Deutsch"}
SUPPORTED_LANGUAGES = tuple(LANGUAGE_NAMES)


def N_(message: str) -> str:
    """Marks a message for extraction where it is translated later (e.g. in a table)."""
    return message


def pick_language(telegram_language_code: str | None) -> str:
    """Our language for a Telegram `language_code` such as "de-AT" (first contact)."""
    if telegram_language_code:
        base = telegram_language_code.split("-")[0].lower()
        if base in SUPPORTED_LANGUAGES:
            return base
    return DEFAULT_LANGUAGE


@functools.cache
def translations(language: str) -> gettext.NullTranslations:
    po_file = LOCALES_DIR / language / "LC_MESSAGES" / "messages.po"
    if language == DEFAULT_LANGUAGE or not po_file.exists():
        return gettext.NullTranslations()
    with po_file.open("rb") as handle:
        catalog = read_po(handle, locale=language)
    buffer = io.BytesIO()
    write_mo(buffer, catalog)
    buffer.seek(0)
    return gettext.GNUTranslations(buffer)


class Translator:
    """`_ = Translator("de")`, then `_("Hello {name}", name=...)` — formatting after lookup.

    A sentence with a count in it takes the form for that count (each language has its own plural
    rule, from its catalog's Plural-Forms header):
    `_.ngettext("{count} order is refunded.", "{count} orders are refunded.", n)`; `{count}` is `n`
    unless given. Babel extracts both forms (the `ngettext` keyword, see `make messages`)."""

    def __init__(self, language: str) -> None:
        self.language = language if language in SUPPORTED_LANGUAGES else DEFAULT_LANGUAGE
        self._catalog = translations(self.language)

    def __call__(self, message: str, **values: object) -> str:
        text = self._catalog.gettext(message)
        return text.format(**values) if values else text

    def ngettext(self, singular: str, plural: str, n: int, **values: object) -> str:
        text = self._catalog.ngettext(singular, plural, n)
        return text.format(**{"count": n, **values})
