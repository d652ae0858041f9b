"""The platform fee's rounding rule (domain.money.platform_fee), with examples and properties."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from core.settings import load_settings, percent_to_basis_points
from domain.money import platform_fee


@pytest.mark.parametrize(("amount", "percent", "fixed", "fee"), [
    (455, "10", 0, 46),  # 45.5 cents: half goes up
    (454, "10", 0, 45),  # 45.4 cents: down
    (450, "10", 25, 70),  # percentage, then the fixed part
    (1000, "7.5", 0, 75),
    (199, "2.25", 0, 4),  # 4.4775 → 4
    (200, "2.25", 0, 5),  # 4.5 → 5
    (30, "10", 50, 30),  # never more than the order itself
    (0, "10", 50, 0),  # a free order has no fee
    (999, "0", 0, 0),
    (999, "100", 0, 999),
])
def test_examples_of_the_rule(amount, percent, fixed, fee):
    assert platform_fee(amount, percent_to_basis_points(percent), fixed) == fee


@pytest.mark.parametrize("bad", ["-1", "100.01", "7.125", "nan", "abc"])
def test_a_percentage_an_operator_mistyped_is_refused(bad):
    with pytest.raises((ValueError, ArithmeticError)):
        percent_to_basis_points(bad)


@given(st.integers(1, 10**9), st.integers(0, 10_000), st.integers(0, 10**6))
def test_half_up_rounding_in_exact_arithmetic_and_within_the_amount(amount, points, fixed):
    fee = platform_fee(amount, points, fixed)
    exact = Fraction(amount * points, 10_000)
    rounded = int(exact + Fraction(1, 2))  # floor(x + 1/2) for x >= 0
    assert fee == min(amount, rounded + fixed)
    assert 0 <= fee <= amount


@pytest.mark.parametrize(("variable", "value"), [("PLATFORM_FEE_PERCENT", "ten"), ("PLATFORM_FEE_PERCENT", "7.125"),
                                                 ("PLATFORM_FEE_FIXED", "-5")])
def test_a_bad_fee_setting_stops_the_start_naming_the_variable(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as stopped:
        load_settings()
    assert variable in str(stopped.value)


def test_the_fee_settings_in_basis_points(monkeypatch):
    monkeypatch.setenv("PLATFORM_FEE_PERCENT", "7.5")
    assert load_settings().platform_fee_basis_points == 750
