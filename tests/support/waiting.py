"""Waiting on a running system from a test: poll until something holds, or fail saying what."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def wait_until(predicate: Callable[[], T], timeout: float, what: str, process: Any = None) -> T:
    """The predicate's first truthy value, polled every 0.1 s for up to `timeout` seconds; a failure
    ends with the last of `process`'s output (a tests.processes.ManagedProcess), if given."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    log = f"; {process.name}'s last output:\n{process.output()[-6000:]}" if process is not None else ""
    raise AssertionError(f"not reached in {timeout:.0f} s: {what}{log}")


def bot_texts(client: Any, chat_id: int) -> list[str]:
    """What the bot wrote in a chat of the Telegram fake (a photo's caption for a photo), oldest first."""
    return [m.get("text") or m.get("caption") or "" for m in client.messages(chat_id)
            if m.get("from", {}).get("is_bot")]
