"""Admin job reports and what a person hears about their data."""

from __future__ import annotations

import base64
import json
from typing import Any

from chat.cards import escape
from chat.registry import data
from core.i18n import Translator
from core.outbox import Reply, button
from domain.privacy import DeleteOutcome


def job_report(language: str, action: str, result: str, report: dict[str, Any]) -> Reply:
    """A maintenance job's outcome for the admin who started it: its name, ok or failed, and what
    it reported (as JSON, cut to fit a message)."""
    _ = Translator(language)
    name = f"<code>{escape(action)}</code>"
    head = _("✅ {name} finished.", name=name) if result == "ok" else _("❌ {name} failed.", name=name)
    body = escape(json.dumps(report, ensure_ascii=False, indent=1, sort_keys=True)[:3000])
    return Reply(text=f"{head}\n<pre>{body}</pre>", keyboard=[[button(_("🛠 Admin"), data("admin"))]],
                 kind="task_report")


def data_export(language: str, user_id: int, content: bytes) -> Reply:
    """A person's data, as the JSON file they asked for."""
    _ = Translator(language)
    document = {"filename": f"surplus-data-{user_id}.json", "content_b64": base64.b64encode(content).decode()}
    return Reply(text=_("📦 Here is everything we keep about you, as a JSON file."), document=document,
                 kind="data_export")


def data_deletion(language: str, outcome: DeleteOutcome) -> Reply | None:
    """What a person hears after asking to have their data erased (None: nobody to tell)."""
    _ = Translator(language)
    messages = {
        DeleteOutcome.DELETED: lambda: _(
            "🗑 Your personal data was deleted: your name, username, location, follows and our chat "
            "history with you. Orders are kept for accounting without your name. If you write to us "
            "again, we start afresh."),
        DeleteOutcome.OPEN_ORDERS: lambda: _(
            "Your data was not deleted yet: you have paid orders still to be collected. "
            "Please collect or cancel them first, then ask again."),
        DeleteOutcome.BUSINESS_OWNER: lambda: _(
            "Your data was not deleted: your account runs a business on Surplus. "
            "Please ask us to close the business first."),
    }
    text = messages.get(outcome)
    return Reply(text=text(), kind="data_deletion") if text else None
