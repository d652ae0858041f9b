"""What a handler answers: replies (the outbox's `Reply`) and how to answer a button press."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.outbox import Reply


@dataclass
class Outcome:
    """Result of handling one update: what to send, and how to answer a button press."""

    replies: list[Reply] = field(default_factory=list)
    callback_text: str | None = None
    callback_alert: bool = False
