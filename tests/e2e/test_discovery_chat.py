"""/deals with filters and search, as a customer taps them: remembered, shown, and when nothing
matches, a button that drops the filter in the way. Allergens read the same in both languages."""

from __future__ import annotations

import sqlalchemy as sa

from core import db
from models import Offer
from tests.e2e.conftest import new_user_id
from tests.e2e.test_customer_flows import _answered, buttons, plain, say, tap, wait_for
from tests.factories import make_business, make_offer, make_user


def test_filters_search_and_loosening_in_the_chat(stack, user):
    token = f"q{user}"  # a word only this test's offers have, so other tests' offers stay out
    business = make_business(name=f"Sonne {user}")
    roll = make_offer(business, f"Cinnamon roll {token}", category="bakery", diet=["vegan"], allergens=["gluten"])
    make_offer(business, f"Cheese box {token}", category="dairy", allergens=["milk"])

    (listing,) = say(stack, user, f"/deals {token.upper()}")
    text = plain(listing["text"])
    assert f"🔎 Filters: “{token}”" in text
    assert "Cinnamon roll" in text and "🥐 Bakery · 🌱 vegan · ⚠️ gluten" in text and "Cheese box" in text

    (screen,) = tap(stack, user, listing, "filt:show:new")
    assert "Tap to choose" in screen["text"] and "🧀 Dairy" in buttons(screen)
    (screen,) = tap(stack, user, screen, "filt:cat:new:dairy")
    assert "✅ 🧀 Dairy" in buttons(screen)
    (avoid,) = tap(stack, user, screen, "filt:avoidmenu:new")
    assert len([d for d in buttons(avoid).values() if d.startswith("filt:avoid:new:")]) == 14
    (avoid,) = tap(stack, user, avoid, "filt:avoid:new:milk")
    assert "✅ milk" in buttons(avoid)
    (empty,) = tap(stack, user, avoid, "deals:new:0")
    # Dairy without milk: nothing. Without the category, the roll (no milk) would match: say so.
    assert "Without “category” there are deals" in plain(empty["text"])
    assert "Cheese box" not in empty["text"] and buttons(empty)["✖️ Without: category"] == "filt:drop:new:category"

    (found,) = tap(stack, user, empty, "filt:drop:new:category")
    assert "Cinnamon roll" in found["text"] and "Cheese box" not in found["text"]
    assert f"offer:{roll}" in buttons(found).values()

    # Remembered: a new /deals has the same filters, and Clear all lets everything back.
    (again,) = say(stack, user, "/deals")
    assert "without milk" in again["text"] and "Cheese box" not in again["text"] and "🔎 Filters (2)" in buttons(again)
    (screen,) = tap(stack, user, again, "filt:show:new")
    (screen,) = tap(stack, user, screen, "filt:reset:new")
    assert "Now: all deals." in screen["text"]


def test_search_by_typing_and_allergens_in_both_languages(stack, user):
    token = f"w{user}"
    offer = make_offer(make_business(name=f"Mond {user}"), f"Soup {token}", allergens=["celery", "gluten"],
                       diet=["vegan"], category="meals")
    (listing,) = say(stack, user, "/deals")
    (question,) = tap(stack, user, listing, "filt:search:new")
    assert "What are you looking for" in question["text"] and "flow:back" in buttons(question).values()
    (found,) = say(stack, user, f"  {token}  soup ")
    assert f"offer:{offer}" in buttons(found).values() and "Soup" in found["text"]

    (card,) = tap(stack, user, found, f"offer:{offer}")
    assert "🍲 Meals · 🌱 vegan" in card["text"] and "⚠️ Contains: gluten, celery" in card["text"]
    german = new_user_id()
    stack.telegram.create_user(german, "Greta")
    make_user(german, "Greta", language="de")
    (karte,) = say(stack, german, f"/start offer_{offer}")
    assert "🍲 Gerichte · 🌱 vegan" in karte["text"] and "⚠️ Enthält: Gluten, Sellerie" in karte["text"]


def test_a_business_changes_what_its_offer_is(stack):
    owner, stranger = new_user_id(), new_user_id()
    for who in (owner, stranger):
        stack.telegram.create_user(who, "Owner")
    offer = make_offer(make_business(owner, name=f"Pies {owner}"), "Apple pie", category="bakery")
    other = make_offer(make_business(stranger, name=f"Other {stranger}"), "Not yours")

    (offers,) = say(stack, owner, "/myoffers")
    (card,) = tap(stack, owner, offers, f"bizoffer:show:{offer}")
    (category,) = tap(stack, owner, card, f"bizoffer:tags:{offer}")
    assert "Apple pie" in category["text"] and "✅ 🥐 Bakery" in buttons(category)
    assert "flow:back" in buttons(category).values()
    (diet,) = tap(stack, owner, category, "flow:pick:category:meals")
    (diet,) = tap(stack, owner, diet, "flow:pick:diet:vegetarian")
    (allergens,) = tap(stack, owner, diet, "flow:pick:diet:done")
    (allergens,) = tap(stack, owner, allergens, "flow:pick:allergens:eggs")
    (saved,) = tap(stack, owner, allergens, "flow:pick:allergens:done")
    assert "✅ Saved" in saved["text"] and "🍲 Meals · 🌱 vegetarian" in saved["text"]
    assert "⚠️ Contains: eggs" in saved["text"]
    with db.session_scope() as session:
        row = session.get(Offer, offer)
        assert (row.category, row.diet, row.allergens) == ("meals", ["vegetarian"], ["eggs"])

    # Another business's offer, and nonsense, by forged buttons: answered, nothing changed.
    presses = [stack.telegram.press_button(owner, saved["message_id"], forged, forge=True) for forged in (
        f"bizoffer:tags:{other}", "filt:cat:new:caviar", "filt:km:new:7", "filt:zzz:new", "filt:show:zzz",
        "filt:drop:new:title", "filt:price:new:-1")]
    wait_for(lambda: all(_answered(stack, p) for p in presses))
    with db.session_scope() as session:
        assert session.get(Offer, other).category is None
    assert "Which category fits best" not in stack.telegram.messages(owner)[-1].get("text", "")


def test_rating_a_pickup_then_the_business_and_the_card_show_it(stack, user):
    from datetime import UTC, datetime, timedelta

    from domain import ratings
    from models import Order, OrderStatus, Rating

    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    stack.telegram.create_user(user, "Customer")
    make_user(user, "Customer")
    business = make_business(owner, name=f"Rated {owner}")
    offer = make_offer(business, "Pretzel bag")
    with db.session_scope() as session:
        order = Order(offer_id=offer, customer_id=user, quantity=1, unit_price_minor=350, amount_minor=350,
                      currency="EUR", status=OrderStatus.COLLECTED, pickup_code="RATE01",
                      closed_at=datetime.now(UTC) - timedelta(hours=1, minutes=5))
        session.add(order)
        session.flush()
        order_id = order.id
        for n in range(4):  # four earlier customers' ratings: with this one, five
            earlier = make_user()
            session.add(Order(offer_id=offer, customer_id=earlier, quantity=1, unit_price_minor=350,
                              amount_minor=350, currency="EUR", status=OrderStatus.COLLECTED,
                              pickup_code=f"EARL0{n}"))
    with db.session_scope() as session:
        for earlier_order in session.scalars(sa.select(Order).where(Order.offer_id == offer, Order.id != order_id)):
            session.add(Rating(order_id=earlier_order.id, business_id=business, customer_id=earlier_order.customer_id,
                               stars=4))
        assert ratings.ask_for_ratings(session, datetime.now(UTC))["ratings_asked"] >= 1

    request = wait_for(lambda: next((m for m in stack.telegram.messages(user) if "How was" in m.get("text", "")),
                                    None))
    assert "Pretzel bag" in request["text"] and f"rate:{order_id}:5" in buttons(request).values()
    (thanks,) = tap(stack, user, request, f"rate:{order_id}:5")
    assert "You gave 5 of 5 stars" in thanks["text"]
    (thanks,) = tap(stack, user, thanks, f"rrsn:{order_id}:quality")
    assert "✅ 👌 Quality" in buttons(thanks)
    (question,) = tap(stack, user, thanks, f"rcom:{order_id}")
    assert "Type your comment" in question["text"] and "flow:back" in buttons(question).values()
    (saved,) = say(stack, user, "Still warm <b>and</b> crisp")
    assert "Comment saved" in saved["text"] and "Still warm &lt;b&gt;" not in saved["text"]
    (done,) = tap(stack, user, saved, f"rdone:{order_id}")
    assert "Thank you for rating" in done["text"]

    # Five ratings: the card shows the average; the business reads each one with its comment.
    (card,) = say(stack, user, f"/start offer_{offer}")
    assert "⭐ 4.2 (5 ratings)" in card["text"]
    (hub,) = say(stack, owner, "/start")
    (menu,) = tap(stack, owner, hub, "biz")
    (rated,) = tap(stack, owner, menu, "bizrated")
    assert "⭐ 4.2 (5 ratings)" in rated["text"] and "Still warm <b>and</b> crisp" in plain(rated["text"])
    assert "👌 Quality" in rated["text"]

    # Admins see it among the lowest rated (it has the five ratings that count).
    admin = 4242  # ADMIN_IDS of the e2e worker (tests/e2e/conftest.py)
    stack.telegram.create_user(admin, "Admin")
    (menu,) = [m for m in say(stack, admin, "/admin") if "adm_rated" in buttons(m).values()]
    (lowest,) = tap(stack, admin, menu, "adm_rated")
    assert f"Rated {owner}" in plain(lowest["text"]) and "4.2 (5 ratings)" in lowest["text"]


def test_a_business_repeats_an_offer_pauses_and_stops_it(stack):
    from models import OfferTemplate, TemplateStatus

    owner = new_user_id()
    stack.telegram.create_user(owner, "Owner")
    business = make_business(owner, name=f"Daily {owner}")
    offer = make_offer(business, "Soup", photo_card_file_id="card-soup")
    (offers,) = say(stack, owner, "/myoffers")
    (card,) = tap(stack, owner, offers, f"bizoffer:show:{offer}")
    (days,) = tap(stack, owner, card, f"bizrep:{offer}:days:127")
    assert "On which days?" in days["text"] and "⬅️ Back to the offer" in buttons(days)
    (days,) = tap(stack, owner, days, f"bizrep:{offer}:days:{127 ^ (1 << 6)}")  # no Sundays
    assert "▫️ Sun" in buttons(days) and f"bizrep:{offer}:save:63" in buttons(days).values()
    (saved,) = tap(stack, owner, days, f"bizrep:{offer}:save:63")
    assert "now repeats Mon, Tue, Wed, Thu, Fri, Sat" in saved["text"] and "🔁 Repeats" in saved["text"]
    (paused,) = tap(stack, owner, saved, f"bizrep:{offer}:pause")
    assert "Repeating is paused" in paused["text"] and f"bizrep:{offer}:resume" in buttons(paused).values()
    (stopped,) = tap(stack, owner, paused, f"bizrep:{offer}:stop")
    assert "no more days are posted" in stopped["text"]
    with db.session_scope() as session:
        template = session.scalars(sa.select(OfferTemplate).where(OfferTemplate.business_id == business)).one()
        assert (template.weekdays, template.status, template.photo_card_file_id) == (
            63, TemplateStatus.STOPPED, "card-soup")


def test_favourites_with_alerts_per_business_and_mute(stack, user):
    from models import Follow, User

    stack.telegram.create_user(user, "Fan")
    make_user(user, "Fan")
    business = make_business(name=f"Fav {user}")
    offer = make_offer(business, "Bun box")
    with db.session_scope() as session:
        session.add(Follow(user_id=user, business_id=business))
    menu = [m for m in say(stack, user, "/start") if "favs" in buttons(m).values()][-1]
    (favs,) = tap(stack, user, menu, "favs")
    assert "My favourites" in favs["text"] and "Bun box" in favs["text"] and f"offer:{offer}" in buttons(favs).values()
    (favs,) = tap(stack, user, favs, f"favalert:{business}:0")
    assert f"favalert:{business}:1" in buttons(favs).values() and "🔕" in favs["text"]
    (favs,) = tap(stack, user, favs, "mute:week")
    assert "muted until" in favs["text"] and "mute:off" in buttons(favs).values()
    with db.session_scope() as session:
        assert session.get(Follow, (user, business)).alerts is False
        assert session.get(User, user).alerts_muted_until is not None
    (favs,) = tap(stack, user, favs, "mute:off")
    assert "mute:day" in buttons(favs).values()


def test_a_paid_order_shows_the_shop_on_a_map_and_a_deal_can_be_shared(stack, user):
    from urllib.parse import parse_qs, urlparse

    from models import Order, OrderStatus

    stack.telegram.create_user(user, "Buyer")
    make_user(user, "Buyer")
    business = make_business(name=f"Map {user}", latitude=52.5301, longitude=13.4102)
    offer = make_offer(business, "Pie")
    with db.session_scope() as session:
        order = Order(offer_id=offer, customer_id=user, quantity=1, unit_price_minor=350, amount_minor=350,
                      currency="EUR", status=OrderStatus.PAID, pickup_code="MAP001")
        session.add(order)
        session.flush()
        order_id = order.id
    (orders,) = say(stack, user, "/orders")
    (venue,) = tap(stack, user, orders, f"venue:{order_id}")
    assert venue["venue"]["title"] == f"Map {user}" and "☎ +49301234567" in venue["venue"]["address"]
    assert venue["location"] == {"latitude": 52.5301, "longitude": 13.4102}
    assert [c for c in stack.telegram.calls("sendVenue") if str(c["params"].get("chat_id")) == str(user)]

    (card,) = say(stack, user, f"/start offer_{offer}")
    share = urlparse(buttons(card)["📤 Share"])
    assert (share.netloc, share.path) == ("t.me", "/share/url")
    assert parse_qs(share.query)["url"] == [f"https://t.me/surplus_sandbox_bot?start=offer_{offer}"]


def test_inline_mode_offers_deal_cards_that_open_the_bot(stack, user):
    stack.telegram.create_user(user, "Inline")
    token = f"i{user}"
    offer = make_offer(make_business(name=f"Inline {user}"), f"Croissant {token}", allergens=["gluten"])

    def answer_to(query: str) -> tuple[str, dict]:
        sent = stack.telegram.inline_query(user, query)
        return sent["inline_query_id"], wait_for(
            lambda: (found := stack.telegram.inline_answer(sent["inline_query_id"]))["answered"] and found)

    query_id, answer = answer_to(f"croissant {token}")
    (result,) = answer["results"]
    assert result["id"] == str(offer) and result["title"].startswith(f"Croissant {token} · €3.50")
    assert "⚠️ Contains: gluten" in result["message"]["text"]
    (button,) = result["reply_markup"]["inline_keyboard"][0]
    assert button["url"] == f"https://t.me/surplus_sandbox_bot?start=offer_{offer}"
    chosen = stack.telegram.choose_inline_result(query_id, str(offer))["message"]
    assert chosen["via_bot"]["username"] == "surplus_sandbox_bot" and f"Croissant {token}" in chosen["text"]

    for nothing in (f"caviar {token}", "'; DROP TABLE offers; --" + token, "🥐" * 300):
        assert answer_to(nothing)[1]["results"] == []  # answered, with no deal
