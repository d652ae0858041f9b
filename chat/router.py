"""Routes one update to its handler: commands, button presses, flow answers, locations, photos.

Feature modules register their handlers in chat.registry; importing FEATURES here
is what makes them known.
"""

from __future__ import annotations

import importlib

from telegram import Message

from chat import customer, menus
from chat.business.texts import photo_rejection, reask
from chat.context import Context
from chat.flows import Flow
from chat.registry import BUTTONS, COMMANDS, FLOWS, NotAllowed, StaleButton

FEATURES = (
    "chat.menus",
    "chat.customer",
    "chat.filters",
    "chat.ratings",
    "chat.favourites",
    "chat.business",
    "chat.business.pickup",
    "chat.admin",
    "chat.privacy",
)
for _module in FEATURES:
    importlib.import_module(_module)


def route(ctx: Context) -> None:
    update = ctx.update
    try:
        if update.callback_query is not None:
            _route_button(ctx, update.callback_query.data or "")
        elif update.effective_message is not None:
            _route_message(ctx, update.effective_message)
    except (StaleButton, NotAllowed):
        ctx.outcome.replies.clear()
        ctx.leave_flow()
        ctx.toast(ctx._("This button is out of date; here is a fresh menu."))
        menus.show_main_menu(ctx)


def _route_message(ctx: Context, message: Message) -> None:
    text = message.text or ""
    if text.startswith("/"):
        _route_command(ctx, text)
        return
    flow = FLOWS.get(ctx.state.flow) if ctx.state.flow else None
    if flow is not None:
        if not _answer_flow(ctx, flow, message):
            ctx.reply(ctx._("That's not what I asked for. Please answer the question above, or tap Cancel."))
            flow.current(ctx).prompt(ctx)
        return
    if message.location is not None:
        customer.location_shared(ctx, message.location.latitude, message.location.longitude)
        return
    ctx.reply(ctx._("I didn't understand that. Please use the menu."))
    menus.show_main_menu(ctx)


def _route_command(ctx: Context, text: str) -> None:
    command, _sep, argument = text[1:].partition(" ")
    handler = COMMANDS.get(command.split("@")[0].lower())
    if handler is None:
        ctx.reply(ctx._("Sorry, I don't know that command."))
        menus.show_main_menu(ctx)
        return
    if command != "cancel":
        ctx.leave_flow()  # a command starts afresh; /cancel itself reports what it left
    handler(ctx, argument.strip())


def _answer_flow(ctx: Context, flow: Flow, message: Message) -> bool:
    """Give the message to the flow's current step; False if the step takes nothing of its kind."""
    if message.photo and flow.answer_photo(ctx, message.photo[-1].file_id, message.photo[-1].file_size or 0):
        return True
    if message.document and (message.document.mime_type or "").startswith("image/") and flow.answer_photo(
        ctx, message.document.file_id, message.document.file_size or 0
    ):
        return True
    if message.document and flow.current(ctx).on_photo is not None:
        # Telegram delivers any file as a document; a step that wants a photo says why this one won't do.
        reask(ctx, flow, "❗ " + photo_rejection(ctx._, "not_an_image"))
        return True
    if message.location and flow.answer_location(ctx, message.location.latitude, message.location.longitude):
        return True
    return bool(message.text and flow.answer_text(ctx, message.text))


def _route_button(ctx: Context, data: str) -> None:
    name, *args = data.split(":")
    if name == "flow":
        _route_flow_button(ctx, args)
        return
    handler = BUTTONS.get(name)
    if handler is None:
        raise StaleButton
    ctx.leave_flow()  # a menu button elsewhere abandons a half-finished flow
    handler(ctx, args)


def _route_flow_button(ctx: Context, args: list[str]) -> None:
    flow = FLOWS.get(ctx.state.flow) if ctx.state.flow else None
    if flow is None:
        raise StaleButton
    if args == ["back"]:
        if not flow.back(ctx):
            _leave_to_origin(ctx, flow)
    elif args == ["cancel"]:
        _cancel_flow(ctx, flow)
    elif len(args) >= 3 and args[0] == "pick" and args[1] == ctx.state.step:
        if not flow.answer_choice(ctx, ":".join(args[2:])):
            raise StaleButton
    else:
        raise StaleButton


def _leave_to_origin(ctx: Context, flow: Flow) -> None:
    """Back on a flow's first question: leave it for the screen it was started from."""
    origin = flow.back_to_origin(ctx)
    ctx.leave_flow()
    if origin:
        _route_button(ctx, origin)
    else:
        menus.show_main_menu(ctx)


def _cancel_flow(ctx: Context, flow) -> None:
    ctx.leave_flow()
    ctx.toast(ctx._("Cancelled. Nothing was saved."))
    if flow.on_cancel is not None:
        flow.on_cancel(ctx)
    else:
        menus.show_main_menu(ctx)
