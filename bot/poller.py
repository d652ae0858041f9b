"""The poller: an alternative to the webhook for machines without a public URL.

It long-polls getUpdates and puts each update on the `updates` queue exactly like the gateway
does. The offset (which tells Telegram that updates were received) only moves past an update once
it is on the broker, so a crash or a broker outage loses nothing: Telegram hands the same updates
out again, and the dedup key drops the ones already queued. Run with `python -m bot.poller`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal

import orjson
from telegram import Bot
from telegram.error import Conflict, NetworkError, RetryAfter, TimedOut

from bot.publisher import BrokerUnavailable, UpdatePublisher
from core.celery_app import app as celery_app
from core.logging import configure_logging, get_logger, init_error_reporting
from core.settings import get_settings
from core.telegram import ALLOWED_UPDATES, make_bot, retry_after_seconds

log = get_logger(__name__)

POLL_TIMEOUT_SECONDS = 50


async def poll_once(bot: Bot, publisher: UpdatePublisher, offset: int | None) -> int | None:
    """Fetch one batch and queue it; returns the next offset (unchanged if queueing failed)."""
    updates = await bot.get_updates(offset=offset, timeout=POLL_TIMEOUT_SECONDS, allowed_updates=ALLOWED_UPDATES)
    for update in updates:
        # to_dict() keeps fields this library version does not know (api_kwargs) too.
        await publisher.publish(update.update_id, orjson.dumps(update.to_dict()))  # may raise BrokerUnavailable
        offset = update.update_id + 1
    return offset


async def run(stop: asyncio.Event) -> None:
    settings = get_settings()
    publisher = UpdatePublisher(settings.redis_url, celery_app, settings.update_dedup_ttl_seconds, batch=False)
    offset: int | None = None
    backoff = 1.0
    async with make_bot(settings.telegram_token, settings.telegram_api_url) as bot:
        log.info("poller_started", bot=bot.username)
        while not stop.is_set():
            try:
                offset = await _unless_stopped(poll_once(bot, publisher, offset), stop, offset)
                backoff = 1.0
                continue
            except BrokerUnavailable as error:
                log.warning("broker_unavailable", error=str(error), retry_in=backoff)
            except RetryAfter as error:
                backoff = retry_after_seconds(error)
            except Conflict:
                log.error("webhook_is_set", detail="run `python -m bot.setup polling` or unset the webhook")
            except (TimedOut, NetworkError) as error:
                log.warning("telegram_unreachable", error=str(error), retry_in=backoff)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 30.0)
    await publisher.close()


async def _unless_stopped(poll, stop: asyncio.Event, offset: int | None) -> int | None:
    """Run one poll, abandoning it when asked to stop (a long poll can take 50 s). An abandoned
    batch was not confirmed, so Telegram hands it out again and the dedup drops repeats."""
    poll_task = asyncio.ensure_future(poll)
    stop_task = asyncio.ensure_future(stop.wait())
    await asyncio.wait({poll_task, stop_task}, return_when=asyncio.FIRST_COMPLETED)
    if poll_task.done():
        stop_task.cancel()
        return poll_task.result()
    poll_task.cancel()
    return offset


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    init_error_reporting(settings.sentry_dsn.get_secret_value() if settings.sentry_dsn else None)

    async def _main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await run(stop)

    asyncio.run(_main())


if __name__ == "__main__":
    main()
