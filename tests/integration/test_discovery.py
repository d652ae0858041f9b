"""Finding deals: PostGIS distance, filters (category, diet, allergens, pickup time, distance, price,
words), remembered filters, and the "loosen this filter" answer when nothing matches."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core.db import session_scope
from domain import catalog
from domain.catalog import Filters, Sort, When
from models import Business, User
from tests.factories import make_business, make_offer, make_user

HERE = (52.5200, 13.4050)  # Alexanderplatz


def _browse(sort: Sort = Sort.NEAREST, **filters) -> catalog.Page:
    with session_scope() as session:
        page = catalog.browse(session, datetime.now(UTC), sort, latitude=HERE[0], longitude=HERE[1],
                              filters=Filters(**filters))
        session.expunge_all()
        return page


def _titles(page: catalog.Page) -> list[str]:
    return [item.offer.title for item in page.items]


def test_nearby_is_postgis_distance_nearest_first_within_the_chosen_radius(db):
    near = make_business(latitude=52.5230, longitude=13.4120)  # ~0.6 km
    middle = make_business(latitude=52.5400, longitude=13.4050)  # ~2.2 km
    far = make_business(latitude=52.6000, longitude=13.4050)  # ~8.9 km
    munich = make_business(latitude=48.1371, longitude=11.5754)
    for business, title in ((far, "far"), (munich, "munich"), (middle, "middle"), (near, "near")):
        make_offer(business, title)
    with session_scope() as session:  # the point is Postgres's, computed from latitude and longitude
        assert session.scalar(sa.select(sa.func.ST_AsText(Business.location)).where(Business.id == near)) \
            == "POINT(13.412 52.523)"

    page = _browse()
    assert _titles(page) == ["near", "middle", "far"]  # NEARBY_RADIUS_KM (15) until one is chosen
    assert 0.5 < page.items[0].distance_km < 0.7 and 2.1 < page.items[1].distance_km < 2.4
    assert _titles(_browse(radius_km=2)) == ["near"]
    assert _titles(_browse(radius_km=5)) == ["near", "middle"]
    assert _titles(_browse(Sort.NEWEST, radius_km=5)) == ["near", "middle"]  # the distance limits every sort
    assert "munich" in _titles(_browse(Sort.NEWEST))  # no distance chosen: everywhere


def test_filters_by_what_an_offer_is(db):
    business = make_business(latitude=HERE[0], longitude=HERE[1])
    make_offer(business, "Rye bread", category="bakery", diet=["vegan"], allergens=["gluten"], price_minor=300)
    make_offer(business, "Cheese box", category="dairy", diet=["vegetarian"], allergens=["milk"], price_minor=500,
               original_price_minor=900)
    make_offer(business, "Curry", category="meals", diet=["vegan", "gluten_free"], allergens=["celery"],
               price_minor=650, original_price_minor=1200)

    assert _titles(_browse(category="bakery")) == ["Rye bread"]
    assert set(_titles(_browse(diet=("vegan",)))) == {"Rye bread", "Curry"}
    assert _titles(_browse(diet=("vegan", "gluten_free"))) == ["Curry"]
    assert _titles(_browse(avoid=("gluten", "milk"))) == ["Curry"]
    assert set(_titles(_browse(max_price_minor=500))) == {"Rye bread", "Cheese box"}
    assert _titles(_browse(words=("curry",))) == ["Curry"]
    assert _titles(_browse(words=("CHEESE", "box"))) == ["Cheese box"]
    assert _titles(_browse(words=("fresh", "rye"))) == ["Rye bread"]  # title and description together


def _zone_at_midday(now: datetime) -> tuple[str, timedelta]:
    """A fixed-offset zone where it is now between 11:30 and 12:30, and its offset: a window open
    now stays inside today there, whatever the hour the suite runs at."""
    hours = (12 - now.hour - (1 if now.minute >= 30 else 0)) % 24
    hours = hours - 24 if hours > 11 else hours  # Etc/GMT zones span UTC-12 to UTC+14
    return f"Etc/GMT{-hours:+d}", timedelta(hours=hours)  # POSIX sign: Etc/GMT-3 is UTC+3


def test_pickup_time_in_the_business_time_zone(db):
    now = datetime.now(UTC)
    zone, offset = _zone_at_midday(now)
    business = make_business(latitude=HERE[0], longitude=HERE[1], timezone=zone)
    local_today = (now + offset).replace(hour=0, minute=0, second=0, microsecond=0)
    make_offer(business, "open now", starts_in=timedelta(minutes=-10), lasts=timedelta(minutes=40))
    tomorrow_start = local_today + timedelta(days=1, hours=12) - offset - now
    make_offer(business, "tomorrow noon", starts_in=tomorrow_start, lasts=timedelta(hours=1))
    assert _titles(_browse(when=When.NOW)) == ["open now"]
    assert _titles(_browse(when=When.TOMORROW)) == ["tomorrow noon"]
    tonight = _titles(_browse(when=When.TONIGHT))
    assert "tomorrow noon" not in tonight


def test_nothing_matches_says_which_filter_to_loosen(db):
    business = make_business(latitude=52.5600, longitude=13.4050)  # ~4.4 km
    make_offer(business, "Rye bread", category="bakery", allergens=["gluten"], price_minor=300)

    page = _browse(radius_km=2)
    assert page.items == [] and page.loosen == "radius_km"
    page = _browse(Sort.NEWEST, category="bakery", avoid=("gluten",))
    assert page.items == [] and page.loosen == "avoid"
    page = _browse(Sort.NEWEST, words=("croissant",), category="bakery")
    assert page.loosen == "words"
    page = _browse(Sort.NEWEST, category="dairy", avoid=("gluten",))  # two filters in the way
    assert page.items == [] and page.loosen is None


def test_filters_are_remembered_per_customer_and_what_is_no_longer_valid_is_dropped(db):
    customer = make_user()
    chosen = Filters(category="bakery", diet=("vegan",), avoid=("nuts", "milk"), when=When.TONIGHT, radius_km=5,
                     max_price_minor=500, words=("croissant",))
    with session_scope() as session:
        catalog.save_filters(session, customer, chosen)
    with session_scope() as session:
        assert catalog.saved_filters(session, customer) == Filters(
            category="bakery", diet=("vegan",), avoid=("milk", "nuts"), when=When.TONIGHT, radius_km=5,
            max_price_minor=500, words=("croissant",))
        session.get(User, customer).deal_filters = {"category": "caviar", "diet": ["carnivore", "vegan"],
                                                     "radius_km": 7, "max_price_minor": "lots", "when": 3}
    with session_scope() as session:
        assert catalog.saved_filters(session, customer) == Filters(diet=("vegan",))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(text=st.one_of(
    st.text(max_size=300),
    st.sampled_from(["'; DROP TABLE offers; --", "%", "_", "\\", "\\%", "🥐🥖", "' OR 1=1 --", "\x00nul",
                     "ä" * 10_000, "x" * 10_000]),
))
def test_fuzzed_search_words_never_crash(db, text):
    words = catalog.search_words(text)
    assert len(words) <= catalog.MAX_QUERY_WORDS and all(len(w) <= catalog.MAX_WORD_LENGTH for w in words)
    page = _browse(Sort.NEWEST, words=words)
    assert page.items == []
    assert catalog.Filters.from_json({"words": [text]}).words == words


def test_best_rated_and_popular_take_ratings_and_sell_through_into_account(db):
    from models import Order, OrderStatus, Rating

    loved = make_business(latitude=HERE[0], longitude=HERE[1], name="Loved")
    panned = make_business(latitude=HERE[0], longitude=HERE[1], name="Panned")
    unrated = make_business(latitude=HERE[0], longitude=HERE[1], name="Unrated")
    offers = {name: make_offer(business, name, quantity=10, units_sold=sold)
              for name, business, sold in (("loved", loved, 3), ("panned", panned, 5), ("unrated", unrated, 4))}
    with session_scope() as session:
        for business, stars in ((loved, 5), (panned, 1)):
            for n in range(5):
                customer = make_user()
                order = Order(offer_id=offers["loved" if business == loved else "panned"], customer_id=customer,
                              quantity=1, unit_price_minor=350, amount_minor=350, currency="EUR",
                              status=OrderStatus.COLLECTED, pickup_code=f"R{business}{n}")
                session.add(order)
                session.flush()
                session.add(Rating(order_id=order.id, business_id=business, customer_id=customer, stars=stars))

    assert _titles(_browse(Sort.RATED)) == ["loved", "panned", "unrated"]  # unrated last
    # Sell-through 0.3 + 0.5 (5 stars) beats 0.4 (no rating shown) beats 0.5 - 0.5 (1 star).
    assert _titles(_browse(Sort.POPULAR)) == ["loved", "unrated", "panned"]


def test_muted_customers_and_businesses_switched_off_hear_nothing(db):
    from domain import announcements
    from models import Follow, Offer

    business = make_business(latitude=HERE[0], longitude=HERE[1])
    offer = make_offer(business, "Bagels")
    quiet_follower, loud_follower, muted_neighbour, neighbour = (make_user() for _ in range(4))
    now = datetime.now(UTC)
    with session_scope() as session:
        session.add_all([Follow(user_id=quiet_follower, business_id=business),
                         Follow(user_id=loud_follower, business_id=business)])
        for user_id in (muted_neighbour, neighbour):
            user = session.get(User, user_id)
            user.latitude, user.longitude, user.deal_alerts_km = 52.5210, 13.4060, 5.0
    with session_scope() as session:
        assert announcements.set_business_alerts(session, quiet_follower, business, False)
        assert not announcements.set_business_alerts(session, neighbour, business, False)  # not a follower
        until = announcements.mute_alerts(session, muted_neighbour, "day", now)
        assert until == now + timedelta(days=1)
    with session_scope() as session:
        heard = {r.user_id for r in announcements.audience(session, session.get(Offer, offer), now)}
        assert heard == {loud_follower, neighbour}
        tomorrow = {r.user_id for r in announcements.audience(session, session.get(Offer, offer),
                                                                now + timedelta(days=1, minutes=1))}
        assert tomorrow == {loud_follower, neighbour, muted_neighbour}
        favourites = catalog.favourites(session, quiet_follower, now)
        assert [(f.business.id, f.alerts, [o.title for o in f.deals]) for f in favourites] == [
            (business, False, ["Bagels"])]


SEARCHED = st.one_of(
    st.text(max_size=200),
    st.sampled_from(["🥐", "🥐🥖🧀" * 300, "'; DROP TABLE offers; --", "%' OR '1'='1", "_%\\", "\u202eevil",
                     "a" * 10_000, "<b>croissant</b>", "\x00\x01", "   "]),
)


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck))
@given(text=SEARCHED)
def test_fuzzed_search_and_filters_through_the_chat_always_answer(db, text):
    from tests.integration.test_fuzz_chat import _handle, _press, _say, _texts, _users

    user = next(_users)
    answer = _texts(_say(user, f"/deals {text}"))
    assert "deals" in answer.lower()  # the list, or why it is empty, never a crash
    assert _handle(_press(user, "filt:search:new")).notification_ids
    assert _texts(_say(user, text or "x"))  # typed at the search question
    assert _handle(_press(user, f"filt:cat:new:{text[:20]}")).answer_id is not None  # forged: answered


def test_search_folds_case_in_both_languages(db):
    business = make_business(latitude=HERE[0], longitude=HERE[1], name="Bäckerei Sonne")
    rolls = make_offer(business, "Brötchen-Tüte")
    make_offer(business, "Croissant bag")
    with session_scope() as session:
        from models import Offer

        session.get(Offer, rolls).description = "Weizen und Roggen"
    assert _titles(_browse(Sort.NEWEST, words=catalog.search_words("BRÖTCHEN"))) == ["Brötchen-Tüte"]
    assert _titles(_browse(Sort.NEWEST, words=catalog.search_words("roggen"))) == ["Brötchen-Tüte"]
    assert set(_titles(_browse(Sort.NEWEST, words=catalog.search_words("bäckerei")))) == {
        "Brötchen-Tüte", "Croissant bag"}


def test_nearest_first_walks_the_nearest_businesses_and_pages_add_up_to_one_long_page(db):
    """The nearest businesses with a matching offer first, each one's offers by id: page after page
    of the chat's five are the Mini App's one page of twenty, and a business whose offers all fail
    the filters takes no place (catalog._nearest_businesses)."""
    rostock = (54.0887, 12.1405)  # no other test puts a shop here
    everything, bakery = [], []
    for n in range(9):  # 300 m apart, outward, with one to three offers each, a third of them bakery's
        business = make_business(latitude=rostock[0] + 0.0027 * (n + 1), longitude=rostock[1])
        for k in range(1 + n % 3):
            category = "meals" if (n + k) % 3 else "bakery"
            everything.append(make_offer(business, f"Bag {n}.{k}", category=category))
            if category == "bakery":
                bakery.append(everything[-1])

    def ids(page: int = 0, size: int = catalog.PAGE_SIZE, **filters) -> tuple[list[int], bool]:
        with session_scope() as session:
            found = catalog.browse(session, datetime.now(UTC), Sort.NEAREST, page, latitude=rostock[0],
                                   longitude=rostock[1], filters=Filters(radius_km=5, **filters), size=size)
            return [item.offer.id for item in found.items], found.has_next

    assert ids(size=20) == (everything, False) and len(everything) == 18
    assert [offer for page in range(4) for offer in ids(page)[0]] == everything
    assert ids(size=3, category="bakery") == (bakery[:3], True)  # the second business has none: no place
    assert ids(1, size=3, category="bakery") == (bakery[3:6], False) and len(bakery) == 6
