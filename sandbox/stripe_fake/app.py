"""Assembles the ASGI app: Stripe API, hosted checkout page, control API, background work."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable

from starlette.applications import Starlette

from .api import StripeApi
from .control import ControlApi
from .hosted_page import HostedCheckoutPage
from .onboarding_page import OnboardingPage
from .state import FakeState
from .webhooks import WebhookDispatcher

# How often sessions past expires_at expire and delayed payments settle without any request.
TICK_SECONDS = 0.1


def create_app(
    state: FakeState,
    *,
    public_url: str | None = None,
    on_ready: Callable[[], None] | None = None,
) -> Starlette:
    dispatcher = WebhookDispatcher(state)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        dispatcher.start()
        ticker = asyncio.create_task(_tick_forever(state))
        if on_ready is not None:
            on_ready()
        try:
            yield
        finally:
            ticker.cancel()
            await asyncio.to_thread(dispatcher.stop)

    routes = [
        *StripeApi(state, public_url=public_url).routes(),
        *HostedCheckoutPage(state).routes(),
        *OnboardingPage(state).routes(),
        *ControlApi(state).routes(),
    ]
    return Starlette(routes=routes, lifespan=lifespan)


async def _tick_forever(state: FakeState) -> None:
    while True:
        await asyncio.sleep(TICK_SECONDS)
        state.tick()
