"""Every message the code can show has a translation with the same placeholders."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from babel.messages.pofile import read_po

from core.i18n import LOCALES_DIR, SUPPORTED_LANGUAGES, Translator, pick_language

ROOT = Path(__file__).resolve().parents[2]
PLACEHOLDER = re.compile(r"\{(\w+)\}")


def extracted_messages(tmp_path: Path) -> set[str | tuple[str, str]]:
    """Every message the code can show: a string, or (singular, plural) for a count's sentence."""
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_", "-k", "N_",
         "-k", "ngettext:1,2", "-o", str(pot), "--no-location", "--omit-header", "."],
        cwd=ROOT, check=True, capture_output=True,
    )
    with pot.open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


@pytest.mark.parametrize("language", [lang for lang in SUPPORTED_LANGUAGES if lang != "en"])
def test_every_message_is_translated(tmp_path, language):
    with (LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        po = read_po(handle, locale=language)
    catalog = {m.id: m.string for m in po if m.id}
    plurals = po.num_plurals
    missing = []
    for message in extracted_messages(tmp_path):
        translated = catalog.get(message)
        if isinstance(message, tuple):  # every plural form of a count's sentence
            if not isinstance(translated, tuple) or len(translated) != plurals or not all(translated):
                missing.append(message)
        elif not translated:
            missing.append(message)
    assert missing == [], f"untranslated in {language} (run `make messages`): {missing}"
    for source, translated in catalog.items():
        sources = source if isinstance(source, tuple) else (source,)
        expected = set().union(*(PLACEHOLDER.findall(s) for s in sources))
        for text in translated if isinstance(translated, tuple) else (translated,):
            assert set(PLACEHOLDER.findall(text)) == expected, source


def test_translator_formats_after_lookup_and_falls_back():
    assert Translator("de")("Main menu") == "Hauptmenü"
    assert Translator("en")("Main menu") == "Main menu"
    assert Translator("xx")("Main menu") == "Main menu"  # unknown language → English


@pytest.mark.parametrize(
    ("code", "expected"), [("de", "de"), ("de-AT", "de"), ("DE", "de"), ("en-GB", "en"), ("fr", "en"), (None, "en")]
)
def test_language_from_telegram_code(code, expected):
    assert pick_language(code) == expected


def test_a_sentence_with_a_count_takes_the_form_for_that_count():
    english, german = Translator("en"), Translator("de")
    one = german.ngettext("{count} paid order is being refunded.", "{count} paid orders are being refunded.", 1)
    two = german.ngettext("{count} paid order is being refunded.", "{count} paid orders are being refunded.", 2)
    assert (one, two) == ("1 bezahlte Bestellung wird erstattet.", "2 bezahlte Bestellungen werden erstattet.")
    assert english.ngettext("{count} paid order is being refunded.", "{count} paid orders are being refunded.",
                            1) == "1 paid order is being refunded."
    assert english.ngettext("{count} reservation released.", "{count} reservations released.", 0) \
        == "0 reservations released."
    assert english.ngettext("{taken} unit is taken.", "{taken} units are taken.", 3, taken=3) == "3 units are taken."


def test_the_german_catalog_has_two_plural_forms():
    with (LOCALES_DIR / "de" / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        po = read_po(handle, locale="de")
    assert po.num_plurals == 2 and "n != 1" in po.plural_expr
