"""How the chat words things, checked on its pure functions: plurals in both languages, user text
isolated from the sentence around it, the admin's review card and buttons."""

from __future__ import annotations

import pytest

from chat.business.texts import input_error
from chat.messages.orders import describe_cancellation, refusal
from core.i18n import Translator
from core.settings import get_settings
from domain.offers import InvalidInput
from domain.reservations import ReserveOutcome

EN, DE = Translator("en"), Translator("de")


def plain(text: str) -> str:
    """The text without the direction isolates around user text."""
    return text.replace("\u2068", "").replace("\u2069", "")


# --------------------------------------------------------------------------- plurals


@pytest.mark.parametrize(("taken", "english", "german"), [
    (1, "❗ 1 unit is already sold or reserved", "❗ 1 Einheit ist schon verkauft"),
    (4, "❗ 4 units are already sold or reserved", "❗ 4 Einheiten sind schon verkauft"),
])
def test_units_already_taken_agree_with_their_count(taken, english, german):
    error = InvalidInput("quantity_below_taken", taken=taken)
    assert input_error(EN, error).startswith(english)
    assert input_error(DE, error).startswith(german)


@pytest.mark.parametrize(("left", "english", "german"), [
    (1, "Only 1 is left of <b>Soup</b>", "Von <b>Soup</b> ist nur noch 1 übrig"),
    (3, "Only 3 are left of <b>Soup</b>", "Von <b>Soup</b> sind nur noch 3 übrig"),
])
def test_too_few_left_agrees_with_the_count(left, english, german):
    assert english in plain(refusal(EN, ReserveOutcome.NOT_ENOUGH_LEFT, 7, "Soup", left).text)
    assert german in plain(refusal(DE, ReserveOutcome.NOT_ENOUGH_LEFT, 7, "Soup", left).text)


def test_a_one_minute_cut_off_reads_in_the_singular(monkeypatch):
    from domain.payments.cancellation import CancellationOutcome

    monkeypatch.setenv("CANCELLATION_CUTOFF_MINUTES", "1")
    get_settings.cache_clear()
    try:
        assert "until 1 minute before" in describe_cancellation(EN, CancellationOutcome.TOO_LATE)
        assert "bis 1 Minute vor" in describe_cancellation(DE, CancellationOutcome.TOO_LATE)
    finally:
        monkeypatch.undo()
        get_settings.cache_clear()
    assert "minutes before" in describe_cancellation(EN, CancellationOutcome.TOO_LATE)


def test_a_daily_summary_of_one_item_says_item():
    from chat.messages.reminders import daily_summary
    from domain.maintenance import DailySummary

    day = {"business_name": "Sonne", "day": "2026-11-23", "offers": 1, "collected": 0, "revenue": (("EUR", 350),)}
    assert "Paid orders: 1 (1 item)" in daily_summary(DailySummary("en", orders=1, units=1, **day)).text
    assert "Paid orders: 2 (3 items)" in daily_summary(DailySummary("en", orders=2, units=3, **day)).text


# --------------------------------------------------------------------------- user text in sentences


def test_user_text_is_isolated_and_cannot_close_the_isolate_itself():
    from chat.cards import isolate, user_text

    assert isolate("كعك 🥐") == "\u2068كعك 🥐\u2069"
    assert isolate("a\u2069b\u2066") == "\u2068ab\u2069"  # its own marks cannot end ours early
    assert user_text("<b>שלום</b> & co") == "\u2068&lt;b&gt;שלום&lt;/b&gt; &amp; co\u2069"


# --------------------------------------------------------------------------- the admin's review


def test_the_review_card_names_the_owner_and_every_decision_fits_its_button():
    from chat.business.registration import business_card, review_keyboard
    from models import Business, User

    business = Business(id=7, name="مخبز Sonne", address="Hauptstraße 1", phone="+49301234567", owner_id=2001)
    card = business_card(EN, business, User(id=2001, first_name="Greta", username="greta_bakes"))
    assert "👤 \u2068Greta\u2069 @greta_bakes (Telegram id 2001)" in card
    assert "\u2068مخبز Sonne\u2069" in card and "Telegram user" not in card
    assert "👤 Telegram user 2001" in business_card(EN, business, None)  # nothing more known (erased)
    assert "👤 \u2068Greta\u2069 (Telegram-ID 2001)" in business_card(DE, business, User(id=2001, first_name="Greta"))
    rows = review_keyboard(EN, 7)
    assert max(len(row) for row in rows) <= 2
    assert [b["callback_data"] for row in rows for b in row] == ["bizrev:verify:7", "bizrev:reject:7",
                                                                 "bizrev:suspend:7"]
