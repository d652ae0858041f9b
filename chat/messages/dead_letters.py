"""How dead letters and their replays read, for admins in the chat (HTML) and operators at the
command line (`python -m tasks.dead_letters`, plain text). Arguments are summarised, never shown in
full: an update carries what a person wrote."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from chat.cards import escape
from core.i18n import Translator
from domain.dead_letters import UPDATE_TASK, Letter, ReplayOutcome, ReplayResult

STRIPE_EVENT_TASK = "payments.handle_event"
ERROR_SHOWN_CHARS = 1500


def when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def arguments(_: Translator, letter: Letter) -> str:
    """What the task was called with, short and without personal data."""
    if letter.args is None:
        return _("not recorded")
    first = letter.args[0] if letter.args else None
    if letter.task_name == UPDATE_TASK and isinstance(first, dict):
        return _("(update {id})", id=first.get("update_id", "?"))
    if letter.task_name == STRIPE_EVENT_TASK and isinstance(first, dict):
        return _("(Stripe event {id})", id=first.get("id", "?"))
    shown = json.dumps(letter.args, ensure_ascii=False, default=str)
    if letter.kwargs:
        shown += " " + json.dumps(letter.kwargs, ensure_ascii=False, default=str, sort_keys=True)
    return shown if len(shown) <= 200 else shown[:199] + "…"


def status(_: Translator, letter: Letter) -> str:
    if letter.replayed is not None:
        return _("replayed {when} by {who}", when=when(letter.replayed.at), who=letter.replayed.by)
    if not letter.replayable:
        return _("cannot be replayed")
    return _("waiting")


def list_line(letter: Letter) -> str:
    """One line of the list (a button's label): number, task, when it failed, replayed or not."""
    mark = "✅" if letter.replayed is not None else "☠️"
    return f"{mark} #{letter.id} {letter.task_name} · {letter.created_at.astimezone(UTC):%m-%d %H:%M}"


def card(_: Translator, letter: Letter) -> str:
    """One dead letter for the chat (HTML): what failed, when, with what, and the error's end."""
    error = letter.error[-ERROR_SHOWN_CHARS:]
    return "\n".join([
        _("☠️ <b>Dead letter #{id}</b>", id=letter.id),
        _("Task: {name}", name=f"<code>{escape(letter.task_name)}</code>"),
        _("Failed: {when}", when=when(letter.created_at)),
        _("Reference: {reference}", reference=escape(letter.reference or "—")),
        _("Arguments: {arguments}", arguments=escape(arguments(_, letter))),
        _("Status: {status}", status=escape(status(_, letter))),
        "",
        f"<pre>{escape(error)}</pre>",
    ])


def plain(_: Translator, letter: Letter) -> str:
    """One dead letter for a terminal: the same as `card`, without markup and with the whole error."""
    return "\n".join([
        _("Dead letter #{id}", id=letter.id),
        _("Task: {name}", name=letter.task_name),
        _("Task id: {task_id}", task_id=letter.task_id),
        _("Failed: {when}", when=when(letter.created_at)),
        _("Reference: {reference}", reference=letter.reference or "—"),
        _("Arguments: {arguments}", arguments=arguments(_, letter)),
        _("Status: {status}", status=status(_, letter)),
        "",
        letter.error,
    ])


def outcome(_: Translator, result: ReplayResult) -> str:
    """What a replay did, in one or two plain sentences."""
    number = result.dead_letter_id
    if result.outcome is ReplayOutcome.REPLAYED:
        return _("🔁 Dead letter #{id} replayed: {name} is queued again. If it fails again, it comes back "
                 "as a new dead letter.", id=number, name=result.task_name)
    if result.outcome is ReplayOutcome.ALREADY_REPLAYED and result.replayed is not None:
        return _("Nothing done: dead letter #{id} was replayed already ({when}, by {who}).", id=number,
                 when=when(result.replayed.at), who=result.replayed.by)
    if result.outcome is ReplayOutcome.ALREADY_REPLAYED:
        return _("Nothing done: dead letter #{id} was replayed already.", id=number)
    if result.outcome is ReplayOutcome.NOT_REPLAYABLE:
        return _("Dead letter #{id} cannot be replayed: it was kept without its task's arguments (or for a "
                 "task no queue takes any more). Its error says what failed; the person concerned may "
                 "need to try again.", id=number)
    return _("There is no dead letter #{id}.", id=number)


def summary(_: Translator, task_name: str, results: list[ReplayResult]) -> str:
    """What replaying every dead letter of one task did."""
    replayed = sum(r.outcome is ReplayOutcome.REPLAYED for r in results)
    if not results:
        return _("No dead letter of {name} is waiting to be replayed.", name=task_name)
    return _("🔁 {name} — replayed: {replayed}, skipped: {skipped}.", name=task_name, replayed=replayed,
             skipped=len(results) - replayed)
