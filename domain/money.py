"""Money as the marketplace shows it: amounts in integer minor units with an ISO 4217 code.

One home for formatting and discounts, used by the chat, the deal card image and the domain alike,
so the price on the deal card reads exactly as it does in the chat next to it.
"""

from __future__ import annotations

import copy
import re
from decimal import Decimal
from functools import lru_cache

from babel import Locale, UnknownLocaleError
from babel.numbers import NumberPattern, format_currency

# ISO 4217 currencies whose minor unit is not 1/100.
_ZERO_DECIMAL = frozenset(
    ["BIF", "CLP", "DJF", "GNF", "ISK", "JPY", "KMF", "KRW", "PYG", "RWF", "UGX", "VND", "VUV", "XAF", "XOF", "XPF"]
)
_THREE_DECIMAL = frozenset(["BHD", "IQD", "JOD", "KWD", "LYD", "OMR", "TND"])


def money_parts(minor: int, currency: str) -> tuple[str, str, str]:
    """(sign, amount digits, upper-case ISO code) for an integer amount in minor units."""
    if isinstance(minor, bool) or not isinstance(minor, int):
        raise TypeError(f"minor must be an int, got {type(minor).__name__}")
    if not isinstance(currency, str):
        raise TypeError(f"currency must be a str, got {type(currency).__name__}")
    code = currency.upper()
    if len(code) != 3 or not code.isascii() or not code.isalpha():
        raise ValueError(f"currency must be a 3-letter ISO 4217 code, got {currency!r}")
    digits = 0 if code in _ZERO_DECIMAL else 3 if code in _THREE_DECIMAL else 2
    sign = "-" if minor < 0 else ""
    units, cents = divmod(abs(minor), 10**digits)
    amount = f"{units}.{cents:0{digits}d}" if digits else str(units)
    return sign, amount, code


DEFAULT_LOCALE = "en"


@lru_cache(maxsize=64)
def _currency_pattern(locale: str, digits: int) -> tuple[Locale, NumberPattern]:
    """The locale's standard currency pattern with exactly ``digits`` decimals (ours, from ISO 4217,
    not CLDR's, which differ for a few currencies: an IQD amount must never be rounded)."""
    try:
        parsed = Locale.parse(locale.replace("-", "_"))
    except (UnknownLocaleError, ValueError, TypeError):
        parsed = Locale.parse(DEFAULT_LOCALE)
    standard = parsed.currency_formats["standard"]
    pattern = copy.copy(standard)
    pattern.frac_prec = (digits, digits)
    return parsed, pattern


# CLDR's currency spacing, which Babel does not apply: a symbol made of letters ("CHF") is kept
# apart from the digits by a no-break space ("CHF 4.50", not "CHF4.50").
_LETTER_DIGIT = re.compile(r"(?<=[^\W\d_])(?=\d)|(?<=\d)(?=[^\W\d_])")


def format_money(minor: int, currency: str, locale: str = DEFAULT_LOCALE) -> str:
    """Format an amount in minor units for a reader of ``locale`` (a language code such as "en" or
    "de"), with Babel's CLDR data: ``format_money(450, "EUR") == "€4.50"`` and
    ``format_money(450, "EUR", "de") == "4,50\u00a0€"`` (a no-break space before the symbol).

    The code is case-insensitive (Stripe uses "eur"); the number of decimals is the currency's
    minor unit (none for JPY, three for KWD); thousands are grouped as the locale does
    ("€1,234.56", "1.234,56 €"); a currency without a symbol of its own shows its code ("CHF 4.50").
    An unknown locale reads as English.
    """
    sign, amount, code = money_parts(minor, currency)
    return _formatted(sign + amount, code, locale or DEFAULT_LOCALE)


@lru_cache(maxsize=4096)
def _formatted(amount: str, code: str, locale: str) -> str:
    """format_money's text for a checked amount ("-4.50"): remembered, since a list of deals asks for
    the same few prices over and over and Babel takes about 0.1 ms each time (bench/bench_mini_app.py)."""
    digits = len(amount.partition(".")[2])
    parsed, pattern = _currency_pattern(locale, digits)
    text = format_currency(Decimal(amount), code, format=pattern, locale=parsed, currency_digits=False)
    return _LETTER_DIGIT.sub("\u00a0", text)


def discount_percent(price_minor: int, original_price_minor: int) -> int:
    """The discount a deal shows, in whole percent: (original - price) / original, rounded half up
    to the nearest percent (EUR 3 instead of 9 is 66.67 %, shown as 67; 4.99 instead of 9.99 is
    50.05 %, shown as 50; exactly half a percent goes up). Computed in integers, so no float
    rounding creeps in. Never more than that rounded figure says, and never "100" for anything
    that costs money: a price above zero shows at most 99. 0 when there is no discount (the
    price is at or above the original, or there is no original price)."""
    if original_price_minor <= 0 or price_minor >= original_price_minor:
        return 0
    saved = original_price_minor - max(price_minor, 0)
    rounded = (saved * 200 + original_price_minor) // (2 * original_price_minor)  # floor(x + 1/2)
    return min(rounded, 99) if price_minor > 0 else rounded


# --------------------------------------------------------------------------- the platform fee

def platform_fee(amount_minor: int, basis_points: int, fixed_minor: int) -> int:
    """The platform's fee on an order of ``amount_minor``, in the same minor units.

    The rule: the percentage part is ``amount × basis_points / 10 000`` rounded half up to a whole
    minor unit (computed in integers: 10 % of €4.55 is 45.5 cents, charged as 46; 10 % of €4.54 is
    45.4, charged as 45); then the fixed part is added; the fee is never more than the amount itself
    (the business never owes money on a sale) and never less than zero. A free order has no fee.
    """
    if amount_minor <= 0:
        return 0
    if basis_points < 0 or fixed_minor < 0:
        raise ValueError("a fee cannot be negative")
    percentage = (amount_minor * basis_points * 2 + 10_000) // 20_000  # floor(x + 1/2)
    return min(amount_minor, percentage + fixed_minor)
