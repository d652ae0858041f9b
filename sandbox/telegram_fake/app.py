"""Starlette application wiring: routes, request logging, webhook dispatcher lifecycle."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from . import api_bot, api_user
from .delivery import RetryPolicy, WebhookDispatcher
from .errors import not_found
from .state import SandboxState
from .web import WebConfig
from .web import routes as web_routes

logger = logging.getLogger("sandbox.telegram_fake")

_TOKEN_IN_PATH = re.compile(r"^(/(?:file/)?bot)[^/]+(?=/)")


class RequestLogMiddleware:
    """One INFO line per request, with bot tokens masked."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_capture_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_capture_status)
        finally:
            path = _TOKEN_IN_PATH.sub(r"\1<token>", scope["path"])
            elapsed_ms = (time.perf_counter() - started) * 1000
            logger.info("%s %s %d %.1fms", scope["method"], path, status, elapsed_ms)


async def _not_found(request: Request) -> Response:
    return api_bot.json_response(not_found().payload(), 404)


def create_app(
    state: SandboxState,
    *,
    retry: RetryPolicy | None = None,
    webhook_timeout: float = 10.0,
    on_ready: Callable[[], Any] | None = None,
    web: WebConfig | None = None,
) -> Starlette:
    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with httpx.AsyncClient(timeout=webhook_timeout) as http:
            app.state.http = http
            dispatcher = WebhookDispatcher(state, http, retry or RetryPolicy())
            dispatcher_task = asyncio.create_task(dispatcher.run())
            if on_ready is not None:
                on_ready()
            try:
                yield
            finally:
                state.close()
                dispatcher_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await dispatcher_task

    app = Starlette(
        routes=[
            *api_bot.routes(),
            *api_user.routes(),
            *web_routes(state, web or WebConfig()),
            Route("/{path:path}", _not_found, methods=["GET", "POST", "PUT", "DELETE", "PATCH"]),
        ],
        lifespan=lifespan,
    )
    app.state.sandbox = state
    app.add_middleware(RequestLogMiddleware)
    return app
