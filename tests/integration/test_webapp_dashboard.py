"""The business dashboard's API against real Postgres: an offer made in the app goes through the
rules of /newoffer (a refusal names the field, in the caller's language, and is a 4xx) and its photo
to the same images task, by name; a photo that can't be used is refused at once; a business sees,
changes and reads the earnings of only its own; the pickup pass's QR text confirms a pickup as its
code does; admins see the figures of /admin; and the chat is told of each change."""

from __future__ import annotations

import csv
import io
import json
import re
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from core.db import session_scope
from domain import photos, reservations
from domain.money import format_money
from domain.payments import earnings
from domain.pickup_pass import pickup_link
from models import (
    Business,
    BusinessStatus,
    Notification,
    Offer,
    OfferStatus,
    Order,
    OrderStatus,
    PhotoStatus,
    PhotoUpload,
)
from sandbox.demo import food_photo
from tests.factories import make_business, make_offer, make_user
from tests.integration.test_earnings import sell
from tests.integration.test_webapp_api import ADMIN, broker, client, headers

__all__ = ["broker", "client"]  # the fixtures, shared with the API's other tests
pytestmark = pytest.mark.usefixtures("db")

PHOTO = food_photo("pastries")


def owner_of(business_id: int) -> int:
    with session_scope() as session:
        return session.get(Business, business_id).owner_id


def upload(client, owner: int, content: bytes = PHOTO, **kwargs):
    return client.post("/api/business/photos", headers={**headers(owner, **kwargs), "Content-Type": "image/jpeg"},
                       content=content)


def new_offer(**changes) -> dict:
    return {"title": "Surprise bag of pastries", "description": "Croissants and rolls", "price": "4,50",
            "original_price": "12", "quantity": "6", "day": "tomorrow", "window": "18:00-19:30",
            "category": "bakery", "diet": ["vegetarian"], "allergens": ["gluten", "milk", "nonsense"],
            "request_id": "req-create-0001", **changes}


def png(width: int, height: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 120, 40)).save(out, "PNG")
    return out.getvalue()


# --------------------------------------------------------------------------- a new offer


def test_an_offer_made_in_the_app_is_a_newoffer_draft_whose_photo_goes_to_the_images_task(client, broker):
    business = make_business()
    owner = owner_of(business)
    uploaded = upload(client, owner)
    assert uploaded.status_code == 201, uploaded.text
    photo = uploaded.json()["photo"]
    assert re.fullmatch(r"upload:\d+", photo)

    made = client.post("/api/business/offers", headers=headers(owner), json=new_offer(photo=photo))
    assert made.status_code == 201, made.text
    offer = made.json()
    assert (offer["status"], offer["photo"]["status"], offer["is_draft"], offer["can_publish"]) == (
        "draft", "processing", True, False)
    assert (offer["price"]["minor"], offer["original_price"]["minor"], offer["quantity"]) == (450, 1200, 6)
    assert (offer["category"], offer["diet"], offer["allergens"]) == ("bakery", ["vegetarian"], ["gluten", "milk"])
    with session_scope() as session:
        row = session.get(Offer, offer["id"])
        assert (row.business_id, row.photo_source_file_id, row.status) == (business, photo, OfferStatus.DRAFT)
        assert photos.uploaded(session, photo) == PHOTO
        start = row.pickup_start.astimezone(ZoneInfo(row.business.timezone))
        assert (start.date() - datetime.now(start.tzinfo).date()).days == 1 and start.strftime("%H:%M") == "18:00"
    assert broker.published == [("images.process_offer_photo", [offer["id"], photo]),
                                ("notifications.tell_app_action", ["created", owner, offer["id"], "req-create-0001"])]

    # The same request again (a lost answer, a second tap) makes no second offer.
    again = client.post("/api/business/offers", headers=headers(owner), json=new_offer(photo=photo))
    assert again.status_code == 200 and again.json()["id"] == offer["id"]
    assert len(broker.published) == 2
    shown = client.get(f"/api/business/offers/{offer['id']}", headers=headers(owner)).json()
    assert shown["title"] == "Surprise bag of pastries" and shown["photo"]["card_url"] is None


@pytest.mark.parametrize(("changes", "refusal"), [
    ({"title": "ab"}, ("title", "title_short", "mindestens 3 Zeichen")),
    ({"price": "vier"}, ("price", "money_format", "Betrag")),
    ({"price": "-3"}, ("price", "money_not_positive", "mehr als null")),
    ({"original_price": "4.50"}, ("original_price", "not_a_discount", "Originalpreis")),
    ({"quantity": "100000"}, ("quantity", "quantity_range", "zwischen 1 und 500")),
    ({"day": "today", "window": "00:00-00:10"}, ("window", "window_past", "vorbei")),
    ({"window": "19:00-18:00"}, ("window", "window_order", "beginnen")),
    ({"day": "yesterday"}, ("window", "window_format", "Abholung")),
])
def test_what_newoffer_refuses_the_app_refuses_naming_the_field_in_the_callers_language(client, broker, changes,
                                                                                       refusal):
    field, rule, words = refusal
    owner = owner_of(make_business(make_user(language="de")))
    photo = upload(client, owner).json()["photo"]
    refused = client.post("/api/business/offers", headers=headers(owner), json=new_offer(photo=photo, **changes))
    assert refused.status_code == 422, refused.text
    answer = refused.json()
    assert (answer["error"], answer["field"], answer["rule"]) == ("invalid", field, rule)
    assert words in answer["message"], answer["message"]
    assert broker.published == []
    with session_scope() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Offer)) == 0


def test_a_photo_that_cant_be_used_is_refused_at_once_in_the_callers_language(client):
    owner = owner_of(make_business(make_user(language="de")))
    for content, status, rule in [
        (b"", 422, "empty_file"),
        (b"%PDF-1.7 this is a document, not a photo", 422, "not_an_image"),
        (b"GIF89a" + bytes(200), 422, "unsupported_format"),
        (png(120, 90), 422, "too_small"),
        (png(2000, 300), 422, "bad_aspect_ratio"),
        (b"\xff\xd8\xff" + bytes(20 * 1024 * 1024), 413, "too_large_file"),
    ]:
        refused = upload(client, owner, content)
        assert refused.status_code == status, (rule, refused.text)
        answer = refused.json()
        assert (answer["error"], answer["rule"], answer["field"]) == ("bad_photo", rule, "photo")
        assert "Bitte" in refused.json()["message"]
    with session_scope() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(PhotoUpload)) == 0


def test_only_a_verified_business_makes_offers_and_only_with_its_own_photo(client, broker):
    customer = make_user()
    assert upload(client, customer).status_code == 403
    pending = owner_of(make_business(name="Neu", status=BusinessStatus.PENDING))
    refused = upload(client, pending)
    assert refused.status_code == 409 and refused.json()["error"] == "not_verified"
    mine, theirs = owner_of(make_business(name="Mine")), owner_of(make_business(name="Theirs"))
    their_photo = upload(client, theirs).json()["photo"]
    stolen = client.post("/api/business/offers", headers=headers(mine), json=new_offer(photo=their_photo))
    assert stolen.status_code == 422 and stolen.json()["error"] == "photo_gone"
    missing = client.post("/api/business/offers", headers=headers(mine), json=new_offer())
    assert missing.status_code == 422 and (missing.json()["error"], missing.json()["field"]) == ("no_photo", "photo")
    assert client.post("/api/business/offers", headers=headers(customer),
                       json=new_offer(photo=their_photo)).status_code == 403
    assert broker.published == []


def test_uploads_are_limited_per_hour(client):
    business = make_business()
    with session_scope() as session:
        session.add_all([PhotoUpload(business_id=business, content=b"x") for _ in range(photos.UPLOADS_PER_HOUR)])
    refused = upload(client, owner_of(business))
    assert refused.status_code == 429 and refused.json()["error"] == "too_many_uploads"


def test_an_upload_no_offer_names_is_forgotten_after_a_day(db):
    business = make_business()
    now = datetime.now(UTC)
    with session_scope() as session:
        business_row = session.get(Business, business)
        used, unused, fresh = (photos.store_upload(session, business_row, PHOTO, now) for _ in range(3))
        session.add(Offer(business_id=business, title="Bag", description="", price_minor=300,
                          original_price_minor=600, currency="EUR", quantity=3, pickup_start=now,
                          pickup_end=now + timedelta(hours=1), photo_source_file_id=used))
        session.execute(sa.update(PhotoUpload).where(PhotoUpload.id != int(fresh.split(":")[1]))
                        .values(created_at=now - timedelta(days=2)))
    with session_scope() as session:
        assert photos.forget_unused_uploads(session, now) == 1
        assert [photos.uploaded(session, name) is not None for name in (used, unused, fresh)] == [True, False, True]


# --------------------------------------------------------------------------- one offer: publish, edit, its card


def draft_with_card(business: int) -> int:
    """A draft whose photo the images task has made into a card."""
    return make_offer(business, "Bread box", status=OfferStatus.DRAFT, photo_status=PhotoStatus.READY,
                      photo_source_file_id="AgACAgIAAxkBAAI-source", photo_card_file_id="AgACAgIAAxkBAAI-card")


def test_a_draft_is_published_discarded_or_edited_as_in_myoffers(client, broker):
    business = make_business()
    owner = owner_of(business)
    waiting = make_offer(business, status=OfferStatus.DRAFT, photo_status=PhotoStatus.PROCESSING)
    not_ready = client.post(f"/api/business/offers/{waiting}/publish", headers=headers(owner),
                            json={"request_id": "req-publish-0001"})
    assert not_ready.status_code == 409 and not_ready.json()["error"] == "photo_not_ready"

    ready = draft_with_card(business)
    listed = client.get(f"/api/business/offers/{ready}", headers=headers(owner)).json()
    assert listed["can_publish"] and listed["photo"]["card_url"].startswith(f"/api/business/offers/{ready}/card.jpg?v=")
    published = client.post(f"/api/business/offers/{ready}/publish", headers=headers(owner),
                            json={"request_id": "req-publish-0002"})
    assert published.status_code == 200 and published.json()["status"] == "active"
    again = client.post(f"/api/business/offers/{ready}/publish", headers=headers(owner),
                        json={"request_id": "req-publish-0003"})
    assert again.status_code == 409 and again.json()["error"] == "not_draft"

    # Edited as /myoffers edits: a new price remakes the card from the offer's photo.
    edited = client.post(f"/api/business/offers/{ready}/edit", headers=headers(owner),
                         json={"price": "2.90", "quantity": 8, "category": "bakery", "diet": ["vegan"], "allergens": [],
                               "request_id": "req-edit-0001"})
    assert edited.status_code == 200, edited.text
    assert (edited.json()["price"]["minor"], edited.json()["quantity"], edited.json()["diet"]) == (290, 8, ["vegan"])
    assert edited.json()["photo"]["status"] == "processing"
    not_a_discount = client.post(f"/api/business/offers/{ready}/edit", headers=headers(owner),
                                 json={"price": "9", "request_id": "req-edit-0002"})
    assert not_a_discount.status_code == 422 and not_a_discount.json()["field"] == "price"
    assert client.post(f"/api/business/offers/{ready}/edit", headers=headers(owner),
                       json={"request_id": "req-edit-0003"}).status_code == 422
    only_allergens = client.post(f"/api/business/offers/{ready}/edit", headers=headers(owner),
                                 json={"allergens": ["eggs"], "request_id": "req-edit-0005"}).json()
    assert (only_allergens["category"], only_allergens["diet"], only_allergens["allergens"]) == (
        "bakery", ["vegan"], ["eggs"])  # what is not given stays as it is
    assert client.post(f"/api/business/offers/{waiting}/edit", headers=headers(owner),
                       json={"price": "1", "request_id": "req-edit-0004"}).status_code == 409  # a draft's price

    discarded = client.post(f"/api/business/offers/{waiting}/discard", headers=headers(owner),
                            json={"request_id": "req-discard-0001"})
    assert discarded.status_code == 200
    with session_scope() as session:
        assert session.get(Offer, waiting) is None
        assert session.get(Offer, ready).price_minor == 290
    assert broker.published == [
        ("notifications.tell_app_action", ["published", owner, ready, "req-publish-0002"]),
        ("images.process_offer_photo", [ready, "AgACAgIAAxkBAAI-source"]),
        ("notifications.tell_app_action", ["edited", owner, ready, "req-edit-0001"]),
        ("notifications.tell_app_action", ["edited", owner, ready, "req-edit-0005"]),
        ("notifications.tell_app_action", ["discarded", owner, waiting, "req-discard-0001"]),
    ]


def test_an_offer_cancelled_in_the_app_releases_refunds_and_tells_as_the_chats_cancel_does(client, broker):
    """The dashboard's "🗑 Cancel offer" is checked by the API and handed to a worker, which calls the
    chat's domain function: the reservation released and its Checkout closed, the paid order called
    off and refunded, both customers told in their chat, and the owner told with the chat's note."""
    from chat import app_actions

    business = make_business(make_user(language="de"))
    owner = owner_of(business)
    offer = make_offer(business, quantity=5)
    payer, holder = make_user(), make_user()
    with session_scope() as session:
        paid = reservations.reserve(session.connection(), offer, payer, 2, hold_minutes=10).order_id
    with session_scope() as session:
        reservations.confirm_sale(session.connection(), paid, 700, "EUR", "pi_test_cancel_app")
    with session_scope() as session:
        held = reservations.reserve(session.connection(), offer, holder, 1, hold_minutes=10).order_id
    assert client.get(f"/api/business/offers/{offer}", headers=headers(owner)).json()["can_cancel"] is True

    asked = client.post(f"/api/business/offers/{offer}/cancel", headers=headers(owner),
                        json={"request_id": "req-cancel-0001"})
    assert asked.status_code == 202, asked.text
    assert (asked.json()["status"], asked.json()["cancelling"]) == ("active", True)
    assert broker.published == [("payments.cancel_offer", [owner, offer, "req-cancel-0001"])]

    # What the payments worker then does (tasks/payments.py: cancel_offer).
    broker.published.clear()
    with session_scope() as session:
        assert app_actions.cancel_offer(session, owner, offer, "req-cancel-0001")
    with session_scope() as session:  # a redelivery: nothing again
        assert not app_actions.cancel_offer(session, owner, offer, "req-cancel-0001")
    with session_scope() as session:
        assert session.get(Offer, offer).status == OfferStatus.CANCELLED
        assert session.get(Order, paid).status == OrderStatus.CANCELLED
        assert session.get(Order, held).status != OrderStatus.HELD
        told = {row.idempotency_key: (row.chat_id, row.payload["text"]) for row in session.scalars(
            sa.select(Notification).where(Notification.chat_id.in_([payer, holder, owner])))}
    assert told[f"order:{paid}:called_off"][0] == payer and "will be refunded" in told[f"order:{paid}:called_off"][1]
    assert told[f"order:{held}:called_off"][0] == holder
    assert told[f"app:{owner}:req-cancel-0001:cancel"] == (owner, (
        "🗑 Angebot abgesagt. 1 Reservierung freigegeben. 1 bezahlte Bestellung wird erstattet. (in der App)"))
    handed_over = sorted(task for task in broker.published if task[0] != "notifications.deliver_in_order")
    assert handed_over == [("payments.expire_checkout", [held]), ("payments.refund_order", [paid])]

    shown = client.get(f"/api/business/offers/{offer}", headers=headers(owner)).json()
    assert (shown["status"], shown["can_cancel"], shown["can_pause"]) == ("cancelled", False, False)
    again = client.post(f"/api/business/offers/{offer}/cancel", headers=headers(owner),
                        json={"request_id": "req-cancel-0002"})
    assert again.status_code == 409 and again.json()["error"] == "wrong_state"


def test_a_photo_the_images_task_could_not_use_is_explained_and_can_be_replaced(client, broker):
    business = make_business(make_user(language="de"))
    owner = owner_of(business)
    draft = make_offer(business, status=OfferStatus.DRAFT, photo_status=PhotoStatus.FAILED, photo_error="truncated",
                       photo_source_file_id="upload:1")
    shown = client.get(f"/api/business/offers/{draft}", headers=headers(owner)).json()
    assert (shown["photo"]["status"], shown["can_publish"]) == ("failed", False)
    assert shown["photo"]["problem"] == "Dieses Foto scheint abgeschnitten. Bitte wähle es noch einmal."
    photo = upload(client, owner).json()["photo"]
    replaced = client.post(f"/api/business/offers/{draft}/photo", headers=headers(owner),
                           json={"photo": photo, "request_id": "req-photo-0001"})
    assert replaced.status_code == 200 and replaced.json()["photo"] == {"status": "processing", "problem": None,
                                                                        "card_url": None}
    assert broker.published == [("images.process_offer_photo", [draft, photo])]


def test_another_businesss_offer_looks_missing_whatever_is_asked(client, broker):
    mine, theirs = make_business(name="Mine"), make_business(name="Theirs")
    me = owner_of(mine)
    their_draft = draft_with_card(theirs)
    my_photo = upload(client, me).json()["photo"]
    for method, path, body in [
        ("get", f"/api/business/offers/{their_draft}", None),
        ("get", f"/api/business/offers/{their_draft}/card.jpg", None),
        ("post", f"/api/business/offers/{their_draft}/photo", {"photo": my_photo, "request_id": "req-theirs-0001"}),
        ("post", f"/api/business/offers/{their_draft}/publish", {"request_id": "req-theirs-0002"}),
        ("post", f"/api/business/offers/{their_draft}/discard", {"request_id": "req-theirs-0003"}),
        ("post", f"/api/business/offers/{their_draft}/edit", {"quantity": 9, "request_id": "req-theirs-0004"}),
        ("post", f"/api/business/offers/{their_draft}/cancel", {"request_id": "req-theirs-0005"}),
    ]:
        answer = getattr(client, method)(path, headers=headers(me), **({"json": body} if body else {}))
        assert answer.status_code == 404, (path, answer.text)
        assert answer.json()["error"] == "not_found"
    customer = make_user()
    for path in ("/api/business/earnings", "/api/business/earnings/chart.png", "/api/business/earnings/statement.csv",
                 f"/api/business/offers/{their_draft}"):
        refused = client.get(path, headers=headers(customer))
        assert refused.status_code == 403 and refused.json()["error"] == "not_business"
    with session_scope() as session:
        theirs_now = session.get(Offer, their_draft)
        assert (theirs_now.status, theirs_now.photo_source_file_id) == (OfferStatus.DRAFT, "AgACAgIAAxkBAAI-source")
    assert broker.published == []


# --------------------------------------------------------------------------- pickups by the QR code, earnings, admin


def test_the_text_of_a_pickup_pass_confirms_the_pickup_as_its_code_does(client, broker):
    business = make_business()
    owner = owner_of(business)
    offer = make_offer(business)
    customer = make_user()
    with session_scope() as session:
        order_id = reservations.reserve(session.connection(), offer, customer, 1, hold_minutes=10).order_id
    with session_scope() as session:
        code = reservations.confirm_sale(session.connection(), order_id, 350, "EUR", "pi_test_scan").pickup_code
    for scanned in ("https://example.com/menu", pickup_link("another_bot", code), "WIFI:S:Cafe;T:WPA;P:secret;;"):
        refused = client.post("/api/business/pickups", headers=headers(owner),
                              json={"scanned": scanned, "request_id": "req-scan-0001"})
        assert refused.status_code == 422 and refused.json()["error"] == "bad_scan", scanned
    confirmed = client.post("/api/business/pickups", headers=headers(owner),
                            json={"scanned": pickup_link("surplus_sandbox_bot", code), "request_id": "req-scan-0002"})
    assert confirmed.status_code == 200 and confirmed.json()["outcome"] == "collected"
    with session_scope() as session:
        assert session.get(Order, order_id).status == OrderStatus.COLLECTED
    assert broker.published == [("notifications.tell_app_action", ["collected", owner, order_id, "req-scan-0002"])]


def test_the_earnings_are_the_chats_figures_with_its_chart_and_the_statement(client):
    business = make_business(make_user(language="de"))
    owner = owner_of(business)
    offer = make_offer(business, quantity=20)
    sell(offer, 2, fee=70)
    sell(offer, 1, fee=35, refund=True)
    with session_scope() as session:
        statement = earnings.statement(session, owner, datetime.now(UTC))
    answer = client.get("/api/business/earnings", headers=headers(owner)).json()
    for period, figures in (("week", statement.week), ("month", statement.month)):
        shown = answer[period]
        assert [shown[name]["minor"] for name in ("gross", "refunds", "fee", "net", "paid_out")] == [
            figures.gross, figures.refunds, figures.fee, figures.net, figures.paid_out]
    assert answer["week"]["gross"]["minor"] == 1050 and answer["week"]["net"]["text"] == format_money(630, "EUR", "de")
    chart = client.get(answer["chart_url"], headers=headers(owner))
    assert chart.headers["content-type"] == "image/png" and Image.open(io.BytesIO(chart.content)).size == (960, 540)
    exported = client.get(answer["csv_url"], headers=headers(owner))
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(exported.content.decode("utf-8-sig"))))
    assert rows[0][:2] == ["date_utc", "kind"] and {row[1] for row in rows[1:]} >= {"payment", "refund"}


def test_admins_see_the_figures_of_admin_and_nobody_else_does(client):
    make_business(name="Wartet", status=BusinessStatus.PENDING)
    make_offer(make_business())
    make_user(ADMIN)
    refused = client.get("/api/admin/stats", headers=headers(make_user()))
    assert refused.status_code == 403 and refused.json()["error"] == "not_admin"
    figures = client.get("/api/admin/stats", headers=headers(ADMIN)).json()
    assert (figures["active_offers"], figures["pending_businesses"], figures["orders_today"]) == (1, 1, 0)
    assert set(figures["queues"]) >= {"updates", "reservations", "images"}


# --------------------------------------------------------------------------- the chat is told


def test_what_the_dashboard_does_is_told_in_the_chat(db):
    """The task the app hands over records the chat's messages (the worker sends them)."""
    from chat import app_actions

    business = make_business()
    owner = owner_of(business)
    offer = draft_with_card(business)
    with session_scope() as session:
        assert app_actions.tell(session, "created", owner, offer, "req-told-0001")
        session.get(Offer, offer).status = OfferStatus.ACTIVE
        assert app_actions.tell(session, "published", owner, offer, "req-told-0002")
        assert app_actions.tell(session, "edited", owner, offer, "req-told-0003")
        assert app_actions.tell(session, "discarded", owner, offer, "req-told-0004")
        assert not app_actions.tell(session, "edited", owner, offer + 1000, "req-told-0005")
        expired = make_offer(business, "Soup pot", status=OfferStatus.EXPIRED)
        assert not app_actions.cancel_offer(session, owner, expired, "req-told-0006")  # it ended meanwhile
    with session_scope() as session:
        told = [row.payload["text"] for row in session.scalars(sa.select(Notification).order_by(Notification.id))]
    assert len(told) == 5
    assert "was created in the app" in told[0] and "is published (in the app)" in told[1]
    assert "changed in the app: €3.50, 5 of 5 left" in told[2] and "deleted (in the app)" in told[3]
    assert told[4] == "This offer can't be cancelled now."


# --------------------------------------------------------------------------- fuzzing


_JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=10), inner,
                                                                                max_size=3), max_leaves=8)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/api/business/offers", "/api/business/offers/1/edit", "/api/business/offers/1/photo",
                             "/api/business/offers/1/publish", "/api/business/pickups"]),
       body=st.one_of(_JSON, st.fixed_dictionaries({
           **dict.fromkeys(("title", "price", "original_price", "quantity", "day", "window", "category", "diet",
                            "allergens", "photo", "scanned"), _JSON), "request_id": st.text(max_size=70)})))
def test_a_fuzzed_dashboard_body_never_gives_a_server_error(client, broker, path, body):
    owner = ADMIN
    with session_scope() as session:
        if session.scalar(sa.select(Business.id).where(Business.owner_id == owner)) is None:
            make_business(owner_id=owner)
    answer = client.post(path, headers=headers(owner), content=json.dumps(body))
    assert answer.status_code < 500, answer.text
    assert broker.published == []
