"""Secrets never reach the logs, and the workers accept JSON only (never pickle)."""

from __future__ import annotations

import io
import json
import logging

import pytest
from kombu.exceptions import ContentDisallowed
from kombu.serialization import dumps, loads, prepare_accept_content

from core.logging import configure_logging, get_logger


def test_secrets_and_bot_tokens_are_redacted_from_log_lines():
    configure_logging("INFO", json=True)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream
    get_logger("test").info(
        "calling", url="https://api.telegram.org/bot123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/getMe",
        stripe_secret_key="sk_test_abc", webhook_secret="s3cret", card_number="4242424242424242", order_id=7,
    )
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert "AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw" not in stream.getvalue()
    assert line["url"] == "https://api.telegram.org/bot[bot-token]/getMe"
    assert line["stripe_secret_key"] == line["webhook_secret"] == line["card_number"] == "[redacted]"
    assert line["order_id"] == 7


def test_workers_refuse_pickled_messages():
    import celeryconfig

    assert celeryconfig.accept_content == ["json"] and celeryconfig.task_serializer == "json"
    accept = prepare_accept_content(celeryconfig.accept_content)  # as the worker does
    content_type, encoding, body = dumps({"task": "x"}, serializer="pickle")
    with pytest.raises(ContentDisallowed):
        loads(body, content_type, encoding, accept=accept)
    content_type, encoding, body = dumps({"task": "x"}, serializer="json")
    assert loads(body, content_type, encoding, accept=accept) == {"task": "x"}
