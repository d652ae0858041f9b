"""The business side, as people would use it through the Telegram fake and a real worker: a business
registers, an admin verifies it from the notification, the business posts an offer with a real
photo, sees the deal card and publishes it; bad input gets a clear re-ask; nobody can act on what
isn't theirs by forging button data."""

from __future__ import annotations

import io
import random
import time
from datetime import timedelta

import httpx
import sqlalchemy as sa
from PIL import Image

from core import db
from models import (
    AuditEntry,
    Business,
    BusinessStatus,
    Follow,
    Notification,
    NotificationStatus,
    Offer,
    OfferStatus,
    Order,
    OrderStatus,
    PhotoStatus,
    ProcessedUpdate,
)
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer, make_user

ADMIN = 4242  # ADMIN_IDS of the e2e worker (tests/e2e/conftest.py)


# --------------------------------------------------------------------------- helpers


def buttons(message: dict) -> dict[str, str]:
    markup = message.get("reply_markup") or {}
    return {b["text"]: b.get("callback_data") for row in markup.get("inline_keyboard", []) for b in row}


def datas(message: dict) -> list[str]:
    return [d for d in buttons(message).values() if d]


def text_of(message: dict) -> str:
    """A message's text or caption, read without the direction isolates around user text."""
    return (message.get("text") or message.get("caption") or "").replace("\u2068", "").replace("\u2069", "")


def say(stack, user: int, text: str) -> list[dict]:
    sent = stack.telegram.send_text(user, text)
    return answers(stack, user, sent["update_id"])


def tap(stack, user: int, message: dict, callback_data: str, forge: bool = False) -> list[dict]:
    pressed = stack.telegram.press_button(user, message["message_id"], callback_data, forge=forge)
    return answers(stack, user, pressed["update_id"], message["message_id"])


def answers(stack, user: int, update_id: int, pressed_id: int | None = None) -> list[dict]:
    """The bot's answers to one update (as they are now in the chat), once all are sent: the
    outbox rows of that update say which messages they became."""
    def sent_ids():
        with db.session_scope() as session:
            if session.get(ProcessedUpdate, update_id) is None:
                return None
            notes = session.execute(
                sa.select(Notification.status, Notification.telegram_message_id)
                .where(Notification.idempotency_key.startswith(f"update:{update_id}:"))
                .where(Notification.chat_id == user).order_by(Notification.id)
            ).all()
        if not notes or any(status == NotificationStatus.PENDING for status, _id in notes):
            return None
        # An edit that changed nothing ("message is not modified") left the pressed message as it was.
        return [message_id or pressed_id for _status, message_id in notes]

    ids = wait_for(sent_ids)
    by_id = {m["message_id"]: m for m in stack.telegram.messages(user)}
    return [by_id[i] for i in ids if i in by_id]


def expect(stack, user: int, after_seq: int, needle: str) -> dict:
    """Wait for the bot's message containing `needle` sent (or edited) after `after_seq`."""
    def find():
        for message in reversed(bot_messages(stack, user)):
            if message["seq"] > after_seq and needle in text_of(message):
                return message
        return None

    return wait_for(find)


def last(messages: list[dict]) -> dict:
    return messages[-1]


def all_text(messages: list[dict]) -> str:
    return "\n".join(text_of(m) for m in messages)


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)  # each step's answer comes in about 0.1 s: a coarser poll adds half its interval
    raise AssertionError("condition not reached in time")


def committed_card(offer_id: int) -> Offer:
    """The offer once its photo task has committed the deal card: the preview reaches the chat a
    moment before that commit (the card's file id comes from sending it)."""
    return wait_for(lambda: (o := get(Offer, offer_id)).photo_status == PhotoStatus.READY
                    and o.photo_card_file_id and o)


def bot_messages(stack, user: int) -> list[dict]:
    return [m for m in stack.telegram.messages(user) if m.get("from", {}).get("is_bot")]


def message_with(stack, user: int, needle: str, data_prefix: str | None = None) -> dict:
    def find():
        for message in reversed(bot_messages(stack, user)):
            if needle in text_of(message) and (data_prefix is None or any(
                    d.startswith(data_prefix) for d in datas(message))):
                return message
        return None

    return wait_for(find)


def jpeg(width: int = 640, height: int = 480) -> bytes:
    image = Image.new("RGB", (width, height))
    pixels = image.load()
    for x in range(0, width, 4):
        for y in range(0, height, 4):
            pixels[x, y] = (x * 255 // width, y * 255 // height, 120)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def business_of(owner: int) -> Business | None:
    with db.session_scope() as session:
        return session.scalar(sa.select(Business).where(Business.owner_id == owner))


def offers_of(business_id: int) -> list[Offer]:
    with db.session_scope() as session:
        return list(session.scalars(sa.select(Offer).where(Offer.business_id == business_id).order_by(Offer.id)))


def get(model, key):
    with db.session_scope() as session:
        return session.get(model, key, populate_existing=True)


def admin(stack) -> int:
    stack.telegram.create_user(ADMIN, "Admin")
    return ADMIN


def new_offer_until_photo(stack, owner: int, day: str = "tomorrow") -> list[dict]:
    say(stack, owner, "/newoffer")
    say(stack, owner, "Surprise bag")
    question = last(say(stack, owner, "Croissants and rolls from today"))
    assert "What do customers pay" in text_of(question)
    say(stack, owner, "4,50")
    say(stack, owner, "9 €")
    days = last(say(stack, owner, "5"))
    window = last(tap(stack, owner, days, f"flow:pick:day:{day}"))
    assert "18:00-19:30" in text_of(window)
    return skip_tags(stack, owner, last(say(stack, owner, "18:00-19:30")))


def skip_tags(stack, owner: int, category: dict) -> list[dict]:
    """Past the optional questions about what the offer is: no category, no diet, no allergens."""
    assert "Which category fits best" in text_of(category)
    diet = last(tap(stack, owner, category, "flow:pick:category:none"))
    allergens = last(tap(stack, owner, diet, "flow:pick:diet:done"))
    return tap(stack, owner, allergens, "flow:pick:allergens:done")


# --------------------------------------------------------------------------- the whole journey


def test_register_verify_create_with_photo_and_publish(stack):
    owner, follower = new_user_id(), new_user_id()
    admin_id = admin(stack)
    name = f"Bakery {owner}"

    # Registration, each step typed, a bad phone re-asked, the address given as a shared location.
    (hub,) = [m for m in say(stack, owner, "/start") if "biz" in datas(m)]
    replies = tap(stack, owner, hub, "biz")
    assert "Register" in text_of(last(replies)) and "bizreg" in datas(last(replies))
    replies = tap(stack, owner, last(replies), "bizreg")
    assert "What is the name of your business" in text_of(last(replies))
    assert "flow:cancel" in datas(last(replies))
    replies = say(stack, owner, "B")
    assert "too short" in all_text(replies) and "What is the name" in text_of(last(replies))
    sent = stack.telegram.send_text(owner, name)
    share = expect(stack, owner, sent["seq"], "share the shop's location")
    assert share["reply_markup"]["keyboard"][0][0]["request_location"] is True
    expect(stack, owner, sent["seq"], "where do customers pick up")
    sent = stack.telegram.send_location(owner, 52.5200, 13.4050)
    expect(stack, owner, sent["seq"], "Location received")
    expect(stack, owner, sent["seq"], "type the street address")
    replies = say(stack, owner, "Hauptstraße 1, 10115 Berlin")
    assert "phone number" in text_of(last(replies))
    replies = say(stack, owner, "call me maybe")
    assert "doesn't look like a phone number" in all_text(replies) and "phone number" in text_of(last(replies))
    replies = say(stack, owner, "+49 30 1234567")
    assert "pending verification" in text_of(last(replies))
    business = business_of(owner)
    assert business.status == BusinessStatus.PENDING and business.phone == "+49301234567"
    assert (business.latitude, business.longitude) == (52.52, 13.405)
    assert business.address == "Hauptstraße 1, 10115 Berlin"

    # Pending: /newoffer is refused with the status.
    assert "waiting for verification" in text_of(last(say(stack, owner, "/newoffer")))

    # The admin verifies from the button in the notification.
    note = message_with(stack, admin_id, name, f"bizrev:verify:{business.id}")
    assert {f"bizrev:reject:{business.id}", f"bizrev:suspend:{business.id}"} <= set(datas(note))
    replies = tap(stack, admin_id, note, f"bizrev:verify:{business.id}")
    assert "is verified" in text_of(last(replies))
    assert get(Business, business.id).status == BusinessStatus.VERIFIED
    message_with(stack, owner, "is verified!")
    with db.session_scope() as session:
        entry = session.scalar(sa.select(AuditEntry).where(AuditEntry.target == f"business:{business.id}"))
        assert (entry.actor, entry.action, entry.result) == (f"user:{admin_id}", "business.verify", "ok")
        stack.telegram.create_user(follower, "Fan")
        make_user(follower, "Fan")
        session.add(Follow(user_id=follower, business_id=business.id))

    # The offer, step by step, with bad input re-asked on the way.
    replies = say(stack, owner, "/newoffer")
    assert "Give it a short title" in text_of(last(replies))
    say(stack, owner, "Surprise bag")
    replies = tap(stack, owner, last(bot_messages(stack, owner)), "flow:pick:description:skip")
    assert "What do customers pay" in text_of(last(replies))
    for bad, complaint in (("abc", "couldn't read that as a price"), ("-3", "must be more than zero")):
        replies = say(stack, owner, bad)
        assert complaint in all_text(replies) and "What do customers pay" in text_of(last(replies))
    replies = say(stack, owner, "4,50")
    assert "original price" in text_of(last(replies)) and "€4.50" in text_of(last(replies))
    replies = say(stack, owner, "3")
    assert "must be higher than the price" in all_text(replies)
    replies = say(stack, owner, "9 €")
    assert "How many units" in text_of(last(replies))
    replies = say(stack, owner, "0")
    assert "between 1 and 500" in all_text(replies)
    days = last(say(stack, owner, "5"))
    window = last(tap(stack, owner, days, "flow:pick:day:tomorrow"))
    replies = say(stack, owner, "19:30-18:00")
    assert "must start before it ends" in all_text(replies)
    category = last(say(stack, owner, "18:00-19:30"))
    assert window

    # What it is: a category, ticked diets and allergens (tapped twice: unticked), each optional.
    assert "Which category fits best" in text_of(category) and "flow:back" in datas(category)
    diet = last(tap(stack, owner, category, "flow:pick:category:bakery"))
    assert "suitable for any of these diets" in text_of(diet)
    diet = last(tap(stack, owner, diet, "flow:pick:diet:vegan"))
    assert "✅ vegan" in [b["text"] for row in diet["reply_markup"]["inline_keyboard"] for b in row]
    allergens = last(tap(stack, owner, diet, "flow:pick:diet:done"))
    assert "14 allergens" in text_of(allergens)
    for code in ("gluten", "nuts", "sesame", "nuts"):
        allergens = last(tap(stack, owner, allergens, f"flow:pick:allergens:{code}"))
    replies = tap(stack, owner, allergens, "flow:pick:allergens:done")
    assert "send a photo" in text_of(last(replies))

    # The photo: processing, then the deal card as a preview with Publish / Change photo / Cancel.
    sent = stack.telegram.send_photo(owner, jpeg())
    assert "Processing your photo" in all_text(answers(stack, owner, sent["update_id"]))
    (offer,) = offers_of(business.id)
    assert offer.status == OfferStatus.DRAFT
    preview = message_with(stack, owner, "Preview", f"bizoffer:publish:{offer.id}")
    assert preview.get("photo") and "Surprise bag" in preview["caption"] and "€4.50" in preview["caption"]
    assert {f"bizoffer:photo:{offer.id}", f"bizoffer:discard:{offer.id}"} <= set(datas(preview))
    offer = committed_card(offer.id)
    assert offer.photo_card_file_id == preview["photo"][-1]["file_id"]
    assert (offer.price_minor, offer.original_price_minor, offer.quantity) == (450, 900, 5)
    assert offer.pickup_end - offer.pickup_start == timedelta(minutes=90)
    assert (offer.category, offer.diet, offer.allergens) == ("bakery", ["vegan"], ["gluten", "sesame"])
    assert "🥐 Bakery · 🌱 vegan" in preview["caption"] and "⚠️ Contains: gluten, sesame" in preview["caption"]
    uploads = len(stack.telegram.calls("sendPhoto"))

    # Publish: active, published, followers told with the card (no new upload).
    version = offer.version
    replies = tap(stack, owner, preview, f"bizoffer:publish:{offer.id}")
    assert "Published" in all_text(replies)
    assert "Being told now: 1 follower and 0 customers nearby" in all_text(replies)
    offer = get(Offer, offer.id)
    assert offer.status == OfferStatus.ACTIVE and offer.published_at and offer.version == version + 1
    told = message_with(stack, follower, "Surprise bag", f"offer:{offer.id}")
    assert told.get("photo") and buttons(told) == {"View": f"offer:{offer.id}"}
    sent_photos = [c for c in stack.telegram.calls("sendPhoto")[uploads:] if c["params"].get("chat_id") in
                   (follower, str(follower))]
    assert all(c["params"]["photo"] == offer.photo_card_file_id for c in sent_photos)

    # The preview keeps its picture, says it is published, and offers only what still works.
    shown = wait_for(lambda: (m := next(m for m in bot_messages(stack, owner)
                                        if m["message_id"] == preview["message_id"]))
                     and "Published" in text_of(m) and m)
    assert shown["photo"] == preview["photo"] and "Surprise bag" in text_of(shown)
    assert datas(shown) == [f"bizoffer:show:{offer.id}"]

    # A second tap on Publish (an old copy of the preview) changes nothing.
    replies = tap(stack, owner, preview, f"bizoffer:publish:{offer.id}", forge=True)
    assert get(Offer, offer.id).version == version + 1

    # /myoffers lists it with its state and what is left.
    replies = say(stack, owner, "/myoffers")
    assert "Surprise bag" in text_of(last(replies)) and "5 of 5 left" in text_of(last(replies))


def test_a_bad_photo_gets_a_clear_message_and_the_offer_stays_a_draft(stack):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    business_id = make_business(owner, name=f"Cafe {owner}")
    replies = new_offer_until_photo(stack, owner)
    assert "send a photo" in text_of(last(replies))
    noise = random.Random(owner).randbytes(5000)
    sent = stack.telegram.send_document(owner, noise, file_name="photo.jpg", mime_type="image/jpeg")
    assert "Processing" in all_text(answers(stack, owner, sent["update_id"]))
    message = message_with(stack, owner, "not an image")
    assert "send another photo" in text_of(message)
    (offer,) = offers_of(business_id)
    assert offer.status == OfferStatus.DRAFT
    assert (offer.photo_status, offer.photo_error) == (PhotoStatus.FAILED, "not_an_image")
    assert not offer.photo_card_file_id

    # A tiny image gets its own reason; then a good photo goes through.
    small = io.BytesIO()
    Image.new("RGB", (50, 50), (200, 10, 10)).save(small, "PNG")
    stack.telegram.send_document(owner, small.getvalue(), file_name="tiny.png", mime_type="image/png")
    message_with(stack, owner, "too small")
    assert get(Offer, offer.id).photo_error == "too_small"
    stack.telegram.send_photo(owner, jpeg(800, 800))
    message_with(stack, owner, "Preview", f"bizoffer:publish:{offer.id}")
    offer = committed_card(offer.id)
    assert offer.photo_error is None and offer.status == OfferStatus.DRAFT


def test_the_photo_task_run_twice_uploads_once(stack):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    business_id = make_business(owner, name=f"Deli {owner}")
    new_offer_until_photo(stack, owner)
    stack.telegram.send_photo(owner, jpeg())
    (offer,) = wait_for(lambda: offers_of(business_id))
    preview = message_with(stack, owner, "Preview", f"bizoffer:publish:{offer.id}")
    assert preview
    offer = committed_card(offer.id)  # the first run has finished: what follows is a redelivery
    before = len(stack.telegram.calls("sendPhoto"))
    from tasks.images import process_offer_photo

    process_offer_photo.apply(args=(offer.id, offer.photo_source_file_id))  # a redelivery, run here
    assert len(stack.telegram.calls("sendPhoto")) == before
    assert get(Offer, offer.id).photo_card_file_id == offer.photo_card_file_id


def test_bad_input_back_and_cancel(stack):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    business_id = make_business(owner, name=f"Grocer {owner}")
    say(stack, owner, "/newoffer")
    say(stack, owner, "Veggie box")
    replies = say(stack, owner, "-")
    assert "What do customers pay" in text_of(last(replies))
    # Back returns to the previous question, and again to the one before.
    replies = tap(stack, owner, last(replies), "flow:back")
    assert "Describe it" in text_of(last(replies))
    say(stack, owner, "Carrots, leeks")
    say(stack, owner, "2.50")
    say(stack, owner, "6")
    days = last(say(stack, owner, "10"))
    window = last(tap(stack, owner, days, "flow:pick:day:today"))
    replies = say(stack, owner, "00:00-00:01")  # over already, whatever the time of day
    assert "That window is over" in all_text(replies) and "Pickup window" in text_of(last(replies))
    replies = say(stack, owner, "whenever")
    assert "couldn't read that time window" in all_text(replies)
    assert window
    # Cancel leaves the flow; nothing was created.
    replies = tap(stack, owner, last(replies), "flow:cancel")
    assert "not created" in text_of(last(replies))
    assert offers_of(business_id) == []
    assert "I didn't understand" in all_text(say(stack, owner, "18:00-19:00"))  # no flow any more

    # A quantity of 501 and a description that's too long are re-asked too.
    say(stack, owner, "/newoffer")
    say(stack, owner, "Veggie box")
    assert "too long" in all_text(say(stack, owner, "x" * 401))
    say(stack, owner, "Fine")
    say(stack, owner, "2.50")
    assert "more than 1000" in all_text(say(stack, owner, "1000.01 €"))
    replies = say(stack, owner, "/cancel")
    assert "Cancelled" in all_text(replies)


def test_another_business_cannot_touch_an_offer_by_forging_buttons(stack):
    owner, intruder = new_user_id(), new_user_id()
    for user in (owner, intruder):
        stack.telegram.create_user(user, "Owner")
    victim_business = make_business(owner, name=f"Victim {owner}")
    make_business(intruder, name=f"Intruder {intruder}")
    offer_id = make_offer(victim_business, "Bread bag", quantity=4)
    before = get(Offer, offer_id)
    menu = last(say(stack, intruder, "/myoffers"))
    for action in ("pause", "cancelask", "cancel", "price", "qty", "orders", "pickup", "show", "publish",
                   "discard", "photo"):
        replies = tap(stack, intruder, menu, f"bizoffer:{action}:{offer_id}", forge=True)
        assert "Bread bag" not in all_text(replies), action
        assert "What would you like to do?" in text_of(last(replies)), action
        menu = last(replies)
    after = get(Offer, offer_id)
    assert (after.status, after.version, after.quantity, after.price_minor) == \
        (before.status, before.version, before.quantity, before.price_minor)
    assert get(Offer, offer_id).status == OfferStatus.ACTIVE


def test_a_non_admin_forging_review_buttons_changes_nothing(stack):
    owner, intruder = new_user_id(), new_user_id()
    stack.telegram.create_user(intruder, "Nobody")
    business_id = make_business(owner, name=f"Pending {owner}", status=BusinessStatus.PENDING)
    menu = last(say(stack, intruder, "/start"))
    for forged in (f"bizrev:verify:{business_id}", f"bizrev:reject:{business_id}",
                   f"bizrev:suspend:{business_id}", f"bizrev:show:{business_id}", "adm_biz"):
        replies = tap(stack, intruder, menu, forged, forge=True)
        assert f"Pending {owner}" not in all_text(replies)
        menu = last(replies)
    assert get(Business, business_id).status == BusinessStatus.PENDING
    with db.session_scope() as session:
        assert session.scalar(sa.select(AuditEntry).where(AuditEntry.target == f"business:{business_id}")) is None


def test_admin_rejects_with_a_reason_and_the_owner_cannot_post(stack):
    owner = new_user_id()
    admin_id = admin(stack)
    stack.telegram.create_user(owner, "Owner", language_code="de")
    say(stack, owner, "/register")
    sent = stack.telegram.send_text(owner, f"Kiosk {owner}")
    expect(stack, owner, sent["seq"], "Adresse")
    sent = stack.telegram.send_text(owner, "Marktplatz 3, Köln")
    question = expect(stack, owner, sent["seq"], "genauen Standort")
    assert "flow:pick:location:skip" in datas(question)
    replies = tap(stack, owner, question, "flow:pick:location:skip")
    assert "Telefonnummer" in all_text(replies)
    replies = say(stack, owner, "+49 221 555 1234")
    assert "Verifizierung" in text_of(last(replies))
    business = business_of(owner)
    assert business.latitude is None

    note = message_with(stack, admin_id, f"Kiosk {owner}", f"bizrev:reject:{business.id}")
    replies = tap(stack, admin_id, note, f"bizrev:reject:{business.id}")
    assert "Why is" in text_of(last(replies))
    replies = say(stack, admin_id, "Photos of the shop are missing")
    assert "rejected" in text_of(last(replies))
    business = get(Business, business.id)
    assert business.status == BusinessStatus.REJECTED and business.status_reason == "Photos of the shop are missing"
    told = message_with(stack, owner, "Photos of the shop are missing")
    assert "abgelehnt" in text_of(told)  # in the owner's language
    assert "Photos of the shop are missing" in text_of(last(say(stack, owner, "/newoffer")))

    # A second decision on the same business (a stale button) changes nothing.
    # Suspending a rejected business is not a transition: the admin is told, nothing changes.
    replies = tap(stack, admin_id, note, f"bizrev:suspend:{business.id}", forge=True)  # an old copy
    assert "rejected" in text_of(last(replies))
    assert get(Business, business.id).status == BusinessStatus.REJECTED


def test_manage_offers_pause_resume_edit_pickup_cancel_and_export(stack):
    owner, buyer, holder, payer = new_user_id(), new_user_id(), new_user_id(), new_user_id()
    for user in (owner, buyer, holder, payer):
        stack.telegram.create_user(user, "Person")
    business_id = make_business(owner, name=f"Shop {owner}")
    offer_id = make_offer(business_id, "Cake box", quantity=5)
    make_user(buyer, "Buyer")
    make_user(holder, "Holder")
    make_user(payer, "Payer")
    from domain import reservations

    with db.session_scope() as session:  # one paid order (2 units), one held (1 unit)
        bought = reservations.reserve(session, offer_id, buyer, 2)
        sale = reservations.confirm_sale(session, bought.order_id, 700, "EUR", "pi_test_business_flows")
        paid_id, code = bought.order_id, sale.pickup_code
        held = reservations.reserve(session, offer_id, holder, 1)
        assert held.ok and sale.paid
        later = reservations.reserve(session, offer_id, payer, 1)
        assert reservations.confirm_sale(session, later.order_id, 350, "EUR", "pi_test_business_flows_2").paid

    menu = last(say(stack, owner, "/myoffers"))
    assert "Cake box" in text_of(menu) and "1 of 5 left" in text_of(menu)
    card = last(tap(stack, owner, menu, f"bizoffer:show:{offer_id}"))
    assert "Sold: 3" in text_of(card) and "Reserved: 1" in text_of(card)

    card = last(tap(stack, owner, card, f"bizoffer:pause:{offer_id}"))
    assert get(Offer, offer_id).status == OfferStatus.PAUSED
    card = last(tap(stack, owner, card, f"bizoffer:resume:{offer_id}"))
    assert get(Offer, offer_id).status == OfferStatus.ACTIVE

    # Quantity below what is sold or held is refused; a fine one is taken.
    replies = tap(stack, owner, card, f"bizoffer:qty:{offer_id}")
    replies = say(stack, owner, "2")
    assert "4 units are already sold or reserved" in all_text(replies)
    replies = say(stack, owner, "8")
    assert "quantity is now 8" in text_of(last(replies))
    assert get(Offer, offer_id).quantity == 8

    # Price edit: must stay a discount.
    tap(stack, owner, last(replies), f"bizoffer:price:{offer_id}")
    assert "must be higher than the price" in all_text(say(stack, owner, "7.00"))
    replies = say(stack, owner, "3.00")
    assert "price is now €3.00" in text_of(last(replies))

    # Pickup: a wrong code is refused clearly; the right one collects the order.
    card = last(replies)
    tap(stack, owner, card, f"bizoffer:pickup:{offer_id}")
    replies = say(stack, owner, "ZZZ999")
    assert "No order of this offer has the code ZZZ999" in all_text(replies)
    replies = say(stack, owner, f" {code[:3].lower()} {code[3:]} ")
    assert "The order is marked collected" in text_of(last(replies))
    assert get(Order, paid_id).status == OrderStatus.COLLECTED
    message_with(stack, buyer, "Enjoy your Cake box")
    tap(stack, owner, last(replies), f"bizoffer:pickup:{offer_id}")
    assert "already collected" in all_text(say(stack, owner, code))
    say(stack, owner, "/cancel")

    # Orders of the offer, and the CSV export.
    menu = last(say(stack, owner, "/myoffers"))
    card = last(tap(stack, owner, menu, f"bizoffer:show:{offer_id}"))
    orders = last(tap(stack, owner, card, f"bizoffer:orders:{offer_id}"))
    assert "collected" in text_of(orders) and "reserved, not paid yet" in text_of(orders)
    hub = last(say(stack, owner, "/start"))
    hub = last(tap(stack, owner, hub, "biz"))
    replies = tap(stack, owner, hub, "bizcsv")
    document = wait_for(lambda: next((m for m in reversed(bot_messages(stack, owner)) if m.get("document")), None))
    assert document["document"]["file_name"].endswith(".csv")
    content = httpx.get(f"{stack.telegram_url}/_sandbox/files/{document['document']['file_id']}").content
    text = content.decode("utf-8-sig")
    assert text.splitlines()[0].startswith("order_id,offer_id,offer_title,status")
    assert "Cake box" in text and "collected" in text and "held" in text
    assert replies

    # Cancel: the held order is released and its customer told.
    card = last(tap(stack, owner, hub, "bizoffers"))
    card = last(tap(stack, owner, card, f"bizoffer:show:{offer_id}"))
    sure = last(tap(stack, owner, card, f"bizoffer:cancelask:{offer_id}"))
    replies = tap(stack, owner, sure, f"bizoffer:cancel:{offer_id}")
    assert "Offer cancelled" in text_of(last(replies))
    # One of each: the sentences agree with their counts.
    assert "1 reservation released. 1 paid order is being refunded." in text_of(last(replies))
    offer = get(Offer, offer_id)
    assert offer.status == OfferStatus.CANCELLED and offer.units_held == 0
    assert get(Order, held.order_id).status == OrderStatus.CANCELLED
    assert get(Order, later.order_id).status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED)
    assert get(Order, paid_id).status == OrderStatus.COLLECTED  # the food is gone: nothing to undo
    assert "you were not charged" in text_of(message_with(stack, holder, "had to cancel"))
    assert "will be refunded" in text_of(message_with(stack, payer, "had to cancel"))
    with db.session_scope() as session:
        reservations.assert_ledger_consistent(session, offer_id, money=False)
        assert session.get(Offer, offer_id).units_sold == 2


def test_a_suspended_business_cannot_post(stack):
    owner = new_user_id()
    admin_id = admin(stack)
    stack.telegram.create_user(owner, "Owner")
    business_id = make_business(owner, name=f"Suspect {owner}")
    offer_id = make_offer(business_id, "Mystery bag")
    menu = last(say(stack, admin_id, "/start"))
    replies = tap(stack, admin_id, menu, f"bizrev:suspend:{business_id}", forge=True)
    assert "Why is" in text_of(last(replies))
    say(stack, admin_id, "Complaints about hygiene")
    assert get(Business, business_id).status == BusinessStatus.SUSPENDED
    assert get(Offer, offer_id).status == OfferStatus.PAUSED
    message_with(stack, owner, "Complaints about hygiene")
    assert "suspended" in text_of(last(say(stack, owner, "/newoffer")))
    menu = last(say(stack, owner, "/myoffers"))
    card = last(tap(stack, owner, menu, f"bizoffer:show:{offer_id}"))
    tap(stack, owner, card, f"bizoffer:resume:{offer_id}")
    assert get(Offer, offer_id).status == OfferStatus.PAUSED



def test_back_leaves_a_first_question_for_where_it_came_from_and_the_preview_has_back(stack):
    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    business_id = make_business(owner, name=f"Patisserie {owner}")

    # Back on the first question of a new offer leaves for the business menu it was started from.
    hub = last(tap(stack, owner, last(say(stack, owner, "/start")), "biz"))
    question = last(tap(stack, owner, hub, "biznew"))
    assert "Give it a short title" in text_of(question)
    replies = tap(stack, owner, question, "flow:back")
    assert "What would you like to do?" in text_of(last(replies)) and "biznew" in datas(last(replies))
    assert "I didn't understand" in all_text(say(stack, owner, "Surprise bag"))  # the flow is left

    # The preview's Back goes to the question before the photo, with every answer kept; Back goes on
    # from there, and at the photo step the photo can be kept: a new preview with the new window.
    new_offer_until_photo(stack, owner)
    stack.telegram.send_photo(owner, jpeg())
    (offer,) = wait_for(lambda: offers_of(business_id))
    preview = message_with(stack, owner, "Preview", f"bizoffer:publish:{offer.id}")
    assert f"bizoffer:back:{offer.id}" in datas(preview)
    committed_card(offer.id)
    window = last(tap(stack, owner, preview, f"bizoffer:back:{offer.id}"))
    assert "Pickup window tomorrow" in text_of(window) and "flow:back" in datas(window)
    days = last(tap(stack, owner, window, "flow:back"))
    assert "When can customers pick it up?" in text_of(days)
    window = last(tap(stack, owner, days, "flow:pick:day:tomorrow"))
    photo = last(skip_tags(stack, owner, last(say(stack, owner, "17:00-18:30"))))
    assert "send a photo" in text_of(photo) and "flow:pick:photo:keep" in datas(photo)
    assert "Processing your photo" in all_text(tap(stack, owner, photo, "flow:pick:photo:keep"))
    again = wait_for(lambda: next((m for m in reversed(bot_messages(stack, owner)) if "Preview" in text_of(m)
                                   and "17:00–18:30" in text_of(m)), None))
    assert again["message_id"] != preview["message_id"] and f"bizoffer:publish:{offer.id}" in datas(again)
    offer = committed_card(offer.id)
    assert (offer.pickup_end - offer.pickup_start) == timedelta(minutes=90) and offer.title == "Surprise bag"
    assert offer.price_minor == 450 and offer.quantity == 5

    # Back on an edit's only question returns to the offer it was started from.
    active = make_offer(business_id, "Cake box")
    card = last(tap(stack, owner, last(say(stack, owner, "/myoffers")), f"bizoffer:show:{active}"))
    question = last(tap(stack, owner, card, f"bizoffer:price:{active}"))
    assert "New price" in text_of(question)
    replies = tap(stack, owner, question, "flow:back")
    assert "Sold: 0" in text_of(last(replies)) and f"bizoffer:price:{active}" in datas(last(replies))
