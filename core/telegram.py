"""All Bot API calls go through here (python-telegram-bot's `Bot`).

Each process keeps one event loop in a background thread and one `Bot` with a pooled HTTP
client, so a Celery task (synchronous code) makes a Bot API call without building a loop or a
connection per call. After a fork (Celery prefork) the child makes its own.

The calls on every tap's path (send a text, edit a text or caption, send a photo by file_id) go
through `Bot.do_api_request` with the keyboard as the JSON it is stored as, and read the message
id from Telegram's JSON answer: the same `Bot`, its HTTP client and its errors (`BadRequest`,
`RetryAfter`, ...), without building python-telegram-bot's markup objects for the request and a
`Message` from the answer (measured in bench/report.md: a third of the client's CPU per call).
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import datetime as dt
import os
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from telegram import (
    Bot,
    BotCommand,
    BotCommandScopeChat,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InlineQueryResultArticle,
    InputFile,
    InputTextMessageContent,
    KeyboardButton,
    MenuButtonDefault,
    MenuButtonWebApp,
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    WebAppInfo,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut

from core.i18n import N_, Translator
from core.logging import get_logger
from core.settings import get_settings
from core.telegram_http import AiohttpRequest

T = TypeVar("T")

__all__ = [
    "ALLOWED_UPDATES",
    "BOT_COMMANDS",
    "BadRequest",
    "Forbidden",
    "NetworkError",
    "RetryAfter",
    "TelegramApi",
    "TelegramError",
    "TimedOut",
    "bot_commands",
    "inline_keyboard",
    "make_bot",
    "map_menu_button",
    "retry_after_seconds",
    "telegram_api",
]


def inline_keyboard(rows: list[list[dict[str, Any]]] | None) -> InlineKeyboardMarkup | None:
    """Rows of {"text", "callback_data" | "url" | "web_app_url"} (JSON-friendly, as stored in the outbox)."""
    if not rows:
        return None
    return InlineKeyboardMarkup([[_inline_button(button) for button in row] for row in rows])


def _inline_button(button: dict[str, Any]) -> InlineKeyboardButton:
    if "web_app_url" in button:
        return InlineKeyboardButton(button["text"], web_app=WebAppInfo(button["web_app_url"]))
    return InlineKeyboardButton(**button)


def reply_markup(keyboard: list | None = None, location_request: str | None = None, remove_keyboard: bool = False):
    """The markup of a message: inline buttons, or a location-sharing keyboard, or its removal."""
    if location_request:
        return ReplyKeyboardMarkup([[KeyboardButton(location_request, request_location=True)]],
                                   resize_keyboard=True, one_time_keyboard=True)
    if remove_keyboard:
        return ReplyKeyboardRemove()
    return inline_keyboard(keyboard)


@dataclass(frozen=True)
class SentMessage:
    """What the project reads of a message Telegram accepted: its id."""

    message_id: int


def raw_markup(keyboard: list | None = None, location_request: str | None = None,
               remove_keyboard: bool = False) -> dict[str, Any] | None:
    """`reply_markup` as the Bot API's JSON, for `Bot.do_api_request`."""
    if location_request:
        return {"keyboard": [[{"text": location_request, "request_location": True}]], "resize_keyboard": True,
                "one_time_keyboard": True}
    if remove_keyboard:
        return {"remove_keyboard": True}
    if not keyboard:
        return None
    return {"inline_keyboard": [[_raw_button(button) for button in row] for row in keyboard]}


def _raw_button(button: dict[str, Any]) -> dict[str, Any]:
    """A stored button as the Bot API's JSON: a Mini App button is stored flat (`web_app_url`)."""
    if "web_app_url" in button:
        return {"text": button["text"], "web_app": {"url": button["web_app_url"]}}
    return button


def _sent(result: Any, fallback: int | None = None) -> SentMessage | bool:
    """The answer of a send or an edit: the message's id, or True (an edit Telegram answered so)."""
    if isinstance(result, dict) and "message_id" in result:
        return SentMessage(int(result["message_id"]))
    return SentMessage(fallback) if fallback is not None and result is True else bool(result)


def retry_after_seconds(error: RetryAfter) -> float:
    value = error.retry_after
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


ALLOWED_UPDATES = ["message", "callback_query", "inline_query"]

BOT_COMMANDS = [
    ("start", N_("Main menu")),
    ("deals", N_("Browse deals")),
    ("orders", N_("Your orders")),
    ("help", N_("How it works")),
    ("register", N_("Register your business")),
    ("newoffer", N_("Post a new offer (businesses)")),
    ("myoffers", N_("Manage your offers (businesses)")),
    ("language", N_("Change the language")),
    ("privacy", N_("Export or delete your data")),
    ("cancel", N_("Leave the current step")),
]


def bot_commands(language: str) -> list[BotCommand]:
    """The "/" menu in ``language`` (set for everyone by bot.setup, per chat after /language)."""
    _ = Translator(language)
    return [BotCommand(name, _(description)) for name, description in BOT_COMMANDS]


MAP_BUTTON = N_("🗺 Map")


def map_menu_button(language: str, url: str) -> MenuButtonWebApp:
    """The menu button beside the message field: "🗺 Map" in ``language``, opening the Mini App at
    ``url`` (set for everyone by bot.setup, per chat in its person's language)."""
    return MenuButtonWebApp(Translator(language)(MAP_BUTTON), WebAppInfo(url))


def make_bot(token: str, api_url: str) -> Bot:
    """A Bot pointed at `api_url` (Telegram, a local Bot API server, or the sandbox fake)."""
    request = AiohttpRequest(
        connection_pool_size=16, connect_timeout=5.0, read_timeout=15.0, write_timeout=30.0, pool_timeout=5.0
    )
    # getUpdates long-polls, so it gets its own client with a longer read timeout.
    polling = AiohttpRequest(connection_pool_size=2, connect_timeout=5.0, read_timeout=65.0)
    return Bot(
        token, base_url=f"{api_url}/bot", base_file_url=f"{api_url}/file/bot",
        request=request, get_updates_request=polling,
    )


class TelegramApi:
    def __init__(self, token: str, api_url: str) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="telegram-io", daemon=True)
        self._thread.start()
        self.bot = make_bot(token, api_url)

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return self.start(coroutine).result(timeout)

    def start(self, coroutine: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Start a call and return at once: its future's ``result()`` waits for it."""
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop)

    def close(self) -> None:
        try:
            self.run(self._shutdown(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)

    async def _shutdown(self) -> None:
        # Bot.shutdown() does nothing for a Bot that was never initialize()d, as this one (its calls
        # need no getMe first), so the HTTP session it opened is closed here. getUpdates' own request
        # is never used by this client, and opens no session.
        await self.bot.shutdown()
        await self.bot.request.shutdown()

    # The calls the project makes. Keyboards come as JSON-friendly rows (see inline_keyboard).

    def call(self, method: str, **params: Any) -> Any:
        """A Bot API call through the `Bot`, with JSON-friendly parameters (None ones left out):
        Telegram's JSON answer as it is."""
        return self.run(self.bot.do_api_request(method, {k: v for k, v in params.items() if v is not None}))

    def send_message(self, chat_id: int, text: str, keyboard: list | None = None, *, parse_mode: str | None = "HTML",
                     location_request: str | None = None, remove_keyboard: bool = False,
                     paid_broadcast: bool = False) -> SentMessage:
        """`paid_broadcast`: Telegram's `allow_paid_broadcast` (up to 1,000 messages/s, for a fee)."""
        sent = _sent(self.call("sendMessage", chat_id=chat_id, text=text, parse_mode=parse_mode,
                               reply_markup=raw_markup(keyboard, location_request, remove_keyboard),
                               allow_paid_broadcast=paid_broadcast or None))
        assert isinstance(sent, SentMessage), "sendMessage answers with the message"
        return sent

    def edit_message_text(
        self, chat_id: int, message_id: int, text: str, keyboard: list | None = None, parse_mode: str | None = "HTML"
    ) -> SentMessage | bool:
        return _sent(self.call("editMessageText", chat_id=chat_id, message_id=message_id, text=text,
                               parse_mode=parse_mode, reply_markup=raw_markup(keyboard)), message_id)

    def edit_message_caption(
        self, chat_id: int, message_id: int, caption: str, keyboard: list | None = None, parse_mode: str | None = "HTML"
    ) -> SentMessage | bool:
        """A photo's (or a document's) caption and its buttons, in place."""
        return _sent(self.call("editMessageCaption", chat_id=chat_id, message_id=message_id, caption=caption,
                               parse_mode=parse_mode, reply_markup=raw_markup(keyboard)), message_id)

    @overload
    def send_photo(self, chat_id: int, photo: str, caption: str | None = None, keyboard: list | None = None, *,
                   parse_mode: str | None = "HTML", paid_broadcast: bool = False) -> SentMessage: ...

    @overload
    def send_photo(self, chat_id: int, photo: bytes, caption: str | None = None, keyboard: list | None = None, *,
                   parse_mode: str | None = "HTML", paid_broadcast: bool = False) -> Message: ...

    def send_photo(self, chat_id: int, photo: str | bytes, caption: str | None = None,
                   keyboard: list | None = None, *, parse_mode: str | None = "HTML",
                   paid_broadcast: bool = False) -> SentMessage | Message:
        """By file_id (a str: its message id) or an upload (bytes: the `Message`, whose `photo` holds
        the file_ids Telegram gave it)."""
        if isinstance(photo, str):
            sent = _sent(self.call("sendPhoto", chat_id=chat_id, photo=photo, caption=caption, parse_mode=parse_mode,
                                   reply_markup=raw_markup(keyboard), allow_paid_broadcast=paid_broadcast or None))
            assert isinstance(sent, SentMessage), "sendPhoto answers with the message"
            return sent
        return self.run(
            self.bot.send_photo(chat_id, photo, caption=caption, reply_markup=inline_keyboard(keyboard),
                                parse_mode=parse_mode, allow_paid_broadcast=paid_broadcast or None)
        )

    def send_document(self, chat_id: int, filename: str, content: bytes, *, caption: str | None = None,
                      keyboard: list | None = None, parse_mode: str | None = "HTML") -> Message:
        return self.run(
            self.bot.send_document(chat_id, InputFile(content, filename=filename), caption=caption,
                                   reply_markup=inline_keyboard(keyboard), parse_mode=parse_mode)
        )

    def send_venue(self, chat_id: int, latitude: float, longitude: float, title: str, address: str, *,
                   keyboard: list | None = None) -> Message:
        """A map pin with the place's name and address (sendVenue)."""
        return self.run(self.bot.send_venue(chat_id, latitude, longitude, title, address,
                                            reply_markup=inline_keyboard(keyboard)))

    def answer_inline_query(self, inline_query_id: str, results: list[dict[str, str]]) -> bool:
        """Deal cards for `@bot words` typed in any chat: articles whose message opens the deal in the bot.
        Personal and not cached: each customer's language and the deals now."""
        articles = [
            InlineQueryResultArticle(
                id=result["id"], title=result["title"], description=result.get("description"),
                input_message_content=InputTextMessageContent(result["text"], parse_mode="HTML"),
                reply_markup=InlineKeyboardMarkup([[InlineKeyboardButton(result["url_text"], url=result["url"])]]),
            )
            for result in results
        ]
        return self.run(self.bot.answer_inline_query(inline_query_id, articles, cache_time=0, is_personal=True))

    def set_chat_commands(self, chat_id: int, language: str) -> bool:
        """This chat's own "/" menu, in ``language`` whatever the language of the person's app."""
        return self.run(self.bot.set_my_commands(bot_commands(language), scope=BotCommandScopeChat(chat_id)))

    def delete_chat_commands(self, chat_id: int) -> bool:
        """Drop this chat's own "/" menu: the app shows the one for its language again."""
        return self.run(self.bot.delete_my_commands(scope=BotCommandScopeChat(chat_id)))

    def set_chat_menu_button(self, chat_id: int, language: str, url: str) -> bool:
        """This chat's menu button opens the Mini App at ``url``, its text in ``language`` (Telegram
        keeps one menu button per chat, with no language of its own)."""
        return self.run(self.bot.set_chat_menu_button(chat_id, map_menu_button(language, url)))

    def reset_chat_menu_button(self, chat_id: int) -> bool:
        """The chat shows the bot's default menu button again."""
        return self.run(self.bot.set_chat_menu_button(chat_id, MenuButtonDefault()))

    def start_answer_callback_query(self, callback_query_id: str, text: str | None = None,
                                    show_alert: bool = False) -> concurrent.futures.Future[bool]:
        # Through `do_api_request`, as every message is: PTB's typed method builds and checks its
        # arguments again for each of a flash sale's taps.
        return self.start(self.bot.do_api_request("answerCallbackQuery", {
            "callback_query_id": callback_query_id, **({"text": text} if text is not None else {}),
            **({"show_alert": True} if show_alert else {})}))

    def download_file(self, file_id: str) -> bytes:
        async def _download() -> bytes:
            file = await self.bot.get_file(file_id)
            return bytes(await file.download_as_bytearray())

        return self.run(_download())

    def get_me(self):
        return self.run(self.bot.get_me())


_api: TelegramApi | None = None
_api_pid: int | None = None
_lock = threading.Lock()
# A parent's client copied by a fork: its event loop's thread did not survive the fork, so it cannot
# be closed here, and collecting it would log an "Unclosed client session" error. Kept, unused.
_inherited: list[TelegramApi] = []


def telegram_api() -> TelegramApi:
    """This process's client (created on first use, again after a fork; closed at a normal exit)."""
    global _api, _api_pid
    with _lock:
        if _api is None or _api_pid != os.getpid():
            if _api is not None:
                _inherited.append(_api)
            settings = get_settings()
            _api = TelegramApi(settings.telegram_token, settings.telegram_api_url)
            _api_pid = os.getpid()
            atexit.register(_close_at_exit, _api, _api_pid)
        return _api


def _close_at_exit(api: TelegramApi, pid: int) -> None:
    if pid != os.getpid():  # a fork's copy of the handler: the parent closes its own client
        return
    try:
        api.close()
    except (TimeoutError, RuntimeError, OSError, TelegramError):  # exiting anyway: no reason to fail
        get_logger(__name__).debug("telegram_client_close_failed", exc_info=True)
