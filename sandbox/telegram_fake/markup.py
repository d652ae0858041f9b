"""Validation of ``reply_markup`` the way the Bot API checks it."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from .errors import bad_request

# Fields that make an inline button do something; a button needs exactly one of them.
INLINE_BUTTON_ACTIONS = frozenset(
    {
        "url",
        "callback_data",
        "web_app",
        "login_url",
        "switch_inline_query",
        "switch_inline_query_current_chat",
        "switch_inline_query_chosen_chat",
        "copy_text",
        "callback_game",
        "pay",
    }
)
MAX_CALLBACK_DATA_BYTES = 64


def _validate_inline_button(button: Any) -> None:
    if not isinstance(button, dict) or not isinstance(button.get("text"), str):
        raise bad_request("can't parse inline keyboard button: Text buttons are unallowed in the inline keyboard")
    actions = INLINE_BUTTON_ACTIONS.intersection(button)
    if not actions:
        raise bad_request("text buttons are unallowed in the inline keyboard")
    if "callback_data" in button:
        data = button["callback_data"]
        if not isinstance(data, str) or not 1 <= len(data.encode("utf-8")) <= MAX_CALLBACK_DATA_BYTES:
            raise bad_request("BUTTON_DATA_INVALID")
    if "url" in button:
        url = urlsplit(str(button["url"]))
        if url.scheme not in ("http", "https", "tg") or not (url.netloc or url.scheme == "tg"):
            raise bad_request("BUTTON_URL_INVALID")


def _rows(markup: dict[str, Any], key: str) -> list[list[Any]]:
    rows = markup[key]
    if not isinstance(rows, list) or not all(isinstance(row, list) for row in rows):
        raise bad_request(f"field \"{key}\" of the reply markup must be an Array of Arrays")
    return rows


def validate_reply_markup(markup: Any, *, inline_only: bool = False) -> dict[str, Any] | None:
    """Return the normalised markup (reply keyboard strings become ``{"text": ...}``)."""
    if markup is None:
        return None
    if not isinstance(markup, dict):
        raise bad_request("can't parse reply keyboard markup JSON object")
    if "inline_keyboard" in markup:
        for row in _rows(markup, "inline_keyboard"):
            for button in row:
                _validate_inline_button(button)
        return markup
    if inline_only:
        raise bad_request("inline keyboard expected")
    if "keyboard" in markup:
        rows = [
            [button if isinstance(button, dict) else {"text": str(button)} for button in row]
            for row in _rows(markup, "keyboard")
        ]
        if any(not isinstance(button.get("text"), str) or not button["text"] for row in rows for button in row):
            raise bad_request("keyboard button text must be non-empty")
        return {**markup, "keyboard": rows}
    if markup.get("remove_keyboard") or markup.get("force_reply"):
        return markup
    raise bad_request("object expected as reply markup")


def inline_buttons(markup: dict[str, Any] | None) -> list[dict[str, Any]]:
    if not markup or "inline_keyboard" not in markup:
        return []
    return [button for row in markup["inline_keyboard"] for button in row]
