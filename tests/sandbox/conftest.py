"""The Stripe fake for its own tests, with the real `stripe` library pointed at it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from sandbox.stripe_fake import StripeFake

API_KEY = "sk_test_fake_123"


@pytest.fixture(scope="module")
def fake() -> Iterator[StripeFake]:
    with StripeFake() as running:
        yield running


@pytest.fixture
def stripe_on_fake(fake: StripeFake, monkeypatch: pytest.MonkeyPatch) -> None:
    """A clean fake, and the library's global settings pointing at it (use it with usefixtures)."""
    fake.reset()
    monkeypatch.setattr(stripe, "api_key", API_KEY)
    monkeypatch.setattr(stripe, "api_base", fake.url)
    monkeypatch.setattr(stripe, "max_network_retries", 0)
