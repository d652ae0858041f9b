"""The `/_sandbox/...` control API (JSON, no authentication): drive the fake from tests.

Errors come back as `{"error": {"message": ..., "type": ...}}`, with the Stripe error body
when the failure is one Stripe would report (unknown session, session not open, declines).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from . import errors
from .state import OBJECT_KINDS, FakeState, WebhookConfig, new_webhook_secret

_WEBHOOK_FIELDS = {f.name: f for f in dataclasses.fields(WebhookConfig)}
_MAX_WAIT_SECONDS = 60.0


class ControlError(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class ControlApi:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def routes(self) -> list[Route]:
        def route(path: str, methods: list[str], handler: Callable[[Request], Any]) -> Route:
            return Route(path, self._endpoint(handler), methods=methods)

        return [
            route("/_sandbox/health", ["GET"], self.health),
            route("/_sandbox/checkout/{id}/pay", ["POST"], self.pay),
            route("/_sandbox/checkout/{id}/decline", ["POST"], self.decline),
            route("/_sandbox/checkout/{id}/settle", ["POST"], self.settle),
            route("/_sandbox/accounts/{id}/restrict", ["POST"], self.restrict_account),
            route("/_sandbox/accounts/{id}/deauthorize", ["POST"], self.deauthorize_account),
            route("/_sandbox/accounts/{id}/payouts", ["POST"], self.pay_out),
            route("/_sandbox/accounts/{id}/balance", ["GET"], self.balance),
            route("/_sandbox/faults", ["GET", "POST", "DELETE"], self.faults),
            route("/_sandbox/webhook", ["GET", "POST", "DELETE"], self.webhook),
            route("/_sandbox/deliveries", ["GET"], self.deliveries),
            route("/_sandbox/objects", ["GET"], self.objects),
            route("/_sandbox/clock", ["GET", "POST"], self.clock),
            route("/_sandbox/reset", ["POST"], self.reset),
        ]

    @staticmethod
    def _endpoint(handler: Callable[[Request], Any]) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            try:
                return await handler(request)
            except errors.StripeApiError as exc:
                return JSONResponse(exc.body(), status_code=exc.status)
            except (ControlError, ValueError) as exc:
                status = exc.status if isinstance(exc, ControlError) else 400
                return JSONResponse({"error": {"message": str(exc), "type": "sandbox_error"}}, status_code=status)

        return endpoint

    # --------------------------------------------------------- handlers

    async def health(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    async def pay(self, request: Request) -> Response:
        body = await _json_body(request, {"async", "outcome", "settle_after", "email"})
        outcome = body.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed", None):
            raise ControlError('outcome must be "succeeded", "failed" or null (settle later by hand)')
        result = self._state.pay_session(
            request.path_params["id"],
            asynchronous=_typed(body, "async", bool, False),
            outcome=outcome,
            settle_after=float(_typed(body, "settle_after", (int, float), 0.0)),
            email=_typed(body, "email", str, None),
        )
        if result.decline is not None:
            return JSONResponse({**result.decline.body(), "session": result.session}, status_code=402)
        return JSONResponse({"session": result.session})

    async def decline(self, request: Request) -> Response:
        body = await _json_body(request, {"decline_code"})
        result = self._state.decline_session(
            request.path_params["id"], _typed(body, "decline_code", str, "generic_decline")
        )
        assert result.decline is not None
        return JSONResponse({**result.decline.body(), "session": result.session}, status_code=402)

    async def settle(self, request: Request) -> Response:
        body = await _json_body(request, {"outcome"})
        outcome = body.get("outcome", "succeeded")
        if outcome not in ("succeeded", "failed"):
            raise ControlError('outcome must be "succeeded" or "failed"')
        return JSONResponse({"session": self._state.settle_session(request.path_params["id"], outcome)})

    async def restrict_account(self, request: Request) -> Response:
        body = await _json_body(request, {"restricted"})
        restricted = _typed(body, "restricted", bool, True)
        return JSONResponse({"account": self._state.restrict_account(request.path_params["id"], restricted=restricted)})

    async def deauthorize_account(self, request: Request) -> Response:
        self._state.deauthorize_account(request.path_params["id"])
        return JSONResponse({"ok": True})

    async def pay_out(self, request: Request) -> Response:
        return JSONResponse({"data": self._state.pay_out(request.path_params["id"])})

    async def balance(self, request: Request) -> Response:
        return JSONResponse({"available": self._state.account_balance(request.path_params["id"])})

    async def faults(self, request: Request) -> Response:
        if request.method == "DELETE":
            self._state.clear_faults()
        elif request.method == "POST":
            body = await _json_body(request, {"kind", "path", "method", "count", "delay_seconds", "decline_code"})
            count = body.get("count", 1)
            if count is not None and (not isinstance(count, int) or isinstance(count, bool)):
                raise ControlError("count must be an integer, or null for 'until cleared'")
            fault = self._state.add_fault(
                kind=_typed(body, "kind", str, ""),
                path=_typed(body, "path", str, "*"),
                method=_typed(body, "method", str, None),
                count=count,
                delay_seconds=float(_typed(body, "delay_seconds", (int, float), 0.0)),
                decline_code=_typed(body, "decline_code", str, "generic_decline"),
            )
            return JSONResponse(fault, status_code=201)
        return JSONResponse({"data": self._state.faults()})

    async def webhook(self, request: Request) -> Response:
        if request.method == "DELETE":
            self._state.configure_webhook(None)
        elif request.method == "POST":
            body = await _json_body(request, set(_WEBHOOK_FIELDS))
            self._state.configure_webhook(_merge_webhook(self._state.webhook_settings(), body))
        return JSONResponse({"webhook": self._state.webhook_settings()})

    async def deliveries(self, request: Request) -> Response:
        idle = None
        if "wait_idle" in request.query_params:
            try:
                timeout = min(float(request.query_params["wait_idle"]), _MAX_WAIT_SECONDS)
            except ValueError as exc:
                raise ControlError("wait_idle must be a number of seconds") from exc
            idle = await asyncio.to_thread(self._state.wait_deliveries_idle, timeout)
        attempts = self._state.delivery_attempts(request.query_params.get("event_id"))
        return JSONResponse({"idle": idle, "data": attempts})

    async def objects(self, request: Request) -> Response:
        kind = request.query_params.get("type")
        if kind is not None and kind not in OBJECT_KINDS:
            raise ControlError(f"type must be one of {', '.join(OBJECT_KINDS)}")
        return JSONResponse({"data": self._state.all_objects(kind)})

    async def clock(self, request: Request) -> Response:
        if request.method == "POST":
            body = await _json_body(request, {"advance"})
            seconds = _typed(body, "advance", (int, float), None)
            if seconds is None or seconds < 0:
                raise ControlError("advance must be a non-negative number of seconds")
            return JSONResponse({"now": self._state.advance_clock(float(seconds))})
        return JSONResponse({"now": self._state.timestamp()})

    async def reset(self, request: Request) -> Response:
        self._state.reset()
        return JSONResponse({"ok": True})


async def _json_body(request: Request, allowed: set[str]) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise ControlError(f"body is not JSON: {exc}") from exc
    if not isinstance(body, dict):
        raise ControlError("body must be a JSON object")
    unknown = set(body) - allowed
    if unknown:
        raise ControlError(f"unknown field(s): {', '.join(sorted(unknown))}; allowed: {', '.join(sorted(allowed))}")
    return body


def _typed(body: dict[str, Any], name: str, kind: type | tuple[type, ...], default: Any) -> Any:
    value = body.get(name)
    if value is None:
        return default
    # bool is an int subclass; only accept it where a bool is asked for.
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise ControlError(f"{name} has the wrong type")
    return value


def _merge_webhook(current: dict[str, Any] | None, changes: dict[str, Any]) -> WebhookConfig:
    """Fields left out keep their current value, so a test can flip one switch at a time."""
    settings = {**(current or {}), **changes}
    if not settings.get("url"):
        raise ControlError("url is required to configure the webhook endpoint")
    if not settings.get("secret"):
        settings["secret"] = new_webhook_secret()
    try:
        config = WebhookConfig(**settings)
    except TypeError as exc:
        raise ControlError(str(exc)) from exc
    for name in ("duplicates", "max_attempts"):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 1:
            raise ControlError(f"{name} must be an integer of at least 1")
    for name in ("drop_first_attempts",):
        if not isinstance(getattr(config, name), int) or getattr(config, name) < 0:
            raise ControlError(f"{name} must be a non-negative integer")
    for name in ("reorder_window", "retry_base_delay", "timeout"):
        if not isinstance(getattr(config, name), (int, float)) or getattr(config, name) < 0:
            raise ControlError(f"{name} must be a non-negative number")
    if not isinstance(config.enabled_events, list) or not all(isinstance(e, str) for e in config.enabled_events):
        raise ControlError("enabled_events must be a list of event types (wildcards allowed)")
    return config
