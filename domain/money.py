"""Money as the marketplace shows it: amounts in integer minor units with an ISO 4217 code.

One home for formatting and discounts, used by the chat, the deal card image and the domain alike.
"""

from __future__ import annotations

_CURRENCY_SYMBOLS = {"EUR": "€", "GBP": "£", "USD": "$"}
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


def format_money(minor: int, currency: str) -> str:
    """Format an amount in minor units: ``format_money(450, "EUR") == "€4.50"``.

    EUR, GBP and USD get their symbol in front ("€4.50", "£4.50", "$4.50"); any
    other ISO code goes after the amount ("4.50 CHF", "500 JPY", "1.500 KWD").
    The code is case-insensitive (Stripe uses "eur"); negative amounts get a
    leading "-". No thousands separators.
    """
    sign, amount, code = money_parts(minor, currency)
    symbol = _CURRENCY_SYMBOLS.get(code)
    return f"{sign}{symbol}{amount}" if symbol else f"{sign}{amount} {code}"


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
