"""☠️ Dead letters in the admin menu: the tasks that failed for good, a page at a time, one in full,
and a replay (asked to confirm). Admins only: anybody else pressing (or forging) these buttons gets
NotAllowed before anything is read. Replays are audited by the domain (domain/dead_letters.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from chat import menus
from chat.cards import escape
from chat.context import Context
from chat.messages import dead_letters as words
from chat.registry import NotAllowed, StaleButton, button, data
from core.outbox import Keyboard
from core.outbox import button as key
from domain import dead_letters

BUTTON = "adm_dl"
PAGE_SIZE = 6


def _number(args: list[str], position: int, default: int | None = None) -> int:
    try:
        value = int(args[position])
    except IndexError:
        if default is None:
            raise StaleButton from None
        return default
    except ValueError:
        raise StaleButton from None
    if value < 0:
        raise StaleButton
    return value


@button(BUTTON)
def btn_dead_letters(ctx: Context, args: list[str]) -> None:
    if not ctx.is_admin:
        raise NotAllowed
    action = args[0] if args else "page"
    if action == "page":
        show_list(ctx, _number(args, 1, default=0))
    elif action == "show":
        show_letter(ctx, _number(args, 1), _number(args, 2, default=0))
    elif action == "replay":
        _confirm(ctx, _number(args, 1), _number(args, 2, default=0))
    elif action == "confirm":
        _replay(ctx, _number(args, 1), _number(args, 2, default=0))
    else:
        raise StaleButton


def _back_rows(ctx: Context) -> Keyboard:
    return [[key(ctx._("🛠 Admin"), data("admin"))], menus.home_row(ctx._)]


def show_list(ctx: Context, page_number: int) -> None:
    _ = ctx._
    page = dead_letters.page(ctx.session, offset=page_number * PAGE_SIZE, limit=PAGE_SIZE)
    if not page.letters and page_number > 0:  # gone meanwhile: the last page there is
        page_number = max((page.total - 1) // PAGE_SIZE, 0)
        page = dead_letters.page(ctx.session, offset=page_number * PAGE_SIZE, limit=PAGE_SIZE)
    if not page.letters:
        ctx.show(_("✅ No dead letters: no task has failed for good."), _back_rows(ctx))
        return
    pages = (page.total + PAGE_SIZE - 1) // PAGE_SIZE
    text = "\n".join([
        _("☠️ <b>Dead letters</b>"),
        _("Tasks that kept failing after their retries. Waiting: {waiting} · all: {total}",
          waiting=dead_letters.count_waiting(ctx.session), total=page.total),
        _("Page {page} of {pages}, newest first. Tap one to see it and replay it.", page=page_number + 1,
          pages=pages),
    ])
    rows: Keyboard = [[key(words.list_line(letter), data(BUTTON, "show", letter.id, page_number))]
                      for letter in page.letters]
    paging = []
    if page_number > 0:
        paging.append(key(_("◀️ Newer"), data(BUTTON, "page", page_number - 1)))
    if page.has_more:
        paging.append(key(_("Older ▶️"), data(BUTTON, "page", page_number + 1)))
    if paging:
        rows.append(paging)
    ctx.show(text, [*rows, *_back_rows(ctx)])


def show_letter(ctx: Context, dead_letter_id: int, page_number: int, note: str | None = None) -> None:
    _ = ctx._
    letter = dead_letters.get(ctx.session, dead_letter_id)
    if letter is None:
        raise StaleButton
    text = words.card(_, letter)
    if note:
        text += "\n\n" + note
    rows: Keyboard = []
    if letter.replayable and letter.replayed is None:
        rows.append([key(_("🔁 Replay"), data(BUTTON, "replay", letter.id, page_number))])
    rows.append([key(_("⬅️ Dead letters"), data(BUTTON, "page", page_number))])
    ctx.show(text, [*rows, *_back_rows(ctx)])


def _confirm(ctx: Context, dead_letter_id: int, page_number: int) -> None:
    _ = ctx._
    letter = dead_letters.get(ctx.session, dead_letter_id)
    if letter is None:
        raise StaleButton
    if letter.replayed is not None or not letter.replayable:
        _replay(ctx, dead_letter_id, page_number)  # says why nothing happens
        return
    question = _("Replay {name} with the same arguments? It runs once more; as every task is idempotent, "
                 "what it already did is not done twice.", name=f"<code>{escape(letter.task_name)}</code>")
    ctx.show(words.card(_, letter) + "\n\n" + question, [
        [key(_("🔁 Yes, replay"), data(BUTTON, "confirm", letter.id, page_number)),
         key(_("✖️ No"), data(BUTTON, "show", letter.id, page_number))],
        *_back_rows(ctx),
    ])


def _replay(ctx: Context, dead_letter_id: int, page_number: int) -> None:
    _ = ctx._
    result = dead_letters.replay(ctx.session, dead_letter_id, f"user:{ctx.user.id}", datetime.now(UTC))
    if result.outcome is dead_letters.ReplayOutcome.NOT_FOUND:
        raise StaleButton
    ctx.toast(_("Replayed.") if result.outcome is dead_letters.ReplayOutcome.REPLAYED else _("Nothing done."))
    show_letter(ctx, dead_letter_id, page_number, note=words.outcome(_, result))
