"""Synchronous client for the fake's user-side ``/_sandbox/`` API, for tests and scripts."""

from __future__ import annotations

import base64
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import httpx


class SandboxError(RuntimeError):
    """The control API refused a request (e.g. pressing a button that is not there)."""

    def __init__(self, status: int, message: str):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message


def _content(source: bytes | str | Path) -> bytes:
    return source if isinstance(source, bytes) else Path(source).read_bytes()


class TelegramFakeClient:
    """Plays Telegram users against the fake and inspects what the bot did.

    ``bot_id`` selects the bot when the fake serves several tokens (default: the first one).
    """

    def __init__(self, base_url: str, *, bot_id: int | None = None, timeout: float = 10.0):
        self._bot_id = bot_id
        self._http = httpx.Client(base_url=base_url.rstrip("/") + "/_sandbox", timeout=timeout)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ plumbing

    def _with_bot(self, values: dict[str, Any]) -> dict[str, Any]:
        values = {key: value for key, value in values.items() if value is not None}
        if self._bot_id is not None:
            values.setdefault("bot_id", self._bot_id)
        return values

    def _request(self, method: str, path: str, *, ok_statuses: tuple[int, ...] = (200,), **kwargs: Any) -> dict:
        response = self._http.request(method, path, **kwargs)
        body = response.json()
        if response.status_code not in ok_statuses:
            raise SandboxError(response.status_code, body.get("error", response.text))
        return body

    def _post(self, path: str, payload: dict[str, Any]) -> dict[str, Any]:
        return self._request("POST", path, json=self._with_bot(payload))

    def _get(self, path: str, **params: Any) -> dict[str, Any]:
        return self._request("GET", path, params=self._with_bot(params))

    # ------------------------------------------------------------------ acting as users

    def create_user(
        self,
        user_id: int,
        first_name: str | None = None,
        *,
        last_name: str | None = None,
        username: str | None = None,
        language_code: str | None = None,
        started: bool = True,
    ) -> dict[str, Any]:
        payload = {
            "id": user_id,
            "first_name": first_name,
            "last_name": last_name,
            "username": username,
            "language_code": language_code,
            "started": started,
        }
        return self._post("/users", payload)["user"]

    def send_text(self, user_id: int, text: str, *, reply_to_message_id: int | None = None) -> dict[str, Any]:
        """Returns ``{update_id, message_id, chat_id, seq, message}``."""
        return self._post("/messages", {"user_id": user_id, "text": text, "reply_to_message_id": reply_to_message_id})

    def edit_text(self, user_id: int, message_id: int, text: str) -> dict[str, Any]:
        return self._post("/edits", {"user_id": user_id, "message_id": message_id, "text": text})

    def press_button(
        self,
        user_id: int,
        message_id: int,
        data: str | None = None,
        *,
        text: str | None = None,
        forge: bool = False,
    ) -> dict[str, Any]:
        """Tap the inline button with this callback ``data`` (or this button ``text``).

        Returns ``{update_id, callback_query_id, seq, callback_query}``.
        """
        payload = {"user_id": user_id, "message_id": message_id, "data": data, "text": text, "forge": forge}
        return self._post("/callbacks", payload)

    def open_web_app(self, user_id: int, message_id: int, text: str, *, platform: str | None = None) -> str:
        """Tap the ``web_app`` button with this ``text``: the address the Mini App opens at, with
        initData signed for the bot, the client's version and platform (``platform``, or the phone
        app the web chat plays) and the theme in its fragment."""
        return self._post("/web_apps", {"user_id": user_id, "message_id": message_id, "text": text,
                                        **({"platform": platform} if platform else {})})["url"]

    def menu_button(self, chat_id: int) -> dict[str, Any]:
        """The menu button this chat shows beside its message field (``{"type": "commands"}``: the
        "/" menu)."""
        return self._get("/menu_button", chat_id=chat_id)["menu_button"]

    def open_menu_button(self, user_id: int) -> str:
        """Tap the chat's menu button, when it opens a Mini App: the address it opens at."""
        return self._post("/web_apps", {"user_id": user_id, "menu_button": True})["url"]

    def send_photo(
        self, user_id: int, image: bytes | str | Path, *, caption: str | None = None, filename: str = "photo.jpg"
    ) -> dict[str, Any]:
        data = self._with_bot({"user_id": user_id, "caption": caption})
        return self._request("POST", "/photos", data=data, files={"file": (filename, _content(image))})

    def send_document(
        self,
        user_id: int,
        content: bytes | str | Path,
        *,
        file_name: str = "document.bin",
        mime_type: str | None = None,
        caption: str | None = None,
    ) -> dict[str, Any]:
        payload = {
            "user_id": user_id,
            "base64": base64.b64encode(_content(content)).decode(),
            "file_name": file_name,
            "mime_type": mime_type,
            "caption": caption,
        }
        return self._post("/documents", payload)

    def send_location(self, user_id: int, latitude: float, longitude: float) -> dict[str, Any]:
        return self._post("/locations", {"user_id": user_id, "latitude": latitude, "longitude": longitude})

    def send_update(self, update: dict[str, Any]) -> dict[str, Any]:
        """Deliver a raw update as is; returns ``{update_id, update}``."""
        params = {"bot_id": self._bot_id} if self._bot_id is not None else {}
        return self._request("POST", "/updates", json=update, params=params)

    def block(self, user_id: int, blocked: bool = True, *, notify: bool = True) -> dict[str, Any]:
        return self._post("/block", {"user_id": user_id, "blocked": blocked, "notify": notify})

    # ------------------------------------------------------------------ inspecting

    def messages(self, chat_id: int, *, include_deleted: bool = True) -> list[dict[str, Any]]:
        return self._get(f"/chats/{chat_id}/messages", include_deleted=include_deleted)["messages"]

    def chat(self, chat_id: int) -> dict[str, Any]:
        """Transcript plus chat state: ``{chat, blocked, reply_keyboard, messages}``."""
        return self._get(f"/chats/{chat_id}/messages")

    def wait_for_reply(
        self,
        chat_id: int,
        after_message_id: int | None = None,
        timeout: float = 5.0,
        *,
        after_seq: int | None = None,
    ) -> list[dict[str, Any]]:
        """Bot messages sent, edited or deleted in the chat after the given message (or seq).

        Raises ``TimeoutError`` if the bot stays silent for ``timeout`` seconds.
        """
        body = self._request(
            "GET",
            "/wait",
            params=self._with_bot(
                {"chat_id": chat_id, "after_message_id": after_message_id, "after_seq": after_seq, "timeout": timeout}
            ),
            timeout=timeout + 5,
            ok_statuses=(200, 408),
        )
        if not body["ok"]:
            raise TimeoutError(f"the bot did not write to chat {chat_id} within {timeout}s")
        return body["messages"]

    def calls(self, method: str | None = None, *, since: int | None = None) -> list[dict[str, Any]]:
        return self._get("/calls", method=method, since=since)["calls"]

    def inline_query(self, user_id: int, query: str) -> dict[str, Any]:
        """Type `@bot query` in a chat: ``{update_id, inline_query_id, inline_query}``."""
        return self._post("/inline_queries", {"user_id": user_id, "query": query})

    def inline_answer(self, inline_query_id: str) -> dict[str, Any]:
        """The bot's answer so far: ``{answered, results, ...}``."""
        return self._get(f"/inline_queries/{inline_query_id}")

    def choose_inline_result(self, inline_query_id: str, result_id: str) -> dict[str, Any]:
        """Send one of the answer's results (it appears in the user's chat with the bot, via the bot)."""
        return self._post(f"/inline_queries/{inline_query_id}/choose", {"result_id": result_id})

    def callback_answers(self) -> list[dict[str, Any]]:
        return self._get("/callback_answers")["callback_answers"]

    def stats(self) -> dict[str, Any]:
        return self._get("/stats")

    # ------------------------------------------------------------------ switches

    def set_fault(
        self,
        method: str | None = None,
        *,
        status: int | None = None,
        count: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> dict[str, Any]:
        """Fail the next ``count`` calls of ``method`` (every method when None) with ``status``,
        or with 429 and ``parameters.retry_after`` when ``retry_after`` is given."""
        payload = {
            "method": method,
            "status": status,
            "count": count,
            "retry_after": retry_after,
            "description": description,
        }
        return self._request("POST", "/faults", json={k: v for k, v in payload.items() if v is not None})

    def set_rate_limit(
        self,
        enabled: bool = True,
        *,
        global_per_second: float = 30.0,
        global_burst: int = 30,
        per_chat_per_second: float = 1.0,
        per_chat_burst: int = 3,
        paid_per_second: float = 1000.0,
        paid_burst: int = 100,
    ) -> dict[str, Any]:
        """Enforce Telegram's flood limits (429 beyond them); a message sent with
        `allow_paid_broadcast` draws from the paid bucket instead of the global one."""
        settings: dict[str, Any] | bool = False
        if enabled:
            settings = {
                "global_per_second": global_per_second,
                "global_burst": global_burst,
                "per_chat_per_second": per_chat_per_second,
                "per_chat_burst": per_chat_burst,
                "paid_per_second": paid_per_second,
                "paid_burst": paid_burst,
            }
        return self._request("POST", "/faults", json={"rate_limit": settings})

    def set_unreachable(self, unreachable: bool = True, methods: list[str] | None = None) -> dict[str, Any]:
        """Hold Bot API calls (of `methods`, else all) while set; a call whose client went away
        meanwhile is never carried out."""
        return self._request("POST", "/faults", json={"unreachable": unreachable, "unreachable_methods": methods})

    def clear_faults(self) -> dict[str, Any]:
        return self._request("POST", "/faults", json={"clear": True})

    def reset(self) -> None:
        self._request("POST", "/reset")
