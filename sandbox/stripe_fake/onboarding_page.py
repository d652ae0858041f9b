"""The hosted Connect onboarding page an account link's `url` points to (stands in for
connect.stripe.com): it names the account and offers "Complete" (everything filled in: the account
can take charges and receive payouts) and "Leave unfinished" (it stays pending). Either way Stripe
sends the business to the link's return URL; a link used before or expired sends it to the
refresh URL instead, where the platform makes a new link. Plain HTML forms, no scripts."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from . import errors
from .hosted_page import _e, _loopback_url_answers, _page
from .state import FakeState


class OnboardingPage:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def routes(self) -> list[Route]:
        return [
            Route("/connect/onboarding/{token}", self.show, methods=["GET"]),
            Route("/connect/onboarding/{token}/complete", self.complete, methods=["POST"]),
            Route("/connect/onboarding/{token}/leave", self.leave, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        token = request.path_params["token"]
        found = self._state.onboarding_link(token)
        if found is None:
            return _page("Not found", "<p>This onboarding link is not valid.</p>", status=404)
        link, account = found
        name = account["business_profile"]["name"] or account["id"]
        if link.used or link.expires_at < self._state.timestamp():
            body = ("<p>This link was used already or has expired.</p>"
                    f"<p><a href='{_e(link.refresh_url)}'>Get a new link →</a></p>")
            return _page("Payouts for " + name, body)
        base = f"/connect/onboarding/{_e(token)}"
        body = (
            f"<p>Set up payouts for <b>{_e(name)}</b> <span class='muted'>({_e(account['id'])})</span>: "
            "in test mode, nothing to fill in.</p>"
            f"<form method='post' action='{base}/complete'><button class='pay' type='submit'>Complete</button></form>"
            f"<form method='post' action='{base}/leave'>"
            "<button class='decline' type='submit'>Leave unfinished</button></form>"
        )
        return _page("Payouts for " + name, body)

    async def complete(self, request: Request) -> Response:
        return await self._finish(request, complete=True)

    async def leave(self, request: Request) -> Response:
        return await self._finish(request, complete=False)

    async def _finish(self, request: Request, *, complete: bool) -> Response:
        try:
            target = self._state.finish_onboarding(request.path_params["token"], complete=complete)
        except errors.StripeApiError:
            return await self.show(request)
        if await asyncio.to_thread(_loopback_url_answers, target):
            return RedirectResponse(target, status_code=303)
        said = "All set: payouts are ready." if complete else "Saved. You can finish later from the chat."
        body = (f"<div class='notice {'ok' if complete else 'error'}' role='status'>{said}</div>"
                f"<p><a href='{_e(target)}'>Return to Surplus →</a></p>")
        return _page("Payouts", body)
