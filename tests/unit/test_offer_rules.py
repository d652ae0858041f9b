"""What a business types, checked by pure functions: money, quantities, pickup windows, phone
numbers and names. Bad input raises InvalidInput with a code the chat turns into a message."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain import businesses, offers
from domain.offers import InvalidInput

BERLIN = "Europe/Berlin"


def code_of(function, *args, **kwargs) -> str:
    with pytest.raises(InvalidInput) as raised:
        function(*args, **kwargs)
    return raised.value.code


# ----------------------------------------------------------------------------- money


@pytest.mark.parametrize(("typed", "minor"), [
    ("4.50", 450), ("4,50", 450), ("4 €", 400), ("€4.5", 450), ("4", 400), (" 12.05 ", 1205), ("EUR 3", 300),
    ("3 euro", 300), ("0.01", 1), ("1000", 100_000), ("1000.00", 100_000), ("4,5 €", 450),
])
def test_money_as_typed_becomes_minor_units(typed, minor):
    assert offers.parse_money(typed) == minor


@pytest.mark.parametrize(("typed", "code"), [
    ("abc", "money_format"), ("", "money_format"), ("4.505", "money_format"), ("1.000", "money_format"),
    ("4.50.1", "money_format"), ("4 50", "money_format"), ("1e3", "money_format"), ("NaN", "money_format"),
    ("-3", "money_not_positive"), ("- 3", "money_not_positive"), ("−3,50", "money_not_positive"),
    ("0", "money_not_positive"), ("0,00", "money_not_positive"),
    ("1000.01", "money_too_high"), ("99999", "money_too_high"), ("9999999", "money_too_high"),
    ("١٢", "money_format"),  # other scripts' digits are not read as an amount
])
def test_bad_money_is_refused_with_a_reason(typed, code):
    assert code_of(offers.parse_money, typed) == code


def test_money_follows_the_currency_minor_unit():
    assert offers.parse_money("500", "JPY") == 500
    assert code_of(offers.parse_money, "5.5", "JPY") == "money_format"
    assert offers.parse_money("1.234", "KWD") == 1234


@given(st.integers(min_value=1, max_value=100_000), st.sampled_from([".", ","]), st.sampled_from(["", " €", "€"]))
def test_formatted_amounts_read_back_exactly(minor, separator, mark):
    typed = f"{minor // 100}{separator}{minor % 100:02d}"
    typed = f"{mark}{typed}" if mark == "€" else f"{typed}{mark}"
    assert offers.parse_money(typed) == minor


@given(st.text(max_size=30))
def test_any_text_is_either_a_valid_amount_or_a_clear_refusal(typed):
    try:
        minor = offers.parse_money(typed)
    except InvalidInput as error:
        assert error.code in {"money_format", "money_not_positive", "money_too_high"}
    else:
        assert 0 < minor <= offers.MAX_PRICE_MAJOR * 100


def test_a_deal_must_be_a_discount():
    offers.check_discount(450, 900)
    assert code_of(offers.check_discount, 900, 900) == "not_a_discount"
    assert code_of(offers.check_discount, 900, 450) == "not_a_discount"


# ----------------------------------------------------------------------------- quantity


@pytest.mark.parametrize(("typed", "quantity"), [("1", 1), (" 12 ", 12), ("500", 500), ("007", 7)])
def test_quantities(typed, quantity):
    assert offers.parse_quantity(typed) == quantity


@pytest.mark.parametrize(("typed", "code"), [
    ("0", "quantity_range"), ("-1", "quantity_range"), ("501", "quantity_range"), ("1000000", "quantity_range"),
    ("abc", "quantity_format"), ("1.5", "quantity_format"), ("", "quantity_format"), ("5 bags", "quantity_format"),
])
def test_bad_quantities(typed, code):
    assert code_of(offers.parse_quantity, typed) == code


@given(st.integers())
def test_quantity_accepted_exactly_in_range(n):
    if 1 <= n <= 500:
        assert offers.parse_quantity(str(n)) == n
    else:
        assert code_of(offers.parse_quantity, str(n)) in {"quantity_range", "quantity_format"}


# ----------------------------------------------------------------------------- pickup window

NOON = datetime(2026, 6, 15, 10, 0, tzinfo=UTC)  # 12:00 in Berlin (summer time)
TODAY = date(2026, 6, 15)


@pytest.mark.parametrize("typed", ["18:00-19:30", "18.00 – 19.30", "18-19:30", "18:00 to 19:30", "18h00-19h30",
                                   "18:00—19:30", "18:00 bis 19:30"])
def test_window_in_the_business_time_zone(typed):
    start, end = offers.parse_time_window(typed, TODAY, BERLIN, NOON)
    assert start == datetime(2026, 6, 15, 16, 0, tzinfo=UTC)
    assert end == datetime(2026, 6, 15, 17, 30, tzinfo=UTC)
    assert start.tzinfo is not None


def test_window_tomorrow_and_in_winter_time():
    winter_now = datetime(2026, 1, 10, 10, 0, tzinfo=UTC)
    day = offers.pickup_day("tomorrow", BERLIN, winter_now)
    assert day == date(2026, 1, 11)
    start, end = offers.parse_time_window("08:00-09:00", day, BERLIN, winter_now)
    assert (start.hour, end.hour) == (7, 8)  # UTC+1 in January


def test_today_is_the_business_local_day():
    late_utc = datetime(2026, 6, 15, 22, 30, tzinfo=UTC)  # already 00:30 on the 16th in Berlin
    assert offers.pickup_day("today", BERLIN, late_utc) == date(2026, 6, 16)


@pytest.mark.parametrize(("typed", "code"), [
    ("19:30-18:00", "window_order"), ("18:00-18:00", "window_order"), ("22:00-01:00", "window_order"),
    ("08:00-09:00", "window_past"), ("11:00-12:10", "window_past"),  # over, or ends within 15 minutes
    ("soon", "window_format"), ("25:00-26:00", "window_format"), ("18:75-19:00", "window_format"),
    ("18:00", "window_format"), ("", "window_format"), ("06:00-20:00", "window_long"),
])
def test_bad_windows(typed, code):
    assert code_of(offers.parse_time_window, typed, TODAY, BERLIN, NOON) == code


def test_a_window_that_started_but_has_not_ended_is_fine():
    start, end = offers.parse_time_window("11:00-13:00", TODAY, BERLIN, NOON)
    assert start < NOON < end


@given(st.integers(0, 23), st.integers(0, 59), st.integers(1, 12 * 60))
def test_windows_are_ordered_and_bounded(hour, minute, length):
    start_local = datetime(2026, 6, 16, hour, minute, tzinfo=ZoneInfo(BERLIN))
    end_local = start_local + timedelta(minutes=length)
    typed = f"{start_local:%H:%M}-{end_local:%H:%M}"
    try:
        start, end = offers.parse_time_window(typed, date(2026, 6, 16), BERLIN, NOON)
    except InvalidInput as error:
        assert end_local.date() != start_local.date() and error.code == "window_order"
    else:
        assert start < end and end - start <= offers.WINDOW_MAX_LENGTH and end > NOON


# ----------------------------------------------------------------------------- text fields


def test_titles_are_cleaned_and_bounded():
    assert offers.parse_title("  Surprise\u202e   bag\n ") == "Surprise bag"
    assert code_of(offers.parse_title, "ab") == "title_short"
    assert code_of(offers.parse_title, "x" * 81) == "title_long"
    assert code_of(offers.parse_description, "y" * 401) == "description_long"
    assert offers.parse_description("Bread\n\n\n\nand rolls") == "Bread\n\nand rolls"


@pytest.mark.parametrize(("typed", "phone"), [
    ("+49 30 1234567", "+49301234567"), ("030/123 45-67", "0301234567"), ("0049 (30) 1234567", "+49301234567"),
])
def test_phone_numbers(typed, phone):
    assert businesses.parse_phone(typed) == phone


@pytest.mark.parametrize("typed", ["abc", "12345", "+49 30 call me", "1" * 16, "", "+"])
def test_bad_phone_numbers(typed):
    assert code_of(businesses.parse_phone, typed) == "phone_format"


def test_names_and_addresses():
    assert businesses.parse_name("  Bäckerei   Schmidt ") == "Bäckerei Schmidt"
    assert code_of(businesses.parse_name, "B") == "name_short"
    assert code_of(businesses.parse_address, "12345") == "address_short"
    assert code_of(businesses.check_location, 91.0, 0.0) == "location_invalid"


def test_pickup_codes_are_normalised():
    assert offers.normalize_pickup_code(" abc-234 ") == "ABC234"


def test_csv_cells_cannot_become_formulas():
    assert offers.csv_safe("=HYPERLINK(1)") == "'=HYPERLINK(1)"
    assert offers.csv_safe("Plain") == "Plain"


def test_every_rule_has_a_message():
    from chat.business.texts import input_error, photo_rejection
    from core.i18n import Translator
    from domain.images import REJECTION_REASONS

    codes = ["title_short", "title_long", "description_long", "money_format", "money_not_positive",
             "money_too_high", "not_a_discount", "quantity_format", "quantity_range", "quantity_below_taken",
             "window_format", "window_order", "window_long", "window_past", "name_short", "name_long",
             "address_short", "address_long", "phone_format", "reason_short", "location_invalid"]
    for language in ("en", "de"):
        _ = Translator(language)
        fallback = input_error(_, InvalidInput("no_such_code"))
        for code in codes:
            message = input_error(_, InvalidInput(code, min=1, max=2, taken=3, hours=12))
            assert message != fallback and "{" not in message, code
        fallback = photo_rejection(_, "no_such_reason")
        for reason in REJECTION_REASONS:
            assert photo_rejection(_, reason) != fallback, reason
