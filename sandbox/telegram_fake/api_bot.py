"""The bot side: ``/bot<token>/<method>`` and ``/file/bot<token>/<file_path>``."""

from __future__ import annotations

import asyncio
import inspect
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .errors import ApiError, bad_request, not_found, unauthorized
from .files import MAX_DOWNLOAD_BYTES, PhotoVariant, StoredFile, guess_mime_type, prepare_photo
from .formatting import ParseError, UnsupportedParseMode, format_text, utf16_len
from .http_params import Params, UploadedFile, read_request_values
from .markup import validate_reply_markup
from .state import BotAccount, Chat, SandboxState, StoredMessage, WebhookConfig

MAX_TEXT_LENGTH = 4096
MAX_CAPTION_LENGTH = 1024
MAX_CALLBACK_ANSWER_LENGTH = 200
MAX_LONG_POLL_SECONDS = 50
CHAT_ACTIONS = frozenset(
    {
        "typing",
        "upload_photo",
        "record_video",
        "upload_video",
        "record_voice",
        "upload_voice",
        "upload_document",
        "choose_sticker",
        "find_location",
        "record_video_note",
        "upload_video_note",
    }
)


def _not_modified() -> ApiError:
    return bad_request(
        "message is not modified: specified new message content and reply markup are exactly the same "
        "as a current content and reply markup of the message"
    )


_COMMAND = re.compile(r"[a-z0-9_]{1,32}")
_SECRET_TOKEN = re.compile(r"[A-Za-z0-9_-]{1,256}")


def json_response(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


@dataclass
class CallContext:
    state: SandboxState
    bot: BotAccount
    params: Params
    http: httpx.AsyncClient  # for photo/document URLs, which Telegram downloads itself


@dataclass(frozen=True)
class Described:
    """A result Telegram accompanies with a ``description`` (e.g. "Webhook was set")."""

    result: Any
    description: str


Handler = Callable[[CallContext], Any | Awaitable[Any]]
_METHODS: dict[str, tuple[str, Handler]] = {}


def bot_method(name: str) -> Callable[[Handler], Handler]:
    def register(handler: Handler) -> Handler:
        # Telegram matches method names case-insensitively.
        _METHODS[name.lower()] = (name, handler)
        return handler

    return register


async def execute(
    state: SandboxState, bot: BotAccount, method: str, params: Params, http: httpx.AsyncClient
) -> tuple[int, dict[str, Any]]:
    """Run one Bot API call (faults first), record it and return (HTTP status, body)."""
    started = time.perf_counter()
    name, handler = _METHODS.get(method.lower(), (method, None))
    try:
        if handler is None:
            raise not_found()
        with state.lock:
            fault = state.faults.take(name)
        if fault is not None:
            raise fault
        context = CallContext(state, bot, params, http)
        if inspect.iscoroutinefunction(handler):
            result = await handler(context)
        else:
            # Synchronous handlers run atomically with respect to every other state change.
            with state.lock:
                result = handler(context)
        body: dict[str, Any] = {"ok": True, "result": result}
        if isinstance(result, Described):
            body = {"ok": True, "result": result.result, "description": result.description}
        status = 200
    except ApiError as error:
        status, body = error.status, error.payload()
    state.record_call(bot, name, params.for_record(), status=status, body=body,
                      duration=time.perf_counter() - started)
    return status, body


async def bot_endpoint(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    method = request.path_params["method"]
    bot = state.bot_for_token(request.path_params["token"])
    if bot is None:
        error = unauthorized()
        state.record_call(None, method, {}, status=error.status, body=error.payload(), duration=0.0)
        return json_response(error.payload(), error.status)
    try:
        values, files = await read_request_values(request)
    except ApiError as error:
        state.record_call(bot, method, {}, status=error.status, body=error.payload(), duration=0.0)
        return json_response(error.payload(), error.status)
    if state.faults.holds(method):
        # Asking again and again matters: the server reads the socket (and so notices that the
        # caller is gone) only while someone asks.
        state.faults.held_calls += 1
        try:
            while state.faults.holds(method):
                if await request.is_disconnected():
                    return Response(status_code=499)  # the caller died: Telegram never saw the call
                await asyncio.sleep(0.05)
        finally:
            state.faults.held_calls -= 1
        await asyncio.sleep(0.05)
        if await request.is_disconnected():
            return Response(status_code=499)
    status, body = await execute(state, bot, method, Params(values, files), request.app.state.http)
    return json_response(body, status)


async def file_endpoint(request: Request) -> Response:
    state: SandboxState = request.app.state.sandbox
    if state.bot_for_token(request.path_params["token"]) is None:
        return json_response(unauthorized().payload(), 401)
    with state.lock:
        stored = state.files.by_path(unquote(request.path_params["file_path"]))
    if stored is None:
        return json_response(not_found().payload(), 404)
    return Response(stored.data, media_type=stored.mime_type or "application/octet-stream")


def routes() -> list[Route]:
    return [
        Route("/bot{token}/{method}", bot_endpoint, methods=["GET", "POST"]),
        Route("/file/bot{token}/{file_path:path}", file_endpoint, methods=["GET"]),
    ]


# --------------------------------------------------------------------------- shared helpers


def _target_chat(ctx: CallContext, *, sending: bool) -> Chat:
    chat_id = ctx.params.get_int("chat_id", missing="chat_id is empty", invalid="chat not found")
    with ctx.state.lock:
        chat = ctx.bot.chats.get(chat_id)
        if chat is None:
            if chat_id in ctx.state.users:
                raise ApiError(403, "Forbidden: bot can't initiate conversation with a user")
            raise bad_request("chat not found")
        if sending and chat.blocked:
            raise ApiError(403, "Forbidden: bot was blocked by the user")
        return chat


def _format(source: str, parse_mode: str | None, entities: Any) -> tuple[str, list[dict[str, Any]]]:
    if entities is not None and not isinstance(entities, list):
        raise bad_request("can't parse entities JSON object")
    try:
        return format_text(source, parse_mode, entities)
    except ParseError as error:
        raise bad_request(f"can't parse entities: {error}") from error
    except UnsupportedParseMode as error:
        raise bad_request(f"unsupported parse_mode {error}") from error


def _text_content(ctx: CallContext) -> tuple[dict[str, Any], str, str | None]:
    """(content, source text, parse_mode) of a text message, validated like Telegram."""
    source = ctx.params.get_str("text") or ""
    parse_mode = ctx.params.get_str("parse_mode") or None
    text, entities = _format(source, parse_mode, ctx.params.get_json("entities"))
    if not text.strip():
        raise bad_request("message text is empty")
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise bad_request("message is too long")
    content: dict[str, Any] = {"text": text}
    if entities:
        content["entities"] = entities
    return content, source, parse_mode


def _caption_content(ctx: CallContext) -> tuple[dict[str, Any], str | None, str | None]:
    source = ctx.params.get_str("caption") or None
    parse_mode = ctx.params.get_str("parse_mode") or None
    if source is None:
        return {}, None, parse_mode
    text, entities = _format(source, parse_mode, ctx.params.get_json("caption_entities"))
    if utf16_len(text) > MAX_CAPTION_LENGTH:
        raise bad_request("message caption is too long")
    content: dict[str, Any] = {"caption": text}
    if entities:
        content["caption_entities"] = entities
    if ctx.params.get_bool("show_caption_above_media"):
        content["show_caption_above_media"] = True
    return content, source, parse_mode


def _link_preview(ctx: CallContext) -> dict[str, Any]:
    options = ctx.params.get_json("link_preview_options")
    if options is None and ctx.params.get_bool("disable_web_page_preview"):
        options = {"is_disabled": True}
    return {"link_preview_options": options} if options else {}


def _reply_to(ctx: CallContext, chat: Chat) -> int | None:
    reply_parameters = ctx.params.get_json("reply_parameters")
    if reply_parameters is not None and not isinstance(reply_parameters, dict):
        raise bad_request("can't parse reply parameters JSON object")
    if reply_parameters:
        message_id = reply_parameters.get("message_id")
        allow_without_reply = bool(reply_parameters.get("allow_sending_without_reply"))
    else:
        message_id = ctx.params.get_int("reply_to_message_id")
        allow_without_reply = ctx.params.get_bool("allow_sending_without_reply")
    if message_id is None:
        return None
    if chat.live_message(int(message_id)) is None:
        if allow_without_reply:
            return None
        raise bad_request("message to be replied not found")
    return int(message_id)


def _send(
    ctx: CallContext,
    chat: Chat,
    content: dict[str, Any],
    *,
    parse_mode: str | None = None,
    source_text: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Common tail of every send method: markup, reply, flood control, store, render."""
    markup = validate_reply_markup(ctx.params.get_json("reply_markup"))
    reply_to = _reply_to(ctx, chat)
    extra = dict(extra or {})
    if ctx.params.get_bool("protect_content"):
        extra["has_protected_content"] = True
    paid = ctx.params.get_bool("allow_paid_broadcast")
    with ctx.state.lock:
        flood = ctx.state.faults.check_flood(ctx.bot.id, chat.id, paid=paid)
        if flood is not None:
            raise flood
        if paid:
            ctx.state.paid_broadcasts += 1  # 0.1 Stars each on Telegram
        message = ctx.state.add_message(
            chat,
            "bot",
            content,
            reply_markup=markup,
            reply_to_message_id=reply_to,
            parse_mode=parse_mode,
            source_text=source_text,
            extra=extra,
        )
        return chat.message_api(message)


def _message_to_edit(ctx: CallContext) -> tuple[Chat, StoredMessage]:
    if ctx.params.has("inline_message_id"):
        raise bad_request("MESSAGE_ID_INVALID")
    chat = _target_chat(ctx, sending=False)
    message_id = ctx.params.get_int(
        "message_id", missing="message identifier is not specified", invalid="MESSAGE_ID_INVALID"
    )
    message = chat.live_message(message_id)
    if message is None:
        raise bad_request("message to edit not found")
    if message.sender != "bot":
        raise bad_request("message can't be edited")
    return chat, message


def _is_url(value: str) -> bool:
    return urlsplit(value).scheme in ("http", "https")


async def _download(ctx: CallContext, url: str) -> httpx.Response:
    try:
        response = await ctx.http.get(url, follow_redirects=True)
    except httpx.HTTPError as error:
        raise bad_request("failed to get HTTP URL content") from error
    if response.status_code != 200:
        raise bad_request("failed to get HTTP URL content")
    return response


# --------------------------------------------------------------------------- identity and updates


@bot_method("getMe")
def get_me(ctx: CallContext) -> dict[str, Any]:
    return {
        **ctx.bot.identity.api(),
        "can_join_groups": True,
        "can_read_all_group_messages": False,
        "supports_inline_queries": False,
        "can_connect_to_business": False,
        "has_main_web_app": False,
    }


def _allowed_updates(ctx: CallContext) -> list[str] | None:
    allowed = ctx.params.get_json("allowed_updates")
    if allowed is not None and (not isinstance(allowed, list) or not all(isinstance(k, str) for k in allowed)):
        raise bad_request("can't parse allowed_updates JSON object")
    return allowed


@bot_method("setWebhook")
def set_webhook(ctx: CallContext) -> Described:
    bot, params = ctx.bot, ctx.params
    url = params.get_str("url") or ""
    if url:
        parts = urlsplit(url)
        # Real Telegram insists on HTTPS; the sandbox also takes plain HTTP for local receivers.
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise bad_request("bad webhook: An HTTPS URL must be provided for webhook")
    secret_token = params.get_str("secret_token") or None
    if secret_token is not None and not _SECRET_TOKEN.fullmatch(secret_token):
        raise bad_request("secret token contains unallowed characters")
    max_connections = params.get_int("max_connections") or 40
    if not 1 <= max_connections <= 100:
        raise bad_request("invalid max_connections specified")
    allowed = _allowed_updates(ctx)
    if allowed is not None:
        bot.allowed_updates = allowed or None
    if params.get_bool("drop_pending_updates"):
        bot.pending_updates = []
    if not url:
        return _remove_webhook(ctx)

    config = WebhookConfig(url, secret_token, max_connections, has_custom_certificate=params.has("certificate"))
    if config == bot.webhook:
        return Described(True, "Webhook is already set")
    bot.webhook = config
    bot.last_error_date = bot.last_error_message = None
    bot.poll_generation += 1  # a running getUpdates long poll ends with 409
    ctx.state.feed.bump()
    return Described(True, "Webhook was set")


def _remove_webhook(ctx: CallContext) -> Described:
    if ctx.bot.webhook is None:
        return Described(True, "Webhook is already deleted")
    ctx.bot.webhook = None
    ctx.state.feed.bump()
    return Described(True, "Webhook was deleted")


@bot_method("deleteWebhook")
def delete_webhook(ctx: CallContext) -> Described:
    if ctx.params.get_bool("drop_pending_updates"):
        ctx.bot.pending_updates = []
    return _remove_webhook(ctx)


@bot_method("getWebhookInfo")
def get_webhook_info(ctx: CallContext) -> dict[str, Any]:
    bot, webhook = ctx.bot, ctx.bot.webhook
    info: dict[str, Any] = {
        "url": webhook.url if webhook else "",
        "has_custom_certificate": webhook.has_custom_certificate if webhook else False,
        "pending_update_count": len(bot.pending_updates),
    }
    if webhook is not None:
        info["max_connections"] = webhook.max_connections
    if bot.allowed_updates:
        info["allowed_updates"] = bot.allowed_updates
    if bot.last_error_date is not None:
        info["last_error_date"] = bot.last_error_date
        info["last_error_message"] = bot.last_error_message
    return info


_SHUTTING_DOWN = object()


@bot_method("getUpdates")
async def get_updates(ctx: CallContext) -> list[dict[str, Any]]:
    state, bot, params = ctx.state, ctx.bot, ctx.params
    offset = params.get_int("offset")
    limit = min(max(params.get_int("limit") or 100, 1), 100)
    timeout = min(max(params.get_float("timeout") or 0.0, 0.0), MAX_LONG_POLL_SECONDS)
    allowed = _allowed_updates(ctx)
    with state.lock:
        if bot.webhook is not None:
            raise ApiError(
                409,
                "Conflict: can't use getUpdates method while webhook is active; "
                "use deleteWebhook to delete the webhook first",
            )
        if allowed is not None:
            bot.allowed_updates = allowed or None
        state.confirm_updates(bot, offset)
        bot.poll_generation += 1
        generation = bot.poll_generation
        state.feed.bump()  # an older long poll of this bot wakes up and answers 409

    def outcome() -> Any:
        with state.lock:
            if state.closing:
                return _SHUTTING_DOWN
            if bot.webhook is not None:
                return ApiError(409, "Conflict: terminated by setWebhook request")
            if bot.poll_generation != generation:
                return ApiError(
                    409,
                    "Conflict: terminated by other getUpdates request; "
                    "make sure that only one bot instance is running",
                )
            return state.updates_for_polling(bot, limit)

    result = await state.feed.wait_for(outcome, timeout)
    if isinstance(result, ApiError):
        raise result
    return [] if result is _SHUTTING_DOWN else result


# --------------------------------------------------------------------------- messages


@bot_method("sendMessage")
def send_message(ctx: CallContext) -> dict[str, Any]:
    content, source, parse_mode = _text_content(ctx)
    chat = _target_chat(ctx, sending=True)
    return _send(ctx, chat, content, parse_mode=parse_mode, source_text=source, extra=_link_preview(ctx))


def _location(ctx: CallContext) -> dict[str, float]:
    latitude = ctx.params.get_float("latitude", missing="latitude is empty")
    longitude = ctx.params.get_float("longitude", missing="longitude is empty")
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):  # type: ignore[operator]
        raise bad_request("LOCATION_INVALID")
    return {"latitude": latitude, "longitude": longitude}  # type: ignore[dict-item]


@bot_method("sendLocation")
def send_location(ctx: CallContext) -> dict[str, Any]:
    location = _location(ctx)
    chat = _target_chat(ctx, sending=True)
    return _send(ctx, chat, {"location": location})


@bot_method("sendVenue")
def send_venue(ctx: CallContext) -> dict[str, Any]:
    location = _location(ctx)
    title = ctx.params.get_str("title", missing="title is empty")
    address = ctx.params.get_str("address", missing="address is empty")
    chat = _target_chat(ctx, sending=True)
    # As Telegram's Message: a venue also carries its location.
    return _send(ctx, chat, {"venue": {"location": location, "title": str(title), "address": str(address)},
                             "location": location})


@bot_method("editMessageText")
def edit_message_text(ctx: CallContext) -> dict[str, Any]:
    chat, message = _message_to_edit(ctx)
    content, source, parse_mode = _text_content(ctx)
    # Telegram drops the inline keyboard when an edit does not repeat it.
    markup = validate_reply_markup(ctx.params.get_json("reply_markup"), inline_only=True)
    if "text" not in message.content:
        raise bad_request("there is no text in the message to edit")
    if content == message.content and markup == message.reply_markup:
        raise _not_modified()
    extra = {**message.extra, **_link_preview(ctx)}
    ctx.state.edit_message(
        chat, message, content=content, reply_markup=markup, parse_mode=parse_mode, source_text=source, extra=extra
    )
    return chat.message_api(message)


@bot_method("editMessageCaption")
def edit_message_caption(ctx: CallContext) -> dict[str, Any]:
    chat, message = _message_to_edit(ctx)
    caption, source, parse_mode = _caption_content(ctx)
    markup = validate_reply_markup(ctx.params.get_json("reply_markup"), inline_only=True)
    if not {"photo", "document"} & message.content.keys():
        raise bad_request("there is no caption in the message to edit")
    media = {
        key: value
        for key, value in message.content.items()
        if key not in ("caption", "caption_entities", "show_caption_above_media")
    }
    content = {**media, **caption}
    if content == message.content and markup == message.reply_markup:
        raise _not_modified()
    ctx.state.edit_message(
        chat, message, content=content, reply_markup=markup, parse_mode=parse_mode, source_text=source
    )
    return chat.message_api(message)


@bot_method("editMessageReplyMarkup")
def edit_message_reply_markup(ctx: CallContext) -> dict[str, Any]:
    chat, message = _message_to_edit(ctx)
    markup = validate_reply_markup(ctx.params.get_json("reply_markup"), inline_only=True)
    if markup == message.reply_markup:
        raise _not_modified()
    ctx.state.edit_message(chat, message, reply_markup=markup)
    return chat.message_api(message)


@bot_method("deleteMessage")
def delete_message(ctx: CallContext) -> bool:
    chat = _target_chat(ctx, sending=False)
    message_id = ctx.params.get_int(
        "message_id", missing="message identifier is not specified", invalid="message to delete not found"
    )
    message = chat.live_message(message_id)
    if message is None:
        raise bad_request("message to delete not found")
    ctx.state.delete_message(chat, message)
    return True


@bot_method("sendChatAction")
def send_chat_action(ctx: CallContext) -> bool:
    action = ctx.params.get_str("action")
    if action not in CHAT_ACTIONS:
        raise bad_request("wrong parameter action in request")
    chat = _target_chat(ctx, sending=True)
    ctx.state.emit("chat_action", chat=chat, action=action)
    return True


@bot_method("answerCallbackQuery")
def answer_callback_query(ctx: CallContext) -> bool:
    query_id = ctx.params.get_str("callback_query_id") or ""
    record = ctx.bot.callback_queries.get(query_id)
    if record is None or record.answer is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    text = ctx.params.get_str("text")
    if text is not None and len(text) > MAX_CALLBACK_ANSWER_LENGTH:
        raise bad_request("MESSAGE_TOO_LONG")
    record.answer = {
        "text": text,
        "show_alert": ctx.params.get_bool("show_alert"),
        "url": ctx.params.get_str("url"),
        "cache_time": ctx.params.get_int("cache_time"),
        "time": time.time(),
    }
    chat = ctx.bot.chats.get(record.user_id)
    if chat is not None:
        ctx.state.emit("callback_answer", chat=chat, callback_answer=record.describe())
    return True


MAX_INLINE_RESULTS = 50


def _inline_result(raw: Any) -> dict[str, Any]:
    """One InlineQueryResultArticle as Telegram checks it: type, a unique id, a title, a message."""
    if not isinstance(raw, dict) or raw.get("type") != "article":
        raise bad_request("RESULT_TYPE_INVALID")
    result_id, title = raw.get("id"), raw.get("title")
    if not isinstance(result_id, str) or not 1 <= len(result_id.encode()) <= 64:
        raise bad_request("RESULT_ID_INVALID")
    content = raw.get("input_message_content")
    if not isinstance(title, str) or not title or not isinstance(content, dict) \
            or not isinstance(content.get("message_text"), str) or not content["message_text"].strip():
        raise bad_request("MESSAGE_EMPTY")
    markup = validate_reply_markup(raw.get("reply_markup"), inline_only=True) if raw.get("reply_markup") else None
    text, entities = _format(content["message_text"], content.get("parse_mode") or None, content.get("entities"))
    if utf16_len(text) > MAX_TEXT_LENGTH:
        raise bad_request("MESSAGE_TOO_LONG")
    message: dict[str, Any] = {"text": text, **({"entities": entities} if entities else {})}
    return {"id": result_id, "title": title, "description": raw.get("description"), "message": message,
            "reply_markup": markup}


@bot_method("answerInlineQuery")
def answer_inline_query(ctx: CallContext) -> bool:
    query_id = ctx.params.get_str("inline_query_id") or ""
    record = ctx.bot.inline_queries.get(query_id)
    if record is None or record.results is not None:
        raise bad_request("query is too old and response timeout expired or query ID is invalid")
    raw = ctx.params.get_json("results")
    if not isinstance(raw, list) or len(raw) > MAX_INLINE_RESULTS:
        raise bad_request("RESULTS_TOO_MUCH" if isinstance(raw, list) else "can't parse results JSON object")
    results = [_inline_result(item) for item in raw]
    if len({r["id"] for r in results}) != len(results):
        raise bad_request("RESULT_ID_DUPLICATE")
    record.results = results
    chat = ctx.bot.chats.get(record.user_id)
    if chat is not None:
        ctx.state.emit("inline_answer", chat=chat, inline_answer=record.describe())
    return True


# --------------------------------------------------------------------------- media


async def _uploaded_photo(ctx: CallContext, photo: UploadedFile | str) -> list[PhotoVariant] | None:
    """Size variants for a new photo (upload or URL); None when ``photo`` is a file_id."""
    if isinstance(photo, UploadedFile):
        return await asyncio.to_thread(prepare_photo, photo.data)
    if not _is_url(photo):
        return None
    response = await _download(ctx, photo)
    try:
        return await asyncio.to_thread(prepare_photo, response.content)
    except ApiError as error:
        raise bad_request("wrong type of the web page content") from error


def _known_file(ctx: CallContext, file_id: str, kind: str) -> StoredFile:
    stored = ctx.state.files.get(file_id)
    if stored is None:
        raise bad_request("wrong file identifier/HTTP URL specified")
    if stored.kind != kind:
        raise bad_request("type of file mismatch")
    return stored


@bot_method("sendPhoto")
async def send_photo(ctx: CallContext) -> dict[str, Any]:
    _target_chat(ctx, sending=True)  # fail fast, before processing the upload
    photo = ctx.params.file_or_id("photo")
    if photo is None:
        raise bad_request("there is no photo in the request")
    variants = await _uploaded_photo(ctx, photo)
    with ctx.state.lock:
        chat = _target_chat(ctx, sending=True)
        caption, source, parse_mode = _caption_content(ctx)
        if variants is not None:
            sizes = ctx.state.files.add_photo(variants)
        else:
            sizes = ctx.state.files.photo_sizes(_known_file(ctx, str(photo), "photo").file_id) or []
        content: dict[str, Any] = {"photo": [size.photo_size_api() for size in sizes], **caption}
        if ctx.params.get_bool("has_spoiler"):
            content["has_media_spoiler"] = True
        return _send(ctx, chat, content, parse_mode=parse_mode, source_text=source)


@bot_method("sendDocument")
async def send_document(ctx: CallContext) -> dict[str, Any]:
    _target_chat(ctx, sending=True)
    document = ctx.params.file_or_id("document")
    if document is None:
        raise bad_request("there is no document in the request")
    upload: tuple[bytes, str | None, str | None] | None = None
    if isinstance(document, UploadedFile):
        upload = (document.data, document.filename, document.content_type)
    elif _is_url(document):
        response = await _download(ctx, document)
        file_name = urlsplit(document).path.rsplit("/", 1)[-1] or None
        upload = (response.content, file_name, response.headers.get("content-type"))
    with ctx.state.lock:
        chat = _target_chat(ctx, sending=True)
        caption, source, parse_mode = _caption_content(ctx)
        if upload is not None:
            data, file_name, mime_type = upload
            if not mime_type or mime_type == "application/octet-stream":
                mime_type = guess_mime_type(file_name)
            stored = ctx.state.files.add_document(data, file_name, mime_type.split(";")[0].strip())
        else:
            stored = _known_file(ctx, str(document), "document")
        content = {"document": stored.document_api(), **caption}
        return _send(ctx, chat, content, parse_mode=parse_mode, source_text=source)


@bot_method("getFile")
def get_file(ctx: CallContext) -> dict[str, Any]:
    stored = ctx.state.files.get(ctx.params.get_str("file_id") or "")
    if stored is None:
        raise bad_request("invalid file_id")
    if stored.file_size > MAX_DOWNLOAD_BYTES:
        raise bad_request("file is too big")
    return stored.file_api()


# --------------------------------------------------------------------------- commands


def _commands_key(ctx: CallContext) -> tuple[str, str]:
    scope = ctx.params.get_json("scope") or {"type": "default"}
    if not isinstance(scope, dict) or "type" not in scope:
        raise bad_request("can't parse BotCommandScope JSON object")
    language = ctx.params.get_str("language_code") or ""
    return orjson.dumps(scope, option=orjson.OPT_SORT_KEYS).decode(), language


@bot_method("setMyCommands")
def set_my_commands(ctx: CallContext) -> bool:
    commands = ctx.params.get_json("commands")
    if not isinstance(commands, list) or not all(isinstance(command, dict) for command in commands):
        raise bad_request("can't parse commands JSON object")
    if len(commands) > 100:
        raise bad_request("too many commands")
    for command in commands:
        if not _COMMAND.fullmatch(str(command.get("command", ""))):
            raise bad_request("BOT_COMMAND_INVALID")
        if not 1 <= len(str(command.get("description", ""))) <= 256:
            raise bad_request("BOT_COMMAND_DESCRIPTION_INVALID")
    key = _commands_key(ctx)
    if commands:
        ctx.bot.commands[key] = [
            {"command": command["command"], "description": command["description"]} for command in commands
        ]
    else:
        ctx.bot.commands.pop(key, None)
    return True


@bot_method("getMyCommands")
def get_my_commands(ctx: CallContext) -> list[dict[str, Any]]:
    return ctx.bot.commands.get(_commands_key(ctx), [])


@bot_method("deleteMyCommands")
def delete_my_commands(ctx: CallContext) -> bool:
    ctx.bot.commands.pop(_commands_key(ctx), None)
    return True


# --------------------------------------------------------------------------- menu button


def _menu_button_chat(ctx: CallContext) -> int | None:
    """setChatMenuButton's and getChatMenuButton's chat: a private chat (a user's id), or None for the
    bot's default; a user Telegram doesn't know is refused."""
    if not ctx.params.has("chat_id"):
        return None
    chat_id = ctx.params.get_int("chat_id", invalid="invalid chat_id specified")
    if chat_id is None or chat_id <= 0:
        raise bad_request("invalid chat_id specified")
    with ctx.state.lock:
        if chat_id not in ctx.bot.chats and chat_id not in ctx.state.users:
            raise bad_request("user not found")
    return chat_id


def _menu_button(raw: Any) -> dict[str, Any]:
    """A MenuButton as the Bot API parses it: ``default`` (also when absent), ``commands``, or
    ``web_app`` with its text and an http(s) URL (Telegram's production servers take https only;
    the fake, standing in for its test environment too, takes http for this machine's Mini App)."""
    if raw is None:
        return {"type": "default"}
    if not isinstance(raw, dict):
        raise bad_request("can't parse menu button: MenuButton must be an Object")
    kind = raw.get("type")
    if kind is None:
        raise bad_request('can\'t parse menu button: Can\'t find field "type"')
    if not isinstance(kind, str):
        raise bad_request('can\'t parse menu button: Field "type" must be of type String')
    if kind in ("default", "commands"):
        return {"type": kind}
    if kind != "web_app":
        raise bad_request("can't parse menu button: MenuButton has unsupported type")
    text, web_app = raw.get("text"), raw.get("web_app")
    if not isinstance(text, str):
        raise bad_request('can\'t parse menu button: Can\'t find field "text"')
    if not isinstance(web_app, dict):
        raise bad_request('can\'t parse menu button: Field "web_app" must be of type Object')
    url = web_app.get("url")
    if not isinstance(url, str):
        raise bad_request('can\'t parse menu button: Can\'t find field "url"')
    parts = urlsplit(url)
    if not parts.hostname:
        raise bad_request(f"menu button web app URL '{url}' is invalid: URL host is empty")
    if parts.scheme not in ("http", "https"):
        raise bad_request(f"menu button web app URL '{url}' is invalid: Only HTTPS links are allowed")
    return {"type": "web_app", "text": text, "web_app": {"url": url}}


@bot_method("setChatMenuButton")
def set_chat_menu_button(ctx: CallContext) -> bool:
    try:
        raw = ctx.params.get_json("menu_button")
    except ApiError:
        raise bad_request("can't parse menu button JSON object") from None
    button = _menu_button(raw)  # parsed before the chat is looked at, as Telegram does
    chat_id = _menu_button_chat(ctx)
    with ctx.state.lock:
        ctx.bot.menu_buttons[chat_id] = button
    return True


@bot_method("getChatMenuButton")
def get_chat_menu_button(ctx: CallContext) -> dict[str, Any]:
    """The chat's own button ({"type": "default"} when it has none), or the bot's default
    ({"type": "commands"} until one is set)."""
    chat_id = _menu_button_chat(ctx)
    with ctx.state.lock:
        button = ctx.bot.menu_buttons.get(chat_id)
    if button is None:
        return {"type": "commands"} if chat_id is None else {"type": "default"}
    if chat_id is None and button["type"] == "default":
        return {"type": "commands"}
    return button
