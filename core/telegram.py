"""All Bot API calls go through here (python-telegram-bot's `Bot`).

Each process keeps one event loop in a background thread and one `Bot` with a pooled HTTP
client, so a Celery task (synchronous code) makes a Bot API call without building a loop or a
connection per call. After a fork (Celery prefork) the child makes its own.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import datetime as dt
import os
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

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
    Message,
    ReplyKeyboardMarkup,
    ReplyKeyboardRemove,
    WebAppInfo,
)
from telegram.error import BadRequest, Forbidden, NetworkError, RetryAfter, TelegramError, TimedOut
from telegram.request import HTTPXRequest

from core.i18n import N_, Translator
from core.settings import get_settings

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


def make_bot(token: str, api_url: str) -> Bot:
    """A Bot pointed at `api_url` (Telegram, a local Bot API server, or the sandbox fake)."""
    request = HTTPXRequest(
        connection_pool_size=16, connect_timeout=5.0, read_timeout=15.0, write_timeout=30.0, pool_timeout=5.0
    )
    # getUpdates long-polls, so it gets its own client with a longer read timeout.
    polling = HTTPXRequest(connection_pool_size=2, connect_timeout=5.0, read_timeout=65.0)
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
            self.run(self.bot.shutdown(), timeout=5)
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)

    # The calls the project makes. Keyboards come as JSON-friendly rows (see inline_keyboard).

    def send_message(self, chat_id: int, text: str, keyboard: list | None = None, *, parse_mode: str | None = "HTML",
                     location_request: str | None = None, remove_keyboard: bool = False) -> Message:
        markup = reply_markup(keyboard, location_request, remove_keyboard)
        return self.run(self.bot.send_message(chat_id, text, reply_markup=markup, parse_mode=parse_mode))

    def edit_message_text(
        self, chat_id: int, message_id: int, text: str, keyboard: list | None = None, parse_mode: str | None = "HTML"
    ) -> Message | bool:
        return self.run(
            self.bot.edit_message_text(
                text, chat_id=chat_id, message_id=message_id, reply_markup=inline_keyboard(keyboard),
                parse_mode=parse_mode,
            )
        )

    def edit_message_caption(
        self, chat_id: int, message_id: int, caption: str, keyboard: list | None = None, parse_mode: str | None = "HTML"
    ) -> Message | bool:
        """A photo's (or a document's) caption and its buttons, in place."""
        return self.run(
            self.bot.edit_message_caption(
                chat_id=chat_id, message_id=message_id, caption=caption, reply_markup=inline_keyboard(keyboard),
                parse_mode=parse_mode,
            )
        )

    def send_photo(self, chat_id: int, photo: str | bytes, caption: str | None = None,
                   keyboard: list | None = None, parse_mode: str | None = "HTML") -> Message:
        return self.run(
            self.bot.send_photo(chat_id, photo, caption=caption, reply_markup=inline_keyboard(keyboard),
                                parse_mode=parse_mode)
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

    def start_answer_callback_query(self, callback_query_id: str, text: str | None = None,
                                    show_alert: bool = False) -> concurrent.futures.Future[bool]:
        return self.start(self.bot.answer_callback_query(callback_query_id, text=text, show_alert=show_alert))

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


def telegram_api() -> TelegramApi:
    """This process's client (created on first use, again after a fork)."""
    global _api, _api_pid
    with _lock:
        if _api is None or _api_pid != os.getpid():
            settings = get_settings()
            _api = TelegramApi(settings.telegram_token, settings.telegram_api_url)
            _api_pid = os.getpid()
        return _api
