"""The admin menu through the whole stack: an admin sees the figures and starts a maintenance job
whose report comes back to the chat; anyone else learns nothing, whatever they type or forge."""

from __future__ import annotations

import time

import sqlalchemy as sa

from core import db
from models import AuditEntry

ADMIN = 4242  # ADMIN_IDS of the e2e worker (tests/e2e/conftest.py)


def buttons(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def last_audit_id() -> int:
    with db.session_scope() as session:
        return session.scalar(sa.select(sa.func.coalesce(sa.func.max(AuditEntry.id), 0)))


def audit_since(first_id: int, actor: str | None = None) -> list[tuple[str, str, str, str | None]]:
    with db.session_scope() as session:
        query = sa.select(AuditEntry).where(AuditEntry.id > first_id).order_by(AuditEntry.id)
        if actor is not None:
            query = query.where(AuditEntry.actor == actor)
        return [(e.actor, e.action, e.result, e.target) for e in session.scalars(query)]


def answer_to(stack, pressed: dict) -> dict | None:
    for query in stack.telegram.callback_answers():
        if query["callback_query_id"] == pressed["callback_query_id"]:
            return query["answer"]
    return None


def wait_until(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def bot_replies(stack, user: int, sent: dict, count: int) -> list[dict]:
    """The bot's first ``count`` messages after ``sent`` (waiting for all of them)."""
    def enough() -> list[dict] | None:
        found = [m for m in stack.telegram.messages(user)
                 if m["message_id"] > sent["message_id"] and m.get("from", {}).get("is_bot")][:count]
        return found if len(found) >= count else None

    return wait_until(enough)


def test_admin_sees_figures_and_runs_a_job_that_reports_back(stack):
    stack.telegram.create_user(ADMIN, "Admin")
    before = last_audit_id()
    sent = stack.telegram.send_text(ADMIN, "/start")
    (menu,) = stack.telegram.wait_for_reply(ADMIN, sent["message_id"], timeout=15)
    assert "admin" in buttons(menu)

    pressed = stack.telegram.press_button(ADMIN, menu["message_id"], "admin")
    admin_menu = stack.telegram.wait_for_reply(ADMIN, after_seq=pressed["seq"], timeout=15)[-1]
    text = admin_menu["text"]
    for needle in ("Admin", "Active offers:", "Orders today:", "Revenue today", "Queues:", "updates ",
                   "maintenance "):
        assert needle in text, text
    data = buttons(admin_menu)
    assert "adm_biz" in data
    assert {"adm_run:expire", "adm_run:holds", "adm_run:reconcile", "adm_run:retry", "adm_run:cleanup"} <= set(data)

    pressed = stack.telegram.press_button(ADMIN, admin_menu["message_id"], "adm_run:cleanup")
    wait_until(lambda: "Started maintenance.cleanup" in ((answer_to(stack, pressed) or {}).get("text") or ""))
    report = wait_until(lambda: [m for m in stack.telegram.messages(ADMIN)
                                 if m["message_id"] > admin_menu["message_id"]
                                 and "maintenance.cleanup finished" in (m.get("text") or "")])
    assert "processed_updates_deleted" in report[0]["text"]
    entries = audit_since(before, f"user:{ADMIN}")
    assert ("user:4242", "admin.open_menu", "ok", None) in entries
    assert ("user:4242", "admin.run_task", "started", "maintenance.cleanup") in entries
    assert ("user:4242", "maintenance.cleanup", "ok", None) in entries

    # /admin as a command works too, and the figures come fresh.
    sent = stack.telegram.send_text(ADMIN, "/admin")
    (again,) = stack.telegram.wait_for_reply(ADMIN, sent["message_id"], timeout=15)
    assert "Active offers:" in again["text"]


def test_someone_else_learns_nothing_and_changes_nothing(stack, user):
    before = last_audit_id()
    sent = stack.telegram.send_text(user, "/nosuchcommand")
    unknown = bot_replies(stack, user, sent, 2)
    sent = stack.telegram.send_text(user, "/admin")
    replies = bot_replies(stack, user, sent, 2)
    # Exactly what an unknown command gets, and no admin button in the menu.
    assert [m["text"] for m in replies] == [m["text"] for m in unknown]
    assert all("admin" not in buttons(m) and "Admin" not in m["text"] for m in replies)

    for forged in ("admin", "adm_run:cleanup", "adm_run:expire", "adm_run:nope", "admin:x"):
        sent = stack.telegram.send_text(user, "/help")  # a fresh message to press on
        (menu,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
        pressed = stack.telegram.press_button(user, menu["message_id"], forged, forge=True)
        shown = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
        assert "What would you like to do?" in shown["text"] and "Active offers" not in shown["text"]
        assert "admin" not in buttons(shown)
        wait_until(lambda p=pressed: "out of date" in ((answer_to(stack, p) or {}).get("text") or ""))
    assert audit_since(before, f"user:{user}") == []
    assert not [e for e in audit_since(before) if e[1] == "admin.run_task"]


def test_admin_forging_an_unknown_job_starts_nothing(stack):
    stack.telegram.create_user(ADMIN, "Admin")
    before = last_audit_id()
    sent = stack.telegram.send_text(ADMIN, "/admin")
    (menu,) = stack.telegram.wait_for_reply(ADMIN, sent["message_id"], timeout=15)
    pressed = stack.telegram.press_button(ADMIN, menu["message_id"], "adm_run:drop_tables", forge=True)
    shown = stack.telegram.wait_for_reply(ADMIN, after_seq=pressed["seq"], timeout=15)[-1]
    assert "What would you like to do?" in shown["text"]
    assert [e for e in audit_since(before) if e[1] == "admin.run_task"] == []
