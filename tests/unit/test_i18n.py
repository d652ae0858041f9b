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


def extracted_messages(tmp_path: Path) -> set[str]:
    pot = tmp_path / "messages.pot"
    subprocess.run(
        [sys.executable, "-m", "babel.messages.frontend", "extract", "-F", "babel.cfg", "-k", "_", "-k", "N_",
         "-o", str(pot), "--no-location", "--omit-header", "."],
        cwd=ROOT, check=True, capture_output=True,
    )
    with pot.open("rb") as handle:
        return {m.id for m in read_po(handle) if m.id}


@pytest.mark.parametrize("language", [lang for lang in SUPPORTED_LANGUAGES if lang != "en"])
def test_every_message_is_translated(tmp_path, language):
    with (LOCALES_DIR / language / "LC_MESSAGES" / "messages.po").open("rb") as handle:
        catalog = {m.id: m.string for m in read_po(handle, locale=language) if m.id}
    missing = [m for m in extracted_messages(tmp_path) if not catalog.get(m)]
    assert missing == [], f"untranslated in {language} (run `make messages`): {missing}"
    for source, translated in catalog.items():
        assert set(PLACEHOLDER.findall(source)) == set(PLACEHOLDER.findall(translated)), source


def test_translator_formats_after_lookup_and_falls_back():
    assert Translator("de")("Main menu") == "Hauptmenü"
    assert Translator("en")("Main menu") == "Main menu"
    assert Translator("xx")("Main menu") == "Main menu"  # unknown language → English


@pytest.mark.parametrize(
    ("code", "expected"), [("de", "de"), ("de-AT", "de"), ("DE", "de"), ("en-GB", "en"), ("fr", "en"), (None, "en")]
)
def test_language_from_telegram_code(code, expected):
    assert pick_language(code) == expected
