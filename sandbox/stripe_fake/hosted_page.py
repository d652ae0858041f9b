"""The hosted checkout page a session's `url` points to (stands in for checkout.stripe.com).

Plain HTML forms and inline CSS, no scripts or external assets. Pay completes the session and
redirects to success_url when that is a loopback address that answers; otherwise the page
shows a link instead (the fake never probes hosts beyond this machine). Decline keeps the
session open, as Stripe does, so the customer can try again.
"""

from __future__ import annotations

import asyncio
import html
import ipaddress
import socket
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Route

from . import errors, objects
from .state import FakeState

# Form value of the payment-method radio -> (asynchronous, outcome)
PAYMENT_METHODS = {
    "card": (False, "succeeded"),
    "delayed_success": (True, "succeeded"),
    "delayed_failure": (True, "failed"),
}

_STYLE = """
body{margin:0;background:#f6f8fa;font:16px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;color:#1a1f36}
main{max-width:440px;margin:48px auto;background:#fff;border-radius:12px;padding:28px 32px;
box-shadow:0 2px 12px rgba(0,0,0,.08)}
h1{font-size:20px;margin:0 0 4px}.badge{display:inline-block;background:#ffde92;color:#5b3e00;
border-radius:4px;padding:1px 6px;font-size:12px;font-weight:600}
table{width:100%;border-collapse:collapse;margin:20px 0}td{padding:6px 0;vertical-align:top}
td.amount{text-align:right;white-space:nowrap}.muted{color:#697386;font-size:14px}
tr.total td{border-top:1px solid #e3e8ee;padding-top:12px;font-weight:600}
fieldset{border:1px solid #e3e8ee;border-radius:8px;margin:0 0 16px;padding:10px 14px}
label{display:block;padding:3px 0}button{width:100%;border:0;border-radius:8px;padding:12px;
font-size:16px;font-weight:600;cursor:pointer}.pay{background:#635bff;color:#fff}
.decline{background:#fff;color:#c0123c;border:1px solid #c0123c;margin-top:10px}
.notice{border-radius:8px;padding:10px 14px;margin:16px 0}.error{background:#ffe7ec;color:#9b0c2c}
.ok{background:#e3f9e5;color:#0b6e2a}a{color:#635bff}
"""


class HostedCheckoutPage:
    def __init__(self, state: FakeState) -> None:
        self._state = state

    def routes(self) -> list[Route]:
        return [
            Route("/checkout/{id}", self.show, methods=["GET"]),
            Route("/checkout/{id}/pay", self.pay, methods=["POST"]),
            Route("/checkout/{id}/decline", self.decline, methods=["POST"]),
        ]

    async def show(self, request: Request) -> Response:
        session = self._session(request.path_params["id"])
        if session is None:
            return _page("Not found", "<p>There is no checkout session at this address.</p>", status=404)
        return self._render(session, notice=self._state.last_decline(session["id"]))

    async def pay(self, request: Request) -> Response:
        session_id = request.path_params["id"]
        form = dict(parse_qsl((await request.body()).decode("utf-8")))
        asynchronous, outcome = PAYMENT_METHODS.get(form.get("method", "card"), PAYMENT_METHODS["card"])
        try:
            result = self._state.pay_session(session_id, asynchronous=asynchronous, outcome=outcome)
        except errors.StripeApiError:
            return await self.show(request)  # Expired, already paid or unknown: show its state.
        if result.decline is not None:
            return self._render(result.session, notice=result.decline.message, status=402)
        target = (result.session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session_id)
        if target and await asyncio.to_thread(_loopback_url_answers, target):
            return RedirectResponse(target, status_code=303)
        return self._render(result.session)

    async def decline(self, request: Request) -> Response:
        try:
            result = self._state.decline_session(request.path_params["id"])
        except errors.StripeApiError:
            return await self.show(request)
        assert result.decline is not None
        return self._render(result.session, notice=result.decline.message, status=402)

    def _session(self, session_id: str) -> dict[str, Any] | None:
        try:
            return self._state.get("checkout.session", session_id)
        except errors.StripeApiError:
            return None

    def _render(self, session: dict[str, Any], *, notice: str | None = None, status: int = 200) -> Response:
        items = self._state.line_items(session["id"])
        currency = session["currency"]
        rows = "".join(
            f"<tr><td>{_e(item['description'])}<div class='muted'>{item['quantity']} × "
            f"{_e(objects.format_amount(item['price']['unit_amount'], currency))}</div></td>"
            f"<td class='amount'>{_e(objects.format_amount(item['amount_total'], currency))}</td></tr>"
            for item in items
        )
        total = objects.format_amount(session["amount_total"], currency)
        summary = f"<table>{rows}<tr class='total'><td>Total</td><td class='amount'>{_e(total)}</td></tr></table>"
        success_url = (session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session["id"])
        cancel_url = session["cancel_url"]
        if session["status"] == "open":
            body = summary + (f"<div class='notice error' role='alert'>{_e(notice)}</div>" if notice else "")
            base = f"/checkout/{_e(session['id'])}"
            body += (
                f"<form method='post' action='{base}/pay'><fieldset><legend class='muted'>Payment method</legend>"
                "<label><input type='radio' name='method' value='card' checked> Card (instant)</label>"
                "<label><input type='radio' name='method' value='delayed_success'> "
                "Bank debit (delayed, succeeds)</label>"
                "<label><input type='radio' name='method' value='delayed_failure'> "
                "Bank debit (delayed, fails)</label></fieldset>"
                f"<button class='pay' type='submit'>Pay {_e(total)}</button></form>"
                f"<form method='post' action='{base}/decline'>"
                "<button class='decline' type='submit'>Decline card</button></form>"
            )
            if cancel_url:
                body += f"<p class='muted'><a href='{_e(cancel_url)}'>← Cancel and return to the shop</a></p>"
        elif session["status"] == "complete":
            if session["payment_status"] == "paid":
                message = "Payment received. Thank you!"
            else:
                message = "Payment submitted. It is processing and will be confirmed shortly."
            body = summary + f"<div class='notice ok' role='status'>{message}</div>"
            if success_url:
                body += f"<p><a href='{_e(success_url)}'>Continue to the shop →</a></p>"
        else:
            body = summary + "<div class='notice error' role='status'>This checkout session has expired.</div>"
            if cancel_url:
                body += f"<p><a href='{_e(cancel_url)}'>Return to the shop</a></p>"
        return _page("Checkout", body, status=status)


def _page(title: str, body: str, *, status: int = 200) -> HTMLResponse:
    document = (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width,initial-scale=1'>"
        f"<title>{_e(title)} · Stripe sandbox</title><style>{_STYLE}</style></head>"
        f"<body><main><h1>{_e(title)} <span class='badge'>TEST MODE</span></h1>{body}</main></body></html>"
    )
    return HTMLResponse(document, status_code=status)


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _loopback_url_answers(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return False
    try:
        loopback = parts.hostname == "localhost" or ipaddress.ip_address(parts.hostname).is_loopback
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return False
    if not loopback:
        return False
    try:
        socket.create_connection((parts.hostname, port), timeout=0.3).close()
    except OSError:
        return False
    return True
