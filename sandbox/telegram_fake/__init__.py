"""A local fake of the Telegram Bot API for tests and for trying the bot by hand.

Point python-telegram-bot at it with
``Bot(token, base_url=f"{url}/bot", base_file_url=f"{url}/file/bot")`` and play users through
the ``/_sandbox/`` control API (see :class:`TelegramFakeClient`).
"""

from .client import SandboxError, TelegramFakeClient
from .server import TelegramFake
from .state import DEFAULT_BOT_FIRST_NAME, DEFAULT_BOT_ID, DEFAULT_BOT_USERNAME, DEFAULT_TOKEN, SandboxState

__all__ = [
    "DEFAULT_BOT_FIRST_NAME",
    "DEFAULT_BOT_ID",
    "DEFAULT_BOT_USERNAME",
    "DEFAULT_TOKEN",
    "SandboxError",
    "SandboxState",
    "TelegramFake",
    "TelegramFakeClient",
]
