"""An update the worker cannot read is dropped with a log line: there is nobody to answer, and
retrying would fail the same way. (The gateway refuses such bodies already; polling does not.)"""

from __future__ import annotations

import io
import json
import logging

import pytest

from core.logging import configure_logging


@pytest.mark.parametrize("payload", [
    ["not", "an", "object"],
    {"update_id": "7", "message": {}},
    {"update_id": 7, "message": {"message_id": 1, "date": 0, "chat": "not an object"}},
])
def test_an_unreadable_update_is_dropped_with_a_log_line(payload):
    configure_logging("INFO", json=True)
    stream = io.StringIO()
    logging.getLogger().handlers[0].stream = stream
    from tasks.updates import handle_update

    assert handle_update(payload) is None  # run in this process: no broker, no database reached
    events = [json.loads(line)["event"] for line in stream.getvalue().splitlines()]
    assert "malformed_update_dropped" in events
