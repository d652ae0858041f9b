"""Routes one update to its handler: commands, button presses, shared locations, free text."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

from bot.conversation import menus
from bot.conversation.context import Context
from core.i18n import LANGUAGE_NAMES, Translator

Handler = Callable[[Context], None]


def cmd_start(ctx: Context) -> None:
    ctx.leave_flow()
    menus.show_main_menu(ctx)


def cmd_cancel(ctx: Context) -> None:
    _ = ctx._
    if ctx.leave_flow():
        ctx.reply(_("Cancelled. Nothing was saved."))
    else:
        ctx.reply(_("There is nothing to cancel."))
    menus.show_main_menu(ctx)


COMMANDS: dict[str, Handler] = {
    "start": cmd_start,
    "help": menus.show_help,
    "cancel": cmd_cancel,
    "language": menus.show_language_picker,
}


def cb_set_language(ctx: Context, code: str) -> None:
    if code not in LANGUAGE_NAMES:
        raise StaleButton
    ctx.user.language = code
    ctx._ = Translator(code)
    ctx.toast(LANGUAGE_NAMES[code])
    menus.show_main_menu(ctx)


# callback_data is "<name>" or "<name>:<argument>".
CALLBACKS: dict[str, Handler] = {
    menus.HOME: menus.show_main_menu,
    "help": menus.show_help,
    "lang": menus.show_language_picker,
}
CALLBACKS_WITH_ARGUMENT: dict[str, Callable[[Context, str], None]] = {
    "lang": cb_set_language,
}


class StaleButton(Exception):
    """A button whose data no longer means anything (old menu, forged data)."""


def route(ctx: Context) -> None:
    update = ctx.update
    if update.callback_query is not None:
        _route_callback(ctx, update.callback_query.data or "")
        return
    message = update.effective_message
    if message is None:
        return  # an update kind we don't subscribe to: nothing to answer
    if message.text and message.text.startswith("/"):
        command, _sep, _payload = message.text[1:].partition(" ")
        handler = COMMANDS.get(command.split("@")[0].lower())
        if handler is None:
            ctx.reply(ctx._("Sorry, I don't know that command."))
            menus.show_main_menu(ctx)
        else:
            handler(ctx)
        return
    if message.location is not None:
        ctx.user.latitude = message.location.latitude
        ctx.user.longitude = message.location.longitude
        ctx.user.location_updated_at = datetime.now(UTC)
        ctx.reply(ctx._("📍 Location saved."))
        menus.show_main_menu(ctx)
        return
    ctx.reply(ctx._("I didn't understand that. Please use the menu."))
    menus.show_main_menu(ctx)


def _route_callback(ctx: Context, data: str) -> None:
    name, _sep, argument = data.partition(":")
    try:
        if argument and name in CALLBACKS_WITH_ARGUMENT:
            CALLBACKS_WITH_ARGUMENT[name](ctx, argument)
        elif not argument and name in CALLBACKS:
            CALLBACKS[name](ctx)
        else:
            raise StaleButton
    except StaleButton:
        ctx.outcome.replies.clear()
        ctx.toast(ctx._("This button is out of date; here is a fresh menu."))
        menus.show_main_menu(ctx)
