"""Dead letters through the whole stack: a poison update is kept with its arguments by the real
worker; the admin pages through ☠️ Dead letters, opens one, replays it after confirming, and the
replayed update reaches its user, once, however often the replay is pressed; each replay is
audited. Every screen is in the admin's language; anybody else learns and changes nothing. The
same replay from Celery (`maintenance.replay_dead_letter`)."""

from __future__ import annotations

import itertools
import time
import uuid

import sqlalchemy as sa

from core import db
from models import AuditEntry, DeadLetter, ProcessedUpdate, User
from tasks.app import app
from tests.e2e.conftest import new_user_id

ADMIN = 4242  # ADMIN_IDS of the e2e worker (tests/e2e/conftest.py)
PAGE_SIZE = 6  # chat.dead_letters.PAGE_SIZE
_update_ids = itertools.count(8_200_000_001)  # far from the Telegram fake's own


def datas(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def text_of(message: dict) -> str:
    return message.get("text") or message.get("caption") or ""


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def bot_messages(stack, user: int) -> list[dict]:
    return [m for m in stack.telegram.messages(user) if m.get("from", {}).get("is_bot")]


def tap(stack, user: int, message: dict, data: str, *, forge: bool = False) -> tuple[dict, dict]:
    """Press a button; the message as the bot left it afterwards, and the button's answer."""
    pressed = stack.telegram.press_button(user, message["message_id"], data, forge=forge)

    def answer():
        for query in stack.telegram.callback_answers():
            if query["callback_query_id"] == pressed["callback_query_id"] and query.get("answer") is not None:
                return query["answer"]
        return None

    shown = stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]
    return shown, wait_for(answer)


def update_for(user: int, text: str, **sender) -> dict:
    return {"update_id": next(_update_ids),
            "message": {"message_id": 1, "date": int(time.time()), "text": text,
                        "chat": {"id": user, "type": "private", "first_name": "Dora"},
                        "from": {"id": user, "is_bot": False, "first_name": "Dora", **sender}}}


def kept(task_name: str, args: list, kwargs: dict | None = None, reference: str | None = None) -> int:
    """A dead letter as tasks/base.py keeps one."""
    with db.session_scope() as session:
        row = DeadLetter(task_name=task_name, task_id=f"e2e-{uuid.uuid4()}", reference=reference,
                         error="Traceback (most recent call last):\n  ...\nRuntimeError: database said no",
                         payload={"args": args, "kwargs": kwargs or {}})
        session.add(row)
        session.flush()
        return row.id


def failed_update(update: dict) -> int:
    """An update whose handling failed for good: kept, and marked handled (its user was told)."""
    with db.session_scope() as session:
        session.add(ProcessedUpdate(update_id=update["update_id"]))
    return kept("updates.handle_update", [update], reference=f"update:{update['update_id']}")


def letter(number: int) -> DeadLetter:
    with db.session_scope() as session:
        return session.get(DeadLetter, number, populate_existing=True)


def replay_audits(number: int) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        return [(e.actor, e.result) for e in session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "dead_letter.replay",
                                        AuditEntry.target == f"dead_letter:{number}").order_by(AuditEntry.id))]


def set_language(user: int, language: str) -> None:
    with db.session_scope() as session:
        session.execute(sa.update(User).where(User.id == user).values(language=language))


def helps(stack, user: int) -> int:
    return sum("How it works" in text_of(m) for m in bot_messages(stack, user))


def test_admin_pages_opens_and_replays_a_dead_letter_once(stack):
    stack.telegram.create_user(ADMIN, "Admin")
    # A poison update (a username longer than Telegram allows breaks the handler), for real.
    poisoned = new_user_id()
    stack.telegram.create_user(poisoned, "Poison")
    poison = update_for(poisoned, "/start", username="x" * 300)
    stack.telegram.send_update(poison)
    poison_letter = wait_for(lambda: (row := _letter_of(poison)) and row)
    assert poison_letter.payload["args"] == [poison]  # kept with what it was called with
    # Older letters to page through, and an update that failed on a bad day, to replay.
    for n in range(PAGE_SIZE):
        kept("maintenance.cleanup", [], {"actor": f"e2e-{n}"})
    dora = new_user_id()
    stack.telegram.create_user(dora, "Dora")
    help_update = update_for(dora, "/help")
    replayable = failed_update(help_update)

    sent = stack.telegram.send_text(ADMIN, "/admin")
    (menu,) = stack.telegram.wait_for_reply(ADMIN, sent["message_id"], timeout=15)
    assert "adm_dl" in datas(menu) and "☠️ Dead letters (" in str(menu["reply_markup"])

    listing, _answer = tap(stack, ADMIN, menu, "adm_dl")
    assert "Dead letters" in text_of(listing) and "Page 1 of" in text_of(listing)
    assert f"adm_dl:show:{replayable}:0" in datas(listing)  # the newest first
    assert "adm_dl:page:1" in datas(listing) and "admin" in datas(listing) and "menu" in datas(listing)
    older, _answer = tap(stack, ADMIN, listing, "adm_dl:page:1")
    assert "Page 2 of" in text_of(older) and "adm_dl:page:0" in datas(older)
    assert f"adm_dl:show:{poison_letter.id}:1" in datas(older)
    listing, _answer = tap(stack, ADMIN, older, "adm_dl:page:0")

    shown, _answer = tap(stack, ADMIN, listing, f"adm_dl:show:{replayable}:0")
    text = text_of(shown)
    assert f"Dead letter #{replayable}" in text and "updates.handle_update" in text
    assert f"(update {help_update['update_id']})" in text and "/help" not in text  # no personal data
    assert "database said no" in text and "Status: waiting" in text
    assert {f"adm_dl:replay:{replayable}:0", "adm_dl:page:0", "admin"} <= set(datas(shown))

    question, _answer = tap(stack, ADMIN, shown, f"adm_dl:replay:{replayable}:0")
    assert "with the same arguments?" in text_of(question)
    assert helps(stack, dora) == 0  # asking is not doing
    done, answer = tap(stack, ADMIN, question, f"adm_dl:confirm:{replayable}:0")
    assert answer["text"] == "Replayed."
    assert "is queued again" in text_of(done) and "replayed" in text_of(done)
    assert f"adm_dl:replay:{replayable}:0" not in datas(done)
    wait_for(lambda: helps(stack, dora) == 1)

    # Pressing it again (an old message, or forged data) does nothing more.
    again, answer = tap(stack, ADMIN, done, f"adm_dl:confirm:{replayable}:0", forge=True)
    assert answer["text"] == "Nothing done." and "was replayed already" in text_of(again)
    time.sleep(1.0)
    assert helps(stack, dora) == 1
    assert replay_audits(replayable) == [(f"user:{ADMIN}", "replayed"), (f"user:{ADMIN}", "already_replayed")]

    # The poison update, replayed, fails again: the user is not told twice, and it is kept anew.
    _shown, answer = tap(stack, ADMIN, done, f"adm_dl:confirm:{poison_letter.id}:1", forge=True)
    assert answer["text"] == "Replayed."
    wait_for(lambda: len(_letters_of(poison)) == 2)
    assert letter(poison_letter.id).payload["replayed"]["by"] == f"user:{ADMIN}"
    assert sum("something went wrong" in text_of(m) for m in bot_messages(stack, poisoned)) == 1


def test_dead_letters_speak_the_admins_language(stack):
    stack.telegram.create_user(ADMIN, "Admin")
    number = kept("maintenance.cleanup", [], {"actor": "e2e-de"})
    set_language(ADMIN, "de")
    try:
        sent = stack.telegram.send_text(ADMIN, "/admin")
        (menu,) = stack.telegram.wait_for_reply(ADMIN, sent["message_id"], timeout=15)
        listing, _answer = tap(stack, ADMIN, menu, "adm_dl")
        assert "Gescheiterte Aufgaben" in text_of(listing) and "Seite 1 von" in text_of(listing)
        shown, _answer = tap(stack, ADMIN, listing, f"adm_dl:show:{number}:0")
        assert f"Gescheiterte Aufgabe #{number}" in text_of(shown) and "Status: offen" in text_of(shown)
        question, _answer = tap(stack, ADMIN, shown, f"adm_dl:replay:{number}:0")
        assert "erneut ausführen?" in text_of(question)
        done, answer = tap(stack, ADMIN, question, f"adm_dl:confirm:{number}:0")
        assert answer["text"] == "Erneut gestartet." and "steht wieder in der Warteschlange" in text_of(done)
    finally:
        set_language(ADMIN, "en")


def test_anybody_else_sees_nothing_and_replays_nothing(stack, user):
    number = kept("maintenance.cleanup", [], {"actor": "e2e-forged"})
    stack.telegram.create_user(user, "Mallory")
    for forged in ("adm_dl", f"adm_dl:show:{number}:0", f"adm_dl:replay:{number}:0", f"adm_dl:confirm:{number}:0"):
        sent = stack.telegram.send_text(user, "/help")
        (menu,) = stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)
        shown, answer = tap(stack, user, menu, forged, forge=True)
        assert "out of date" in answer["text"]
        assert "What would you like to do?" in text_of(shown) and "Dead letter" not in text_of(shown)
    assert letter(number).payload.get("replayed") is None
    assert replay_audits(number) == []


def test_celery_replays_a_dead_letter_once(stack):
    user = new_user_id()
    stack.telegram.create_user(user, "Cele")
    number = failed_update(update_for(user, "/help"))
    first = app.send_task("maintenance.replay_dead_letter", args=[number], kwargs={"actor": "e2e"}).get(timeout=30)
    second = app.send_task("maintenance.replay_dead_letter", args=[number], kwargs={"actor": "e2e"}).get(timeout=30)
    assert (first["outcome"], second["outcome"]) == ("replayed", "already_replayed")
    wait_for(lambda: helps(stack, user) == 1)
    time.sleep(1.0)
    assert helps(stack, user) == 1
    assert replay_audits(number) == [("e2e", "replayed"), ("e2e", "already_replayed")]


def _letters_of(update: dict) -> list[DeadLetter]:
    with db.session_scope() as session:
        return list(session.scalars(sa.select(DeadLetter).where(
            DeadLetter.reference == f"update:{update['update_id']}").order_by(DeadLetter.id)))


def _letter_of(update: dict) -> DeadLetter | None:
    letters = _letters_of(update)
    return letters[0] if letters else None
