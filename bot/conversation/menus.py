"""The main menu, help and language screens: the part of the chat every user sees first."""

from __future__ import annotations

from bot.conversation.context import Context
from bot.conversation.replies import Keyboard, button
from core.i18n import LANGUAGE_NAMES, Translator

HOME = "menu"


def home_row(_: Translator) -> list[dict[str, str]]:
    return [button(_("⬅️ Main menu"), HOME)]


def main_menu_keyboard(_: Translator) -> Keyboard:
    return [
        [button(_("ℹ️ Help"), "help"), button(_("🌐 Language"), "lang")],
    ]


def main_menu_text(ctx: Context) -> str:
    _ = ctx._
    name = ctx.user.first_name or _("there")
    return _(
        "👋 Hi {name}! This is <b>Surplus</b>: good food from local bakeries, cafés and shops "
        "that would otherwise be thrown away, at a discount.\n\nWhat would you like to do?",
        name=_escape(name),
    )


def show_main_menu(ctx: Context) -> None:
    ctx.show(main_menu_text(ctx), main_menu_keyboard(ctx._))


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
