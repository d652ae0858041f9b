"""What beat tells people: lapsed holds, expired offers, pickup reminders, daily summaries."""

from __future__ import annotations
