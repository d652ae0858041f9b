"""Webhook delivery: POST queued updates to each bot's webhook, retrying until delivered."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

from .api_bot import execute
from .http_params import Params
from .state import BotAccount, SandboxState, WebhookConfig

logger = logging.getLogger("sandbox.telegram_fake.delivery")

_STOP = object()


@dataclass(frozen=True)
class RetryPolicy:
    initial_delay: float = 0.2
    max_delay: float = 5.0


class WebhookDispatcher:
    """Keeps ``max_connections`` workers per bot with a webhook; restarts them when it changes.

    Workers own one update at a time and keep retrying it with exponential backoff, so no update
    is ever dropped; an update stays counted in ``pending_update_count`` until a 2xx answer.
    """

    def __init__(self, state: SandboxState, http: httpx.AsyncClient, retry: RetryPolicy):
        self._state = state
        self._http = http
        self._retry = retry
        self._workers: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        running: dict[int, WebhookConfig | None] = {}

        def configuration_changed() -> bool:
            with self._state.lock:
                return self._state.closing or any(
                    running.get(bot.id) is not bot.webhook for bot in self._state.bots.values()
                )

        try:
            while True:
                await self._state.feed.wait_for(configuration_changed, None)
                if self._state.closing:
                    return
                with self._state.lock:
                    changed = [
                        (bot, bot.webhook)
                        for bot in self._state.bots.values()
                        if running.get(bot.id) is not bot.webhook
                    ]
                for bot, webhook in changed:
                    # Workers of a replaced webhook notice by themselves and finish.
                    running[bot.id] = webhook
                    if webhook is not None:
                        for _ in range(webhook.max_connections):
                            task = asyncio.create_task(self._worker(bot, webhook))
                            self._workers.add(task)
                            task.add_done_callback(self._workers.discard)
        finally:
            for task in list(self._workers):
                task.cancel()
            await asyncio.gather(*self._workers, return_exceptions=True)

    def _is_current(self, bot: BotAccount, webhook: WebhookConfig) -> bool:
        return not self._state.closing and bot.webhook is webhook

    async def _worker(self, bot: BotAccount, webhook: WebhookConfig) -> None:
        def next_update() -> Any:
            with self._state.lock:
                if not self._is_current(bot, webhook):
                    return _STOP
                return self._state.claim_update(bot)

        while True:
            update = await self._state.feed.wait_for(next_update, None)
            if update is _STOP:
                return
            await self._deliver(bot, webhook, update)

    async def _deliver(self, bot: BotAccount, webhook: WebhookConfig, update: dict[str, Any]) -> None:
        delivered = False
        delay = self._retry.initial_delay
        try:
            while True:
                error = await self._post(bot, webhook, update)
                if error is None:
                    delivered = True
                    return
                logger.info("webhook delivery of update %s failed: %s", update["update_id"], error)
                self._state.record_webhook_error(bot, error)

                def replaced() -> bool:
                    with self._state.lock:
                        return not self._is_current(bot, webhook)

                # Back off, but give the update up at once if the webhook is removed or replaced.
                if await self._state.feed.wait_for(replaced, delay):
                    return
                delay = min(delay * 2, self._retry.max_delay)
        finally:
            self._state.release_update(bot, update, delivered=delivered)

    async def _post(self, bot: BotAccount, webhook: WebhookConfig, update: dict[str, Any]) -> str | None:
        """Send one update; returns Telegram's last_error_message wording on failure."""
        headers = {"Content-Type": "application/json"}
        if webhook.secret_token:
            headers["X-Telegram-Bot-Api-Secret-Token"] = webhook.secret_token
        try:
            response = await self._http.post(webhook.url, content=orjson.dumps(update), headers=headers)
        except httpx.TimeoutException:
            return "Read timeout expired"
        except httpx.ConnectError:
            return "Connection refused"
        except httpx.HTTPError as error:
            return f"Connection error: {error.__class__.__name__}"
        if not 200 <= response.status_code < 300:
            return f"Wrong response from the webhook: {response.status_code} {response.reason_phrase}"
        await self._run_method_from_response(bot, response)
        return None

    async def _run_method_from_response(self, bot: BotAccount, response: httpx.Response) -> None:
        """Telegram executes a Bot API call returned as the webhook response body."""
        if "json" not in response.headers.get("content-type", ""):
            return
        with contextlib.suppress(orjson.JSONDecodeError):
            body = orjson.loads(response.content)
            if isinstance(body, dict) and isinstance(body.get("method"), str):
                values = {key: value for key, value in body.items() if key != "method"}
                await execute(self._state, bot, body["method"], Params(values), self._http)
