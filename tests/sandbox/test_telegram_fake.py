"""The Telegram fake, driven through the real python-telegram-bot ``Bot`` and the control API."""

from __future__ import annotations

import asyncio
import datetime as dtm
import html
import io
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

import httpx
import pytest
import telegram
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image
from telegram import (
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    KeyboardButton,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    Update,
)
from telegram.error import BadRequest, Conflict, Forbidden, InvalidToken, NetworkError, RetryAfter
from telegram.helpers import escape_markdown

from sandbox.telegram_fake import (
    DEFAULT_BOT_ID,
    DEFAULT_BOT_USERNAME,
    DEFAULT_TOKEN,
    SandboxError,
    TelegramFake,
    TelegramFakeClient,
)
from sandbox.telegram_fake.feed import ChangeFeed
from sandbox.telegram_fake.formatting import format_text

pytestmark = [
    pytest.mark.timeout(30),
    # PTB itself reads RetryAfter.retry_after while building the exception.
    pytest.mark.filterwarnings("ignore:Deprecated since version v22.2:telegram.warnings.PTBDeprecationWarning"),
]

USER = 1001


@pytest.fixture(scope="module")
def fake() -> Iterator[TelegramFake]:
    with TelegramFake(webhook_retry_initial=0.05, webhook_retry_max=0.2) as running:
        yield running


@pytest.fixture
def client(fake: TelegramFake) -> Iterator[TelegramFakeClient]:
    fake.reset()
    with fake.client() as sandbox_client:
        yield sandbox_client


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def png_bytes(width: int, height: int, color: str = "green") -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), color).save(buffer, "PNG")
    return buffer.getvalue()


async def fetch_updates(fake: TelegramFake, **kwargs: Any) -> tuple[Update, ...]:
    async with fake.make_bot() as bot:
        return await bot.get_updates(**kwargs)


def retry_after_seconds(error: RetryAfter) -> float:
    value = error.retry_after
    return value.total_seconds() if isinstance(value, dtm.timedelta) else value


KEYBOARD = InlineKeyboardMarkup(
    [[InlineKeyboardButton("Reserve", callback_data="reserve:7"), InlineKeyboardButton("Map", url="https://example.org")]]
)


# --------------------------------------------------------------------------- identity, envelope


def test_get_me_returns_the_sandbox_bot(fake: TelegramFake, client: TelegramFakeClient) -> None:
    async def scenario() -> telegram.User:
        async with fake.make_bot() as bot:
            return await bot.get_me()

    me = run(scenario())
    assert (me.id, me.username, me.first_name, me.is_bot) == (
        DEFAULT_BOT_ID, DEFAULT_BOT_USERNAME, "Surplus Sandbox", True)


def test_unknown_token_and_method_use_telegram_envelope(fake: TelegramFake, client: TelegramFakeClient) -> None:
    with httpx.Client(base_url=fake.url) as http:
        unauthorized = http.post("/bot999:WRONG/getMe")
        missing = http.post(f"/bot{DEFAULT_TOKEN}/doesNotExist")
        case_insensitive = http.get(f"/bot{DEFAULT_TOKEN}/GETME")
        json_body = http.post(f"/bot{DEFAULT_TOKEN}/sendMessage", json={"chat_id": USER, "text": "hi"})
    assert unauthorized.status_code == 401
    assert unauthorized.json() == {"ok": False, "error_code": 401, "description": "Unauthorized"}
    assert missing.status_code == 404
    assert missing.json() == {"ok": False, "error_code": 404, "description": "Not Found"}
    assert case_insensitive.json()["result"]["id"] == DEFAULT_BOT_ID
    assert json_body.status_code == 400
    assert json_body.json() == {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}

    async def scenario() -> None:
        async with telegram.Bot("999:WRONG", base_url=fake.base_url) as bot:
            await bot.get_me()

    with pytest.raises(InvalidToken):
        run(scenario())


# --------------------------------------------------------------------------- messages


def test_send_edit_delete_with_inline_keyboard(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            sent = await bot.send_message(USER, "Offer: <b>3 croissants</b>", parse_mode="HTML", reply_markup=KEYBOARD)
            assert sent.text == "Offer: 3 croissants"
            assert [(e.type, e.offset, e.length) for e in sent.entities] == [("bold", 7, 12)]
            assert sent.reply_markup == KEYBOARD
            assert sent.from_user.id == DEFAULT_BOT_ID and sent.chat.id == USER and sent.chat.type == "private"

            edited = await bot.edit_message_text("Reserved!", chat_id=USER, message_id=sent.message_id)
            assert edited.text == "Reserved!" and edited.edit_date is not None
            assert edited.reply_markup is None  # an edit without reply_markup drops the keyboard

            with pytest.raises(BadRequest, match="Message is not modified"):
                await bot.edit_message_text("Reserved!", chat_id=USER, message_id=sent.message_id)

            restored = await bot.edit_message_reply_markup(USER, sent.message_id, reply_markup=KEYBOARD)
            assert restored.reply_markup == KEYBOARD
            assert await bot.delete_message(USER, sent.message_id) is True
            with pytest.raises(BadRequest, match="Message to edit not found"):
                await bot.edit_message_text("again", chat_id=USER, message_id=sent.message_id)
            with pytest.raises(BadRequest, match="Message to delete not found"):
                await bot.delete_message(USER, sent.message_id)

    run(scenario())
    user_message, bot_message = client.messages(USER)
    assert (user_message["sender"], user_message["text"], user_message["deleted"]) == ("user", "/start", False)
    assert (bot_message["sender"], bot_message["text"], bot_message["deleted"]) == ("bot", "Reserved!", True)
    assert bot_message["reply_markup"] == KEYBOARD.to_dict()
    assert bot_message["source_text"] == "Reserved!"


def test_reply_keyboard_and_reply_parameters(fake: TelegramFake, client: TelegramFakeClient) -> None:
    question = client.send_text(USER, "where?")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            keyboard = ReplyKeyboardMarkup([[KeyboardButton("Share location", request_location=True), "Cancel"]])
            reply = await bot.send_message(
                USER, "Pick one", reply_markup=keyboard, reply_to_message_id=question["message_id"]
            )
            assert reply.reply_to_message.text == "where?"
            assert reply.reply_markup is None  # reply keyboards are not part of Message objects
            assert client.chat(USER)["reply_keyboard"]["keyboard"][0][1] == {"text": "Cancel"}
            await bot.send_message(USER, "ok", reply_markup=ReplyKeyboardRemove())
            with pytest.raises(BadRequest, match="Message to be replied not found"):
                await bot.send_message(USER, "x", reply_to_message_id=999)

    run(scenario())
    assert client.chat(USER)["reply_keyboard"] is None


@pytest.mark.parametrize(
    ("kwargs", "description"),
    [
        ({"text": ""}, "Message text is empty"),
        ({"text": "x" * 4097}, "Message is too long"),
        ({"chat_id": 424242}, "Chat not found"),
        ({"text": "Fish & Chips < 5", "parse_mode": "HTML"},
         'Can\'t parse entities: unsupported start tag "" at byte offset 13'),
        ({"text": "Price 5.00", "parse_mode": "MarkdownV2"}, "Can't parse entities: character '.' is reserved"),
        (
            {"reply_markup": InlineKeyboardMarkup([[InlineKeyboardButton("x", callback_data="d" * 65)]])},
            "Button_data_invalid",
        ),
    ],
)
def test_bad_requests_raise_bad_request(
    fake: TelegramFake, client: TelegramFakeClient, kwargs: dict[str, Any], description: str
) -> None:
    client.send_text(USER, "/start")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            await bot.send_message(**{"chat_id": USER, "text": "hello", **kwargs})

    with pytest.raises(BadRequest) as caught:
        run(scenario())
    assert caught.value.message.startswith(description)
    assert client.calls("sendMessage")[-1]["status"] == 400


def test_bot_cannot_initiate_conversation(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.create_user(77, "Never", started=False)

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            await bot.send_message(77, "hi")

    with pytest.raises(Forbidden, match="can't initiate conversation"):
        run(scenario())


def test_calls_are_recorded_with_decoded_params(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "hi")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            await bot.send_message(USER, "hello", reply_markup=KEYBOARD)

    run(scenario())
    (get_me,) = client.calls("getMe")
    assert get_me["params"] == {} and get_me["result"]["id"] == DEFAULT_BOT_ID
    (call,) = client.calls("sendmessage", since=get_me["id"])
    assert call["method"] == "sendMessage" and call["status"] == 200 and call["ok"] is True
    assert call["params"]["chat_id"] == USER
    assert call["params"]["reply_markup"] == KEYBOARD.to_dict()
    assert call["result"]["text"] == "hello"
    assert client.calls(since=call["id"]) == []


def test_set_and_get_my_commands(fake: TelegramFake, client: TelegramFakeClient) -> None:
    async def scenario() -> None:
        async with fake.make_bot() as bot:
            await bot.set_my_commands([("start", "Start"), ("offers", "Nearby offers")])
            await bot.set_my_commands([("start", "Début")], language_code="fr")
            assert [c.command for c in await bot.get_my_commands()] == ["start", "offers"]
            assert [c.description for c in await bot.get_my_commands(language_code="fr")] == ["Début"]
            with pytest.raises(BadRequest, match="Bot_command_invalid"):
                await bot.set_my_commands([("Bad-Command", "x")])

    run(scenario())


# --------------------------------------------------------------------------- callbacks


def test_callback_query_answer_once(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            offer = await bot.send_message(USER, "Offer", reply_markup=KEYBOARD)
            with pytest.raises(SandboxError, match="no button"):
                client.press_button(USER, offer.message_id, "reserve:8")
            with pytest.raises(SandboxError, match="has no callback_data"):
                client.press_button(USER, offer.message_id, text="Map")
            pressed = client.press_button(USER, offer.message_id, "reserve:7")
            updates = await bot.get_updates()
            query = updates[-1].callback_query
            assert query.id == pressed["callback_query_id"]
            assert (query.data, query.from_user.id, query.message.message_id) == ("reserve:7", USER, offer.message_id)
            assert await query.answer("Reserved", show_alert=True) is True
            with pytest.raises(BadRequest, match="Query is too old"):
                await query.answer("again")
            with pytest.raises(BadRequest, match="Query is too old"):
                await bot.answer_callback_query("12345")
            forged = client.press_button(USER, offer.message_id, "admin:drop", forge=True)
            assert forged["callback_query"]["data"] == "admin:drop"

    run(scenario())
    answered = [a for a in client.callback_answers() if a["answered"]]
    assert [(a["data"], a["answer"]["text"], a["answer"]["show_alert"]) for a in answered] == [
        ("reserve:7", "Reserved", True)
    ]


def test_a_web_app_button_opens_with_init_data_signed_for_the_bot(fake: TelegramFake,
                                                                   client: TelegramFakeClient) -> None:
    """What the web chat opens for a ``web_app`` button: the Mini App's own validator
    (webapp/auth.py, written apart from the fake's signer) accepts its initData, for this user."""
    from urllib.parse import parse_qs, urlsplit

    from webapp import auth

    client.send_text(USER, "/start")
    markup = InlineKeyboardMarkup([[InlineKeyboardButton("🗺 Map", web_app=telegram.WebAppInfo("https://app.example/"))],
                                   [InlineKeyboardButton("Reserve", callback_data="reserve:7")]])

    async def scenario() -> int:
        async with fake.make_bot() as bot:
            return (await bot.send_message(USER, "Menu", reply_markup=markup)).message_id

    message_id = run(scenario())
    with pytest.raises(SandboxError, match="no web_app button"):
        client.open_web_app(USER, message_id, "Reserve")
    opened = urlsplit(client.open_web_app(USER, message_id, "🗺 Map"))
    assert (opened.scheme, opened.netloc, opened.path) == ("https", "app.example", "/")
    launch = {name: values[0] for name, values in parse_qs(opened.fragment).items()}
    user = auth.validate(launch["tgWebAppData"], DEFAULT_TOKEN, now=time.time(), max_age=60)
    assert user.id == USER
    assert json.loads(launch["tgWebAppThemeParams"])["bg_color"].startswith("#")
    with pytest.raises(auth.InvalidInitData):
        auth.validate(launch["tgWebAppData"], "1:ANOTHER-BOT", now=time.time(), max_age=60)
    # The web chat plays Telegram's phone app (it has the QR scanner), or the client it is asked to.
    assert (launch["tgWebAppVersion"], launch["tgWebAppPlatform"]) == ("8.0", "android")
    on_the_web = urlsplit(client.open_web_app(USER, message_id, "🗺 Map", platform="weba"))
    assert parse_qs(on_the_web.fragment)["tgWebAppPlatform"] == ["weba"]
    with pytest.raises(SandboxError, match="platform must be one of"):
        client.open_web_app(USER, message_id, "🗺 Map", platform="nokia")


def test_the_menu_button_per_chat_and_by_default_as_the_bot_api_answers(fake: TelegramFake,
                                                                          client: TelegramFakeClient) -> None:
    """setChatMenuButton / getChatMenuButton through python-telegram-bot, answered in Telegram's
    wire format, and what a client then shows beside the message field and opens."""
    from urllib.parse import parse_qs, urlsplit

    from webapp import auth

    client.send_text(USER, "/start")
    other = USER + 1
    client.send_text(other, "/start")
    map_en = telegram.MenuButtonWebApp("🗺 Map", telegram.WebAppInfo("https://app.example/"))
    map_de = telegram.MenuButtonWebApp("🗺 Karte", telegram.WebAppInfo("https://app.example/"))

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            # Nothing set: the default is the "/" menu, a chat has none of its own.
            assert await bot.get_chat_menu_button() == telegram.MenuButtonCommands()
            assert await bot.get_chat_menu_button(USER) == telegram.MenuButtonDefault()
            assert await bot.set_chat_menu_button(menu_button=map_en) is True
            assert await bot.set_chat_menu_button(USER, map_de) is True
            assert await bot.get_chat_menu_button() == map_en
            assert await bot.get_chat_menu_button(USER) == map_de
            assert await bot.get_chat_menu_button(other) == telegram.MenuButtonDefault()
            for refused, match in ((9_999_999, "User not found"), (-5, "Invalid chat_id specified")):
                with pytest.raises(BadRequest, match=match):
                    await bot.set_chat_menu_button(refused, map_de)
            with pytest.raises(BadRequest, match="only https links are allowed"):
                await bot.set_chat_menu_button(
                    USER, telegram.MenuButtonWebApp("🗺", telegram.WebAppInfo("ftp://app.example/")))

    run(scenario())
    for raw, description in (
        ("[1]", "Bad Request: can't parse menu button: MenuButton must be an Object"),
        ('{"type": "menu"}', "Bad Request: can't parse menu button: MenuButton has unsupported type"),
        ("{", "Bad Request: can't parse menu button JSON object"),
    ):
        answer = httpx.post(f"{fake.url}/bot{DEFAULT_TOKEN}/setChatMenuButton", data={"menu_button": raw}).json()
        assert answer == {"ok": False, "error_code": 400, "description": description}
    assert client.menu_button(USER) == {"type": "web_app", "text": "🗺 Karte", "web_app": {"url": "https://app.example/"}}
    assert client.menu_button(other)["text"] == "🗺 Map"  # the bot's default
    opened = urlsplit(client.open_menu_button(USER))
    assert (opened.netloc, opened.path) == ("app.example", "/")
    launch = {name: values[0] for name, values in parse_qs(opened.fragment).items()}
    assert auth.validate(launch["tgWebAppData"], DEFAULT_TOKEN, now=time.time(), max_age=60).id == USER

    async def back_to_default() -> None:
        async with fake.make_bot() as bot:
            await bot.set_chat_menu_button(USER, telegram.MenuButtonDefault())  # the chat follows the default
            assert await bot.get_chat_menu_button(USER) == telegram.MenuButtonDefault()
            await bot.set_chat_menu_button(menu_button=telegram.MenuButtonCommands())

    run(back_to_default())
    assert client.menu_button(USER) == {"type": "commands"}
    with pytest.raises(SandboxError, match="opens no Mini App"):
        client.open_menu_button(USER)


# --------------------------------------------------------------------------- files


def test_send_photo_upload_then_by_file_id(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")
    original = png_bytes(1200, 600)

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            first = await bot.send_photo(USER, original, caption="<i>Fresh</i> bread", parse_mode="HTML")
            assert [(p.width, p.height) for p in first.photo] == [(90, 45), (320, 160), (800, 400), (1200, 600)]
            assert first.photo[-1].file_size == len(original)
            assert first.caption == "Fresh bread" and first.caption_entities[0].type == "italic"
            again = await bot.send_photo(USER, first.photo[-1].file_id)
            assert [p.file_unique_id for p in again.photo] == [p.file_unique_id for p in first.photo]
            downloaded = await (await bot.get_file(again.photo[-1].file_id)).download_as_bytearray()
            assert bytes(downloaded) == original
            with pytest.raises(BadRequest, match="Wrong file identifier"):
                await bot.send_photo(USER, "no-such-file-id")
            with pytest.raises(BadRequest, match="Image_process_failed"):
                await bot.send_photo(USER, b"not an image", filename="x.jpg")
            with pytest.raises(BadRequest, match="Message caption is too long"):
                await bot.send_photo(USER, first.photo[-1].file_id, caption="c" * 1025)

    run(scenario())


def test_files_outlive_a_restart_on_the_same_directory(tmp_path: Path) -> None:
    """The bot keeps file_ids in Postgres; a restarted fake (make run's supervisor restarts it) must
    still know them, or every older deal's card fails with "Wrong file identifier"."""
    original = png_bytes(1200, 600)

    async def upload(fake: TelegramFake) -> tuple[str, str, str]:
        async with fake.make_bot() as bot:
            photo = await bot.send_photo(USER, original, caption="before the restart")
            document = await bot.send_document(USER, b"date,orders\n", filename="orders.csv")
            return photo.photo[-1].file_id, photo.photo[0].file_id, document.document.file_id

    with TelegramFake(files_dir=tmp_path) as first:
        first.client().send_text(USER, "/start")
        photo_id, thumbnail_id, document_id = run(upload(first))

    async def use(fake: TelegramFake) -> None:
        async with fake.make_bot() as bot:
            again = await bot.send_photo(USER, photo_id, caption="after the restart")
            assert again.photo[-1].file_id == photo_id and again.photo[-1].file_size == len(original)
            assert [(p.width, p.height) for p in again.photo] == [(90, 45), (320, 160), (800, 400), (1200, 600)]
            by_thumbnail = await bot.send_photo(USER, thumbnail_id)
            assert by_thumbnail.photo[-1].file_id == photo_id  # any size's id still sends the whole photo
            assert bytes(await (await bot.get_file(photo_id)).download_as_bytearray()) == original
            document = await bot.send_document(USER, document_id)
            assert bytes(await (await bot.get_file(document.document.file_id)).download_as_bytearray()) == \
                b"date,orders\n"
            fresh = await bot.send_photo(USER, png_bytes(300, 200))  # new uploads get new paths
            assert fresh.photo[-1].file_id != photo_id
            assert (await bot.get_file(fresh.photo[-1].file_id)).file_path != (await bot.get_file(photo_id)).file_path

    with TelegramFake(files_dir=tmp_path) as second:
        second.client().send_text(USER, "/start")  # chats are not kept: the user writes first again
        run(use(second))
        second.reset()  # forgets the files, on disk too
    with TelegramFake(files_dir=tmp_path) as third:
        third.client().send_text(USER, "/start")

        async def forgotten() -> None:
            async with third.make_bot() as bot:
                with pytest.raises(BadRequest, match="Wrong file identifier"):
                    await bot.send_photo(USER, photo_id)

        run(forgotten())


def test_files_are_in_memory_without_a_directory(fake: TelegramFake, client: TelegramFakeClient) -> None:
    assert fake.state.files.directory is None


def test_user_photo_and_document_download(fake: TelegramFake, client: TelegramFakeClient) -> None:
    original = png_bytes(640, 480, "blue")
    client.send_photo(USER, original, caption="my leftovers")
    client.send_document(USER, b"%PDF-1.4 menu", file_name="menu.pdf", caption="menu")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            photo_update, document_update = await bot.get_updates()
            largest = photo_update.message.photo[-1]
            assert (largest.width, largest.height) == (640, 480)
            assert photo_update.message.caption == "my leftovers"
            buffer = io.BytesIO()
            await (await bot.get_file(largest.file_id)).download_to_memory(buffer)
            assert buffer.getvalue() == original

            document = document_update.message.document
            assert (document.file_name, document.mime_type, document.file_size) == ("menu.pdf", "application/pdf", 13)
            assert bytes(await (await bot.get_file(document.file_id)).download_as_bytearray()) == b"%PDF-1.4 menu"
            sent = await bot.send_document(USER, document.file_id, caption="got it")
            assert sent.document.file_id == document.file_id
            with pytest.raises(BadRequest, match="Invalid file_id"):
                await bot.get_file("unknown")

    run(scenario())


# --------------------------------------------------------------------------- faults


def test_fault_switches_map_to_ptb_errors(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")
    client.set_fault("sendMessage", retry_after=3)
    client.set_fault("sendMessage", status=502, count=2)
    client.set_fault("sendChatAction", status=400, description="Bad Request: custom failure")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            with pytest.raises(RetryAfter) as caught:
                await bot.send_message(USER, "one")
            assert retry_after_seconds(caught.value) == 3
            for _ in range(2):
                with pytest.raises(NetworkError, match="Bad Gateway"):
                    await bot.send_message(USER, "two")
            with pytest.raises(BadRequest, match="Custom failure"):
                await bot.send_chat_action(USER, "typing")
            assert (await bot.send_message(USER, "three")).text == "three"

    run(scenario())
    assert [c["status"] for c in client.calls("sendMessage")] == [429, 502, 502, 200]
    assert client.calls("sendMessage")[0]["parameters"] == {"retry_after": 3}
    assert client.stats()["too_many_requests"] == 1
    assert [m["text"] for m in client.messages(USER) if m["sender"] == "bot"] == ["three"]


def test_global_fault_applies_to_every_method(fake: TelegramFake, client: TelegramFakeClient) -> None:
    async def scenario() -> None:
        async with fake.make_bot() as bot:
            client.set_fault(status=500)
            with pytest.raises(NetworkError, match="Internal Server Error"):
                await bot.get_webhook_info()
            assert (await bot.get_webhook_info()).url == ""

    run(scenario())


def test_an_unreachable_telegram_never_carries_out_calls_whose_client_gave_up(
    fake: TelegramFake, client: TelegramFakeClient
) -> None:
    client.create_user(USER)
    url = f"{fake.url}/bot{fake.tokens[0]}/sendMessage"
    client.set_unreachable(True)
    with pytest.raises(httpx.ReadTimeout):  # the caller gives up (or crashes) while it waits
        httpx.post(url, json={"chat_id": USER, "text": "lost"}, timeout=0.5)

    pending: dict[str, Any] = {}
    waiting = threading.Thread(target=lambda: pending.update(
        httpx.post(url, json={"chat_id": USER, "text": "delivered"}, timeout=10).json()))
    waiting.start()
    time.sleep(0.3)
    assert waiting.is_alive()  # held while Telegram is out of reach
    client.set_unreachable(False)
    waiting.join(5)

    assert pending["ok"] is True
    assert [m["text"] for m in client.messages(USER)] == ["delivered"]


def test_blocked_user_raises_forbidden_and_notifies_bot(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")
    blocked = client.block(USER)

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            with pytest.raises(Forbidden, match="bot was blocked by the user"):
                await bot.send_message(USER, "are you there?")
            with pytest.raises(Forbidden):
                await bot.send_chat_action(USER, "typing")
            updates = await bot.get_updates()
            member_update = updates[-1]
            assert member_update.update_id == blocked["update_id"]
            assert member_update.my_chat_member.new_chat_member.status == "kicked"
            client.block(USER, blocked=False)
            assert (await bot.send_message(USER, "welcome back")).text == "welcome back"

    with pytest.raises(SandboxError, match="blocked the bot"):
        client.send_text(USER, "hello")
    run(scenario())


def _send_each(fake: TelegramFake, sends: list[tuple[int, bool]]) -> list[str]:
    """Send a message to each (chat, paid broadcast?) in turn: "ok", or "retry <seconds>" for a 429."""

    async def scenario() -> list[str]:
        outcomes = []
        async with fake.make_bot() as bot:
            for chat_id, paid in sends:
                try:
                    await bot.send_message(chat_id, "deal", allow_paid_broadcast=paid or None)
                    outcomes.append("ok")
                except RetryAfter as error:
                    outcomes.append(f"retry {retry_after_seconds(error):g}")
        return outcomes

    return run(scenario())


def test_rate_limit_enforcement(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")
    client.send_text(USER + 1, "/start")
    client.set_rate_limit(per_chat_per_second=0.5, per_chat_burst=3, global_per_second=0.1, global_burst=4)
    # Per chat: a burst of 3, then 2 s until the next token; globally a burst of 4, then 10 s.
    outcomes = _send_each(fake, [(chat, False) for chat in [USER] * 4 + [USER + 1] * 2])
    assert outcomes == ["ok", "ok", "ok", "retry 2", "ok", "retry 10"]
    assert client.stats()["too_many_requests"] == 2
    client.set_rate_limit(False)


def test_paid_broadcasts_have_their_own_budget(fake: TelegramFake, client: TelegramFakeClient) -> None:
    chats = [USER + n for n in range(6)]
    for chat in chats:
        client.send_text(chat, "/start")
    client.set_rate_limit(global_per_second=0.1, global_burst=2, paid_per_second=0.1, paid_burst=3)
    # Two free messages use up the global budget; paid ones still go, three of them, then wait 10 s.
    outcomes = _send_each(fake, [(chat, index >= 2) for index, chat in enumerate(chats)])
    assert outcomes == ["ok", "ok", "ok", "ok", "ok", "retry 10"]
    assert client.stats()["paid_broadcasts"] == 3
    client.set_rate_limit(False)


# --------------------------------------------------------------------------- getUpdates


def test_get_updates_offset_semantics(fake: TelegramFake, client: TelegramFakeClient) -> None:
    ids = [client.send_text(USER, f"m{n}")["update_id"] for n in range(3)]

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            assert [u.update_id for u in await bot.get_updates()] == ids
            assert [u.update_id for u in await bot.get_updates()] == ids  # nothing confirmed yet
            assert [u.update_id for u in await bot.get_updates(offset=ids[1], limit=1)] == [ids[1]]
            assert [u.update_id for u in await bot.get_updates(offset=ids[-1] + 1)] == []
            assert await bot.get_updates() == ()  # confirmed updates are gone for good
            later = [client.send_text(USER, f"n{n}")["update_id"] for n in range(3)]
            assert [u.update_id for u in await bot.get_updates(offset=-1)] == [later[-1]]
            assert [u.update_id for u in await bot.get_updates()] == [later[-1]]

    run(scenario())


def test_get_updates_long_poll_wakes_on_new_update(fake: TelegramFake, client: TelegramFakeClient) -> None:
    account = fake.state.default_bot

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            generation = account.poll_generation
            poll = asyncio.create_task(bot.get_updates(timeout=10))
            # Event-driven: wait until the fake holds the long poll, then act as the user.
            await asyncio.to_thread(fake.state.feed.wait_for_sync, lambda: account.poll_generation > generation, 5)
            started = time.monotonic()
            await asyncio.to_thread(client.send_text, USER, "/start promo42")
            (update,) = await asyncio.wait_for(poll, 5)
            assert time.monotonic() - started < 5  # the poll itself would wait 10 s
            assert update.message.text == "/start promo42"
            assert update.message.entities[0].type == "bot_command"
            assert update.message.parse_entities(["bot_command"]).popitem()[1] == "/start"

    run(scenario())


def test_second_poller_and_webhook_terminate_get_updates(fake: TelegramFake, client: TelegramFakeClient) -> None:
    account = fake.state.default_bot

    async def wait_for_poll(generation: int) -> None:
        await asyncio.to_thread(fake.state.feed.wait_for_sync, lambda: account.poll_generation > generation, 5)

    async def scenario() -> None:
        async with fake.make_bot() as first, fake.make_bot() as second:
            generation = account.poll_generation
            first_poll = asyncio.create_task(first.get_updates(timeout=10))
            await wait_for_poll(generation)
            second_poll = asyncio.create_task(second.get_updates(timeout=10))
            with pytest.raises(Conflict, match="terminated by other getUpdates request"):
                await asyncio.wait_for(first_poll, 5)
            await first.set_webhook("http://127.0.0.1:9/hook")
            with pytest.raises(Conflict, match="terminated by setWebhook request"):
                await asyncio.wait_for(second_poll, 5)
            with pytest.raises(Conflict, match="can't use getUpdates method while webhook is active"):
                await first.get_updates()
            await first.delete_webhook()

    run(scenario())


def test_allowed_updates_filter(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")

    async def scenario() -> None:
        async with fake.make_bot() as bot:
            offer = await bot.send_message(USER, "Offer", reply_markup=KEYBOARD)
            client.press_button(USER, offer.message_id, "reserve:7")
            text_update = client.send_text(USER, "text")["update_id"]
            updates = await bot.get_updates(allowed_updates=["message"])
            assert [u.update_id for u in updates][-1] == text_update
            assert all(u.message is not None for u in updates)

    run(scenario())


# --------------------------------------------------------------------------- webhook


class WebhookReceiver:
    """A tiny HTTP server standing in for the application's webhook endpoint."""

    def __init__(self, fail_first: int = 0, reply: dict[str, Any] | None = None):
        self.attempts: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self._condition = threading.Condition()
        self._failures_left = fail_first
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with receiver._condition:
                    attempt = {"secret": self.headers.get("X-Telegram-Bot-Api-Secret-Token"), "update": body}
                    receiver.attempts.append(attempt)
                    failing = receiver._failures_left > 0
                    receiver._failures_left -= 1
                    if not failing:
                        receiver.delivered.append(attempt)
                    receiver._condition.notify_all()
                payload = json.dumps(reply if reply and not failing else {}).encode()
                self.send_response(500 if failing else 200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/telegram/webhook"
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def wait_for_deliveries(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self._condition:
            assert self._condition.wait_for(lambda: len(self.delivered) >= count, timeout), self.attempts
            return list(self.delivered)


def test_webhook_delivery_with_secret_and_retry(fake: TelegramFake, client: TelegramFakeClient) -> None:
    with WebhookReceiver(fail_first=2) as receiver:

        async def configure() -> None:
            async with fake.make_bot() as bot:
                assert await bot.set_webhook(receiver.url, secret_token="s3cr3t_-", max_connections=1)

        run(configure())
        sent = client.send_text(USER, "/start")
        (delivery,) = receiver.wait_for_deliveries(1)
        assert delivery["secret"] == "s3cr3t_-"
        update = Update.de_json(delivery["update"], None)
        assert update.update_id == sent["update_id"] and update.message.text == "/start"
        assert [a["update"]["update_id"] for a in receiver.attempts] == [sent["update_id"]] * 3

        account = fake.state.default_bot
        assert fake.state.feed.wait_for_sync(lambda: not account.pending_updates, 5) is True

        async def inspect() -> telegram.WebhookInfo:
            async with fake.make_bot() as bot:
                return await bot.get_webhook_info()

        info = run(inspect())
        assert info.url == receiver.url and info.pending_update_count == 0 and info.max_connections == 1
        assert info.last_error_message == "Wrong response from the webhook: 500 Internal Server Error"
        assert info.last_error_date is not None


def test_webhook_keeps_chat_order_and_never_drops(fake: TelegramFake, client: TelegramFakeClient) -> None:
    with WebhookReceiver(fail_first=3) as receiver:

        async def configure() -> None:
            async with fake.make_bot() as bot:
                await bot.set_webhook(receiver.url, max_connections=4, allowed_updates=["message"])

        run(configure())
        sent = [client.send_text(USER + n % 2, f"msg {n}")["update_id"] for n in range(6)]
        client.send_update({"callback_query": {"id": "1", "from": {"id": 1, "is_bot": False, "first_name": "x"}}})
        delivered = receiver.wait_for_deliveries(6)
        assert sorted(d["update"]["update_id"] for d in delivered) == sent
        for chat_id in (USER, USER + 1):
            in_chat = [d["update"]["update_id"] for d in delivered if d["update"]["message"]["chat"]["id"] == chat_id]
            assert in_chat == sorted(in_chat)
        account = fake.state.default_bot
        assert fake.state.feed.wait_for_sync(lambda: not account.pending_updates, 5) is True


def test_webhook_response_can_carry_a_method_call(fake: TelegramFake, client: TelegramFakeClient) -> None:
    reply = {"method": "sendMessage", "chat_id": USER, "text": "answered inline"}
    with WebhookReceiver(reply=reply) as receiver:

        async def configure() -> None:
            async with fake.make_bot() as bot:
                await bot.set_webhook(receiver.url)

        run(configure())
        sent = client.send_text(USER, "hi")
        (answer,) = client.wait_for_reply(USER, sent["message_id"], timeout=5)
        assert answer["text"] == "answered inline"


# --------------------------------------------------------------------------- user side


def test_each_injected_update_kind_parses(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.create_user(USER, "Ada", last_name="Lovelace", username="ada_l", language_code="en")
    text = client.send_text(USER, "Hello @surplus_sandbox_bot see https://example.org")
    client.edit_text(USER, text["message_id"], "Hello again")
    client.send_location(USER, 52.52, 13.405)
    client.send_photo(USER, png_bytes(50, 40))
    client.send_document(USER, b"a,b\n1,2\n", file_name="stock.csv")
    raw = client.send_update({"message": {"message_id": 1, "date": 0, "chat": {"id": 5, "type": "private"}}})
    client.block(USER)

    updates = run(fetch_updates(fake))
    kinds = [next(k for k in u.to_dict() if k != "update_id") for u in updates]
    assert kinds == ["message", "edited_message", "message", "message", "message", "message", "my_chat_member"]
    first = updates[0].message
    assert first.from_user.full_name == "Ada Lovelace" and first.from_user.language_code == "en"
    assert first.chat.username == "ada_l"
    assert [e.type for e in first.entities] == ["mention", "url"]
    assert updates[1].edited_message.text == "Hello again"
    assert updates[2].message.location.latitude == pytest.approx(52.52)
    assert updates[3].message.photo[-1].width == 50
    assert updates[4].message.document.mime_type == "text/csv"
    assert updates[5].update_id == raw["update_id"] and updates[5].message.chat.id == 5
    assert updates[6].my_chat_member.old_chat_member.status == "member"


def test_update_ids_continue_across_restarts() -> None:
    """The bot remembers update ids it has handled; a restarted fake must not hand them out again."""
    with TelegramFake() as first:
        earlier = first.client().send_text(USER, "before the restart")["update_id"]
    with TelegramFake() as second:
        assert second.client().send_text(USER, "after the restart")["update_id"] > earlier


def test_raw_update_keeps_given_id(fake: TelegramFake, client: TelegramFakeClient) -> None:
    first = 10**15  # above the fake's own counter, which starts at the clock in milliseconds
    given = client.send_update({"update_id": first, "unknown_kind": {"weird": True}})
    follow_up = client.send_text(USER, "after")
    assert (given["update_id"], follow_up["update_id"]) == (first, first + 1)
    updates = run(fetch_updates(fake))
    assert [u.update_id for u in updates] == [first, first + 1]


def test_wait_for_reply_sees_new_messages_and_edits(fake: TelegramFake, client: TelegramFakeClient) -> None:
    sent = client.send_text(USER, "/offers")

    def bot_replies(action: Any) -> threading.Thread:
        async def act() -> None:
            async with fake.make_bot() as bot:
                await action(bot)

        thread = threading.Thread(target=run, args=(act(),))
        thread.start()
        return thread

    async def reply(bot: telegram.Bot) -> None:
        await bot.send_message(USER, "2 offers nearby", reply_markup=KEYBOARD)

    thread = bot_replies(reply)
    (offer,) = client.wait_for_reply(USER, sent["message_id"], timeout=5)
    thread.join()
    assert offer["text"] == "2 offers nearby"
    assert fake.wait_for_reply(USER, sent["message_id"], timeout=1)[0]["message_id"] == offer["message_id"]

    pressed = client.press_button(USER, offer["message_id"], "reserve:7")

    async def edit(bot: telegram.Bot) -> None:
        await bot.edit_message_text("Reserved", chat_id=USER, message_id=offer["message_id"])

    thread = bot_replies(edit)
    (edited,) = client.wait_for_reply(USER, after_seq=pressed["seq"], timeout=5)
    thread.join()
    assert (edited["message_id"], edited["text"], edited["reply_markup"]) == (offer["message_id"], "Reserved", None)

    with pytest.raises(TimeoutError):
        client.wait_for_reply(USER, after_seq=edited["seq"], timeout=0.2)
    with pytest.raises(TimeoutError):
        fake.wait_for_reply(USER, after_seq=edited["seq"], timeout=0.2)


def test_server_sent_events_stream(fake: TelegramFake, client: TelegramFakeClient) -> None:
    with httpx.Client(base_url=fake.url, timeout=5) as http, http.stream("GET", "/_sandbox/events") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        lines = response.iter_lines()
        assert next(lines) == ": connected"
        client.send_text(USER, "hello")
        event_lines: list[str] = []
        for line in lines:
            if line:
                event_lines.append(line)
            elif event_lines:
                break
    fields = dict(line.split(": ", 1) for line in event_lines)
    assert fields["event"] == "message_new"
    data = json.loads(fields["data"])
    assert (data["chat_id"], data["message"]["text"], data["message"]["sender"]) == (USER, "hello", "user")


def test_reset_clears_everything(fake: TelegramFake, client: TelegramFakeClient) -> None:
    client.send_text(USER, "/start")
    client.set_fault(status=500, count=5)
    client.reset()
    assert client.messages(USER) == []
    assert client.calls() == []
    assert run(fetch_updates(fake)) == ()


# --------------------------------------------------------------------------- change feed


def test_change_feed_wakes_threads_and_tasks_promptly() -> None:
    feed = ChangeFeed()
    changed: list[bool] = []
    results: list[bool] = []
    waiter = threading.Thread(target=lambda: results.append(feed.wait_for_sync(lambda: bool(changed), 10)))
    waiter.start()

    async def scenario() -> bool:
        task = asyncio.create_task(feed.wait_for(lambda: bool(changed), 10))
        await asyncio.sleep(0)  # let the task register as a waiter
        threading.Thread(target=lambda: (changed.append(True), feed.bump())).start()
        return await asyncio.wait_for(task, 2)

    started = time.monotonic()
    assert run(scenario()) is True
    waiter.join(2)
    assert results == [True] and time.monotonic() - started < 5  # the waiter would give up after 10 s
    assert feed.wait_for_sync(lambda: False, 0.01) is False


# --------------------------------------------------------------------------- formatting properties


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_escaped_markdown_v2_round_trips(text: str) -> None:
    assert format_text(escape_markdown(text, version=2), "MarkdownV2", None)[0] == text


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=60))
def test_escaped_html_round_trips(text: str) -> None:
    assert format_text(html.escape(text, quote=False), "HTML", None)[0] == text


def test_entity_offsets_count_utf16_units() -> None:
    text, entities = format_text("🍞 <b>bread</b>", "HTML", None)
    assert text == "🍞 bread"
    assert entities == [{"type": "bold", "offset": 3, "length": 5}]


# --------------------------------------------------------------------------- command line


def test_command_line_serves_and_logs_each_request(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    files = tmp_path / "files"  # not make run's .run/telegram-fake/files
    env = {**os.environ, "TELEGRAM_FAKE_PORT": str(port), "PYTHONPATH": str(root),
           "TELEGRAM_FAKE_FILES_DIR": str(files)}
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox.telegram_fake", "--token", "42:CLI-TOKEN"],
        cwd=root,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stderr is not None
        startup = []
        for line in process.stderr:
            startup.append(line)
            if "Application startup complete" in line:
                break
        assert any(f"listening on http://127.0.0.1:{port}" in line for line in startup), startup
        me = httpx.get(f"http://127.0.0.1:{port}/bot42:CLI-TOKEN/getMe").json()["result"]
        assert (me["id"], me["username"]) == (42, "sandbox_42_bot")
        assert files.is_dir()
    finally:
        process.send_signal(signal.SIGINT)
        _, rest = process.communicate(timeout=10)
    assert process.returncode == 0, rest
    assert "GET /bot<token>/getMe 200" in rest
    assert "42:CLI-TOKEN/getMe" not in rest
