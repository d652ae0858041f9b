"""Telling Telegram how to reach us: the command menu, the menu button that opens the Mini App (when
it has an address), and the webhook (or its removal for polling).

`python -m bot.setup webhook` sets the webhook at PUBLIC_URL with the secret, the update kinds
we handle and a connection limit; `python -m bot.setup polling` removes it so getUpdates works.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from telegram import Bot

from core.i18n import DEFAULT_LANGUAGE, SUPPORTED_LANGUAGES
from core.settings import Settings, get_settings
from core.telegram import ALLOWED_UPDATES, bot_commands, make_bot, map_menu_button

WEBHOOK_PATH = "/telegram/webhook"
# Telegram opens at most this many simultaneous webhook connections; the gateway takes far more.
WEBHOOK_MAX_CONNECTIONS = 80


async def register_commands(bot: Bot) -> None:
    """The "/" menu in every client, in each of our languages (English is the default). A person
    who chose a language with /language gets their chat's own menu (notifications.set_chat_commands)."""
    for language in SUPPORTED_LANGUAGES:
        await bot.set_my_commands(bot_commands(language), language_code=None if language == "en" else language)


async def register_menu_button(bot: Bot, settings: Settings) -> bool:
    """The menu button beside every chat's message field opens the Mini App ("🗺 Map"), when it has an
    address (WEBAPP_URL; in the sandbox, this machine's). Telegram's default menu button has no
    language: it is in English, and a chat whose person speaks another gets its own
    (notifications.set_chat_commands). Without an address nothing is set: the menu button stays
    Telegram's, the "/" menu."""
    if not settings.webapp_url:
        return False
    await bot.set_chat_menu_button(menu_button=map_menu_button(DEFAULT_LANGUAGE, settings.webapp_url))
    return True


async def set_webhook(bot: Bot, settings: Settings) -> str:
    if not settings.public_url:
        raise SystemExit("PUBLIC_URL is unset: there is no address for Telegram to call (use polling).")
    if not settings.telegram_webhook_secret:
        raise SystemExit("TELEGRAM_WEBHOOK_SECRET is unset: a webhook without a secret would accept anyone.")
    url = settings.public_url + WEBHOOK_PATH
    await bot.set_webhook(
        url,
        secret_token=settings.telegram_webhook_secret.get_secret_value(),
        allowed_updates=ALLOWED_UPDATES,
        max_connections=WEBHOOK_MAX_CONNECTIONS,
    )
    return url


async def _main(mode: str) -> None:
    settings = get_settings()
    async with make_bot(settings.telegram_token, settings.telegram_api_url) as bot:
        await register_commands(bot)
        if await register_menu_button(bot, settings):
            print(f"menu button: the Mini App at {settings.webapp_url}", file=sys.stderr)
        if mode == "webhook":
            url = await set_webhook(bot, settings)
            print(f"webhook set: {url} (updates: {', '.join(ALLOWED_UPDATES)})", file=sys.stderr)
        else:
            # Keep pending updates: they are delivered to the poller instead.
            await bot.delete_webhook(drop_pending_updates=False)
            print("webhook removed: updates are fetched by the poller", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["webhook", "polling"])
    asyncio.run(_main(parser.parse_args().mode))


if __name__ == "__main__":
    main()
