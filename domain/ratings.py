"""Ratings: about an hour after a pickup is confirmed, the customer is asked for 1–5 stars, optional
reasons and an optional comment. One rating per order (``ratings.order_id`` is unique); it can be
changed for 24 hours. A business's average shows once it has MIN_SHOWN ratings.

Who may rate what is decided here: only the order's own customer, only once it was collected,
and changes only within CHANGE_WINDOW of the first rating.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from core import outbox
from models import Business, Offer, Order, OrderStatus, Rating, User

REASONS = ("amount", "quality", "variety", "friendliness")
ASK_AFTER = timedelta(hours=1)
ASK_UNTIL = timedelta(days=2)  # a sweep that was down longer does not ask about old pickups
CHANGE_WINDOW = timedelta(hours=24)
MIN_SHOWN = 5
MAX_COMMENT = 500
BATCH = 200


class RatingRefused(Exception):
    """``reason``: "not_yours" (another customer's order, or none), "not_collected" (not picked
    up yet), "closed" (rated more than 24 hours ago), "no_rating" (reasons or a comment before stars)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class RatingRequest:
    """Ask a customer to rate a collected order. Rendered in chat.messages.ratings."""

    language: str
    order_id: int
    title: str
    business_name: str


@dataclass(frozen=True)
class Summary:
    average: float
    count: int

    @property
    def shown(self) -> bool:
        return self.count >= MIN_SHOWN


def ask_for_ratings(session: Session, now: datetime) -> dict[str, int]:
    """Beat: ask about each order collected at least ASK_AFTER ago, once (``orders.rating_asked_at``
    is set in the statement that claims the order, so two sweeps at once ask once)."""
    due = (
        select(Order.id)
        .where(Order.status == OrderStatus.COLLECTED, Order.rating_asked_at.is_(None),
               Order.customer_id.is_not(None), Order.closed_at <= now - ASK_AFTER,
               Order.closed_at > now - ASK_UNTIL)
        .order_by(Order.id).limit(BATCH).with_for_update(skip_locked=True).scalar_subquery()
    )
    claimed = session.execute(
        update(Order).where(Order.id.in_(due), Order.rating_asked_at.is_(None))
        .values(rating_asked_at=now).returning(Order.id)
    ).scalars().all()
    for order in session.scalars(select(Order).where(Order.id.in_(claimed)).order_by(Order.id)):
        customer = session.get(User, order.customer_id)
        if customer is None or order.customer_id is None:
            continue
        outbox.notify(session, f"order:{order.id}:rating-asked", order.customer_id, RatingRequest(
            language=customer.language, order_id=order.id, title=order.offer.title,
            business_name=order.offer.business.name))
    return {"ratings_asked": len(claimed)}


def _ratable(session: Session, order_id: int, customer_id: int) -> Order:
    order = session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None or order.customer_id != customer_id:
        raise RatingRefused("not_yours")
    if order.status != OrderStatus.COLLECTED:
        raise RatingRefused("not_collected")
    return order


def _changeable(session: Session, order_id: int, customer_id: int, now: datetime) -> Rating | None:
    _ratable(session, order_id, customer_id)  # locks the order: one rating at a time for it
    rating = session.scalar(select(Rating).where(Rating.order_id == order_id))
    if rating is not None and now - rating.created_at > CHANGE_WINDOW:
        raise RatingRefused("closed")
    return rating


def rate(session: Session, order_id: int, customer_id: int, stars: int, now: datetime) -> Rating:
    """Give or change the stars of an order's rating."""
    if not 1 <= stars <= 5:
        raise ValueError("stars are 1 to 5")
    rating = _changeable(session, order_id, customer_id, now)
    if rating is None:
        order = session.get(Order, order_id)
        assert order is not None, "_ratable returned it"
        rating = Rating(order_id=order_id, business_id=order.offer.business_id, customer_id=customer_id,
                        stars=stars, reasons=[], created_at=now, updated_at=now)
        session.add(rating)
    else:
        rating.stars = stars
        rating.updated_at = now
    session.flush()
    return rating


def _existing(session: Session, order_id: int, customer_id: int, now: datetime) -> Rating:
    rating = _changeable(session, order_id, customer_id, now)
    if rating is None:
        raise RatingRefused("no_rating")
    return rating


def toggle_reason(session: Session, order_id: int, customer_id: int, reason: str, now: datetime) -> Rating:
    rating = _existing(session, order_id, customer_id, now)
    if reason in REASONS:
        chosen = set(rating.reasons) ^ {reason}
        rating.reasons = [r for r in REASONS if r in chosen]
        rating.updated_at = now
    return rating


def set_comment(session: Session, order_id: int, customer_id: int, text: str, now: datetime) -> Rating:
    rating = _existing(session, order_id, customer_id, now)
    cleaned = " ".join("".join(ch if ch.isprintable() else " " for ch in text).split())
    rating.comment = cleaned[:MAX_COMMENT] or None
    rating.updated_at = now
    return rating


def rating_of(session: Session, order_id: int) -> Rating | None:
    return session.scalar(select(Rating).where(Rating.order_id == order_id))


def summaries(session: Session, business_ids: Iterable[int]) -> dict[int, Summary]:
    """Each business's average stars and number of ratings (businesses without any are left out)."""
    ids = set(business_ids)
    if not ids:
        return {}
    rows = session.execute(_SUMMARIES, {"ids": list(ids)}).all()
    return {business_id: Summary(float(average), int(count)) for business_id, average, count in rows}


# Built once: a map of deals asks for its businesses' ratings on every search (bench/report.md, section 9).
_SUMMARIES = (select(Rating.business_id, func.avg(Rating.stars), func.count())
              .where(Rating.business_id.in_(bindparam("ids", expanding=True))).group_by(Rating.business_id))


def ratings_of_business(session: Session, business_id: int, limit: int = 20) -> list[tuple[Rating, Offer]]:
    """A business's latest ratings with the offer each was about, newest first."""
    rows = session.execute(
        select(Rating, Offer).join(Order, Order.id == Rating.order_id).join(Offer, Offer.id == Order.offer_id)
        .where(Rating.business_id == business_id).order_by(Rating.updated_at.desc(), Rating.id.desc()).limit(limit)
    ).all()
    return [(rating, offer) for rating, offer in rows]


def lowest_rated(session: Session, limit: int = 10) -> list[tuple[Business, Summary]]:
    """Businesses with at least MIN_SHOWN ratings, lowest average first (for admins)."""
    average = func.avg(Rating.stars)
    rows = session.execute(
        select(Business, average, func.count(Rating.id)).join(Rating, Rating.business_id == Business.id)
        .group_by(Business.id).having(func.count(Rating.id) >= MIN_SHOWN)
        .order_by(average, Business.id).limit(limit)
    ).all()
    return [(business, Summary(float(avg), int(count))) for business, avg, count in rows]
