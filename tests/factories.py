"""Rows for tests, made through the models (as the product's own code would leave them)."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

from core.db import session_scope
from models import Business, BusinessStatus, Offer, OfferStatus, User

_ids = itertools.count(9_000_000_001)


def make_user(user_id: int | None = None, name: str = "Customer", language: str = "en", **fields) -> int:
    user_id = user_id or next(_ids)
    with session_scope() as session:
        if session.get(User, user_id) is None:
            session.add(User(id=user_id, first_name=name, language=language, **fields))
    return user_id


def make_business(owner_id: int | None = None, name: str = "Bäckerei Sonne", *, latitude: float = 52.52,
                  longitude: float = 13.405, status: BusinessStatus = BusinessStatus.VERIFIED, **fields) -> int:
    owner_id = make_user(owner_id, name="Owner")
    with session_scope() as session:
        business = Business(owner_id=owner_id, name=name, address="Hauptstraße 1, Berlin", phone="+49301234567",
                            latitude=latitude, longitude=longitude, status=status, **fields)
        session.add(business)
        session.flush()
        return business.id


# A pickup window open now: it touches today in any time zone at any hour the suite runs (the default,
# two hours ahead, is tomorrow in Berlin after 22:00), for views of "today" such as the dashboard's.
OPEN_NOW = {"starts_in": -timedelta(minutes=30), "lasts": timedelta(hours=2)}


def make_offer(business_id: int, title: str = "Croissant bag", *, quantity: int = 5, price_minor: int = 350,
               original_price_minor: int = 700, status: OfferStatus = OfferStatus.ACTIVE,
               starts_in: timedelta = timedelta(hours=2), lasts: timedelta = timedelta(hours=1), **fields) -> int:
    now = datetime.now(UTC)
    with session_scope() as session:
        offer = Offer(business_id=business_id, title=title, description="Fresh from this morning",
                      price_minor=price_minor, original_price_minor=original_price_minor, currency="EUR",
                      quantity=quantity, pickup_start=now + starts_in, pickup_end=now + starts_in + lasts,
                      status=status, published_at=now if status != OfferStatus.DRAFT else None, **fields)
        session.add(offer)
        session.flush()
        return offer.id
