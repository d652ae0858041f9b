"""What a handler answers, as plain data: stored in the outbox before anything is sent."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

Keyboard = list[list[dict[str, str]]]


def button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


@dataclass
class Reply:
    text: str
    keyboard: Keyboard | None = None
    # Set when answering a button press: the menu message is edited in place.
    edit_message_id: int | None = None
    photo: str | None = None  # a Telegram file_id
    # A file to send with `text` as its caption: {"filename": ..., "content_b64": ...} (small files
    # only, e.g. a CSV export: the outbox keeps it until it is sent).
    document: dict[str, str] | None = None
    # A keyboard under the input field with one button that shares the user's location
    # (inline keyboards cannot ask for it); `remove_keyboard` takes such a keyboard away again.
    location_request: str | None = None
    remove_keyboard: bool = False
    kind: str = "reply"

    def to_payload(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v not in (None, False) and k != "kind"}

    @classmethod
    def from_payload(cls, payload: dict[str, Any], kind: str = "reply") -> Reply:
        return cls(kind=kind, **payload)


@dataclass
class Outcome:
    """Result of handling one update: what to send, and how to answer a button press."""

    replies: list[Reply] = field(default_factory=list)
    callback_text: str | None = None
    callback_alert: bool = False
