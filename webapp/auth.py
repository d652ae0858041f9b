"""Who is calling: Telegram Mini App ``initData``, validated as Telegram specifies.

https://core.telegram.org/bots/webapps#validating-data-received-via-the-mini-app:

* the data-check-string is every received field except ``hash``, as ``key=value`` (the value
  URL-decoded), sorted by key and joined with line feeds;
* the secret key is the HMAC-SHA256 of the bot token, keyed with the constant ``WebAppData``;
* ``hash`` must be the hex HMAC-SHA256 of the data-check-string under that secret key (compared in
  constant time);
* ``auth_date`` says when Telegram signed it: older than ``max_age`` seconds is refused.

`sign` builds initData the same way, for the sandbox's web chat and the tests.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from urllib.parse import parse_qsl, urlencode

MAX_INIT_DATA_BYTES = 8192  # Telegram's initData is a few hundred bytes
CLOCK_SKEW_SECONDS = 60  # an auth_date this far in the future is still accepted


class InvalidInitData(Exception):
    """The initData is missing, malformed, not signed for our bot, or too old (`reason` says which;
    it is logged, never shown: the caller learns only that it was refused)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class WebAppUser:
    id: int
    first_name: str
    language_code: str | None
    auth_date: int


def secret_key(bot_token: str) -> bytes:
    return hmac.new(b"WebAppData", bot_token.encode(), hashlib.sha256).digest()


def data_check_string(fields: dict[str, str]) -> str:
    return "\n".join(f"{key}={fields[key]}" for key in sorted(fields) if key != "hash")


def _signature(fields: dict[str, str], bot_token: str) -> str:
    return hmac.new(secret_key(bot_token), data_check_string(fields).encode(), hashlib.sha256).hexdigest()


def _fields(init_data: str) -> dict[str, str]:
    if not init_data or len(init_data.encode()) > MAX_INIT_DATA_BYTES:
        raise InvalidInitData("missing" if not init_data else "too_large")
    try:
        pairs = parse_qsl(init_data, keep_blank_values=True, strict_parsing=True, errors="strict")
    except (ValueError, UnicodeDecodeError):
        raise InvalidInitData("malformed") from None
    fields = dict(pairs)
    if len(fields) != len(pairs):  # each field exactly once: no second, unsigned "user"
        raise InvalidInitData("duplicate_field")
    return fields


def validate(init_data: str, bot_token: str, *, now: float, max_age: int) -> WebAppUser:
    """The user the initData was signed for; InvalidInitData if it is not genuine or too old."""
    fields = _fields(init_data)
    given = fields.get("hash", "")
    if not hmac.compare_digest(given.encode(), _signature(fields, bot_token).encode()):
        raise InvalidInitData("bad_hash")
    try:
        auth_date = int(fields["auth_date"])
        user = json.loads(fields["user"])
        user_id = user["id"]
    except (KeyError, ValueError, TypeError):
        raise InvalidInitData("no_user") from None
    if not isinstance(user_id, int) or isinstance(user_id, bool) or not 0 < user_id < 2**63:
        raise InvalidInitData("no_user")
    if now - auth_date > max_age:
        raise InvalidInitData("stale")
    if auth_date - now > CLOCK_SKEW_SECONDS:
        raise InvalidInitData("from_the_future")
    language = user.get("language_code")
    return WebAppUser(user_id, str(user.get("first_name", "")), language if isinstance(language, str) else None,
                      auth_date)


def sign(user: dict, bot_token: str, *, auth_date: int, extra: dict[str, str] | None = None) -> str:
    """initData for `user`, signed for the bot of `bot_token` as Telegram signs it."""
    fields = {"auth_date": str(auth_date), "user": json.dumps(user, separators=(",", ":"), ensure_ascii=False),
              **(extra or {})}
    fields["hash"] = _signature(fields, bot_token)
    return urlencode(fields)
