"""Stripe Connect: a business gets paid through its own Express account.

* :func:`start_onboarding` (task ``payments.start_onboarding``) creates the business's account once
  (idempotency key per business) and a fresh onboarding link each time, and sends it to the owner.
* Stripe's ``account.updated`` events move the business through pending → active → restricted
  (:func:`status_of` says how an account reads); ``account.application.deauthorized`` disconnects it.
  Each change is told in the chat. Events come at least once and in any order: an event older
  than the newest one applied changes nothing, and a disconnected account stays disconnected.
* ``payout.paid`` records what Stripe paid out to the business's bank (its statement shows it).
* :func:`money_route` decides, when an order's Checkout Session is made, where the money goes and
  what the platform keeps.

The operator's choice (``PAYOUTS_REQUIRE_CONNECT``): true (the default), a business publishes only
once its account can take charges, and every sale is a destination charge to it. False, the
platform takes every payment into its own account and pays businesses by hand; a business may
still connect an account, and then its sales go to it directly.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core import outbox, stripe_api
from core.db import session_scope
from core.logging import get_logger
from core.settings import get_settings
from domain import audit
from domain.money import platform_fee
from models import Business, BusinessStatus, Payout, PayoutsStatus, User

log = get_logger(__name__)

CONNECT_COUNTRY = "DE"  # the platform's (and its businesses') country, for Express accounts
EVENT_TYPES = frozenset({"account.updated", "account.application.deauthorized", "payout.paid"})


# --------------------------------------------------------------------------- what people are told


@dataclass(frozen=True)
class PayoutsLink:
    """The owner's link to Stripe's onboarding (it works once, for a few minutes)."""

    language: str
    business_name: str
    url: str
    message_id: int | None = None  # the "⏳ Preparing…" message to replace


@dataclass(frozen=True)
class PayoutsUnavailable:
    """No onboarding link could be made (Stripe refused, or payments are not configured)."""

    language: str
    message_id: int | None = None


@dataclass(frozen=True)
class PayoutsChanged:
    """The business's payouts moved to ``status`` (as Stripe's events said)."""

    language: str
    business_name: str
    status: PayoutsStatus
    selling_needs_it: bool  # PAYOUTS_REQUIRE_CONNECT: without an active account, offers can't be published


# --------------------------------------------------------------------------- accounts


def status_of(account: dict[str, Any]) -> PayoutsStatus:
    """How an account reads: active once it can take charges; restricted when Stripe disabled it
    after the details were submitted; pending otherwise (onboarding not finished)."""
    if account.get("charges_enabled"):
        return PayoutsStatus.ACTIVE
    if account.get("details_submitted"):
        return PayoutsStatus.RESTRICTED
    return PayoutsStatus.PENDING


def return_url() -> str:
    """Where Stripe sends the owner back: the bot's chat, opened on the payouts screen."""
    base = get_settings().checkout_return_url or ""
    parts = urlsplit(base)
    query = "&".join(q for q in (parts.query, urlencode({"start": "payouts"})) if q)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


def _language(session: Session, user_id: int) -> str:
    user = session.get(User, user_id)
    return user.language if user else "en"


class OnboardingOutcome(enum.StrEnum):
    LINK_SENT = "link_sent"
    ALREADY_ACTIVE = "already_active"
    UNAVAILABLE = "unavailable"
    NOT_ALLOWED = "not_allowed"  # not this owner's business, or not verified


def start_onboarding(business_id: int, owner_id: int, request: str | None = None,
                     edit_message_id: int | None = None) -> OnboardingOutcome:
    """Create the business's Express account (once) and send the owner a fresh onboarding link."""
    with session_scope() as session:
        business = session.get(Business, business_id)
        if business is None or business.owner_id != owner_id or business.status != BusinessStatus.VERIFIED:
            return OnboardingOutcome.NOT_ALLOWED
        if business.payouts_status == PayoutsStatus.ACTIVE:
            return OnboardingOutcome.ALREADY_ACTIVE
        account_id = business.stripe_account_id
        params = {
            "type": "express", "country": CONNECT_COUNTRY, "default_currency": business.currency.lower(),
            "business_profile": {"name": business.name[:100]},
            "capabilities": {"card_payments": {"requested": True}, "transfers": {"requested": True}},
            "metadata": {"business_id": str(business.id)},
        }
    try:
        if not stripe_api.configured():
            raise stripe_api.PaymentsUnavailable("STRIPE_SECRET_KEY is unset")
        if account_id is None:
            account_id = str(stripe_api.create_account(params, idempotency_key=f"connect-account-{business_id}")["id"])
        link = stripe_api.create_account_link(account_id, return_url(), return_url())
    except (stripe_api.PaymentsUnavailable, stripe_api.StripeRefused) as error:
        log.error("onboarding_link_not_created", business_id=business_id, error=str(error))
        with session_scope() as session:
            outbox.notify(session, f"business:{business_id}:payouts-unavailable:{request}", owner_id,
                          PayoutsUnavailable(_language(session, owner_id), edit_message_id))
            audit.record(session, "payments", "payments.start_onboarding", "error", target=f"business:{business_id}",
                         details={"error": str(error)[:300]})
        return OnboardingOutcome.UNAVAILABLE
    with session_scope() as session:
        business = session.get(Business, business_id, with_for_update=True)
        assert business is not None, "businesses are not deleted"
        if business.stripe_account_id is None:
            business.stripe_account_id = account_id
        if business.payouts_status in (PayoutsStatus.NONE, PayoutsStatus.DISCONNECTED):
            business.payouts_status = PayoutsStatus.PENDING
        outbox.notify(session, f"business:{business_id}:payouts-link:{request}", owner_id,
                      PayoutsLink(_language(session, owner_id), business.name, str(link["url"]), edit_message_id))
    return OnboardingOutcome.LINK_SENT


def handle_account_event(session: Session, event: dict[str, Any]) -> bool:
    """A Connect event (``EVENT_TYPES``); True if it changed something."""
    obj = (event.get("data") or {}).get("object") or {}
    account_id = event.get("account") or (obj.get("id") if obj.get("object") == "account" else None)
    if not account_id:
        return False
    business = session.scalar(select(Business).where(Business.stripe_account_id == account_id).with_for_update())
    if business is None:
        log.warning("connect_event_for_unknown_account", account=account_id, type=event.get("type"))
        return False
    if event.get("type") == "payout.paid":
        return record_payout(session, business.id, obj)
    at = datetime.fromtimestamp(int(event.get("created") or 0), UTC)
    if business.payouts_status == PayoutsStatus.DISCONNECTED or (
            business.payouts_event_at is not None and at < business.payouts_event_at):
        return False  # disconnected for good, or older than what we know
    if event.get("type") == "account.application.deauthorized":
        new, charges, payouts = PayoutsStatus.DISCONNECTED, False, False
    else:
        new, charges, payouts = status_of(obj), bool(obj.get("charges_enabled")), bool(obj.get("payouts_enabled"))
    old = business.payouts_status
    business.payouts_status, business.charges_enabled, business.payouts_enabled = new, charges, payouts
    business.payouts_event_at = at
    if new != old:
        audit.record(session, "stripe", "payments.payouts_status", "ok", target=f"business:{business.id}",
                     details={"from": old.value, "to": new.value, "event": event.get("id")})
        outbox.notify(session, f"business:{business.id}:payouts:{event.get('id')}", business.owner_id,
                      PayoutsChanged(_language(session, business.owner_id), business.name, new,
                                     get_settings().payouts_require_connect))
    return True


def record_payout(session: Session, business_id: int, payout: dict[str, Any]) -> bool:
    """A payout Stripe made to the business's bank (from its event or the reconciliation), once."""
    row = session.execute(
        insert(Payout).values(
            id=str(payout["id"]), business_id=business_id, amount_minor=int(payout["amount"]),
            currency=str(payout["currency"]).upper(), status=str(payout.get("status") or "paid"),
            arrival_at=datetime.fromtimestamp(int(payout.get("arrival_date") or payout.get("created") or 0), UTC),
        ).on_conflict_do_nothing().returning(Payout.id)
    ).first()
    return row is not None


# --------------------------------------------------------------------------- the money's route


@dataclass(frozen=True)
class MoneyRoute:
    fee_minor: int
    destination: str | None  # the connected account, or None: the platform collects


def money_route(business: Business, amount_minor: int) -> MoneyRoute | None:
    """Where an order's payment goes and what the platform keeps; None when the business cannot
    take payments now (Connect required, and its account is not active: restricted mid-sale,
    or disconnected)."""
    settings = get_settings()
    fee = platform_fee(amount_minor, settings.platform_fee_basis_points, settings.platform_fee_fixed)
    if business.charges_enabled and business.stripe_account_id:
        return MoneyRoute(fee, business.stripe_account_id)
    if settings.payouts_require_connect:
        return None
    return MoneyRoute(fee, None)
