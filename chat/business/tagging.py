"""The three optional questions about what an offer is: category (pick one, or skip), diet and
allergens (tap to tick, tap again to untick, then Done). /newoffer asks them after the pickup
window; "🏷 What it is" on an offer asks them again to change them (chat/business/manage.py).

The answers live in the flow's data as ``category``, ``diet`` and ``allergens`` until the flow
saves them.
"""

from __future__ import annotations

from collections.abc import Callable

from chat import tags as words
from chat.context import Context
from chat.flows import Step, ask, choice
from core.outbox import Keyboard
from domain import tags

NONE = "none"
DONE_VALUE = "done"


def _remember(ctx: Context, **answers: object) -> None:
    ctx.state.data = {**ctx.state.data, **answers}


def _ticks(ctx: Context, labels: dict[str, str], chosen: list[str], per_row: int) -> Keyboard:
    _ = ctx._
    keys = [choice(ctx, ("✅ " if code in chosen else "▫️ ") + _(label), code) for code, label in labels.items()]
    return [keys[i:i + per_row] for i in range(0, len(keys), per_row)]


def tag_steps(after_allergens: Callable[[Context], str | None],
              intro: Callable[[Context], str] | None = None) -> list[Step]:
    """Steps ``category`` → ``diet`` → ``allergens``; Done on the last calls ``after_allergens``
    (which returns the next step, or DONE)."""

    def ask_category(ctx: Context) -> None:
        _ = ctx._
        current = ctx.state.data.get("category")
        keys = [choice(ctx, ("✅ " if code == current else "") + _(label), code)
                for code, label in words.CATEGORY_LABELS.items()]
        rows = [keys[i:i + 2] for i in range(0, len(keys), 2)]
        rows.append([choice(ctx, _("No category"), NONE)])
        heading = intro(ctx) + "\n\n" if intro else ""
        ask(ctx, heading + _("🏷 Which category fits best? Customers filter by it."), rows)

    def on_category(ctx: Context, value: str) -> str | None:
        if value != NONE and value not in tags.CATEGORIES:
            return None
        _remember(ctx, category=None if value == NONE else value)
        return "diet"

    def ask_diet(ctx: Context) -> None:
        _ = ctx._
        chosen = ctx.state.data.get("diet", [])
        rows = _ticks(ctx, words.DIET_LABELS, chosen, 2)
        rows.append([choice(ctx, _("✔️ Done"), DONE_VALUE)])
        ask(ctx, _("🌱 Is it suitable for any of these diets? Tap all that apply, then <b>Done</b>."), rows)

    def on_diet(ctx: Context, value: str) -> str | None:
        if value == DONE_VALUE:
            return "allergens"
        if value not in tags.DIETS:
            return None
        _remember(ctx, diet=tags.toggle(ctx.state.data.get("diet", []), value, tags.DIETS))
        return "diet"  # the same question, with the tick changed

    def ask_allergens(ctx: Context) -> None:
        _ = ctx._
        chosen = ctx.state.data.get("allergens", [])
        rows = _ticks(ctx, words.ALLERGEN_LABELS, chosen, 3)
        rows.append([choice(ctx, _("✔️ Done"), DONE_VALUE)])
        ask(ctx, _("⚠️ Which of the 14 allergens does it contain? Tap all that apply, then <b>Done</b>. "
                   "Customers who avoid one of them won't see it."), rows)

    def on_allergens(ctx: Context, value: str) -> str | None:
        if value == DONE_VALUE:
            return after_allergens(ctx)
        if value not in tags.ALLERGENS:
            return None
        _remember(ctx, allergens=tags.toggle(ctx.state.data.get("allergens", []), value, tags.ALLERGENS))
        return "allergens"

    return [
        Step("category", ask_category, on_choice=on_category),
        Step("diet", ask_diet, on_choice=on_diet),
        Step("allergens", ask_allergens, on_choice=on_allergens),
    ]
