"""The Mini App's API against real Postgres: who gets in (Telegram's initData, checked as Telegram
specifies), who sees what (a business only its own, admins only the admin endpoints), what each
change hands over (by task name, after the commit), and that no query string makes it fail."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from urllib.parse import parse_qsl, quote, urlencode

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.testclient import TestClient

from core import handover, marks
from core.db import session_scope
from core.settings import SANDBOX_BOT_TOKEN, Settings
from domain import reservations
from models import BusinessStatus, Handover, Notification, OfferStatus, Order, OrderStatus
from tests.factories import OPEN_NOW, make_business, make_offer, make_user
from webapp import auth, openapi
from webapp.app import create_app

ADMIN = 4242
pytestmark = pytest.mark.usefixtures("db")


class Broker:
    """Stands in for core.handover.send_task: what was published."""

    def __init__(self) -> None:
        self.published: list[tuple[str, list]] = []
        self.down = False

    def __call__(self, name, args, countdown=None, kwargs=None, task_id=None) -> None:
        if self.down:
            raise ConnectionError("Redis went away")
        self.published.append((name, args))


@pytest.fixture
def broker(monkeypatch):
    marks.flush()
    fake = Broker()
    monkeypatch.setattr(handover, "send_task", fake)
    yield fake
    marks.flush()
    with session_scope() as session:
        session.execute(sa.delete(Handover))


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(Settings(admin_ids=frozenset({ADMIN}))), raise_server_exceptions=False) as c:
        yield c


def init_data(user_id: int, *, token: str = SANDBOX_BOT_TOKEN, age: int = 0, language: str = "en") -> str:
    return auth.sign({"id": user_id, "first_name": "Mia", "language_code": language}, token,
                     auth_date=int(time.time()) - age, extra={"query_id": "AAHdF6IQAAAAAN0XohDhrOrc"})


def headers(user_id: int, **kwargs) -> dict[str, str]:
    return {"Authorization": "tma " + init_data(user_id, **kwargs)}


# --------------------------------------------------------------------------- authentication


def test_the_signature_is_telegrams_own_recipe():
    """Computed here straight from Telegram's page, not with the code under test."""
    signed = init_data(777)
    fields = dict(parse_qsl(signed))
    check = "\n".join(f"{k}={v}" for k, v in sorted(fields.items()) if k != "hash")
    secret = hmac.new(b"WebAppData", SANDBOX_BOT_TOKEN.encode(), hashlib.sha256).digest()
    assert fields["hash"] == hmac.new(secret, check.encode(), hashlib.sha256).hexdigest()
    assert auth.validate(signed, SANDBOX_BOT_TOKEN, now=time.time(), max_age=60).id == 777


def _tampered(user_id: int) -> str:
    fields = dict(parse_qsl(init_data(user_id)))
    fields["user"] = json.dumps({"id": user_id + 1, "first_name": "Mia"})
    return urlencode(fields)


def _duplicated(user_id: int) -> str:
    return init_data(user_id) + "&user=" + quote(json.dumps({"id": ADMIN}))


@pytest.mark.parametrize("authorization", [
    pytest.param(lambda u: "", id="missing"),
    pytest.param(lambda u: "Bearer " + init_data(u), id="wrong scheme"),
    pytest.param(lambda u: "tma " + init_data(u, token="654321:ANOTHER-BOT"), id="forged: another bot's token"),
    pytest.param(lambda u: "tma " + _tampered(u), id="tampered"),
    pytest.param(lambda u: "tma " + init_data(u, age=2 * 24 * 3600), id="stale"),
    pytest.param(lambda u: "tma " + init_data(u, age=-3600), id="from the future"),
    pytest.param(lambda u: "tma " + _duplicated(u), id="a second unsigned user"),
    pytest.param(lambda u: "tma " + init_data(u).replace("hash=", "hash=0"), id="bad hash"),
    pytest.param(lambda u: "tma %%%", id="garbage"),
])
def test_anything_but_genuine_fresh_init_data_is_refused(client, authorization):
    user_id = make_user()
    answer = client.get("/api/me", headers={"Authorization": authorization(user_id), "Accept-Language": "de-DE"})
    assert answer.status_code == 401
    assert answer.json()["error"] == "unauthorized"
    assert "Telegram" in answer.json()["message"] and "Bitte" in answer.json()["message"]  # in German


def test_genuine_init_data_signs_in_and_a_first_visitor_is_remembered(client):
    user_id = 9_100_000_001
    answer = client.get("/api/me", headers=headers(user_id, language="de"))
    assert answer.status_code == 200, answer.text
    me = answer.json()
    assert (me["id"], me["roles"], me["language"], me["business"]) == (user_id, ["customer"], "de", None)
    assert me["texts"]["tab_map"] == "🗺 Karte"
    assert me["map"]["tile_url"] is None  # the sandbox: no tiles, no request leaves the machine


# --------------------------------------------------------------------------- the document


def test_the_openapi_document_covers_every_api_route(client):
    document = client.get("/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    documented = {(path, method.upper()) for path, item in document["paths"].items() for method in item}
    routes = {(route.path, method) for route in client.app.routes  # type: ignore[attr-defined]
              for method in (getattr(route, "methods", None) or ()) if route.path.startswith("/api/")
              and method != "HEAD" and route.path not in ("/api/openapi.json", "/api/{rest:path}")}
    assert documented == routes == {(op.path, op.method) for op in openapi.OPERATIONS}
    for item in document["paths"].values():
        for operation in item.values():
            assert {"401", "500"} <= set(operation["responses"]), operation["operationId"]


# --------------------------------------------------------------------------- customers


def test_deals_near_a_point_and_one_deal(client):
    business = make_business(latitude=52.52, longitude=13.405)
    near = make_offer(business, "Bread bag")
    make_offer(business, "Draft bag", status=OfferStatus.DRAFT)
    far = make_offer(make_business(latitude=48.14, longitude=11.58), "Munich bag")
    me = make_user()
    deals = client.get("/api/deals?lat=52.53&lon=13.40", headers=headers(me)).json()["deals"]
    assert [d["id"] for d in deals] == [near]
    assert deals[0]["distance_km"] < 2 and deals[0]["price"]["minor"] == 350
    newest = client.get("/api/deals", headers=headers(me)).json()["deals"]
    assert {d["id"] for d in newest} == {near, far}
    assert client.get(f"/api/deals/{near}", headers=headers(me)).json()["title"] == "Bread bag"


KIEL = (54.3233, 10.1228)  # no other test puts a shop here


def _rated(business_id: int, offer_id: int, stars: list[int]) -> None:
    """Collected orders of ``offer_id``, each rated with its stars."""
    from models import Rating

    with session_scope() as session:
        for number, star in enumerate(stars):
            customer = make_user()
            order = Order(offer_id=offer_id, customer_id=customer, quantity=1, unit_price_minor=350,
                          amount_minor=350, currency="EUR", status=OrderStatus.COLLECTED,
                          pickup_code=f"K{offer_id}R{number}")
            session.add(order)
            session.flush()
            session.add(Rating(order_id=order.id, business_id=business_id, customer_id=customer, stars=star))


def test_deals_follow_the_filters_of_the_chats_deals_through_the_same_query(client):
    from datetime import UTC, datetime

    from domain import catalog

    shop = make_business(latitude=KIEL[0], longitude=KIEL[1] + 0.001, name="Kieler Backstube")
    kitchen = make_business(latitude=KIEL[0], longitude=KIEL[1] + 0.03, name="Förde Küche")  # 2 km east
    vegan = make_offer(shop, "Vegan rolls", price_minor=300, category="bakery", diet=["vegan", "vegetarian"],
                       allergens=["gluten"])
    loaf = make_offer(shop, "Sourdough loaf", price_minor=450, category="bakery", allergens=["milk"])
    curry = make_offer(kitchen, "Curry", price_minor=800, original_price_minor=1500, category="meals",
                       allergens=["nuts"])
    me = make_user(language="de")
    here = {"lat": KIEL[0], "lon": KIEL[1]}

    def found(**filters) -> dict:
        answer = client.get("/api/deals", params={**here, **filters}, headers=headers(me, language="de"))
        assert answer.status_code == 200, answer.text
        return answer.json()

    def ids(**filters) -> list[int]:
        return [deal["id"] for deal in found(**filters)["deals"]]

    assert ids() == [vegan, loaf, curry]  # nearest first: the shop's two (by id), then the kitchen
    assert ids(category="bakery") == [vegan, loaf]
    assert ids(diet="vegan") == [vegan]
    assert ids(avoid="gluten,nuts") == [loaf] == ids(avoid=["gluten", "nuts"])  # a list, either way
    assert ids(max_price_minor=500) == [vegan, loaf]
    assert ids(words="SOURDOUGH") == [loaf] == ids(words="backstube loaf")
    assert ids(when="now") == []  # every pickup starts in two hours (tomorrow's would depend on the hour)
    assert ids(radius_km=1) == [vegan, loaf]
    # The same filters, the same answer as the chat's /deals query, page for page.
    chosen = catalog.Filters(category="bakery", avoid=("nuts",), max_price_minor=1000)
    with session_scope() as session:
        page = catalog.browse(session, datetime.now(UTC), catalog.Sort.NEAREST, latitude=KIEL[0],
                              longitude=KIEL[1], filters=chosen, size=20)
        expected = [item.offer.id for item in page.items]
    assert ids(category="bakery", avoid="nuts", max_price_minor=1000) == expected == [vegan, loaf]

    nothing = found(category="dairy", diet="vegan")
    assert nothing["deals"] == [] and nothing["loosen"] == "category"  # without it, the vegan rolls
    first = found(category="bakery")["deals"][0]
    assert first["category"] == {"code": "bakery", "label": "🥐 Backwaren"}
    assert first["diet"] == [{"code": "vegetarian", "label": "vegetarisch"}, {"code": "vegan", "label": "vegan"}]
    assert first["allergens"] == [{"code": "gluten", "label": "Gluten"}]

    for bad in ({"category": "pizza"}, {"radius_km": "7"}, {"max_price_minor": "-1"}, {"when": "yesterday"},
                {"diet": "vegan,paleo"}, {"category": ["bakery", "meals"]}, {"words": "x" * 201}):
        refused = client.get("/api/deals", params={**here, **bad}, headers=headers(me, language="de"))
        assert refused.status_code == 422, bad
        assert refused.json()["error"] == "bad_filter" and "Filter" in refused.json()["message"]


def test_a_deal_shows_its_allergens_rating_and_photo(client):
    business = make_business(latitude=KIEL[0] + 0.2, longitude=KIEL[1])
    offer = make_offer(business, "Cheese box", category="dairy", allergens=["milk", "nuts"],
                       photo_card_file_id="AgADfake-card")
    plain = make_offer(business, "Plain box")
    me, german = make_user(), make_user(language="de")
    deal = client.get(f"/api/deals/{offer}", headers=headers(me)).json()
    assert deal["allergens"] == [{"code": "milk", "label": "milk"}, {"code": "nuts", "label": "nuts"}]
    assert deal["rating"] is None  # fewer than five ratings are not shown, as in the chat
    assert deal["photo_url"].startswith(f"/api/deals/{offer}/photo.jpg?v=")
    _rated(business, offer, [5, 4, 4, 3, 4])
    deal = client.get(f"/api/deals/{offer}", headers=headers(german)).json()
    assert deal["rating"] == {"average": 4.0, "count": 5, "text": "⭐ 4.0 (5 Bewertungen)"}
    listed = client.get("/api/deals", params={"lat": KIEL[0] + 0.2, "lon": KIEL[1]}, headers=headers(me)).json()
    assert {d["id"]: d["rating"]["count"] if d["rating"] else None for d in listed["deals"]} == {offer: 5, plain: 5}
    without = client.get(f"/api/deals/{plain}", headers=headers(me)).json()
    assert (without["photo_url"], without["allergens"]) == (None, [])
    assert client.get(f"/api/deals/{plain}/photo.jpg", headers=headers(me)).status_code == 404


def test_filters_chosen_in_the_app_are_the_chats_and_back(client):
    from domain import catalog

    me = make_user(language="de", latitude=KIEL[0], longitude=KIEL[1])
    profile = client.get("/api/me", headers=headers(me)).json()
    assert profile["filters"] == {"category": None, "diet": [], "avoid": [], "when": None, "radius_km": None,
                                  "max_price_minor": None, "words": ""}
    assert profile["location"] == {"lat": KIEL[0], "lon": KIEL[1]}  # shared in the chat
    choices = profile["filter_choices"]
    assert [c["code"] for c in choices["radius_km"]] == list(catalog.DISTANCES_KM)
    assert choices["max_price_minor"][0] == {"code": 300, "label": "bis 3,00\u00a0€"}
    assert choices["names"]["avoid"] == "Allergene meiden" and choices["nearby_km"] == 15

    saved = client.post("/api/filters", headers=headers(me), json={"filters": {
        "category": "bakery", "avoid": ["nuts", "gluten"], "radius_km": 5, "words": "  Vegan  rolls "}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["filters"]["avoid"] == ["gluten", "nuts"] and saved.json()["filters"]["words"] == "vegan rolls"
    with session_scope() as session:
        assert catalog.saved_filters(session, me) == catalog.Filters(
            category="bakery", avoid=("gluten", "nuts"), radius_km=5, words=("vegan", "rolls"))
    assert client.get("/api/me", headers=headers(me)).json()["filters"]["category"] == "bakery"
    for bad in ({"filters": {"category": 7}}, {"filters": {"diet": [None]}}, {"filters": "bakery"}, {}):
        assert client.post("/api/filters", headers=headers(me), json=bad).status_code == 422, bad
    cleared = client.post("/api/filters", headers=headers(me), json={"filters": {}}).json()["filters"]
    assert cleared["category"] is None and cleared["avoid"] == []


def test_ordering_hands_the_reservation_over_by_name(client, broker):
    offer = make_offer(make_business())
    me = make_user(language="de")
    answer = client.post("/api/orders", headers=headers(me),
                         json={"offer_id": offer, "quantity": 2, "request_id": "req-order-0001"})
    assert answer.status_code == 202, answer.text
    assert broker.published == [("reservations.place_order", [offer, me, 2, f"app:{me}:req-order-0001"])]
    too_many = client.post("/api/orders", headers=headers(me),
                           json={"offer_id": offer, "quantity": 9, "request_id": "req-order-0002"})
    assert too_many.status_code == 422 and "1 bis 5" in too_many.json()["message"]
    draft = make_offer(make_business(), status=OfferStatus.DRAFT)
    assert client.post("/api/orders", headers=headers(me),
                       json={"offer_id": draft, "request_id": "req-order-0003"}).status_code == 404
    assert len(broker.published) == 1


def test_an_order_made_while_redis_is_away_is_handed_over_later(client, broker):
    """The hand-over is recorded with the request's transaction; only its publish failed, so the
    answer stands and the sweeper (maintenance.resend_handovers) publishes it."""
    offer = make_offer(make_business())
    me = make_user()
    broker.down = True
    answer = client.post("/api/orders", headers=headers(me), json={"offer_id": offer, "request_id": "req-order-0009"})
    assert answer.status_code == 202, answer.text
    marks.flush()
    with session_scope() as session:
        (row,) = session.scalars(sa.select(Handover)).all()
        assert (row.task_name, row.args, row.sent_at) == ("reservations.place_order",
                                                         [offer, me, 1, f"app:{me}:req-order-0009"], None)


def test_my_orders_show_the_pay_link_and_only_my_pickup_pass(client, db):
    offer = make_offer(make_business())
    me, someone = make_user(), make_user()
    with session_scope() as session:
        held = reservations.reserve(session.connection(), offer, me, 1, hold_minutes=10).order_id
        paid = reservations.reserve(session.connection(), offer, someone, 1, hold_minutes=10).order_id
    with session_scope() as session:
        session.get(Order, held).checkout_url = "https://checkout.example/pay/1"
        reservations.confirm_sale(session.connection(), paid, 350, "EUR", "pi_test_paid")
    mine = client.get("/api/orders", headers=headers(me)).json()["current"]
    assert [(o["id"], o["checkout_url"], o["pickup_code"]) for o in mine] == [
        (held, "https://checkout.example/pay/1", None)]
    theirs = client.get("/api/orders", headers=headers(someone)).json()["current"][0]
    assert theirs["pickup_code"] and theirs["qr_url"] == f"/api/orders/{paid}/qr.png"
    png = client.get(theirs["qr_url"], headers=headers(someone))
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert client.get(theirs["qr_url"], headers=headers(me)).status_code == 404


# --------------------------------------------------------------------------- businesses and admins


def test_a_business_sees_and_changes_only_its_own(client, broker):
    mine, theirs = make_business(name="Mine"), make_business(name="Theirs")
    with session_scope() as session:
        from models import Business
        me, other = session.get(Business, mine).owner_id, session.get(Business, theirs).owner_id
    my_offer, their_offer = make_offer(mine, "My bag", **OPEN_NOW), make_offer(theirs, "Their bag")
    customer = make_user()

    assert client.get("/api/business/today", headers=headers(customer)).status_code == 403
    today = client.get("/api/business/today", headers=headers(me)).json()
    assert [o["id"] for o in today["offers"]] == [my_offer]
    for action in ("pause", "resume"):
        refused = client.post(f"/api/business/offers/{their_offer}/{action}", headers=headers(me),
                              json={"request_id": f"req-{action}-0001"})
        assert refused.status_code == 404
    paused = client.post(f"/api/business/offers/{my_offer}/pause", headers=headers(me),
                         json={"request_id": "req-pause-0002"})
    assert paused.status_code == 200 and paused.json()["status"] == "paused"
    again = client.post(f"/api/business/offers/{my_offer}/pause", headers=headers(me),
                        json={"request_id": "req-pause-0003"})
    assert again.status_code == 409
    assert broker.published == [("notifications.tell_app_action", ["pause", me, my_offer, "req-pause-0002"])]

    # A pickup code of another business's order confirms nothing and tells nothing.
    with session_scope() as session:
        order_id = reservations.reserve(session.connection(), their_offer, customer, 1, hold_minutes=10).order_id
    with session_scope() as session:
        code = reservations.confirm_sale(session.connection(), order_id, 350, "EUR", "pi_test_pick").pickup_code
    assert client.post("/api/business/pickups", headers=headers(me),
                       json={"code": code, "request_id": "req-pick-0001"}).json()["outcome"] == "not_found"
    confirmed = client.post("/api/business/pickups", headers=headers(other),
                            json={"code": code.lower(), "request_id": "req-pick-0002"}).json()
    assert confirmed["outcome"] == "collected" and confirmed["order"]["id"] == order_id
    with session_scope() as session:
        assert session.get(Order, order_id).status == OrderStatus.COLLECTED
    assert broker.published[-1] == ("notifications.tell_app_action", ["collected", other, order_id, "req-pick-0002"])


def test_admin_endpoints_answer_admins_only(client, broker):
    pending = make_business(name="Neu", status=BusinessStatus.PENDING)
    make_user(ADMIN)
    customer = make_user()
    for method, path in (("get", "/api/admin/businesses/pending"), ("post", f"/api/admin/businesses/{pending}/verify")):
        refused = getattr(client, method)(path, headers=headers(customer), **(
            {"json": {"request_id": "req-verify-0001"}} if method == "post" else {}))
        assert refused.status_code == 403 and refused.json()["error"] == "not_admin"
    listed = client.get("/api/admin/businesses/pending", headers=headers(ADMIN)).json()["businesses"]
    assert [b["id"] for b in listed] == [pending]
    verified = client.post(f"/api/admin/businesses/{pending}/verify", headers=headers(ADMIN),
                           json={"request_id": "req-verify-0002"})
    assert verified.status_code == 200 and verified.json()["status"] == "verified"
    assert client.post(f"/api/admin/businesses/{pending}/verify", headers=headers(ADMIN),
                       json={"request_id": "req-verify-0003"}).status_code == 409
    assert broker.published == [("notifications.tell_app_action", ["verified", ADMIN, pending, "req-verify-0002"])]


def test_what_is_done_in_the_app_is_told_in_the_chat(db):
    """The task the app hands over records the chat's messages (the worker sends them)."""
    from chat import app_actions

    business = make_business(status=BusinessStatus.PENDING)
    make_user(ADMIN, language="de")
    with session_scope() as session:
        assert app_actions.tell(session, "verified", ADMIN, business, "req-verify-0009")
    with session_scope() as session:
        sent = {row.chat_id: row.payload["text"] for row in session.scalars(sa.select(Notification))}
    assert "ist verifiziert" in sent[ADMIN] and len(sent) == 2


# --------------------------------------------------------------------------- fuzzing


def openapi_filters() -> list[str]:
    """The query parameters the document gives GET /api/deals."""
    return [p["name"] for p in openapi.document()["paths"]["/api/deals"]["get"]["parameters"]]


# Values a filter takes, so the fuzzer also reaches the queries (not only the refusals).
FILTER_VALUES = ["bakery", "vegan", "vegan,halal", "nuts,gluten", "now", "tonight", "tomorrow", "5", "25", "500",
                 "1000", "soup", "52.52", "13.40", "%", "_", "\\", "bakery,bakery", ","]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/deals", "/api/deals/1", "/api/orders", "/api/business/today",
                             "/api/admin/businesses/pending", "/api/deals/99999999999999999999999",
                             "/api/deals/999999999999/photo.jpg"]),
       query=st.lists(st.tuples(st.sampled_from(["lat", "lon", "page", "x", "lat[]", "", *openapi_filters()]),
                                st.one_of(st.text(max_size=30), st.floats().map(str), st.integers().map(str),
                                          st.sampled_from(FILTER_VALUES))), max_size=6))
def test_a_fuzzed_query_string_never_gives_a_server_error(client, path, query):
    answer = client.get(path + "?" + urlencode(query), headers=headers(9_100_000_002))
    assert answer.status_code < 500, answer.text
    assert answer.headers["content-type"].startswith(("application/json", "image/png"))


@pytest.fixture
def admin_with_a_business(db) -> int:
    """The caller of the fuzzed bodies passes every role check, so the bodies reach their parsing."""
    return make_business(owner_id=ADMIN)


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/orders", "/api/business/pickups", "/api/business/offers/1/pause",
                             "/api/admin/businesses/1/verify"]),
       body=st.one_of(_JSON, st.fixed_dictionaries({"offer_id": _JSON, "quantity": _JSON, "code": _JSON,
                                                     "request_id": st.text(max_size=70)})))
def test_a_fuzzed_body_never_gives_a_server_error(client, broker, admin_with_a_business, path, body):
    answer = client.post(path, headers=headers(ADMIN), content=json.dumps(body))
    assert answer.status_code < 500, answer.text
    assert broker.published == []
