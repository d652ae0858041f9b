"""Bad configuration stops the program with a message naming the variable."""

from __future__ import annotations

import pytest

from core.settings import SANDBOX_BOT_TOKEN, load_settings


@pytest.mark.parametrize(
    ("variable", "value"),
    [("GATEWAY_PORT", "eighty"), ("GATEWAY_PORT", "70000"), ("ADMIN_IDS", "12,abc"),
     ("DATABASE_URL", "mysql://x/y"), ("REDIS_URL", "http://x"), ("PUBLIC_URL", "example.org"),
     ("FLOWER_BASIC_AUTH", "no-colon")],
)
def test_bad_variable_is_named(monkeypatch, variable, value):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert variable in str(exit_info.value)


def test_defaults_mean_sandbox(monkeypatch):
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.setenv("ADMIN_IDS", "1, 2;3")
    monkeypatch.setenv("DATABASE_URL", "postgres://u@h:5/d")
    settings = load_settings()
    assert settings.sandbox and settings.telegram_token == SANDBOX_BOT_TOKEN
    assert settings.admin_ids == {1, 2, 3}
    assert settings.database_url == "postgresql+psycopg2://u@h:5/d"


def test_real_token_is_secret(monkeypatch):
    monkeypatch.setenv("BOT_TOKEN", "987654:ABCDEFGHIJKLMNOPQRSTUVWXYZ")
    settings = load_settings()
    assert not settings.sandbox
    assert "ABCDEFGHIJ" not in repr(settings)
