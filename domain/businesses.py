"""A business's lifecycle: registration (validated fields), then an admin's verify / reject /
suspend. Plain functions on the caller's session; the chat decides what to say."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from domain import audit
from domain.offers import InvalidInput, bounded_text, clean_text
from models import Business, BusinessStatus, Offer, OfferStatus

NAME_MIN, NAME_MAX = 2, 80
ADDRESS_MIN, ADDRESS_MAX = 5, 200
REASON_MIN, REASON_MAX = 3, 400
PHONE_DIGITS_MIN, PHONE_DIGITS_MAX = 6, 15  # E.164 has at most 15 digits


def parse_name(value: str) -> str:
    return bounded_text(value, NAME_MIN, NAME_MAX, "name")


def parse_address(value: str) -> str:
    address = clean_text(value)
    if len(address) < ADDRESS_MIN or not any(ch.isalpha() for ch in address):
        raise InvalidInput("address_short")
    if len(address) > ADDRESS_MAX:
        raise InvalidInput("address_long", max=ADDRESS_MAX)
    return address


def parse_phone(value: str) -> str:
    """"+49 30 123-456 (ext)" style input → "+4930123456": digits with an optional leading +.
    Only digits, spaces, dashes, dots, slashes and parentheses may be typed."""
    typed = clean_text(value)
    if not re.fullmatch(r"\+?[\d\s\-./()]+", typed):
        raise InvalidInput("phone_format")
    digits = re.sub(r"\D", "", typed)
    if not PHONE_DIGITS_MIN <= len(digits) <= PHONE_DIGITS_MAX:
        raise InvalidInput("phone_format")
    if typed.startswith("+"):
        return "+" + digits
    if digits.startswith("00"):
        return "+" + digits[2:]
    return digits


def parse_reason(value: str) -> str:
    reason = clean_text(value, multiline=True)
    if len(reason) < REASON_MIN:
        raise InvalidInput("reason_short")
    return reason[:REASON_MAX]


def check_location(latitude: float, longitude: float) -> tuple[float, float]:
    if not (-90 <= latitude <= 90 and -180 <= longitude <= 180):
        raise InvalidInput("location_invalid")
    return latitude, longitude


@dataclass
class Registration:
    name: str
    address: str
    phone: str
    latitude: float | None = None
    longitude: float | None = None


def business_of(session: Session, owner_id: int, *, lock: bool = False) -> Business | None:
    statement = select(Business).where(Business.owner_id == owner_id)
    if lock:
        statement = statement.with_for_update()
    return session.scalar(statement)


class CannotRegister(Exception):
    def __init__(self, status: BusinessStatus) -> None:
        super().__init__(status.value)
        self.status = status


def register(session: Session, owner_id: int, registration: Registration) -> Business:
    """Create the owner's business, pending verification. A rejected business may apply again
    (its row is updated and reviewed anew); a pending, verified or suspended one may not."""
    business = business_of(session, owner_id, lock=True)
    if business is not None and business.status != BusinessStatus.REJECTED:
        raise CannotRegister(business.status)
    if business is None:
        business = Business(owner_id=owner_id)
        session.add(business)
    business.name = registration.name
    business.address = registration.address
    business.phone = registration.phone
    business.latitude = registration.latitude
    business.longitude = registration.longitude
    business.status = BusinessStatus.PENDING
    business.status_reason = None
    business.reviewed_at = None
    session.flush()
    return business


# ----------------------------------------------------------------------------- admin review

ACTIONS = ("verify", "reject", "suspend")
# What each action may start from.
_FROM = {
    "verify": (BusinessStatus.PENDING, BusinessStatus.REJECTED, BusinessStatus.SUSPENDED),
    "reject": (BusinessStatus.PENDING,),
    "suspend": (BusinessStatus.PENDING, BusinessStatus.VERIFIED),
}
_TO = {"verify": BusinessStatus.VERIFIED, "reject": BusinessStatus.REJECTED, "suspend": BusinessStatus.SUSPENDED}


class ReviewRefused(Exception):
    def __init__(self, status: BusinessStatus | None) -> None:
        super().__init__(status.value if status else "missing")
        self.status = status


def can_review(business: Business, action: str) -> bool:
    return business.status in _FROM[action]


def review(session: Session, business_id: int, action: str, admin_id: int, now: datetime, *,
           reason: str | None = None) -> tuple[Business, list[int]]:
    """Apply an admin's decision (the caller has checked the admin). Returns the business and the
    ids of offers paused by a suspension. Writes an audit entry either way."""
    if action not in ACTIONS:
        raise ValueError(action)
    business = session.get(Business, business_id, with_for_update=True, populate_existing=True)
    actor = f"user:{admin_id}"
    target = f"business:{business_id}"
    if business is None or not can_review(business, action):
        audit.record(session, actor, f"business.{action}", "refused", target=target,
                     details={"status": business.status.value if business else None})
        raise ReviewRefused(business.status if business else None)
    previous = business.status
    business.status = _TO[action]
    business.status_reason = reason if action != "verify" else None
    business.reviewed_at = now
    paused: list[int] = []
    if action == "suspend":
        # A suspended business sells nothing: its live offers stop taking orders now.
        paused = list(session.scalars(
            update(Offer).where(Offer.business_id == business.id,
                                Offer.status.in_([OfferStatus.ACTIVE, OfferStatus.SOLD_OUT]))
            .values(status=OfferStatus.PAUSED, version=Offer.version + 1).returning(Offer.id)
        ))
    audit.record(session, actor, f"business.{action}", "ok", target=target,
                 details={"from": previous.value, "reason": reason, "paused_offers": paused})
    session.flush()
    return business, paused


def pending(session: Session, limit: int = 20) -> list[Business]:
    return list(session.scalars(
        select(Business).where(Business.status == BusinessStatus.PENDING).order_by(Business.created_at, Business.id)
        .limit(limit)
    ))
