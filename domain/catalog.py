"""What customers browse: active offers that match their filters, sorted, and their own orders.

Geography is PostGIS's: businesses have a geography point (``businesses.location``, GiST-indexed),
and "near" is ``ST_DWithin`` on it, so Postgres looks only at the businesses within the radius
(the index) and then at their active offers (``ix_offers_active_business``), instead of computing a
distance for every offer in town. "Nearest first" walks that index outward from the customer and
stops once it has a page's worth of businesses with a matching offer (`_nearest_businesses`).
"""

from __future__ import annotations

import enum
import functools
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    ColumnElement,
    Float,
    Select,
    Subquery,
    and_,
    bindparam,
    cast,
    delete,
    func,
    literal,
    not_,
    or_,
    select,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.orm import Session
from sqlalchemy.types import String

from core.settings import get_settings
from domain import ratings, tags
from models import Business, BusinessStatus, Follow, Offer, OfferStatus, Order, OrderStatus, Rating, User

NEARBY_RADIUS_KM = 15.0  # "near me" until the customer chooses a distance
DISTANCES_KM = (1, 2, 5, 10, 25)  # the distances a customer can choose
PRICE_LIMITS_MINOR = (300, 500, 1000)  # the maximum prices a customer can choose (EUR cents)
PAGE_SIZE = 5  # a page of /deals in the chat
MAX_QUERY_WORDS = 5
MAX_WORD_LENGTH = 40
# Distances on the sphere (PostGIS's use_spheroid = false): within 0.5 % of the spheroid, and measured
# here (bench/bench_discovery.py) many times cheaper per row, which decides the tail of "near me".
SPHERE = False


class Sort(enum.StrEnum):
    NEAREST = "near"
    NEWEST = "new"
    POPULAR = "pop"  # sell-through, lifted or lowered by the business's rating
    RATED = "rated"  # the business's average rating (shown ones, from ratings.MIN_SHOWN on)


class When(enum.StrEnum):
    """Pickup time, in the business's own time zone."""

    NOW = "now"  # open now, or opening within the hour
    TONIGHT = "tonight"  # open some time after 17:00 today
    TOMORROW = "tomorrow"  # open some time tomorrow


@dataclass(frozen=True)
class Filters:
    """What a customer narrowed /deals to. Empty means everything; ``radius_km`` None means
    NEARBY_RADIUS_KM for "near me" and no limit otherwise."""

    category: str | None = None
    diet: tuple[str, ...] = ()
    avoid: tuple[str, ...] = ()  # allergens the customer must not eat
    when: When | None = None
    radius_km: int | None = None
    max_price_minor: int | None = None
    words: tuple[str, ...] = field(default=())

    # The order in which "loosen a filter" looks: the narrowest choices first.
    NAMES = ("words", "category", "diet", "avoid", "when", "max_price_minor", "radius_km")

    def active(self) -> list[str]:
        return [name for name in self.NAMES if getattr(self, name) not in (None, ())]

    def without(self, name: str) -> Filters:
        cleared: dict[str, Any] = {name: () if isinstance(getattr(self, name), tuple) else None}
        return replace(self, **cleared)

    # -- remembered per customer, as JSON (users.deal_filters)

    def to_json(self) -> dict:
        return {name: (list(value) if isinstance(value, tuple) else value)
                for name in self.NAMES if (value := getattr(self, name)) not in (None, ())}

    @classmethod
    def from_json(cls, raw: object) -> Filters:
        """What was saved, keeping only what is still valid (a tag may have been renamed since)."""
        if not isinstance(raw, dict):
            return cls()

        def strings(key: str, known: tuple[str, ...]) -> tuple[str, ...]:
            values = raw.get(key)
            return tuple(v for v in known if isinstance(values, list) and v in values)

        category = raw.get("category") if raw.get("category") in tags.CATEGORIES else None
        when = When(raw["when"]) if raw.get("when") in set(When) else None
        radius = raw.get("radius_km") if raw.get("radius_km") in DISTANCES_KM else None
        price = raw.get("max_price_minor")
        price = price if isinstance(price, int) and not isinstance(price, bool) and 0 < price < 10**9 else None
        words = raw.get("words")
        return cls(category, strings("diet", tags.DIETS), strings("avoid", tags.ALLERGENS), when, radius, price,
                   search_words(" ".join(w for w in words if isinstance(w, str))) if isinstance(words, list) else ())


def search_words(text_: str) -> tuple[str, ...]:
    """The words of a search, lower-cased, without control characters, a few and not too long."""
    cleaned = "".join(ch if ch.isprintable() else " " for ch in text_)
    words: list[str] = []
    for whole in cleaned.lower().split():
        word = whole[:MAX_WORD_LENGTH]
        if word not in words:
            words.append(word)
    return tuple(words[:MAX_QUERY_WORDS])


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
    loosen: str | None = None  # when nothing matched: the one filter whose removal finds something


def point(latitude: float, longitude: float) -> ColumnElement:
    """A customer's position as a PostGIS geography (WGS 84)."""
    return _position(literal(latitude, Float), literal(longitude, Float))


def _position(latitude: ColumnElement, longitude: ColumnElement) -> ColumnElement:
    return cast(func.ST_SetSRID(func.ST_MakePoint(longitude, latitude), 4326), Geography(srid=4326))


def _like(word: str) -> str:
    return "%" + word.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _conditions(filters: Filters, now: datetime | ColumnElement, here: ColumnElement | None,
                ) -> list[ColumnElement[bool]]:
    moment = now if isinstance(now, ColumnElement) else literal(now)
    conditions: list[ColumnElement[bool]] = []
    if filters.category is not None:
        conditions.append(Offer.category == filters.category)
    if filters.diet:
        conditions.append(Offer.diet.contains(cast(list(filters.diet), ARRAY(String))))
    if filters.avoid:
        conditions.append(not_(Offer.allergens.overlap(cast(list(filters.avoid), ARRAY(String)))))
    if filters.max_price_minor is not None:
        conditions.append(Offer.price_minor <= filters.max_price_minor)
    for word in filters.words:
        pattern = _like(word)
        conditions.append(or_(Offer.title.ilike(pattern, escape="\\"), Offer.description.ilike(pattern, escape="\\"),
                              Business.name.ilike(pattern, escape="\\")))
    if filters.when is not None:
        local_now = func.timezone(Business.timezone, moment)
        today = func.date_trunc("day", local_now)
        start = func.timezone(Business.timezone, Offer.pickup_start)
        end = func.timezone(Business.timezone, Offer.pickup_end)
        if filters.when is When.NOW:
            conditions.append(Offer.pickup_start <= moment + text("interval '1 hour'"))
        elif filters.when is When.TONIGHT:
            conditions += [end > today + text("interval '17 hours'"), start < today + text("interval '1 day'")]
        else:
            conditions += [end > today + text("interval '1 day'"), start < today + text("interval '2 days'")]
    if here is not None and filters.radius_km is not None:
        conditions.append(_within(here, filters.radius_km))
    return conditions


def _business_base() -> list[ColumnElement[bool]]:
    conditions = [Business.status == BusinessStatus.VERIFIED]
    if get_settings().payouts_require_connect:  # its customers could not pay (restricted, disconnected)
        conditions.append(Business.charges_enabled.is_(True))
    return conditions


def _base(now: datetime | ColumnElement) -> list[ColumnElement[bool]]:
    return [Offer.status == OfferStatus.ACTIVE, Offer.pickup_end > now, *_business_base()]


def _within(here: ColumnElement, radius_km: int) -> ColumnElement[bool]:
    return func.ST_DWithin(Business.location, here, radius_km * 1000.0, SPHERE)


def browse(session: Session, now: datetime, sort: Sort, page: int = 0, *,
           latitude: float | None = None, longitude: float | None = None,
           filters: Filters | None = None, size: int = PAGE_SIZE) -> Page:
    """One page of ``size`` offers a customer can order now, matching the filters, in one query
    (the chat's pages of PAGE_SIZE, the Mini App's map of more). Nearest needs a location (within
    the chosen distance, or NEARBY_RADIUS_KM): nearest businesses first, each one's offers by id.
    A location also limits the other sorts to the chosen distance, if one is chosen. When nothing
    matches, says which filter to loosen."""
    page = max(page, 0)
    size = max(size, 1)
    filters = filters or Filters()
    located = latitude is not None and longitude is not None
    if sort is Sort.NEAREST:
        if not located:
            raise ValueError("nearest needs a location")
        if filters.radius_km is None:
            filters = replace(filters, radius_km=int(NEARBY_RADIUS_KM))
    statement = _browse_statement(sort, filters, page, size, located=located,
                                  connect_required=get_settings().payouts_require_connect)
    rows = session.execute(statement, {"now": now, "latitude": latitude, "longitude": longitude} if located
                           else {"now": now}).all()
    items = [Listing(offer, business, None if dist is None else float(dist))
             for offer, business, dist in rows[:size]]
    loosen = None
    if not items and page == 0:
        here = point(latitude, longitude) if latitude is not None and longitude is not None else None
        loosen = _what_to_loosen(session, now, filters, here, sort)
    return Page(items, page, has_next=len(rows) > size, loosen=loosen)


@functools.lru_cache(maxsize=512)
def _browse_statement(sort: Sort, filters: Filters, page: int, size: int, *, located: bool,
                      connect_required: bool) -> Select:
    """browse's statement for these filters and this page, with the moment and the customer's
    position as parameters (``now``, ``latitude``, ``longitude``): built once per kind of search and
    kept, since building it costs more Python than running it (bench/report.md, section 9).
    ``connect_required`` is the setting `_business_base` reads, so a change of it is a new statement."""
    del connect_required  # a key of the cache; _business_base reads the setting itself
    now = bindparam("now", type_=Offer.pickup_end.type)
    here = _position(bindparam("latitude", type_=Float), bindparam("longitude", type_=Float)) if located else None
    distance = (func.ST_Distance(Business.location, here, SPHERE) / 1000.0) if here is not None \
        else cast(None, Float)
    query = select(Offer, Business, distance.label("distance")).join(Business, Offer.business_id == Business.id)
    conditions = _base(now) + _conditions(filters, now, here)
    if sort is Sort.NEAREST:
        assert here is not None
        assert filters.radius_km is not None
        # The offers' own conditions, for the businesses' EXISTS (the businesses' are the subquery's).
        of_offers = [Offer.status == OfferStatus.ACTIVE, Offer.pickup_end > now,
                     *_conditions(replace(filters, radius_km=None), now, here)]
        nearest = _nearest_businesses(here, filters.radius_km, of_offers, (page + 1) * size + 1)
        query = query.join(nearest, nearest.c.id == Business.id).order_by(nearest.c.knn, Business.id, Offer.id)
    elif sort is Sort.POPULAR:
        # Share sold (0..1), plus up to ±0.5 for a rating above or below 3 stars.
        sell_through = cast(Offer.units_sold, Float) / func.greatest(Offer.quantity, 1)
        popularity = sell_through + func.coalesce((_rating() - 3) / 4.0, 0)
        query = query.order_by(popularity.desc(), Offer.published_at.desc(), Offer.id.desc())
    elif sort is Sort.RATED:
        query = query.order_by(_rating().desc().nulls_last(), Offer.published_at.desc(), Offer.id.desc())
    else:
        query = query.order_by(Offer.published_at.desc().nulls_last(), Offer.id.desc())
    return query.where(and_(*conditions)).offset(page * size).limit(size + 1)


def _nearest_businesses(here: ColumnElement, radius_km: int, conditions: list[ColumnElement[bool]],
                        count: int) -> Subquery:
    """The ``count`` businesses within ``radius_km`` nearest to ``here`` that have an offer matching
    the offers' ``conditions``, nearest first. Ordered by the distance alone, so Postgres walks the
    location's GiST index outward from the customer (``<->``) and stops at ``count``, instead of
    joining every offer within the radius and sorting them all (10× the time with 50,000 offers,
    bench/bench_mini_app.py); a second sort key would make it sort. ``count`` businesses hold at
    least ``count`` matching offers, so the first ``count`` offers by (distance, business, offer)
    are theirs; only businesses at exactly the same distance, at the last place, are picked by
    the index rather than by id."""
    knn = Business.location.op("<->")(here)
    has_a_match = select(Offer.id).where(Offer.business_id == Business.id, *conditions).exists()
    return (select(Business.id.label("id"), knn.label("knn"))
            .where(*_business_base(), _within(here, radius_km), has_a_match)
            .order_by(knn).limit(count).subquery("nearest"))


def _rating() -> ColumnElement:
    """The offer's business's average stars, NULL until it has ratings.MIN_SHOWN ratings."""
    return (
        select(cast(func.avg(Rating.stars), Float)).where(Rating.business_id == Business.id)
        .having(func.count() >= ratings.MIN_SHOWN).scalar_subquery()
    )


def _what_to_loosen(session: Session, now: datetime, filters: Filters, here: ColumnElement | None,
                    sort: Sort) -> str | None:
    """The first filter (in Filters.NAMES order) without which something would match."""
    for name in filters.active():
        if name == "radius_km" and sort is Sort.NEAREST:
            wider = [d for d in DISTANCES_KM if d > (filters.radius_km or 0)]
            if not wider:
                continue
            looser = replace(filters, radius_km=wider[-1])
        else:
            looser = filters.without(name)
        found = session.execute(
            select(Offer.id).join(Business, Offer.business_id == Business.id)
            .where(and_(*_base(now), *_conditions(looser, now, here))).limit(1)
        ).first()
        if found is not None:
            return name
    return None


def _distance_from(latitude: float | None, longitude: float | None):
    if latitude is None or longitude is None:
        return cast(None, Float)
    return func.ST_Distance(Business.location, point(latitude, longitude), SPHERE) / 1000.0


def offer_listing(session: Session, offer_id: int, *, latitude: float | None = None,
                  longitude: float | None = None) -> Listing | None:
    """One offer with its business, and its distance when the customer's location is known."""
    row = session.execute(
        select(Offer, Business, _distance_from(latitude, longitude))
        .join(Business, Offer.business_id == Business.id)
        .where(Offer.id == offer_id)
    ).first()
    if row is None:
        return None
    offer, business, dist = row
    return Listing(offer, business, None if dist is None else float(dist))


def saved_filters(session: Session, user_id: int) -> Filters:
    user = session.get(User, user_id)
    return Filters.from_json(user.deal_filters if user is not None else None)


def save_filters(session: Session, user_id: int, filters: Filters) -> None:
    user = session.get(User, user_id)
    if user is not None:
        user.deal_filters = filters.to_json()


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


@dataclass(frozen=True)
class Favourite:
    business: Business
    alerts: bool
    deals: list[Offer]


def favourites(session: Session, user_id: int, now: datetime, limit: int = 20) -> list[Favourite]:
    """The businesses a customer follows, with their deals open now (soonest pickup first)."""
    follows = session.execute(
        select(Follow, Business).join(Business, Business.id == Follow.business_id)
        .where(Follow.user_id == user_id).order_by(Business.name, Business.id).limit(limit)
    ).all()
    deals: dict[int, list[Offer]] = {}
    ids = [business.id for _follow, business in follows]
    if ids:
        for offer in session.scalars(
            select(Offer).where(Offer.business_id.in_(ids), Offer.status == OfferStatus.ACTIVE, Offer.pickup_end > now)
            .order_by(Offer.pickup_start, Offer.id)
        ):
            deals.setdefault(offer.business_id, []).append(offer)
    return [Favourite(business, follow.alerts, deals.get(business.id, [])) for follow, business in follows]
