"""Multi-step conversations (register a business, create an offer, ...).

A flow is a set of named steps. The chat's position (flow, step) and the answers so far live in
`conversation_states`, so any worker can take the next message. Every question carries a Back
and a Cancel button; Back returns to the previous question (on the first one, it leaves the flow
for the screen it was started from), Cancel leaves without saving.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from chat.context import Context
from chat.registry import data
from core.outbox import Keyboard, button

_HISTORY = "_history"
_BACK_TO = "_back_to"

Prompt = Callable[[Context], None]
TextAnswer = Callable[[Context, str], str | None]  # returns the next step, or None to stay
ChoiceAnswer = Callable[[Context, str], str | None]
LocationAnswer = Callable[[Context, float, float], str | None]
PhotoAnswer = Callable[[Context, str, int], str | None]  # (ctx, file_id, file_size)

DONE = "__done__"  # returned by a step when the flow is complete


@dataclass
class Step:
    name: str
    prompt: Prompt
    on_text: TextAnswer | None = None
    on_choice: ChoiceAnswer | None = None  # a tap on one of this step's own buttons
    on_location: LocationAnswer | None = None
    on_photo: PhotoAnswer | None = None


@dataclass
class Flow:
    name: str
    steps: list[Step]
    on_cancel: Callable[[Context], None] | None = None
    # An answer whose checks raise `refused_by` is refused: the flow stays at its step and
    # `on_refused` asks the question again, saying what was wrong.
    refused_by: type[Exception] | None = None
    on_refused: Callable[[Context, Flow, Exception], None] | None = None
    # Where Back on the first question leads: the button data of the screen the flow is started
    # from (e.g. "biz", the business menu); None for the main menu. `start` may name another.
    back_to: str | None = None
    _by_name: dict[str, Step] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.refused_by is not None and self.on_refused is None:
            raise ValueError(f"flow {self.name}: refused_by needs on_refused")
        self._by_name = {step.name: step for step in self.steps}

    # -- entering and moving

    def start(self, ctx: Context, initial: dict | None = None, at: str | None = None,
              back_to: str | None = None, history: list[str] | None = None) -> None:
        """Enter the flow at its first step (or ``at``), with ``initial`` answers. Back walks through
        ``history`` (the steps answered before ``at``, oldest first), then leads to ``back_to``
        (button data; the flow's own `back_to` if None)."""
        ctx.state.flow = self.name
        ctx.state.data = {**(initial or {}), **({_BACK_TO: back_to} if back_to else {}),
                          **({_HISTORY: list(history)} if history else {})}
        ctx.state.step = None
        self.go(ctx, at or self.steps[0].name)

    def back_to_origin(self, ctx: Context) -> str | None:
        """The button data of the screen Back on the first question leads to (None: the main menu)."""
        return ctx.state.data.get(_BACK_TO) or self.back_to

    def go(self, ctx: Context, step_name: str) -> None:
        values = dict(ctx.state.data)
        history = list(values.get(_HISTORY, []))
        if ctx.state.step and ctx.state.step != step_name:
            history.append(ctx.state.step)
        values[_HISTORY] = history
        ctx.state.data = values  # a new dict, so SQLAlchemy sees the JSONB change
        ctx.state.step = step_name
        self._by_name[step_name].prompt(ctx)

    def back(self, ctx: Context) -> bool:
        """Return to the previous question; False if this was the first one."""
        values = dict(ctx.state.data)
        history = list(values.get(_HISTORY, []))
        if not history:
            return False
        previous = history.pop()
        values[_HISTORY] = history
        ctx.state.data = values
        ctx.state.step = previous
        self._by_name[previous].prompt(ctx)
        return True

    def remember(self, ctx: Context, **answers: object) -> None:
        ctx.state.data = {**ctx.state.data, **answers}

    # -- answers

    def current(self, ctx: Context) -> Step:
        assert ctx.state.step is not None, f"flow {self.name} asked for its step outside the flow"
        return self._by_name[ctx.state.step]

    def _advance(self, ctx: Context, next_step: str | None) -> None:
        if next_step == DONE:
            ctx.leave_flow()
        elif next_step is not None:
            self.go(ctx, next_step)

    def _answer(self, ctx: Context, callback: Callable[..., str | None] | None, *answer: object) -> bool:
        if callback is None:
            return False
        refused: tuple[type[Exception], ...] = (self.refused_by,) if self.refused_by else ()
        try:
            next_step = callback(ctx, *answer)
        except refused as error:
            assert self.on_refused is not None  # __post_init__ requires it with refused_by
            self.on_refused(ctx, self, error)
            return True
        self._advance(ctx, next_step)
        return True

    def answer_text(self, ctx: Context, text: str) -> bool:
        return self._answer(ctx, self.current(ctx).on_text, text)

    def answer_choice(self, ctx: Context, value: str) -> bool:
        return self._answer(ctx, self.current(ctx).on_choice, value)

    def answer_location(self, ctx: Context, latitude: float, longitude: float) -> bool:
        return self._answer(ctx, self.current(ctx).on_location, latitude, longitude)

    def answer_photo(self, ctx: Context, file_id: str, file_size: int) -> bool:
        return self._answer(ctx, self.current(ctx).on_photo, file_id, file_size)


def choice(ctx: Context, text: str, value: str) -> dict[str, str]:
    """A button answering the current step of the current flow."""
    return button(text, data("flow", "pick", ctx.state.step or "", value))


def nav_row(ctx: Context, back: bool = True) -> list[dict[str, str]]:
    _ = ctx._
    row = [button(_("⬅️ Back"), data("flow", "back"))] if back else []
    row.append(button(_("✖️ Cancel"), data("flow", "cancel")))
    return row


def ask(ctx: Context, text: str, rows: Keyboard | None = None, back: bool = True) -> None:
    """Ask a question of a flow, with the Back/Cancel row under any choices."""
    ctx.show(text, [*(rows or []), nav_row(ctx, back=back)])
