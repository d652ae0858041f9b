"""In-memory model of the sandbox: bots, users, private chats, messages, updates, calls, events.

All mutation happens under ``SandboxState.lock`` (a re-entrant lock, because the HTTP server's
event loop and in-process test code touch the state from different threads).  Code running in
the event loop must never ``await`` while holding it.  Every change bumps ``feed`` so waiters wake.
"""

from __future__ import annotations

import itertools
import secrets
import threading
import time
from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .faults import FaultInjector
from .feed import ChangeFeed
from .files import FileStore

DEFAULT_TOKEN = "123456:SANDBOX-TOKEN"
DEFAULT_BOT_ID = 123456
DEFAULT_BOT_USERNAME = "surplus_sandbox_bot"
DEFAULT_BOT_FIRST_NAME = "Surplus Sandbox"

# Update kinds Telegram only sends when they are listed in allowed_updates explicitly.
OPT_IN_UPDATE_KINDS = frozenset({"chat_member", "message_reaction", "message_reaction_count"})

MAX_RECORDED_CALLS = 20_000
MAX_RECORDED_EVENTS = 10_000
MAX_RECORDED_UPDATES = 5_000


def _without_none(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}


def now_timestamp() -> int:
    return int(time.time())


@dataclass
class User:
    id: int
    first_name: str
    last_name: str | None = None
    username: str | None = None
    language_code: str | None = None

    def api(self) -> dict[str, Any]:
        return _without_none(
            {
                "id": self.id,
                "is_bot": False,
                "first_name": self.first_name,
                "last_name": self.last_name,
                "username": self.username,
                "language_code": self.language_code,
            }
        )


@dataclass(frozen=True)
class BotIdentity:
    id: int
    first_name: str
    username: str

    @classmethod
    def for_token(cls, token: str) -> BotIdentity:
        bot_id_text, separator, secret = token.partition(":")
        if not separator or not secret or not bot_id_text.isdigit():
            raise ValueError(f"bot token must look like '<bot id>:<secret>', got {token!r}")
        bot_id = int(bot_id_text)
        if bot_id == DEFAULT_BOT_ID:
            return cls(bot_id, DEFAULT_BOT_FIRST_NAME, DEFAULT_BOT_USERNAME)
        return cls(bot_id, f"Sandbox Bot {bot_id}", f"sandbox_{bot_id}_bot")

    def api(self) -> dict[str, Any]:
        return {"id": self.id, "is_bot": True, "first_name": self.first_name, "username": self.username}


@dataclass
class StoredMessage:
    message_id: int
    sender: str  # "bot" or "user"
    date: int
    # Telegram fields describing what the message shows: text/entities, photo/caption, ...
    content: dict[str, Any]
    reply_markup: dict[str, Any] | None = None
    reply_to_message_id: int | None = None
    edit_date: int | None = None
    deleted: bool = False
    parse_mode: str | None = None
    source_text: str | None = None
    # Other Message fields echoed back as sent (link_preview_options, has_protected_content).
    extra: dict[str, Any] = field(default_factory=dict)
    created_seq: int = 0
    seq: int = 0  # feed version of the latest change (creation, edit or deletion)


class Chat:
    """A private chat between one user and one bot; its id is the user's id."""

    def __init__(self, bot: BotIdentity, user: User):
        self.bot = bot
        self.user = user
        self.messages: dict[int, StoredMessage] = {}
        self.blocked = False
        # The reply keyboard a client would currently show (only inline markup lives on messages).
        self.reply_keyboard: dict[str, Any] | None = None
        self.chat_instance = str(secrets.randbits(63))
        self._message_ids = itertools.count(1)

    @property
    def id(self) -> int:
        return self.user.id

    def api(self) -> dict[str, Any]:
        return _without_none(
            {
                "id": self.user.id,
                "type": "private",
                "first_name": self.user.first_name,
                "last_name": self.user.last_name,
                "username": self.user.username,
            }
        )

    def next_message_id(self) -> int:
        return next(self._message_ids)

    def live_message(self, message_id: int | None) -> StoredMessage | None:
        message = self.messages.get(message_id) if message_id is not None else None
        return message if message is not None and not message.deleted else None

    def message_api(self, message: StoredMessage, *, include_reply: bool = True) -> dict[str, Any]:
        """The message as the Bot API returns it."""
        sender = self.bot.api() if message.sender == "bot" else self.user.api()
        api: dict[str, Any] = {
            "message_id": message.message_id,
            "from": sender,
            "chat": self.api(),
            "date": message.date,
        }
        if message.edit_date is not None:
            api["edit_date"] = message.edit_date
        replied = self.live_message(message.reply_to_message_id) if include_reply else None
        if replied is not None:
            api["reply_to_message"] = self.message_api(replied, include_reply=False)
        api.update(message.content)
        if message.reply_markup and "inline_keyboard" in message.reply_markup:
            api["reply_markup"] = message.reply_markup
        api.update(message.extra)
        return api

    def transcript_entry(self, message: StoredMessage) -> dict[str, Any]:
        """The Bot API message plus sandbox bookkeeping, for the transcript and the web UI."""
        entry = self.message_api(message)
        entry.update(
            sender=message.sender,
            deleted=message.deleted,
            reply_markup=message.reply_markup,
            parse_mode=message.parse_mode,
            source_text=message.source_text,
            seq=message.seq,
        )
        return entry


@dataclass
class WebhookConfig:
    url: str
    secret_token: str | None
    max_connections: int
    has_custom_certificate: bool = False


@dataclass
class InlineQueryRecord:
    """`@bot words` typed by a user, and the bot's answer (answerInlineQuery) once it came."""

    id: str
    bot_id: int
    user_id: int
    query: str
    created: float
    results: list[dict[str, Any]] | None = None

    def describe(self) -> dict[str, Any]:
        return {"inline_query_id": self.id, "bot_id": self.bot_id, "user_id": self.user_id, "query": self.query,
                "answered": self.results is not None, "results": self.results or []}


@dataclass
class CallbackQueryRecord:
    id: str
    bot_id: int
    user_id: int
    message_id: int
    data: str | None
    created: float
    answer: dict[str, Any] | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "callback_query_id": self.id,
            "bot_id": self.bot_id,
            "user_id": self.user_id,
            "chat_id": self.user_id,
            "message_id": self.message_id,
            "data": self.data,
            "created": self.created,
            "answered": self.answer is not None,
            "answer": self.answer,
        }


def update_kind(update: dict[str, Any]) -> str | None:
    return next((key for key in update if key != "update_id"), None)


def update_chat_key(update: dict[str, Any]) -> int | None:
    """Chat an update belongs to, so webhook delivery can keep each chat's updates in order."""
    body = update.get(update_kind(update) or "")
    if not isinstance(body, dict):
        return None
    chat = body.get("chat") or (body.get("message") or {}).get("chat")
    if isinstance(chat, dict) and isinstance(chat.get("id"), int):
        return chat["id"]
    sender = body.get("from")
    return sender.get("id") if isinstance(sender, dict) else None


class BotAccount:
    """Everything Telegram keeps per bot: chats, undelivered updates, webhook, commands, menu buttons."""

    def __init__(self, identity: BotIdentity):
        self.identity = identity
        self.tokens: set[str] = set()
        # Each getUpdates/setWebhook call bumps it; an older long poll seeing a newer value ends
        # with 409 Conflict, like Telegram.  Deliberately not reset, so a reset never ends a poll.
        self.poll_generation = 0
        self.reset()

    @property
    def id(self) -> int:
        return self.identity.id

    def reset(self) -> None:
        self.chats: dict[int, Chat] = {}
        self.pending_updates: list[dict[str, Any]] = []
        # Like Telegram, never hand out an update_id twice, even across restarts of the fake: the
        # bot remembers ids it has seen (Redis, Postgres) and would drop a repeated one.
        self.next_update_id = time.time_ns() // 1_000_000
        self.allowed_updates: list[str] | None = None
        self.webhook: WebhookConfig | None = None
        self.last_error_date: int | None = None
        self.last_error_message: str | None = None
        self.in_flight: set[int] = set()
        self.busy_chats: set[int] = set()
        self.commands: dict[tuple[str, str], list[dict[str, Any]]] = {}
        # setChatMenuButton: per private chat (user id), and the bot's default (key None). Unset or
        # {"type": "default"} for a chat: the default applies; no default: the "/" menu (commands).
        self.menu_buttons: dict[int | None, dict[str, Any]] = {}
        self.callback_queries: dict[str, CallbackQueryRecord] = {}
        self.inline_queries: dict[str, InlineQueryRecord] = {}

    def menu_button(self, chat_id: int | None) -> dict[str, Any]:
        """The menu button a client shows in this chat (None: the bot's default)."""
        chosen = self.menu_buttons.get(chat_id) if chat_id is not None else None
        if chosen is None or chosen["type"] == "default":
            chosen = self.menu_buttons.get(None)
        return chosen if chosen is not None and chosen["type"] != "default" else {"type": "commands"}

    def is_allowed(self, update: dict[str, Any]) -> bool:
        kind = update_kind(update)
        if not self.allowed_updates:
            return kind not in OPT_IN_UPDATE_KINDS
        return kind in self.allowed_updates


class SandboxState:
    def __init__(self, tokens: Iterable[str], *, files_dir: str | Path | None = None):
        """``files_dir``: where uploaded files are kept so they outlive a restart (None: memory)."""
        self.lock = threading.RLock()
        self.feed = ChangeFeed()
        self.bots: dict[int, BotAccount] = {}
        self._bots_by_token: dict[str, BotAccount] = {}
        for token in tokens:
            identity = BotIdentity.for_token(token)
            bot = self.bots.setdefault(identity.id, BotAccount(identity))
            bot.tokens.add(token)
            self._bots_by_token[token] = bot
        if not self.bots:
            raise ValueError("at least one bot token is required")
        self.default_bot = next(iter(self.bots.values()))
        self.users: dict[int, User] = {}
        self.files = FileStore(files_dir)
        self.faults = FaultInjector()
        self.calls: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_CALLS)
        self._call_ids = itertools.count(1)
        self.status_counts: Counter[int] = Counter()
        self.paid_broadcasts = 0  # messages sent with allow_paid_broadcast (Telegram charges for them)
        self.events: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_EVENTS)
        # Every update handed to a bot (for the web UI's "last updates" panel), newest last.
        self.update_log: deque[dict[str, Any]] = deque(maxlen=MAX_RECORDED_UPDATES)
        self.closing = False

    # ----------------------------------------------------------------- lookups

    def bot_for_token(self, token: str) -> BotAccount | None:
        return self._bots_by_token.get(token)

    def get_bot(self, bot_id: int | None = None) -> BotAccount:
        if bot_id is None:
            return self.default_bot
        try:
            return self.bots[bot_id]
        except KeyError:
            raise LookupError(f"unknown bot {bot_id}") from None

    def get_user(self, user_id: int) -> User:
        with self.lock:
            user = self.users.get(user_id)
            if user is None:
                user = self.users[user_id] = User(user_id, f"User {user_id}")
            return user

    def upsert_user(self, user_id: int, **names: str | None) -> User:
        with self.lock:
            user = self.get_user(user_id)
            for name, value in names.items():
                if value is not None:
                    setattr(user, name, value)
            return user

    def open_chat(self, bot: BotAccount, user: User) -> Chat:
        with self.lock:
            chat = bot.chats.get(user.id)
            if chat is None:
                chat = bot.chats[user.id] = Chat(bot.identity, user)
            return chat

    # ----------------------------------------------------------------- events and messages

    def emit(
        self,
        event_type: str,
        *,
        chat: Chat | None = None,
        message: StoredMessage | None = None,
        **data: Any,
    ) -> int:
        """Publish an event for SSE/wait and wake every waiter; returns its sequence number.

        A message passed along is stamped with that number as its latest change.
        """
        with self.lock:
            seq = self.feed.bump()
            event: dict[str, Any] = {"seq": seq, "type": event_type, "time": time.time()}
            if chat is not None:
                event.update(bot_id=chat.bot.id, chat_id=chat.id)
                if message is not None:
                    message.seq = seq
                    event["message"] = chat.transcript_entry(message)
            event.update(data)
            self.events.append(event)
            return seq

    def add_message(
        self,
        chat: Chat,
        sender: str,
        content: dict[str, Any],
        *,
        reply_markup: dict[str, Any] | None = None,
        reply_to_message_id: int | None = None,
        parse_mode: str | None = None,
        source_text: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> StoredMessage:
        with self.lock:
            message = StoredMessage(
                message_id=chat.next_message_id(),
                sender=sender,
                date=now_timestamp(),
                content=content,
                reply_markup=reply_markup,
                reply_to_message_id=reply_to_message_id,
                parse_mode=parse_mode,
                source_text=source_text,
                extra=extra or {},
            )
            chat.messages[message.message_id] = message
            if sender == "bot" and reply_markup:
                if "keyboard" in reply_markup:
                    chat.reply_keyboard = reply_markup
                elif reply_markup.get("remove_keyboard"):
                    chat.reply_keyboard = None
            elif sender == "user" and chat.reply_keyboard and chat.reply_keyboard.get("one_time_keyboard"):
                chat.reply_keyboard = None
            self.emit("message_new", chat=chat, message=message)
            message.created_seq = message.seq
            return message

    def edit_message(
        self,
        chat: Chat,
        message: StoredMessage,
        *,
        content: dict[str, Any] | None = None,
        reply_markup: dict[str, Any] | None = None,
        parse_mode: str | None = None,
        source_text: str | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """Replace content (when given) and the reply markup (always, as Telegram does)."""
        with self.lock:
            if content is not None:
                message.content = content
                message.parse_mode = parse_mode
                message.source_text = source_text
            if extra is not None:
                message.extra = extra
            message.reply_markup = reply_markup
            message.edit_date = now_timestamp()
            self.emit("message_edited", chat=chat, message=message)

    def delete_message(self, chat: Chat, message: StoredMessage) -> None:
        with self.lock:
            message.deleted = True
            self.emit("message_deleted", chat=chat, message=message)

    def transcript(self, bot: BotAccount, chat_id: int) -> list[dict[str, Any]] | None:
        with self.lock:
            chat = bot.chats.get(chat_id)
            if chat is None:
                return None
            return [chat.transcript_entry(message) for message in chat.messages.values()]

    def bot_changes_since(self, bot: BotAccount, chat_id: int, after_seq: int) -> list[dict[str, Any]]:
        """Bot messages in the chat created, edited or deleted after ``after_seq``."""
        with self.lock:
            chat = bot.chats.get(chat_id)
            if chat is None:
                return []
            return [
                chat.transcript_entry(message)
                for message in chat.messages.values()
                if message.sender == "bot" and message.seq > after_seq
            ]

    def seq_of_message(self, bot: BotAccount, chat_id: int, message_id: int) -> int:
        """Feed version when the chat's messages up to ``message_id`` all existed."""
        with self.lock:
            chat = bot.chats.get(chat_id)
            if chat is None:
                return 0
            return max(
                (m.created_seq for m in chat.messages.values() if m.message_id <= message_id), default=0
            )

    def events_after(self, seq: int, *, bot_id: int | None = None, chat_id: int | None = None) -> list[dict]:
        with self.lock:
            return [
                event
                for event in self.events
                if event["seq"] > seq
                and (bot_id is None or event.get("bot_id") in (None, bot_id))
                and (chat_id is None or event.get("chat_id") in (None, chat_id))
            ]

    # ----------------------------------------------------------------- updates

    def queue_update(self, bot: BotAccount, update: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if not isinstance(update.get("update_id"), int):
                update = {"update_id": bot.next_update_id, **update}
            bot.next_update_id = max(bot.next_update_id, update["update_id"] + 1)
            bot.pending_updates.append(update)
            self.update_log.append(
                {"bot_id": bot.id, "chat_id": update_chat_key(update), "time": time.time(), "update": update}
            )
            self.feed.bump()
            return update

    def confirm_updates(self, bot: BotAccount, offset: int | None) -> None:
        """getUpdates offset semantics: drop everything before ``offset``; negative keeps the tail."""
        with self.lock:
            if not offset:
                return
            if offset > 0:
                bot.pending_updates = [u for u in bot.pending_updates if u["update_id"] >= offset]
            else:
                bot.pending_updates = bot.pending_updates[offset:]

    def _drop_disallowed(self, bot: BotAccount) -> None:
        bot.pending_updates = [u for u in bot.pending_updates if bot.is_allowed(u)]

    def updates_for_polling(self, bot: BotAccount, limit: int) -> list[dict[str, Any]]:
        with self.lock:
            self._drop_disallowed(bot)
            return bot.pending_updates[:limit]

    def claim_update(self, bot: BotAccount) -> dict[str, Any] | None:
        """Next update a webhook worker may send: not in flight, and its chat not busy."""
        with self.lock:
            self._drop_disallowed(bot)
            for update in bot.pending_updates:
                chat_key = update_chat_key(update)
                if update["update_id"] in bot.in_flight or chat_key in bot.busy_chats:
                    continue
                bot.in_flight.add(update["update_id"])
                if chat_key is not None:
                    bot.busy_chats.add(chat_key)
                return update
            return None

    def release_update(self, bot: BotAccount, update: dict[str, Any], *, delivered: bool) -> None:
        with self.lock:
            bot.in_flight.discard(update["update_id"])
            bot.busy_chats.discard(update_chat_key(update))
            if delivered:
                bot.pending_updates = [u for u in bot.pending_updates if u is not update]
            self.feed.bump()

    def record_webhook_error(self, bot: BotAccount, message: str) -> None:
        with self.lock:
            bot.last_error_date = now_timestamp()
            bot.last_error_message = message

    # ----------------------------------------------------------------- call log

    def record_call(
        self,
        bot: BotAccount | None,
        method: str,
        params: dict[str, Any],
        *,
        status: int,
        body: dict[str, Any],
        duration: float,
    ) -> None:
        with self.lock:
            self.calls.append(
                {
                    "id": next(self._call_ids),
                    "time": time.time(),
                    "duration": duration,
                    "bot_id": bot.id if bot else None,
                    "method": method,
                    "params": params,
                    "status": status,
                    "ok": body.get("ok", False),
                    "result": body.get("result"),
                    "description": body.get("description"),
                    "parameters": body.get("parameters"),
                }
            )
            self.status_counts[status] += 1
            self.feed.bump()

    def recorded_calls(self, method: str | None = None, since: int = 0) -> list[dict[str, Any]]:
        with self.lock:
            return [
                call
                for call in self.calls
                if call["id"] > since and (method is None or call["method"].lower() == method.lower())
            ]

    def stats(self) -> dict[str, Any]:
        with self.lock:
            by_method = Counter(call["method"] for call in self.calls)
            return {
                "calls": sum(self.status_counts.values()),
                "by_method": dict(by_method),
                "by_status": {str(status): count for status, count in self.status_counts.items()},
                "too_many_requests": self.status_counts[429],
                "paid_broadcasts": self.paid_broadcasts,
                "pending_updates": {str(bot.id): len(bot.pending_updates) for bot in self.bots.values()},
            }

    # ----------------------------------------------------------------- lifecycle

    def reset(self) -> None:
        """Forget users, chats, files, updates, webhooks, calls and faults; keep the bots."""
        with self.lock:
            for bot in self.bots.values():
                bot.reset()
            self.users.clear()
            self.files.clear()
            self.faults.clear()
            self.calls.clear()
            self.update_log.clear()
            self.status_counts.clear()
            self.paid_broadcasts = 0
            self.emit("reset")

    def close(self) -> None:
        """Wake every waiter for shutdown: long polls answer, SSE streams and workers end."""
        with self.lock:
            self.closing = True
            self.feed.bump()
