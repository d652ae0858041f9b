"""A person's language, through the Telegram fake and a real worker: the "/" menu and the menu
button follow the language chosen with /language, and after "delete my data" they start afresh in their app's
language, as a new user would."""

from __future__ import annotations

import os
import time

import httpx

from core import db
from core.settings import SANDBOX_BOT_TOKEN
from models import User
from tests.e2e.conftest import new_user_id


def buttons(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row]


def say(stack, user: int, text: str) -> dict:
    sent = stack.telegram.send_text(user, text)
    return stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)[-1]


def tap(stack, user: int, message: dict, data: str) -> dict:
    pressed = stack.telegram.press_button(user, message["message_id"], data)
    return stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)[-1]


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def slash_menu(stack, chat_id: int | None, app_language: str) -> dict:
    """The "/" menu a Telegram app in ``app_language`` shows in this chat (the narrowest scope the
    bot set one for: the chat, then everyone)."""
    params = {"language_code": app_language, **({"chat_id": chat_id} if chat_id is not None else {})}
    return httpx.get(f"{stack.telegram_url}/_sandbox/commands", params=params, timeout=10).json()


def descriptions(menu: dict) -> dict[str, str]:
    return {command["command"]: command["description"] for command in menu["commands"]}


def test_everyone_finds_deals_and_orders_in_the_slash_menu_in_their_language(stack):
    english, german = descriptions(slash_menu(stack, None, "en")), descriptions(slash_menu(stack, None, "de"))
    assert {"deals", "orders"} <= set(english) and {"deals", "orders"} <= set(german)
    assert (english["deals"], german["deals"]) == ("Browse deals", "Angebote ansehen")
    assert (english["orders"], german["orders"]) == ("Your orders", "Deine Bestellungen")


def test_the_slash_menu_follows_the_language_chosen_in_the_chat(stack, user):
    stack.telegram.create_user(user, "Ana", language_code="en")
    picker = say(stack, user, "/language")
    menu = tap(stack, user, picker, "lang:de")
    assert "Hallo Ana" in menu["text"].replace("\u2068", "").replace("\u2069", "")
    # The app is still English, the chat is German now: so is its "/" menu.
    german = wait_for(lambda: (m := slash_menu(stack, user, "en"))["scope"] == {"type": "chat", "chat_id": user}
                      and m)
    assert descriptions(german)["start"] == "Hauptmenü" and descriptions(german)["orders"] == "Deine Bestellungen"

    picker = say(stack, user, "/language")
    tap(stack, user, picker, "lang:en")
    wait_for(lambda: descriptions(slash_menu(stack, user, "en")).get("start") == "Main menu")


def test_after_deleting_my_data_i_start_afresh_in_my_apps_language(stack, user):
    stack.telegram.create_user(user, "Ben", language_code="en")
    picker = say(stack, user, "/language")
    tap(stack, user, picker, "lang:de")
    wait_for(lambda: slash_menu(stack, user, "en")["scope"] == {"type": "chat", "chat_id": user})

    screen = say(stack, user, "/privacy")
    confirm = tap(stack, user, screen, "privacy:delete")
    assert "privacy:delete:yes" in buttons(confirm)
    stack.telegram.press_button(user, confirm["message_id"], "privacy:delete:yes")
    wait_for(lambda: any("Daten wurden gelöscht:" in (m.get("text") or "") for m in stack.telegram.messages(user)))
    with db.session_scope() as session:
        assert session.get(User, user).deleted_at is not None
    # The chat's own German menu is gone: the app's English one shows again.
    wait_for(lambda: slash_menu(stack, user, "en")["scope"] == {"type": "default"})

    # Writing again, they are greeted as a new user would be: in their app's language.
    sent = stack.telegram.send_text(user, "/start")
    menu = wait_for(lambda: next((m for m in stack.telegram.messages(user) if m["message_id"] > sent["message_id"]
                                  and "Surplus" in (m.get("text") or "")), None))
    assert "Hi" in menu["text"] and "Hallo" not in menu["text"]
    with db.session_scope() as session:
        assert session.get(User, user).language == "en"


def test_the_menu_button_opens_the_map_in_my_language(stack, user):
    """Telegram's menu button has no language: the bot's default one is English, and a chat whose
    person speaks another language gets its own, from the first message on and after /language."""
    stack.telegram.create_user(user, "Greta", language_code="de")
    say(stack, user, "/start")
    german = wait_for(lambda: (button := stack.telegram.menu_button(user)).get("text") == "🗺 Karte" and button)
    assert german["web_app"]["url"] == os.environ["WEBAPP_URL"]
    picker = say(stack, user, "/language")
    tap(stack, user, picker, "lang:en")
    wait_for(lambda: stack.telegram.menu_button(user).get("text") == "🗺 Map")

    english = new_user_id()
    stack.telegram.create_user(english, "Emma", language_code="en")
    say(stack, english, "/start")
    # No chat of its own: the bot's default, which bot.setup set, opens the same app.
    assert httpx.get(f"{stack.telegram_url}/bot{SANDBOX_BOT_TOKEN}/getChatMenuButton",
                     params={"chat_id": english}, timeout=10).json()["result"] == {"type": "default"}
    assert stack.telegram.menu_button(english) == german | {"text": "🗺 Map"}
