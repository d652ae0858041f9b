"""The main menu, help and language screens: the part of the chat every user sees first."""

from __future__ import annotations

from collections.abc import Callable

from chat.cards import isolate
from chat.context import Context
from chat.registry import DEEP_LINKS, StaleButton, command
from chat.registry import button as on_button
from core.handover import enqueue_after_commit
from core.i18n import LANGUAGE_NAMES, Translator
from core.outbox import Keyboard, button, web_app_button
from core.settings import get_settings

HOME = "menu"
# What an admin is told when they come (/start, /admin): e.g. the verification requests that could
# not reach them (chat.business.registration). Run after the menu is shown.
_ADMIN_ARRIVAL: list[Callable[[Context], None]] = []


def when_admin_arrives(handler: Callable[[Context], None]) -> Callable[[Context], None]:
    _ADMIN_ARRIVAL.append(handler)
    return handler


def admin_arrived(ctx: Context) -> None:
    if ctx.is_admin:
        for handler in _ADMIN_ARRIVAL:
            handler(ctx)


def home_row(_: Translator) -> list[dict[str, str]]:
    return [button(_("⬅️ Main menu"), HOME)]


def main_menu_keyboard(_: Translator, is_admin: bool = False) -> Keyboard:
    rows = [
        *([[web_app_button(_("🗺 Map"), url)]] if (url := get_settings().webapp_url) else []),
        [button(_("🔎 Browse deals"), "deals"), button(_("📍 Deals near me"), "near")],
        [button(_("🧾 My orders"), "orders"), button(_("❤️ My favourites"), "favs")],
        [button(_("🏪 For businesses"), "biz")],
        [button(_("🌐 Language"), "lang"), button(_("ℹ️ Help"), "help"), button(_("🔒 Privacy"), "privacy")],
    ]
    if is_admin:
        rows.append([button(_("🛠 Admin"), "admin")])
    return rows


def main_menu_text(ctx: Context) -> str:
    _ = ctx._
    name = isolate(ctx.user.first_name) if ctx.user.first_name else _("there")
    return _(
        "👋 Hi {name}! This is <b>Surplus</b>: good food from local bakeries, cafés and shops "
        "that would otherwise be thrown away, at a discount.\n\nWhat would you like to do?",
        name=_escape(name),
    )


def show_main_menu(ctx: Context) -> None:
    ctx.show(main_menu_text(ctx), main_menu_keyboard(ctx._, ctx.is_admin))


@command("start")
def cmd_start(ctx: Context, argument: str) -> None:
    for prefix, handler in DEEP_LINKS.items():
        if argument.startswith(prefix):
            handler(ctx, argument[len(prefix):])
            break
    else:
        show_main_menu(ctx)
    admin_arrived(ctx)


@command("cancel")
def cmd_cancel(ctx: Context, _argument: str) -> None:
    _ = ctx._
    ctx.reply(_("Cancelled. Nothing was saved.") if ctx.leave_flow() else _("There is nothing to cancel."))
    show_main_menu(ctx)


@on_button(HOME)
def btn_home(ctx: Context, _args: list[str]) -> None:
    show_main_menu(ctx)


@command("help")
def cmd_help(ctx: Context, _argument: str) -> None:
    show_help(ctx)


@on_button("help")
def btn_help(ctx: Context, _args: list[str]) -> None:
    show_help(ctx)


@command("language")
def cmd_language(ctx: Context, _argument: str) -> None:
    show_language_picker(ctx)


@on_button("lang")
def btn_language(ctx: Context, args: list[str]) -> None:
    if not args:
        show_language_picker(ctx)
        return
    code = args[0]
    if code not in LANGUAGE_NAMES:
        raise StaleButton
    ctx.user.language = code
    ctx._ = Translator(code)
    # The "/" menu too, in the chosen language, once this is committed.
    enqueue_after_commit(ctx.session, "notifications.set_chat_commands", ctx.user.id)
    ctx.toast(LANGUAGE_NAMES[code])
    show_main_menu(ctx)


def show_help(ctx: Context) -> None:
    _ = ctx._
    ctx.show(
        _(
            "<b>How it works</b>\n"
            "Businesses post surplus food with a pickup window. You reserve, pay by card, "
            "and collect it in the window by showing your pickup code.\n\n"
            "<b>Commands</b>\n"
            "/start — main menu\n"
            "/language — change the language\n"
            "/cancel — leave the current step\n"
            "/help — this help"
        ),
        [home_row(_)],
    )


def show_language_picker(ctx: Context) -> None:
    _ = ctx._
    rows = [[button(("✅ " if code == ctx.user.language else "") + name, f"lang:{code}")]
            for code, name in LANGUAGE_NAMES.items()]
    ctx.show(_("Choose your language:"), [*rows, home_row(_)])


def _escape(text: str) -> str:
    # Replies use HTML parse mode; user-provided text must not be read as markup.
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
