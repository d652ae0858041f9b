"""What customers browse: active offers, nearest first or newest and most ordered, and their own orders."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Float, and_, cast, delete, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from core.settings import get_settings
from models import Business, BusinessStatus, Follow, Offer, OfferStatus, Order, OrderStatus

NEARBY_RADIUS_KM = 15.0
PAGE_SIZE = 5
EARTH_RADIUS_KM = 6371.0


class Sort(enum.StrEnum):
    NEAREST = "near"
    NEWEST = "new"
    POPULAR = "pop"


@dataclass(frozen=True)
class Listing:
    offer: Offer
    business: Business
    distance_km: float | None


@dataclass(frozen=True)
class Page:
    items: list[Listing]
    page: int
    has_next: bool


def distance_km(lat1, lon1, lat2, lon2):
    """Great-circle distance (haversine) as a SQL expression."""
    dlat = func.radians(lat2 - lat1)
    dlon = func.radians(lon2 - lon1)
    a = func.power(func.sin(dlat / 2), 2) + func.cos(func.radians(lat1)) * func.cos(func.radians(lat2)) * func.power(
        func.sin(dlon / 2), 2
    )
    return 2 * EARTH_RADIUS_KM * func.asin(func.least(1.0, func.sqrt(a)))


def browse(session: Session, now: datetime, sort: Sort, page: int = 0, *,
           latitude: float | None = None, longitude: float | None = None) -> Page:
    """One page of offers a customer can order now. Nearest needs a location (within the radius)."""
    page = max(page, 0)
    conditions = [
        Offer.status == OfferStatus.ACTIVE,
        Offer.pickup_end > now,
        Business.status == BusinessStatus.VERIFIED,
    ]
    if get_settings().payouts_require_connect:  # its customers could not pay (restricted, disconnected)
        conditions.append(Business.charges_enabled.is_(True))
    distance = _distance_from(latitude, longitude)
    query = select(Offer, Business, distance.label("distance")).join(Business, Offer.business_id == Business.id)
    if sort is Sort.NEAREST:
        if latitude is None or longitude is None:
            raise ValueError("nearest needs a location")
        conditions += [Business.latitude.is_not(None), distance <= NEARBY_RADIUS_KM]
        query = query.order_by(distance, Offer.id)
    elif sort is Sort.POPULAR:
        ordered = (
            select(func.coalesce(func.sum(Order.quantity), 0))
            .where(Order.offer_id == Offer.id, Order.status.in_([OrderStatus.PAID, OrderStatus.COLLECTED]))
            .scalar_subquery()
        )
        query = query.order_by(ordered.desc(), Offer.published_at.desc(), Offer.id.desc())
    else:
        query = query.order_by(Offer.published_at.desc().nulls_last(), Offer.id.desc())
    rows = session.execute(query.where(and_(*conditions)).offset(page * PAGE_SIZE).limit(PAGE_SIZE + 1)).all()
    items = [Listing(offer, business, dist) for offer, business, dist in rows[:PAGE_SIZE]]
    return Page(items, page, has_next=len(rows) > PAGE_SIZE)


def _distance_from(latitude: float | None, longitude: float | None):
    if latitude is None or longitude is None:
        return cast(None, Float)
    return distance_km(literal(latitude, Float), literal(longitude, Float), Business.latitude, Business.longitude)


def offer_listing(session: Session, offer_id: int, *, latitude: float | None = None,
                  longitude: float | None = None) -> Listing | None:
    """One offer with its business, and its distance when the customer's location is known."""
    row = session.execute(
        select(Offer, Business, _distance_from(latitude, longitude))
        .join(Business, Offer.business_id == Business.id)
        .where(Offer.id == offer_id)
    ).first()
    return Listing(*row) if row else None


OPEN_ORDER_STATES = (OrderStatus.HELD, OrderStatus.PAID)


def customer_orders(session: Session, customer_id: int, past_limit: int = 10) -> tuple[list, list]:
    """(current, past) orders with their offer and business, newest first."""
    query = (
        select(Order, Offer, Business)
        .join(Offer, Order.offer_id == Offer.id)
        .join(Business, Offer.business_id == Business.id)
        .where(Order.customer_id == customer_id)
    )
    current = session.execute(
        query.where(Order.status.in_(OPEN_ORDER_STATES)).order_by(Offer.pickup_start, Order.id)
    ).all()
    past = session.execute(
        query.where(Order.status.not_in(OPEN_ORDER_STATES)).order_by(Order.id.desc()).limit(past_limit)
    ).all()
    return [tuple(r) for r in current], [tuple(r) for r in past]


def is_following(session: Session, user_id: int, business_id: int) -> bool:
    return session.get(Follow, (user_id, business_id)) is not None


def set_following(session: Session, user_id: int, business_id: int, follow: bool) -> None:
    if follow:
        session.execute(insert(Follow).values(user_id=user_id, business_id=business_id).on_conflict_do_nothing())
    else:
        session.execute(delete(Follow).where(Follow.user_id == user_id, Follow.business_id == business_id))
