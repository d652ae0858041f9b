"""Ratings: asked once about an hour after pickup; one per order, by its customer, after pickup,
changeable for 24 hours; averages shown from five ratings on; the lowest rated for admins."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core.db import session_scope
from domain import ratings
from domain.ratings import RatingRefused
from models import Notification, Order, OrderStatus, Rating
from tests.factories import make_business, make_offer, make_user
from tests.integration.test_maintenance import handed_over, outbox_sends, twice_at_once  # noqa: F401 - fixtures

_codes = itertools.count(100000)


def _order(offer_id: int, customer: int, status: OrderStatus = OrderStatus.COLLECTED,
           collected_ago: timedelta = timedelta(hours=2)) -> int:
    with session_scope() as session:
        order = Order(offer_id=offer_id, customer_id=customer, quantity=1, unit_price_minor=350, amount_minor=350,
                      currency="EUR", status=status, pickup_code=f"C{next(_codes)}",
                      closed_at=datetime.now(UTC) - collected_ago if status == OrderStatus.COLLECTED else None)
        session.add(order)
        session.flush()
        return order.id


def _rate(order_id: int, customer: int, stars: int, at: datetime | None = None) -> Rating:
    with session_scope() as session:
        rating = ratings.rate(session, order_id, customer, stars, at or datetime.now(UTC))
        session.expunge(rating)
        return rating


def test_asked_once_an_hour_after_pickup_even_by_two_sweeps_at_once(db):
    offer = make_offer(make_business(), "Bread bag")
    due = [_order(offer, make_user()) for _ in range(3)]
    too_soon = _order(offer, make_user(), collected_ago=timedelta(minutes=20))
    not_collected = _order(offer, make_user(), status=OrderStatus.PAID)
    long_ago = _order(offer, make_user(), collected_ago=timedelta(days=3))

    first, second = twice_at_once(db, ratings.ask_for_ratings, datetime.now(UTC))
    assert first["ratings_asked"] + second["ratings_asked"] == 3
    with session_scope() as session:
        asked = session.scalars(sa.select(Notification).where(
            Notification.idempotency_key.like("order:%:rating-asked"))).all()
        assert sorted(int(n.idempotency_key.split(":")[1]) for n in asked) == sorted(due)
        note = asked[0]
        assert "Bread bag" in note.payload["text"] and "rate:" in str(note.payload)
        for order_id in (too_soon, not_collected, long_ago):
            assert session.get(Order, order_id).rating_asked_at is None
    with session_scope() as session:
        assert ratings.ask_for_ratings(session, datetime.now(UTC)) == {"ratings_asked": 0}


def test_who_may_rate_what_and_for_how_long(db):
    offer = make_offer(make_business(), "Cake box")
    customer, stranger = make_user(), make_user()
    order = _order(offer, customer)
    unpaid = _order(offer, customer, status=OrderStatus.PAID)

    for who, order_id, reason in ((stranger, order, "not_yours"), (customer, unpaid, "not_collected"),
                                  (customer, 10**12, "not_yours")):
        with pytest.raises(RatingRefused) as refused, session_scope() as session:
            ratings.rate(session, order_id, who, 5, datetime.now(UTC))
        assert refused.value.reason == reason
    with pytest.raises(RatingRefused) as refused, session_scope() as session:
        ratings.set_comment(session, order, customer, "Lovely", datetime.now(UTC))
    assert refused.value.reason == "no_rating"

    first = _rate(order, customer, 2)
    second = _rate(order, customer, 4)  # a second rating of the order changes the first
    assert second.id == first.id and second.stars == 4
    with session_scope() as session:
        ratings.toggle_reason(session, order, customer, "quality", datetime.now(UTC))
        ratings.toggle_reason(session, order, customer, "amount", datetime.now(UTC))
        ratings.toggle_reason(session, order, customer, "quality", datetime.now(UTC))
        ratings.set_comment(session, order, customer, "Great\x00 value,\n  thanks " + "!" * 600, datetime.now(UTC))
    with session_scope() as session:
        (only,) = session.scalars(sa.select(Rating).where(Rating.order_id == order)).all()
        assert only.reasons == ["amount"] and only.comment.startswith("Great value, thanks !")
        assert len(only.comment) == ratings.MAX_COMMENT

    with pytest.raises(RatingRefused) as refused:
        _rate(order, customer, 1, datetime.now(UTC) + timedelta(hours=25))
    assert refused.value.reason == "closed"
    with pytest.raises(sa.exc.IntegrityError), session_scope() as session:  # and the database says so too
        session.add(Rating(order_id=order, business_id=first.business_id, customer_id=customer, stars=3))


def test_averages_from_five_ratings_and_the_lowest_rated(db):
    good, poor = make_business(name="Good"), make_business(name="Poor")
    for business, stars in ((good, [5, 5, 4, 5]), (poor, [1, 2, 2, 1, 3])):
        offer = make_offer(business)
        for value in stars:
            customer = make_user()
            _rate(_order(offer, customer), customer, value)
    with session_scope() as session:
        summaries = ratings.summaries(session, [good, poor])
        assert (summaries[good].count, summaries[good].shown) == (4, False)
        assert (summaries[poor].average, summaries[poor].shown) == (1.8, True)
        assert [(b.name, s.count) for b, s in ratings.lowest_rated(session)] == [("Poor", 5)]  # Good: too few
        titles = [offer.title for _rating, offer in ratings.ratings_of_business(session, poor)]
        assert len(titles) == 5
