"""All Stripe API calls and webhook checks go through here (the official `stripe` library).

One `StripeClient` per process (rebuilt after a fork or a settings change), pointed at
`STRIPE_API_URL` when set (the local fake) and at Stripe otherwise. Every call that creates
something carries an idempotency key chosen by the caller, so a retried task, a lost answer or
the library's own network retries cannot create a second Checkout Session or refund.

Errors are sorted for the tasks: ``StripeUnavailable`` (network, 5xx, 429; a ConnectionError,
so the base task retries it with backoff) and ``StripeRefused`` (Stripe said no; retrying the
same request would get the same answer). Objects come back as plain dicts.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import stripe

from core.settings import get_settings

# Event types the payments worker acts on; the gateway acknowledges others without queueing them.
HANDLED_EVENT_TYPES = frozenset(
    {
        "checkout.session.completed",
        "checkout.session.async_payment_succeeded",
        "checkout.session.async_payment_failed",
        "checkout.session.expired",
        "refund.created",
        "refund.updated",
        # Connect: a business's account changed, was disconnected, or was paid out.
        "account.updated",
        "account.application.deauthorized",
        "payout.paid",
    }
)

# What a task needs of each object. Everything else (customer name and e-mail, billing details,
# card brand and last digits) stays out of Redis, task arguments and Flower.
_KEPT_FIELDS = {
    "checkout.session": (
        "id", "object", "client_reference_id", "metadata", "payment_status", "payment_intent", "amount_total",
        "currency", "status",
    ),
    "refund": ("id", "object", "amount", "currency", "payment_intent", "charge", "status", "metadata"),
    "account": ("id", "object", "charges_enabled", "payouts_enabled", "details_submitted", "metadata"),
    "payout": ("id", "object", "amount", "currency", "status", "arrival_date", "created"),
}
WEBHOOK_TOLERANCE_SECONDS = 300
CONNECT_TIMEOUT_SECONDS = 5.0
REQUEST_TIMEOUT_SECONDS = 20.0
NETWORK_RETRIES = 2  # the library retries with the same idempotency key


class PaymentsUnavailable(RuntimeError):
    """No Stripe key is configured: card payments cannot be taken."""


class StripeUnavailable(ConnectionError):
    """Stripe could not be reached, failed (5xx) or asked us to slow down (429): retry later."""


class StripeRefused(Exception):
    """Stripe refused the request (4xx). `code` is Stripe's error code, when it gave one."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.status = status


class InvalidSignature(ValueError):
    """A webhook whose Stripe-Signature does not check out (or is missing, or too old)."""


_lock = threading.Lock()
_client: stripe.StripeClient | None = None
_client_key: tuple[int, str, str | None] | None = None


def configured() -> bool:
    return get_settings().stripe_secret_key is not None


def client() -> stripe.StripeClient:
    global _client, _client_key
    settings = get_settings()
    if settings.stripe_secret_key is None:
        raise PaymentsUnavailable("STRIPE_SECRET_KEY is unset")
    key = (os.getpid(), settings.stripe_secret_key.get_secret_value(), settings.stripe_api_url)
    with _lock:
        if _client is None or _client_key != key:
            _client = stripe.StripeClient(
                key[1],
                base_addresses={"api": settings.stripe_api_url} if settings.stripe_api_url else None,
                max_network_retries=NETWORK_RETRIES,
                http_client=stripe.RequestsClient(timeout=(CONNECT_TIMEOUT_SECONDS, REQUEST_TIMEOUT_SECONDS)),
            )
            _client_key = key
        return _client


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj)


def _call(function, *args, **kwargs) -> dict[str, Any]:
    try:
        return _plain(function(*args, **kwargs))
    except (stripe.APIConnectionError, stripe.RateLimitError) as error:
        raise StripeUnavailable(f"{type(error).__name__}: {error.user_message or error}") from None
    except stripe.StripeError as error:
        status = error.http_status
        if status is None or status >= 500:
            raise StripeUnavailable(f"{type(error).__name__} ({status}): {error.user_message or error}") from None
        raise StripeRefused(str(error.user_message or error), getattr(error, "code", None), status) from None


# --------------------------------------------------------------------------- calls


def create_checkout_session(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    return _call(client().v1.checkout.sessions.create, params, {"idempotency_key": idempotency_key})


def retrieve_checkout_session(session_id: str) -> dict[str, Any]:
    return _call(client().v1.checkout.sessions.retrieve, session_id)


def expire_checkout_session(session_id: str) -> dict[str, Any] | None:
    """Close an open session so nobody can pay it any more; None if it was not open (paid,
    being paid, or expired already): look at it with retrieve_checkout_session."""
    try:
        return _call(client().v1.checkout.sessions.expire, session_id)
    except StripeRefused as refused:
        if refused.status == 400 and refused.code != "resource_missing":
            return None  # "Only Checkout Sessions with a status in ["open"] can be expired."
        raise


def create_refund(payment_intent: str, amount_minor: int | None, idempotency_key: str,
                  metadata: dict[str, str] | None = None, reason: str = "requested_by_customer", *,
                  reverse_transfer: bool = False, refund_application_fee: bool = False) -> dict[str, Any]:
    """Refund `amount_minor` (None: all that is left) of a payment. For a destination charge,
    `reverse_transfer` takes the money back from the business's account, and
    `refund_application_fee` gives the platform's fee back to it."""
    params: dict[str, Any] = {"payment_intent": payment_intent, "reason": reason, "metadata": metadata or {}}
    if amount_minor is not None:
        params["amount"] = amount_minor
    if reverse_transfer:
        params["reverse_transfer"] = True
        params["refund_application_fee"] = refund_application_fee
    return _call(client().v1.refunds.create, params, {"idempotency_key": idempotency_key})


def refunds_of(payment_intent: str) -> list[dict[str, Any]]:
    listed = _call(client().v1.refunds.list, {"payment_intent": payment_intent, "limit": 100})
    return list(listed.get("data", []))


# --------------------------------------------------------------------------- Connect


def create_account(params: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
    return _call(client().v1.accounts.create, params, {"idempotency_key": idempotency_key})


def retrieve_account(account_id: str) -> dict[str, Any]:
    return _call(client().v1.accounts.retrieve, account_id)


def create_account_link(account_id: str, refresh_url: str, return_url: str) -> dict[str, Any]:
    """A one-time link to Stripe's hosted onboarding of the account (it expires within minutes)."""
    return _call(client().v1.account_links.create, {"account": account_id, "refresh_url": refresh_url,
                                                      "return_url": return_url, "type": "account_onboarding"})


def _all(function, params: dict[str, Any], options: dict[str, Any] | None = None,
         limit: int = 10_000) -> list[dict[str, Any]]:
    """Every object of a Stripe list, page after page (at most ``limit``)."""
    found: list[dict[str, Any]] = []
    page = {**params, "limit": 100}
    while len(found) < limit:
        listed = _call(function, page, options) if options else _call(function, page)
        data = list(listed.get("data", []))
        found += data
        if not listed.get("has_more") or not data:
            break
        page = {**params, "limit": 100, "starting_after": data[-1]["id"]}
    return found[:limit]


def transfers_to(account_id: str) -> list[dict[str, Any]]:
    return _all(client().v1.transfers.list, {"destination": account_id})


def application_fees_since(created_from: int) -> list[dict[str, Any]]:
    return _all(client().v1.application_fees.list, {"created": {"gte": created_from}})


def payouts_of(account_id: str) -> list[dict[str, Any]]:
    """The connected account's payouts to its bank (a call made as that account)."""
    return _all(client().v1.payouts.list, {}, {"stripe_account": account_id})


# --------------------------------------------------------------------------- webhooks


def verify_webhook(payload: bytes, signature: str | None, secret: str) -> None:
    """Raise InvalidSignature unless `signature` is Stripe's signature of `payload` with
    `secret`, made within the last five minutes (a replayed old delivery fails). `secret` may
    hold several signing secrets separated by commas: a dashboard endpoint for the platform's
    own events and one for its connected accounts' events each have their own; either will do."""
    if not signature:
        raise InvalidSignature("no Stripe-Signature header")
    failure = "no signing secret"
    for one in (part.strip() for part in secret.split(",")):
        if not one:
            continue
        try:
            stripe.WebhookSignature.verify_header(payload.decode("utf-8"), signature, one,
                                                  tolerance=WEBHOOK_TOLERANCE_SECONDS)
        except (stripe.SignatureVerificationError, UnicodeDecodeError) as error:
            failure = str(error)
        else:
            return
    raise InvalidSignature(failure)


def slim_event(event: dict[str, Any]) -> dict[str, Any]:
    """The parts of a verified event a task needs: id, type, created and a trimmed object."""
    obj = (event.get("data") or {}).get("object") or {}
    fields = _KEPT_FIELDS.get(obj.get("object") or "", ("id", "object"))
    slim = {
        "id": event["id"],
        "type": event.get("type"),
        "created": event.get("created"),
        "livemode": event.get("livemode"),
        "data": {"object": {name: obj.get(name) for name in fields}},
    }
    if event.get("account"):  # a Connect event: about this connected account
        slim["account"] = event["account"]
    return slim
