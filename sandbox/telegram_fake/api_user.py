"""The user side: a JSON control API under ``/_sandbox/`` that plays Telegram users and
exposes what the bot did (transcripts, recorded calls, events) for tests and the web UI."""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, Literal, overload
from urllib.parse import urlencode

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from .api_bot import MAX_CAPTION_LENGTH, MAX_TEXT_LENGTH, json_response
from .errors import ApiError
from .faults import RateLimitSettings
from .files import guess_mime_type, prepare_photo
from .formatting import detect_entities, utf16_len
from .http_params import read_request_values
from .markup import inline_buttons
from .state import (
    BotAccount,
    CallbackQueryRecord,
    Chat,
    InlineQueryRecord,
    SandboxState,
    StoredMessage,
    now_timestamp,
    update_kind,
)

DEFAULT_WAIT_SECONDS = 10.0
MAX_WAIT_SECONDS = 120.0
SSE_KEEPALIVE_SECONDS = 15.0
_CLOSED = object()


class UserApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


Endpoint = Callable[[Request], Awaitable[Response]]


def _endpoint(handler: Endpoint) -> Endpoint:
    """Turn validation failures into ``{"ok": false, "error": ...}`` responses."""

    @wraps(handler)
    async def wrapper(request: Request) -> Response:
        try:
            return await handler(request)
        except UserApiError as error:
            return json_response({"ok": False, "error": error.message}, error.status)
        except ApiError as error:  # e.g. an undecodable photo
            return json_response({"ok": False, "error": error.description}, error.status)
        except LookupError as error:
            return json_response({"ok": False, "error": str(error.args[0])}, 404)

    return wrapper


def _ok(**data: Any) -> Response:
    return json_response({"ok": True, **data})


def _state(request: Request) -> SandboxState:
    return request.app.state.sandbox


async def _values(request: Request) -> dict[str, Any]:
    """Query parameters merged with a JSON, urlencoded or multipart body."""
    try:
        values, _ = await read_request_values(request)
    except ApiError as error:
        raise UserApiError(400, error.description) from error
    return values


@overload
def _int(values: dict[str, Any], name: str, default: int, *, required: bool = False) -> int: ...
@overload
def _int(values: dict[str, Any], name: str, default: None = None, *, required: Literal[True]) -> int: ...
@overload
def _int(values: dict[str, Any], name: str, default: int | None = None, *, required: bool = False) -> int | None: ...
def _int(values: dict[str, Any], name: str, default: int | None = None, *, required: bool = False) -> int | None:
    """The integer `name`; `required` raises a 400 when it is absent, so it never returns None then."""
    value = values.get(name)
    if value is None or value == "":
        if required:
            raise UserApiError(400, f"{name} is required")
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise UserApiError(400, f"{name} must be an integer") from None


def _flag(values: dict[str, Any], name: str, default: bool = False) -> bool:
    value = values.get(name, default)
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes")
    return bool(value)


def _bot(state: SandboxState, values: dict[str, Any]) -> BotAccount:
    return state.get_bot(_int(values, "bot_id"))


def _user_names(values: dict[str, Any]) -> dict[str, Any]:
    return {name: values.get(name) for name in ("first_name", "last_name", "username", "language_code")}


def _chat_for_user(state: SandboxState, bot: BotAccount, values: dict[str, Any]) -> Chat:
    """The user's chat with the bot, creating user and chat on first use.  Caller holds the lock."""
    user_id = _int(values, "user_id", required=True)
    user = state.upsert_user(user_id, **_user_names(values))
    chat = state.open_chat(bot, user)
    if chat.blocked:
        raise UserApiError(409, f"user {user_id} has blocked the bot; unblock them first")
    return chat


def _post_user_message(
    state: SandboxState, bot: BotAccount, values: dict[str, Any], content: dict[str, Any]
) -> dict[str, Any]:
    with state.lock:
        chat = _chat_for_user(state, bot, values)
        reply_to = _int(values, "reply_to_message_id")
        if reply_to is not None and chat.live_message(reply_to) is None:
            raise UserApiError(400, f"message {reply_to} to reply to not found")
        message = state.add_message(chat, "user", content, reply_to_message_id=reply_to)
        api = chat.message_api(message)
        update = state.queue_update(bot, {"message": api})
        return {
            "update_id": update["update_id"],
            "message_id": message.message_id,
            "chat_id": chat.id,
            "seq": message.seq,
            "message": api,
        }


def _text_with_entities(text: str, text_key: str, entities_key: str) -> dict[str, Any]:
    content: dict[str, Any] = {text_key: text}
    entities = detect_entities(text)
    if entities:
        content[entities_key] = entities
    return content


def _caption(values: dict[str, Any]) -> dict[str, Any]:
    caption = values.get("caption")
    if not caption:
        return {}
    caption = str(caption)
    if utf16_len(caption) > MAX_CAPTION_LENGTH:
        raise UserApiError(400, "caption is too long")
    return _text_with_entities(caption, "caption", "caption_entities")


async def _upload(request: Request) -> tuple[dict[str, Any], bytes, str | None, str | None]:
    """(values, bytes, file name, mime type) of a multipart ``file`` or a JSON ``base64`` field."""
    try:
        values, files = await read_request_values(request)
    except ApiError as error:
        raise UserApiError(400, error.description) from error
    uploaded = files.get("file") or next(iter(files.values()), None)
    if uploaded is not None:
        return values, uploaded.data, uploaded.filename, uploaded.content_type
    encoded = values.get("base64")
    if not encoded:
        raise UserApiError(400, "send the file as multipart field 'file' or as JSON field 'base64'")
    try:
        data = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError):
        raise UserApiError(400, "base64 is not valid base64") from None
    return values, data, values.get("file_name"), values.get("mime_type")


# --------------------------------------------------------------------------- users and messages


@_endpoint
async def create_user(request: Request) -> Response:
    state = _state(request)
    values = await _values(request)
    user_id = _int(values, "id", _int(values, "user_id"))
    if user_id is None:
        raise UserApiError(400, "id is required")
    bot = _bot(state, values)
    with state.lock:
        user = state.upsert_user(user_id, **_user_names(values))
        # A created user has started the bot unless told otherwise, so the bot may message them.
        if _flag(values, "started", True):
            state.open_chat(bot, user)
        return _ok(user=user.api())


@_endpoint
async def list_users(request: Request) -> Response:
    state = _state(request)
    with state.lock:
        return _ok(users=[user.api() for user in state.users.values()])


@_endpoint
async def send_text(request: Request) -> Response:
    state = _state(request)
    values = await _values(request)
    text = values.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserApiError(400, "text must be a non-empty string")
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise UserApiError(400, "text is too long")
    content = _text_with_entities(text, "text", "entities")
    return _ok(**_post_user_message(state, _bot(state, values), values, content))


@_endpoint
async def edit_text(request: Request) -> Response:
    """The user edits one of their text messages -> ``edited_message`` update."""
    state = _state(request)
    values = await _values(request)
    text = values.get("text")
    if not isinstance(text, str) or not text.strip():
        raise UserApiError(400, "text must be a non-empty string")
    bot = _bot(state, values)
    with state.lock:
        chat = _chat_for_user(state, bot, values)
        message = chat.live_message(_int(values, "message_id", required=True))
        if message is None or message.sender != "user" or "text" not in message.content:
            raise UserApiError(400, "no text message of this user with that message_id")
        state.edit_message(chat, message, content=_text_with_entities(text, "text", "entities"))
        api = chat.message_api(message)
        update = state.queue_update(bot, {"edited_message": api})
        return _ok(update_id=update["update_id"], message_id=message.message_id, seq=message.seq, message=api)


@_endpoint
async def send_location(request: Request) -> Response:
    state = _state(request)
    values = await _values(request)
    try:
        location = {"latitude": float(values["latitude"]), "longitude": float(values["longitude"])}
    except (KeyError, TypeError, ValueError):
        raise UserApiError(400, "latitude and longitude must be numbers") from None
    return _ok(**_post_user_message(state, _bot(state, values), values, {"location": location}))


@_endpoint
async def send_photo(request: Request) -> Response:
    state = _state(request)
    values, data, _, _ = await _upload(request)
    variants = await asyncio.to_thread(prepare_photo, data)
    bot = _bot(state, values)
    caption = _caption(values)
    with state.lock:
        sizes = state.files.add_photo(variants)
        content = {"photo": [size.photo_size_api() for size in sizes], **caption}
        return _ok(**_post_user_message(state, bot, values, content))


@_endpoint
async def send_document(request: Request) -> Response:
    state = _state(request)
    values, data, file_name, mime_type = await _upload(request)
    file_name = values.get("file_name") or file_name or "document"
    mime_type = values.get("mime_type") or mime_type
    if not mime_type or mime_type == "application/octet-stream":
        mime_type = guess_mime_type(file_name)
    bot = _bot(state, values)
    caption = _caption(values)
    with state.lock:
        stored = state.files.add_document(data, file_name, mime_type)
        content = {"document": stored.document_api(), **caption}
        return _ok(**_post_user_message(state, bot, values, content))


def _pressed_message(state: SandboxState, bot: BotAccount, values: dict[str, Any]) -> tuple[Chat, int, StoredMessage]:
    """The bot's message whose button the user pressed (``message_id``).  Caller holds the lock."""
    chat = _chat_for_user(state, bot, values)
    message_id = _int(values, "message_id", required=True)
    message = chat.live_message(message_id)
    if message is None or message.sender != "bot":
        raise UserApiError(400, f"no bot message {message_id} in chat {chat.id}")
    return chat, message_id, message


@_endpoint
async def press_button(request: Request) -> Response:
    """A tap on an inline button -> ``callback_query`` update (only for buttons that exist)."""
    state = _state(request)
    values = await _values(request)
    bot = _bot(state, values)
    with state.lock:
        chat, message_id, message = _pressed_message(state, bot, values)
        data, button_text = values.get("data"), values.get("text")
        buttons = inline_buttons(message.reply_markup)
        button = next(
            (
                b
                for b in buttons
                if (data is not None and b.get("callback_data") == data)
                or (data is None and button_text is not None and b.get("text") == button_text)
            ),
            None,
        )
        if button is not None:
            if "callback_data" not in button:
                raise UserApiError(400, f"button {button.get('text')!r} has no callback_data")
            data = button["callback_data"]
        elif not _flag(values, "forge"):
            offered = [b.get("callback_data") for b in buttons if "callback_data" in b]
            raise UserApiError(
                400, f"message {message_id} has no button with data={data!r} text={button_text!r}; offered {offered}"
            )
        query_id = str(secrets.randbits(63))
        bot.callback_queries[query_id] = CallbackQueryRecord(
            query_id, bot.id, chat.id, message_id, data, time.time()
        )
        callback_query = {
            "id": query_id,
            "from": chat.user.api(),
            "chat_instance": chat.chat_instance,
            "message": chat.message_api(message),
        }
        if data is not None:
            callback_query["data"] = data
        update = state.queue_update(bot, {"callback_query": callback_query})
        return _ok(
            update_id=update["update_id"],
            callback_query_id=query_id,
            seq=state.feed.version,
            callback_query=callback_query,
        )


# The theme Telegram's client hands a Mini App (Telegram.WebApp.themeParams), a light one.
WEB_APP_THEME = {"bg_color": "#ffffff", "text_color": "#000000", "hint_color": "#707579", "link_color": "#3390ec",
                 "button_color": "#3390ec", "button_text_color": "#ffffff", "secondary_bg_color": "#f4f4f5"}


# The client a Mini App is told it runs in (tgWebAppPlatform). The web chat's panel plays Telegram's
# phone app by default: it has the QR scanner, which only the phone apps have; ?platform= on the web
# chat's address plays another client (weba, webk: Telegram Web, no scanner).
WEB_APP_PLATFORMS = ("android", "ios", "tdesktop", "macos", "web", "weba", "webk", "unknown")
WEB_APP_VERSION = "8.0"


def web_app_launch_url(url: str, bot_token: str, user: dict[str, Any], *, auth_date: int | None = None,
                       platform: str = "android") -> str:
    """The address Telegram's client opens a Mini App at: its URL with the launch parameters in the
    fragment, ``tgWebAppData`` being the initData signed for the bot as Telegram signs it
    (https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app)."""
    signed = {"user": orjson.dumps(user).decode(), "auth_date": str(auth_date or int(time.time())),
              "query_id": "AA" + secrets.token_urlsafe(16)}
    lines = "\n".join(f"{name}={signed[name]}" for name in sorted(signed))
    key = hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()
    signed["hash"] = hmac.new(key, lines.encode(), hashlib.sha256).hexdigest()
    fragment = urlencode({"tgWebAppData": urlencode(signed), "tgWebAppVersion": WEB_APP_VERSION,
                          "tgWebAppPlatform": platform,
                          "tgWebAppThemeParams": orjson.dumps(WEB_APP_THEME).decode()})
    return f"{url.split('#', 1)[0]}#{fragment}"


@_endpoint
async def open_web_app(request: Request) -> Response:
    """A tap on a ``web_app`` button: what the Telegram client opens (only for a button that exists):
    an inline button of a message (``message_id`` and its ``text``), or the chat's menu button
    (``menu_button``: true); ``platform``, the client it plays (WEB_APP_PLATFORMS, android unless given)."""
    state = _state(request)
    values = await _values(request)
    bot = _bot(state, values)
    platform = str(values.get("platform") or "android")
    if platform not in WEB_APP_PLATFORMS:
        raise UserApiError(400, f"platform must be one of {', '.join(WEB_APP_PLATFORMS)}")
    with state.lock:
        if values.get("menu_button") in (True, "true", "1"):
            chat = _chat_for_user(state, bot, values)
            menu = bot.menu_button(chat.id)
            if menu["type"] != "web_app":
                raise UserApiError(400, f"the menu button of chat {chat.id} opens no Mini App")
            url = menu["web_app"]["url"]
        else:
            chat, message_id, message = _pressed_message(state, bot, values)
            text = values.get("text")
            button = next((b for b in inline_buttons(message.reply_markup)
                           if b.get("text") == text and isinstance(b.get("web_app"), dict)), None)
            if button is None:
                raise UserApiError(400, f"message {message_id} has no web_app button {text!r}")
            url = str(button["web_app"].get("url", ""))
        return _ok(url=web_app_launch_url(url, min(bot.tokens), chat.user.api(), platform=platform))


@_endpoint
async def menu_button(request: Request) -> Response:
    """The menu button a client shows beside the message field of a chat (the chat's own, else the
    bot's default, else the "/" menu: ``{"type": "commands"}``)."""
    state = _state(request)
    query = dict(request.query_params)
    bot = _bot(state, query)
    chat_id = _int(query, "chat_id", required=True)
    with state.lock:
        return _ok(menu_button=bot.menu_button(chat_id))


@_endpoint
async def inline_query(request: Request) -> Response:
    """`@bot words` typed in any chat -> an ``inline_query`` update; the bot's answer is read back
    with GET (``inline_query_id``), and choosing a result posts it in the user's chat with the bot,
    marked as sent via the bot (Telegram would post it in whichever chat the user typed in)."""
    state = _state(request)
    values = await _values(request)
    bot = _bot(state, values)
    query = str(values.get("query", ""))[:256]  # Telegram cuts an inline query at 256 characters
    with state.lock:
        chat = _chat_for_user(state, bot, values)
        query_id = str(secrets.randbits(63))
        bot.inline_queries[query_id] = InlineQueryRecord(query_id, bot.id, chat.user.id, query, time.time())
        inline = {"id": query_id, "from": chat.user.api(), "query": query, "offset": "", "chat_type": "sender"}
        update = state.queue_update(bot, {"inline_query": inline})
        return _ok(update_id=update["update_id"], inline_query_id=query_id, inline_query=inline)


@_endpoint
async def inline_answer(request: Request) -> Response:
    state = _state(request)
    values = dict(request.query_params)
    bot = _bot(state, values)
    with state.lock:
        record = bot.inline_queries.get(str(request.path_params["query_id"]))
        if record is None:
            raise UserApiError(404, "no such inline query")
        return _ok(**record.describe())


@_endpoint
async def choose_inline_result(request: Request) -> Response:
    state = _state(request)
    values = await _values(request)
    bot = _bot(state, values)
    with state.lock:
        record = bot.inline_queries.get(str(request.path_params["query_id"]))
        if record is None or record.results is None:
            raise UserApiError(400, "the inline query has no answer (yet)")
        result = next((r for r in record.results if r["id"] == str(values.get("result_id"))), None)
        if result is None:
            raise UserApiError(400, f"no result {values.get('result_id')!r} in the answer")
        chat = _chat_for_user(state, bot, {**values, "user_id": record.user_id})
        content = {**result["message"], "via_bot": bot.identity.api()}
        message = state.add_message(chat, "user", content, reply_markup=result["reply_markup"])
        return _ok(message_id=message.message_id, chat_id=chat.id, seq=message.seq,
                   message=chat.message_api(message))


@_endpoint
async def inject_update(request: Request) -> Response:
    """Deliver a raw update as is (update_id assigned when missing) - for malformed-input tests."""
    state = _state(request)
    try:
        update = orjson.loads(await request.body())
    except orjson.JSONDecodeError:
        raise UserApiError(400, "body must be a JSON object") from None
    if not isinstance(update, dict):
        raise UserApiError(400, "body must be a JSON object")
    bot = state.get_bot(_int(dict(request.query_params), "bot_id"))
    queued = state.queue_update(bot, update)
    return _ok(update_id=queued["update_id"], update=queued)


@_endpoint
async def block_user(request: Request) -> Response:
    """Block/unblock the bot as a user; Telegram then sends the bot a ``my_chat_member`` update."""
    state = _state(request)
    values = await _values(request)
    bot = _bot(state, values)
    blocked = _flag(values, "blocked", True)
    with state.lock:
        user = state.upsert_user(_int(values, "user_id", required=True), **_user_names(values))
        chat = state.open_chat(bot, user)
        changed = chat.blocked != blocked
        chat.blocked = blocked
        update_id = None
        if changed:
            state.emit("block_changed", chat=chat, blocked=blocked)
            if _flag(values, "notify", True):
                update_id = state.queue_update(bot, {"my_chat_member": _my_chat_member(bot, chat)})["update_id"]
        return _ok(user_id=user.id, blocked=blocked, changed=changed, update_id=update_id)


def _my_chat_member(bot: BotAccount, chat: Chat) -> dict[str, Any]:
    def member(status: str) -> dict[str, Any]:
        return {"user": bot.identity.api(), "status": status, **({"until_date": 0} if status == "kicked" else {})}

    old, new = ("member", "kicked") if chat.blocked else ("kicked", "member")
    return {
        "chat": chat.api(),
        "from": chat.user.api(),
        "date": now_timestamp(),
        "old_chat_member": member(old),
        "new_chat_member": member(new),
    }


# --------------------------------------------------------------------------- inspection


@_endpoint
async def list_chats(request: Request) -> Response:
    state = _state(request)
    bot = _bot(state, dict(request.query_params))
    with state.lock:
        chats = [
            {
                "chat": chat.api(),
                "blocked": chat.blocked,
                "reply_keyboard": chat.reply_keyboard,
                "message_count": len(chat.messages),
            }
            for chat in bot.chats.values()
        ]
    return _ok(chats=chats)


@_endpoint
async def chat_messages(request: Request) -> Response:
    state = _state(request)
    query = dict(request.query_params)
    bot = _bot(state, query)
    chat_id = _int(request.path_params, "chat_id", required=True)
    with state.lock:
        chat = bot.chats.get(chat_id)
        messages = state.transcript(bot, chat_id) or []
        if not _flag(query, "include_deleted", True):
            messages = [message for message in messages if not message["deleted"]]
        return _ok(
            chat=chat.api() if chat else None,
            blocked=chat.blocked if chat else False,
            reply_keyboard=chat.reply_keyboard if chat else None,
            messages=messages,
        )


@_endpoint
async def list_calls(request: Request) -> Response:
    state = _state(request)
    query = dict(request.query_params)
    calls = state.recorded_calls(query.get("method") or None, _int(query, "since", 0) or 0)
    bot_id = _int(query, "bot_id")
    if bot_id is not None:
        calls = [call for call in calls if call["bot_id"] == bot_id]
    chat_id = _int(query, "chat_id")
    if chat_id is not None:
        with state.lock:
            calls = [call for call in calls if _call_chat(state, call) == chat_id]
    limit = _int(query, "limit")
    if limit is not None and limit > 0:
        calls = calls[-limit:]
    return _ok(calls=calls)


def _call_chat(state: SandboxState, call: dict[str, Any]) -> int | None:
    """The chat a Bot API call was about: its ``chat_id``, or the chat of the answered callback query."""
    params = call.get("params") or {}
    chat_id = params.get("chat_id")
    if chat_id is None and params.get("callback_query_id") is not None:
        for bot in state.bots.values():
            record = bot.callback_queries.get(str(params["callback_query_id"]))
            if record is not None:
                return record.user_id
        return None
    try:
        return int(chat_id) if chat_id is not None else None
    except (TypeError, ValueError):
        return None


@_endpoint
async def list_updates(request: Request) -> Response:
    """The updates the fake handed to the bot (newest last), with whether the bot has taken them."""
    state = _state(request)
    query = dict(request.query_params)
    bot = _bot(state, query)
    chat_id = _int(query, "chat_id")
    limit = _int(query, "limit", 50) or 50
    with state.lock:
        pending = {update["update_id"] for update in bot.pending_updates}
        entries = [
            {
                "update_id": entry["update"]["update_id"],
                "chat_id": entry["chat_id"],
                "time": entry["time"],
                "kind": update_kind(entry["update"]),
                "delivered": entry["update"]["update_id"] not in pending,
                "update": entry["update"],
            }
            for entry in state.update_log
            if entry["bot_id"] == bot.id and (chat_id is None or entry["chat_id"] == chat_id)
        ]
    return _ok(updates=entries[-limit:])


@_endpoint
async def list_commands(request: Request) -> Response:
    """The "/" menu a client shows in a chat: setMyCommands' list for the narrowest scope and the
    user's language that has one (chat, all private chats, default; language, then none)."""
    state = _state(request)
    query = dict(request.query_params)
    bot = _bot(state, query)
    chat_id = _int(query, "chat_id")
    language = (query.get("language_code") or "").strip()
    scopes: list[dict[str, Any]] = []
    if chat_id is not None:
        scopes.append({"type": "chat", "chat_id": chat_id})
    scopes += [{"type": "all_private_chats"}, {"type": "default"}]
    with state.lock:
        for scope in scopes:
            key = orjson.dumps(scope, option=orjson.OPT_SORT_KEYS).decode()
            for code in dict.fromkeys((language, "")):
                commands = bot.commands.get((key, code))
                if commands:
                    return _ok(commands=commands, scope=scope, language_code=code)
    return _ok(commands=[], scope=None, language_code=None)


@_endpoint
async def callback_answers(request: Request) -> Response:
    state = _state(request)
    bot = _bot(state, dict(request.query_params))
    with state.lock:
        return _ok(callback_answers=[record.describe() for record in bot.callback_queries.values()])


@_endpoint
async def wait_for_bot(request: Request) -> Response:
    """Long-poll until the bot sends, edits or deletes something in a chat."""
    state = _state(request)
    query = dict(request.query_params)
    bot = _bot(state, query)
    chat_id = _int(query, "chat_id", required=True)
    after_seq = _int(query, "after_seq")
    after_message_id = _int(query, "after_message_id")
    try:
        timeout = min(float(query.get("timeout", DEFAULT_WAIT_SECONDS)), MAX_WAIT_SECONDS)
    except ValueError:
        raise UserApiError(400, "timeout must be a number") from None
    if after_seq is not None:
        since = after_seq
    elif after_message_id is not None:
        since = state.seq_of_message(bot, chat_id, after_message_id)
    else:
        since = state.feed.version

    def changes() -> Any:
        return _CLOSED if state.closing else state.bot_changes_since(bot, chat_id, since)

    messages = await state.feed.wait_for(changes, timeout)
    if messages is _CLOSED or not messages:
        return json_response({"ok": False, "error": "timeout", "messages": [], "seq": after_seq}, 408)
    return _ok(messages=messages, seq=max(message["seq"] for message in messages))


@_endpoint
async def health(request: Request) -> Response:
    return _ok()


@_endpoint
async def stats(request: Request) -> Response:
    return _ok(**_state(request).stats())


@_endpoint
async def list_bots(request: Request) -> Response:
    state = _state(request)
    with state.lock:
        bots = [
            {
                **bot.identity.api(),
                "tokens": sorted(bot.tokens),
                "webhook_url": bot.webhook.url if bot.webhook else None,
                "pending_update_count": len(bot.pending_updates),
                "default": bot is state.default_bot,
            }
            for bot in state.bots.values()
        ]
    return _ok(bots=bots)


@_endpoint
async def download_file(request: Request) -> Response:
    """Raw bytes of any stored file, so the web UI can show photos without a bot token."""
    state = _state(request)
    with state.lock:
        stored = state.files.get(request.path_params["file_id"])
    if stored is None:
        raise UserApiError(404, "file not found")
    return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")


async def events(request: Request) -> Response:
    """Server-Sent Events: new messages, edits, deletions, callback answers, chat actions."""
    state = _state(request)
    query = dict(request.query_params)
    since = _int(query, "since", _int({"id": request.headers.get("last-event-id")}, "id"))
    bot_id, chat_id = _int(query, "bot_id"), _int(query, "chat_id")
    last_seen = state.feed.version if since is None else since

    async def stream() -> Any:
        nonlocal last_seen
        yield ": connected\n\n"
        while True:

            def pending(after: int = last_seen) -> Any:  # bound now: the loop below moves last_seen
                if state.closing:
                    return _CLOSED
                return state.events_after(after, bot_id=bot_id, chat_id=chat_id)

            batch = await state.feed.wait_for(pending, SSE_KEEPALIVE_SECONDS)
            if batch is _CLOSED:
                return
            if not batch:
                yield ": keepalive\n\n"
            for event in batch:
                last_seen = event["seq"]
                yield f"id: {event['seq']}\nevent: {event['type']}\ndata: {orjson.dumps(event).decode()}\n\n"

    return StreamingResponse(stream(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})


# --------------------------------------------------------------------------- switches


def _describe_faults(state: SandboxState) -> dict[str, Any]:
    with state.lock:
        return state.faults.describe()


@_endpoint
async def get_faults(request: Request) -> Response:
    return _ok(**_describe_faults(_state(request)))


@_endpoint
async def set_faults(request: Request) -> Response:
    """``{"clear": true}``, ``{"rate_limit": {...} | false}`` and/or one fault
    ``{"method", "status" | "retry_after", "count", "description"}``."""
    state = _state(request)
    values = await _values(request)
    with state.lock:
        if _flag(values, "clear"):
            state.faults.clear()
        if "unreachable" in values:
            state.faults.set_unreachable(_flag(values, "unreachable"), values.get("unreachable_methods"))
        if "rate_limit" in values:
            settings = values["rate_limit"]
            if settings in (False, None):
                state.faults.set_rate_limit(None)
            else:
                try:
                    state.faults.set_rate_limit(RateLimitSettings(**(settings if isinstance(settings, dict) else {})))
                except TypeError as error:
                    raise UserApiError(400, f"bad rate_limit settings: {error}") from None
        if values.get("status") is not None or values.get("retry_after") is not None:
            state.faults.add(
                values.get("method") or None,
                status=_int(values, "status"),
                count=_int(values, "count", 1) or 1,
                description=values.get("description"),
                retry_after=_int(values, "retry_after"),
            )
    return _ok(**_describe_faults(state))


@_endpoint
async def reset(request: Request) -> Response:
    _state(request).reset()
    return _ok()


def routes() -> list[Route]:
    prefix = "/_sandbox"
    return [
        Route(f"{prefix}/health", health, methods=["GET"]),
        Route(f"{prefix}/bots", list_bots, methods=["GET"]),
        Route(f"{prefix}/users", create_user, methods=["POST"]),
        Route(f"{prefix}/users", list_users, methods=["GET"]),
        Route(f"{prefix}/messages", send_text, methods=["POST"]),
        Route(f"{prefix}/edits", edit_text, methods=["POST"]),
        Route(f"{prefix}/locations", send_location, methods=["POST"]),
        Route(f"{prefix}/photos", send_photo, methods=["POST"]),
        Route(f"{prefix}/documents", send_document, methods=["POST"]),
        Route(f"{prefix}/callbacks", press_button, methods=["POST"]),
        Route(f"{prefix}/web_apps", open_web_app, methods=["POST"]),
        Route(f"{prefix}/inline_queries", inline_query, methods=["POST"]),
        Route(f"{prefix}/inline_queries/{{query_id}}", inline_answer, methods=["GET"]),
        Route(f"{prefix}/inline_queries/{{query_id}}/choose", choose_inline_result, methods=["POST"]),
        Route(f"{prefix}/updates", inject_update, methods=["POST"]),
        Route(f"{prefix}/updates", list_updates, methods=["GET"]),
        Route(f"{prefix}/commands", list_commands, methods=["GET"]),
        Route(f"{prefix}/menu_button", menu_button, methods=["GET"]),
        Route(f"{prefix}/block", block_user, methods=["POST"]),
        Route(f"{prefix}/chats", list_chats, methods=["GET"]),
        Route(f"{prefix}/chats/{{chat_id:int}}/messages", chat_messages, methods=["GET"]),
        Route(f"{prefix}/calls", list_calls, methods=["GET"]),
        Route(f"{prefix}/callback_answers", callback_answers, methods=["GET"]),
        Route(f"{prefix}/wait", wait_for_bot, methods=["GET"]),
        Route(f"{prefix}/events", events, methods=["GET"]),
        Route(f"{prefix}/files/{{file_id}}", download_file, methods=["GET"]),
        Route(f"{prefix}/faults", get_faults, methods=["GET"]),
        Route(f"{prefix}/faults", set_faults, methods=["POST"]),
        Route(f"{prefix}/stats", stats, methods=["GET"]),
        Route(f"{prefix}/reset", reset, methods=["POST"]),
    ]
