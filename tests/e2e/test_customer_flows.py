"""A customer finds a deal, looks at it, reserves, sees and cancels the order — as a user would,
through the Telegram fake and a real worker."""

from __future__ import annotations

import time

import sqlalchemy as sa

from core import db
from models import Follow, Offer, Order, OrderStatus
from tests.factories import make_business, make_offer, make_user


def plain(text: str) -> str:
    """A message's text without the direction isolates around user text (see chat.cards.isolate)."""
    return text.replace("\u2068", "").replace("\u2069", "")


def buttons(message: dict) -> dict[str, str]:
    """Button text → callback data (or url) of a message."""
    markup = message.get("reply_markup") or {}
    return {b["text"]: b.get("callback_data") or b.get("url") for row in markup.get("inline_keyboard", [])
            for b in row}


def data_starting(message: dict, prefix: str) -> list[str]:
    return [d for d in buttons(message).values() if d and d.startswith(prefix)]


def message(stack, user: int, message_id: int) -> dict:
    """A message of the chat as it reads now (edits included)."""
    return next(m for m in stack.telegram.messages(user) if m["message_id"] == message_id)


def quantity(card: dict, offer_id: int, n: int) -> str:
    """The data of the card's button for ``n`` units (it carries what the card showed)."""
    (found,) = data_starting(card, f"qty:{offer_id}:{n}:")
    return found


def tap(stack, user: int, message: dict, callback_data: str, **kwargs) -> list[dict]:
    pressed = stack.telegram.press_button(user, message["message_id"], callback_data, **kwargs)
    return stack.telegram.wait_for_reply(user, after_seq=pressed["seq"], timeout=15)


def say(stack, user: int, text: str) -> list[dict]:
    sent = stack.telegram.send_text(user, text)
    return stack.telegram.wait_for_reply(user, sent["message_id"], timeout=15)


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _answered(stack, pressed: dict) -> bool:
    return any(q["callback_query_id"] == pressed["callback_query_id"] and q["answered"]
               for q in stack.telegram.callback_answers())


def order_of(user: int) -> Order | None:
    with db.session_scope() as session:
        return session.scalars(sa.select(Order).where(Order.customer_id == user)).first()


def test_browse_open_reserve_and_cancel(stack, user):
    business = make_business(name="Bäckerei <Sonne>")
    offer_id = make_offer(business, "Croissant bag", quantity=3)
    (listing,) = say(stack, user, "/deals")
    assert "Croissant bag" in listing["text"] and "Bäckerei <Sonne>" in listing["text"]
    (card,) = tap(stack, user, listing, f"offer:{offer_id}")
    assert "3 left" in card["text"] and "€3.50" in card["text"] and "−50 %" in card["text"]
    # Each quantity button carries the price and what was left as the card showed them.
    assert data_starting(card, f"qty:{offer_id}:") == [f"qty:{offer_id}:{n}:350:3" for n in (1, 2, 3)]
    (confirm,) = tap(stack, user, card, f"qty:{offer_id}:2:350:3")
    assert "2 × Croissant bag" in plain(confirm["text"]) and "€7.00" in confirm["text"]
    tapped = stack.telegram.press_button(user, confirm["message_id"], f"buy:{offer_id}:2:350")
    # "⏳ Reserving…" replaces the confirmation, and the Pay button then replaces "⏳ Reserving…": the
    # chat never keeps a message that only said "wait".
    pay = wait_for(lambda: (m := message(stack, user, confirm["message_id"])) and "Please pay by" in m["text"] and m)
    edits = [c["params"] for c in stack.telegram.calls("editMessageText")
             if str(c["params"].get("chat_id")) == str(user)
             and str(c["params"].get("message_id")) == str(confirm["message_id"])]
    assert "Reserving" in edits[-2]["text"] and "Please pay by" in edits[-1]["text"]
    assert any(text.startswith("💳 Pay") for text in buttons(pay))
    order = wait_for(lambda: order_of(user))
    assert order.status == OrderStatus.HELD and order.quantity == 2 and order.amount_minor == 700
    # One correlation id follows the tap through the tasks it caused (reservation, checkout).
    cid = f'"cid": "tg:{tapped["update_id"]}"'
    wait_for(lambda: all(any(cid in line and task in line for line in stack.worker.output().splitlines())
                         for task in ("reservations.place_order", "payments.create_checkout")))
    with db.session_scope() as session:
        assert session.get(Offer, offer_id).units_held == 2

    (orders,) = say(stack, user, "/orders")
    assert "2 × Croissant bag" in plain(orders["text"]) and "waiting for payment" in orders["text"]
    (sure,) = tap(stack, user, orders, f"ocancel:{order.id}")
    replies = tap(stack, user, sure, f"ocancelok:{order.id}")
    assert "cancelled" in replies[-1]["text"]
    with db.session_scope() as session:
        assert session.get(Order, order.id).status == OrderStatus.CANCELLED
        assert session.get(Offer, offer_id).units_held == 0
    # The Pay message above can't pay or cancel anything any more: it says so, without those buttons.
    spent = wait_for(lambda: (m := message(stack, user, pay["message_id"])) and "Reservation cancelled" in m["text"]
                     and m)
    assert "2 × Croissant bag" in plain(spent["text"])
    assert buttons(spent) == {"🧾 My orders": "orders", "⬅️ Main menu": "menu"}


def test_last_unit_goes_to_one_customer_and_the_other_hears_it_sold_out(stack, user):
    from tests.e2e.conftest import new_user_id

    offer_id = make_offer(make_business(), "Last loaf", quantity=1)
    rival = new_user_id()
    # Both open the confirm screen, then both tap "Reserve" at once.
    screens = {}
    for customer in (user, rival):
        (card,) = say(stack, customer, f"/start offer_{offer_id}")
        (screens[customer],) = tap(stack, customer, card, quantity(card, offer_id, 1))
    for customer in (user, rival):
        stack.telegram.press_button(customer, screens[customer]["message_id"], f"buy:{offer_id}:1:350")
    winners = wait_for(lambda: [c for c in (user, rival) if order_of(c)])
    assert len(winners) == 1
    loser = rival if winners == [user] else user
    # Told in place of "⏳ Reserving…" by the reservation engine ("just sold out"), or, if the offer
    # was already sold out when the tap was handled, at once ("sold out").
    wait_for(lambda: "sold out" in message(stack, loser, screens[loser]["message_id"])["text"])
    winner_pay = wait_for(lambda: "Please pay by" in message(stack, winners[0], screens[winners[0]]["message_id"])
                          ["text"])
    assert winner_pay
    with db.session_scope() as session:
        offer = session.get(Offer, offer_id)
        assert (offer.units_held, offer.status.value) == (1, "sold_out")


def test_a_price_change_is_noticed_before_reserving(stack, user):
    offer_id = make_offer(make_business(), "Soup", price_minor=400, original_price_minor=800)
    (card,) = say(stack, user, f"/start offer_{offer_id}")
    (confirm,) = tap(stack, user, card, quantity(card, offer_id, 1))
    with db.session_scope() as session:
        session.get(Offer, offer_id).price_minor = 450
    replies = tap(stack, user, confirm, f"buy:{offer_id}:1:400")
    assert "€4.50" in replies[-1]["text"]
    assert order_of(user) is None


def test_near_me_asks_for_a_location_then_sorts_by_distance(stack, user):
    near = make_offer(make_business(name="Corner Café", latitude=48.1375, longitude=11.5755), "Bagels")
    far = make_offer(make_business(name="Far Bakery", latitude=53.55, longitude=9.99), "Pretzels")
    say(stack, user, "/start")
    menu = [m for m in stack.telegram.messages(user) if m.get("reply_markup")][-1]
    (ask,) = tap(stack, user, menu, "near")
    assert "Share my location" in str(ask["reply_markup"])
    stack.telegram.send_location(user, 48.1372, 11.5756)
    listing = wait_for(lambda: next((m for m in stack.telegram.messages(user) if "Deals near you" in m.get("text", "")),
                                    None))
    assert "Bagels" in listing["text"] and "Pretzels" not in listing["text"]
    assert " m" in listing["text"]  # the distance, in metres this close
    assert f"offer:{near}" in buttons(listing).values() and f"offer:{far}" not in buttons(listing).values()


def test_follow_and_unfollow_a_business(stack, user):
    business = make_business(name="Green Grocer")
    offer_id = make_offer(business, "Veg box")
    (card,) = say(stack, user, f"/start offer_{offer_id}")
    (follow_data,) = data_starting(card, "follow:")
    assert follow_data == f"follow:{business}:{offer_id}:1"
    tap(stack, user, card, follow_data)
    with db.session_scope() as session:
        assert session.get(Follow, (user, business)) is not None


def test_forged_buttons_change_nothing(stack, user):
    from tests.e2e.conftest import new_user_id

    offer_id = make_offer(make_business(), "Cake", quantity=2)
    owner = new_user_id()
    (card,) = say(stack, owner, f"/start offer_{offer_id}")
    (confirm,) = tap(stack, owner, card, quantity(card, offer_id, 1))
    tap(stack, owner, confirm, f"buy:{offer_id}:1:350")
    order = wait_for(lambda: order_of(owner))
    (menu,) = say(stack, user, "/help")
    presses = [stack.telegram.press_button(user, menu["message_id"], forged, forge=True) for forged in (
        f"ocancelok:{order.id}", f"ocancel:{order.id}", f"qty:{offer_id}:99", "buy:1:1", "offer:abc",
        f"qty:{offer_id}:-1", "deals:zzz:0", "offer:99999999999999999999")]
    # Every press is answered ("out of date"), none changes anything.
    wait_for(lambda: all(_answered(stack, p) for p in presses))
    with db.session_scope() as session:
        assert session.get(Order, order.id).status == OrderStatus.HELD
        assert session.get(Offer, offer_id).units_held == 1


def test_a_right_to_left_title_is_isolated_in_the_deal_list_and_its_button(stack, user):
    title, name = "كعك بالتمر 🥐 Bagels", "מאפיית Sonne"
    offer_id = make_offer(make_business(name=name), title)
    (listing,) = say(stack, user, "/deals")
    (line,) = [line for line in listing["text"].splitlines() if title in line]
    # The title and the business name each stand alone: the price, the count and the other parts of
    # the line keep their places whatever direction the user's text runs in.
    assert f"\u2068{title}\u2069 — €3.50" in line and f" · \u2068{name}\u2069" in line
    (label,) = [text for text, value in buttons(listing).items() if value == f"offer:{offer_id}"]
    assert f". \u2068{title}\u2069 · €3.50" in label


def test_an_old_card_is_checked_against_now_before_anything_is_reserved(stack, user):
    from domain import reservations

    offer_id = make_offer(make_business(), "Pie", quantity=5, price_minor=400, original_price_minor=800)
    (card,) = say(stack, user, f"/start offer_{offer_id}")
    assert "5 left" in card["text"]
    # While the card sits in the chat, someone reserves 2 and the business raises the price.
    with db.session_scope() as session:
        assert reservations.reserve(session, offer_id, make_user(), 2).ok
        session.get(Offer, offer_id).price_minor = 450
    (screen,) = tap(stack, user, card, buttons(card)["5"])
    text = plain(screen["text"])
    assert "€4.00 before, €4.50 now" in text and "3 left now; you saw 5" in text
    assert "Only 3 are left of Pie now" in text and "€25.00" not in text and "€20.00" not in text
    assert not data_starting(screen, "buy:")  # nothing that can't be had is offered
    assert data_starting(screen, f"qty:{offer_id}:") == [f"qty:{offer_id}:{n}:450:3" for n in (1, 2, 3)]

    (confirm,) = tap(stack, user, screen, f"qty:{offer_id}:3:450:3")
    text = plain(confirm["text"])
    assert "Reserve 3 × Pie for €13.50?" in text and "€4.50 each, 3 left now." in text
    assert "before" not in text and "you saw" not in text  # nothing changed since this screen
    assert data_starting(confirm, "buy:") == [f"buy:{offer_id}:3:450"]

    # The price changes once more before "Reserve": asked again, at the new price, saying so.
    with db.session_scope() as session:
        session.get(Offer, offer_id).price_minor = 500
    (again,) = tap(stack, user, confirm, f"buy:{offer_id}:3:450")
    text = plain(again["text"])
    assert "€4.50 before, €5.00 now" in text and "Reserve 3 × Pie for €15.00?" in text
    assert data_starting(again, "buy:") == [f"buy:{offer_id}:3:500"]
    assert order_of(user) is None
