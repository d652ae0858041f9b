"""The database guards and pool limits: their defaults, how they reach Postgres, where they are
documented."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.db import guard_options
from core.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULTS = {
    "DB_STATEMENT_TIMEOUT_SECONDS": 30, "DB_LOCK_TIMEOUT_SECONDS": 10, "DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS": 60,
    "DB_CONNECT_TIMEOUT_SECONDS": 10, "DB_POOL_SIZE": 5, "DB_MAX_OVERFLOW": 10, "DB_POOL_TIMEOUT_SECONDS": 10,
    "DB_PREPARE_STATEMENTS": True,
}


def test_defaults(monkeypatch):
    for name in DEFAULTS:
        monkeypatch.delenv(name, raising=False)
    settings = load_settings()
    assert {name: getattr(settings, name.lower()) for name in DEFAULTS} == DEFAULTS
    assert guard_options(settings) == ("-c statement_timeout=30000 -c lock_timeout=10000"
                                       " -c idle_in_transaction_session_timeout=60000")


def test_fractions_of_a_second_and_zero_for_off(monkeypatch):
    monkeypatch.setenv("DB_STATEMENT_TIMEOUT_SECONDS", "2.5")
    monkeypatch.setenv("DB_LOCK_TIMEOUT_SECONDS", "0.0001")  # still on: a millisecond, not 0 (off)
    monkeypatch.setenv("DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS", "0")
    assert guard_options(load_settings()) == ("-c statement_timeout=2500 -c lock_timeout=1"
                                              " -c idle_in_transaction_session_timeout=0")


@pytest.mark.parametrize(("variable", "value"), [
    ("DB_LOCK_TIMEOUT_SECONDS", "-1"), ("DB_POOL_SIZE", "0"), ("DB_POOL_TIMEOUT_SECONDS", "0"),
    ("DB_STATEMENT_TIMEOUT_SECONDS", "x"),
])
def test_bad_values_are_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert variable in str(exit_info.value)


def test_each_is_documented_in_env_example_with_its_default():
    documented = dict(line.split("=", 1) for line in (ROOT / ".env.example").read_text().splitlines()
                      if line and not line.startswith("#"))
    as_written = {name: str(v).lower() if isinstance(v, bool) else str(v) for name, v in DEFAULTS.items()}
    assert {name: documented.get(name) for name in DEFAULTS} == as_written
