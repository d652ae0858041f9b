"""The Mini App in Debian's Chromium, opened from the web chat as Telegram opens it: the "🗺 Map"
button of the main menu (a ``web_app`` button) opens it in a panel beside the chat, with initData
the Telegram fake signed for the bot and this persona, and the panel plays Telegram's side of the
Mini App protocol (the Back and Main buttons the app asks for). A customer sees the deal as a pin
and in the list, orders it, and the Pay link (the same Checkout as in the chat) shows in the app
and in the chat; once paid, the app shows the pickup code and its QR. A business confirms a pickup
in its dashboard, and the chat says so too; it creates an offer with a photo from the phone (made
into the deal card by the images task while the page waits), publishes it, and confirms a pickup by
scanning the customer's pickup pass with Telegram's QR scanner (which the panel plays: its camera
sees the QR codes in the sandbox's chats). The bot's menu button opens the same app, where the
customer filters the map as /deals filters (and for /deals too), and a deal shows its photo and
allergens. Without MAP_TILE_URL (the sandbox), the page asks nothing of any other host."""

from __future__ import annotations

import io
import os
import re
import time
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from PIL import Image
from playwright.sync_api import FrameLocator, Page, expect

import chat.messages  # noqa: F401 - renders the pickup pass recorded here, as in the worker
from core import db, outbox
from domain import catalog, images, reservations
from domain.payments.notices import PickupPass
from models import Business, BusinessStatus, Offer, OfferStatus, Order, OrderStatus, PhotoStatus
from sandbox.demo import food_photo
from tests.e2e.conftest import new_user_id
from tests.e2e.test_web_chat import ADMIN, bot_message, browser, no_page_errors, open_chat, playwright, shot, tap
from tests.factories import OPEN_NOW, make_business, make_offer, make_user
from tests.processes import start_webapp
from tests.support.waiting import bot_texts, wait_until

__all__ = ["browser", "playwright"]  # the browser fixtures, shared with the web chat's tests

HALLE_MARKT = (51.4826, 11.9697)  # no other test puts a shop here
ERFURT_DOM = (50.9756, 11.0237)
LUEBECK_HOLSTENTOR = (53.8662, 10.6797)
ROSTOCK_HAFEN = (54.0924, 12.1286)


@pytest.fixture(scope="module")
def webapp(stack):
    """The Mini App process, where the stack's bot points its "🗺 Map" button (WEBAPP_URL)."""
    port = urlsplit(os.environ["WEBAPP_URL"]).port
    assert port is not None
    process, url = start_webapp(port)
    yield url
    process.stop()


def open_mini_app(browser, stack, query: str, requested: list[str] | None = None) -> tuple[Page, FrameLocator]:
    """The web chat of ``query``'s persona, and the Mini App opened from the main menu's "🗺 Map"
    (every address the page then asks for is added to ``requested``)."""
    page = open_chat(browser, stack, query)
    if requested is not None:
        page.on("request", lambda request: requested.append(request.url))
    page.locator("#composer-input").fill("/start")
    page.locator("#composer-input").press("Enter")
    tap(page, "🗺 Map", within=bot_message(page, "What would you like to do"))
    expect(page.locator("#mini-app")).to_be_visible()
    return page, page.frame_locator("#mini-app-frame")


def test_a_customer_opens_the_map_from_the_chat_orders_pays_and_sees_the_code(stack, browser, webapp):
    business_id = make_business(name="Suppenküche", latitude=HALLE_MARKT[0], longitude=HALLE_MARKT[1])
    offer_id = make_offer(business_id, "Soup of the day", quantity=4, price_minor=450, original_price_minor=900)
    customer = new_user_id()
    requested: list[str] = []
    page, app = open_mini_app(browser, stack, f"user={customer}&name=Mira", requested)

    deal = app.locator(f'.card.deal[data-offer="{offer_id}"]')
    expect(deal).to_contain_text("Soup of the day")
    expect(deal).to_contain_text("€4.50")
    expect(app.locator("#map path.leaflet-interactive")).not_to_have_count(0)  # the pins, on a plain ground
    deal.click()
    # The app asked for Telegram's Back and Main buttons (web_app_setup_*), which the panel draws.
    back = page.locator("#mini-app-back")
    back.click()
    expect(back).to_be_hidden()
    deal.click()
    expect(back).to_be_visible()
    main = page.locator("#mini-app-main")
    expect(main).to_have_text("Order 1 for €4.50")
    main.click()

    pay = app.locator("a.pay")
    expect(pay).to_have_text(re.compile(r"Pay €4\.50"))
    assert (pay.get_attribute("href") or "").startswith(stack.stripe.url + "/checkout/cs_")
    bot_message(page, "Please pay by")  # the same Pay button in the chat
    shot(page, "mini-app-pay.png")
    with db.session_scope() as session:
        order = session.scalar(sa.select(Order).where(Order.customer_id == customer))
        assert (order.offer_id, order.status, order.quantity) == (offer_id, OrderStatus.HELD, 1)

    with browser.expect_page() as opened:  # the app asks Telegram to open the link (web_app_open_link)
        pay.click()
    checkout = opened.value
    checkout.wait_for_load_state()
    checkout.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(checkout.get_by_text("Payment received")).to_be_visible()
    checkout.close()
    page.bring_to_front()
    bot_message(page, "Your pickup code")
    with db.session_scope() as session:
        code = session.get(Order, order.id).pickup_code
    app.get_by_role("button", name="🧾 My orders").click()
    expect(app.locator(f'[data-order="{order.id}"] .code')).to_contain_text(code)
    qr = app.locator(f'[data-order="{order.id}"] img.qr')
    expect(qr).to_have_attribute("src", re.compile("^blob:"))  # fetched with the initData, shown from memory
    assert qr.evaluate("image => image.decode().then(() => image.naturalWidth)") > 0  # the pickup pass's QR

    hosts = {urlsplit(url).hostname for url in requested if url.startswith("http")}
    assert hosts <= {"127.0.0.1"}, hosts  # no tiles, no CDN: nothing leaves the machine
    no_page_errors(page)
    page.close()


def _a_card(stack, owner: int, title: str, price_minor: int) -> str:
    """A deal card on the Telegram fake, drawn as the images task draws it (here sent by the owner,
    where the task would upload it): Telegram's file_id for it."""
    photo = io.BytesIO()
    Image.linear_gradient("L").resize((640, 480)).convert("RGB").save(photo, "JPEG")
    card = images.process_offer_photo(photo.getvalue(), price_minor=price_minor, original_price_minor=700,
                                      currency="EUR", title=title).card
    sent = stack.telegram.send_photo(owner, card, caption=title)
    return max(sent["message"]["photo"], key=lambda size: size["width"])["file_id"]


def test_the_menu_button_opens_the_map_where_a_customer_filters_and_sees_a_deals_photo_and_allergens(
        stack, browser, webapp):
    owner = new_user_id()
    soup_kitchen = make_business(owner, name="Suppenbar", latitude=LUEBECK_HOLSTENTOR[0],
                                 longitude=LUEBECK_HOLSTENTOR[1] + 0.002)
    dairy = make_business(name="Käserei", latitude=LUEBECK_HOLSTENTOR[0], longitude=LUEBECK_HOLSTENTOR[1] + 0.004)
    soup = make_offer(soup_kitchen, "Lentil soup", price_minor=400, category="meals", diet=["vegan"],
                      allergens=["celery"], photo_card_file_id=_a_card(stack, owner, "Lentil soup", 400),
                      photo_status=PhotoStatus.READY)
    cheese = make_offer(dairy, "Cheese bag", price_minor=500, category="dairy", allergens=["milk"])
    # The customer shared their location in the chat: the app starts there, nearest first.
    customer = make_user(new_user_id(), latitude=LUEBECK_HOLSTENTOR[0], longitude=LUEBECK_HOLSTENTOR[1])
    page = open_chat(browser, stack, f"user={customer}&name=Lea")
    menu = page.locator("#menu-button")
    expect(menu).to_have_text("🗺 Map")  # setChatMenuButton at setup: the Mini App, not the "/" menu
    menu.click()
    expect(page.locator("#mini-app")).to_be_visible()
    app = page.frame_locator("#mini-app-frame")
    expect(app.locator(".card.deal")).to_have_count(2)
    expect(app.locator(".card.deal").first).to_contain_text("Lentil soup")  # the nearer one first
    expect(app.locator(f'.card.deal[data-offer="{cheese}"]')).to_contain_text("⚠️ Contains: milk")
    expect(app.locator("#map path.leaflet-interactive")).to_have_count(3)  # the customer and two pins
    shot(page, "mini-app-map.png")

    app.locator("#filters-button").click()
    back, main = page.locator("#mini-app-back"), page.locator("#mini-app-main")
    expect(back).to_be_visible()  # Telegram's BackButton: leaves the filters unchanged
    app.locator('[data-filter="category"] [data-value="meals"]').click()
    app.locator('[data-filter="avoid"] [data-value="milk"]').click()
    expect(app.locator('[data-filter="avoid"] [data-value="milk"]')).to_have_attribute("aria-pressed", "true")
    shot(page, "mini-app-filters.png")
    expect(main).to_have_text("✅ Show deals")  # Telegram's MainButton applies them
    main.click()
    expect(app.locator("#filter-summary")).to_contain_text("🍲 Meals · without milk")
    expect(app.locator(".card.deal")).to_have_count(1)
    expect(app.locator("#filters-button")).to_have_text("🔎 Filters (2)")
    expect(app.locator("#map path.leaflet-interactive")).to_have_count(2)  # the customer, and the one pin
    with db.session_scope() as session:  # the chat's /deals has the same filters now
        assert catalog.saved_filters(session, customer) == catalog.Filters(category="meals", avoid=("milk",))

    app.locator(f'.card.deal[data-offer="{soup}"]').click()
    expect(app.locator("#deal-allergens")).to_have_text("⚠️ Contains: celery")
    expect(app.locator("#deal-rating")).to_have_text("⭐ Not enough ratings yet")
    photo = app.locator("img.photo")
    expect(photo).to_have_attribute("src", re.compile("^blob:"))  # fetched with the initData, from Telegram
    assert photo.evaluate("image => image.decode().then(() => image.naturalWidth)") == images.CARD_SIZE[0]
    expect(main).to_have_text("Order 1 for €4.00")
    shot(page, "mini-app-deal.png")
    back.click()
    expect(app.locator(".card.deal")).to_have_count(1)

    # Nothing matches dairy without milk: the app says which filter to drop, as /deals does.
    app.locator("#filters-button").click()
    app.locator('[data-filter="category"] [data-value="dairy"]').click()
    main.click()
    expect(app.locator("#deals")).to_contain_text("Without “category” there are deals")
    app.locator("#drop-filter").click()
    expect(app.locator(f'.card.deal[data-offer="{soup}"]')).to_be_visible()
    expect(app.locator("#filter-summary")).to_have_text("🔎 Filters: without milk")
    no_page_errors(page)
    page.close()


def test_a_business_confirms_a_pickup_in_its_dashboard_and_hears_it_in_the_chat(stack, browser, webapp):
    owner = new_user_id()
    business_id = make_business(owner, name="Domcafé", latitude=ERFURT_DOM[0], longitude=ERFURT_DOM[1])
    offer_id = make_offer(business_id, "Cake box", quantity=3, **OPEN_NOW)
    customer = make_user(new_user_id())
    with db.session_scope() as session:
        order_id = reservations.reserve(session.connection(), offer_id, customer, 2, hold_minutes=10).order_id
    with db.session_scope() as session:
        code = reservations.confirm_sale(session.connection(), order_id, 700, "EUR", "pi_e2e_dashboard").pickup_code
    page, app = open_mini_app(browser, stack, f"user={owner}&name=Dora")
    app.get_by_role("button", name="🏪 My business").click()
    expect(app.locator(f'[data-own-offer="{offer_id}"]')).to_contain_text("Cake box")
    app.locator("#pickup-code").fill(code.lower())
    app.get_by_role("button", name="✅ Confirm").click()
    expect(app.locator("#pickup-answer")).to_contain_text(f"Code {code} is valid: hand over 2× Cake box")
    bot_message(page, re.compile(f"Code {code} is valid"))  # told in the chat too
    expect(app.locator(".card", has_text=f"#{order_id} ")).to_contain_text("collected")  # the dashboard reloaded
    # ... and still says what to hand over: the reload kept the answer (it used to clear it after 1.5 s,
    # so a busy machine's check of the answer sometimes found it empty).
    expect(app.locator("#pickup-answer")).to_contain_text(f"Code {code} is valid: hand over 2× Cake box")
    with db.session_scope() as session:
        assert session.get(Order, order_id).status == OrderStatus.COLLECTED
    no_page_errors(page)
    page.close()


def paid_order_with_its_pass(stack, business_id: int, title: str) -> tuple[int, str, int]:
    """A customer's paid order of a new offer of the business, and the pickup pass (the QR code)
    in the customer's chat, as the payments flow sends it: (order id, code, customer)."""
    customer = new_user_id()
    stack.telegram.create_user(customer, first_name="Carla")
    offer_id = make_offer(business_id, title, quantity=3, **OPEN_NOW)
    make_user(customer, name="Carla")
    with db.session_scope() as session:
        order_id = reservations.reserve(session.connection(), offer_id, customer, 1, hold_minutes=10).order_id
    with db.session_scope() as session:
        code = reservations.confirm_sale(session.connection(), order_id, 350, "EUR", f"pi_e2e_{order_id}").pickup_code
        order = session.get(Order, order_id)
        outbox.notify(session, f"order:{order_id}:pickup_pass", customer, PickupPass(
            order=order, offer=order.offer, business=order.offer.business, language="en", pickup_code=code))
    return order_id, code, customer


def test_a_business_creates_an_offer_with_a_photo_and_confirms_a_pickup_by_scanning_the_pass(stack, browser, webapp,
                                                                                             tmp_path):
    owner = new_user_id()
    business_id = make_business(owner, name="Hafenbäckerei", latitude=ROSTOCK_HAFEN[0], longitude=ROSTOCK_HAFEN[1],
                                charges_enabled=True)
    order_id, code, customer = paid_order_with_its_pass(stack, business_id, "Fish rolls")
    photo = tmp_path / "pastries.jpg"
    photo.write_bytes(food_photo("pastries"))
    page, app = open_mini_app(browser, stack, f"user={owner}&name=Hanna")
    app.get_by_role("button", name="🏪 My business").click()

    # A new offer from the dashboard, with a photo from the phone.
    app.locator("#new-offer").click()
    form = app.locator("#offer-form")
    form.locator("[name=title]").fill("Surprise bag of pastries")
    form.locator("[name=price]").fill("4.50")
    form.locator("[name=original_price]").fill("3")  # not a discount: refused next to the field
    form.locator("[name=quantity]").fill("4")
    form.locator("[name=day]").select_option("tomorrow")
    form.locator("[name=category]").select_option("bakery")
    form.locator('[data-ticks="allergens"] input[value="gluten"]').check()
    app.locator("#offer-photo").set_input_files(str(photo))
    expect(app.locator("#photo-state")).to_have_text("✅ Photo received.")
    main = page.locator("#mini-app-main")
    expect(main).to_have_text("Create the offer")
    main.click()
    expect(form.locator('[data-field="original_price"] .field-error')).to_contain_text(
        "The original price must be higher than the price customers pay")
    shot(page, "mini-app-new-offer.png")
    form.locator("[name=original_price]").fill("12")
    main.click()
    card = app.locator("#deal-card")  # made by the images task, then shown: the page asked until it was
    expect(card).to_have_attribute("src", re.compile("^blob:"))
    assert card.evaluate("image => image.decode().then(() => image.naturalWidth)") == 960
    bot_message(page, "was created in the app")  # the chat has it too, with the preview
    with db.session_scope() as session:
        offer = session.scalar(sa.select(Offer).where(Offer.business_id == business_id,
                                                       Offer.title == "Surprise bag of pastries"))
        assert (offer.status, offer.price_minor, offer.original_price_minor, offer.quantity, offer.allergens) == (
            OfferStatus.DRAFT, 450, 1200, 4, ["gluten"])
        assert offer.photo_status == PhotoStatus.READY and offer.photo_source_file_id.startswith("upload:")
    expect(main).to_have_text("🚀 Publish")
    main.click()
    expect(app.locator("#offer-note")).to_contain_text("Published! Customers can order it now.")
    bot_message(page, "is published (in the app)")
    shot(page, "mini-app-offer.png")

    # The customer shows the pickup pass: the dashboard scans it with Telegram's QR scanner.
    page.locator("#mini-app-back").click()
    app.locator("#scan-pass").click()
    scanner = page.locator("#qr-dialog")
    expect(scanner).to_be_visible()
    scanner.locator("#qr-input").fill("https://example.com/menu")  # the camera caught the wrong code
    scanner.get_by_role("button", name="Scan this text").click()
    expect(app.locator("#pickup-answer")).to_contain_text("That QR code is not a pickup pass")
    app.locator("#scan-pass").click()
    scanner.locator(f'.qr-code[data-qr-text$="pickup_{code}"]').click()
    expect(scanner).to_be_hidden()  # the app closed it once it read the pass
    expect(app.locator("#pickup-answer")).to_contain_text(f"Code {code} is valid: hand over 1× Fish rolls")
    bot_message(page, re.compile(f"Code {code} is valid"))
    expect(app.locator(".card", has_text=f"#{order_id} ")).to_contain_text("collected")  # the dashboard reloaded
    expect(app.locator("#pickup-answer")).to_contain_text(f"Code {code} is valid: hand over 1× Fish rolls")
    expect(app.locator(f'[data-own-offer="{offer.id}"] img.thumb')).to_have_attribute("src", re.compile("^blob:"))
    expect(app.locator("#earnings-chart")).to_have_attribute("src", re.compile("^blob:"))
    shot(page, "mini-app-dashboard.png")
    with db.session_scope() as session:
        assert session.get(Offer, offer.id).status == OfferStatus.ACTIVE
        assert session.get(Order, order_id).status == OrderStatus.COLLECTED
    wait_until(lambda: any("Enjoy your" in text and "Fish rolls" in text  # the title is direction-isolated
                           for text in bot_texts(stack.telegram, customer)), 20, "the customer hears of the pickup")
    no_page_errors(page)
    page.close()


def test_a_business_cancels_an_offer_in_the_dashboard_and_its_customers_are_told_as_from_the_chat(stack, browser,
                                                                                                   webapp):
    owner = new_user_id()
    business_id = make_business(owner, name="Feinkost Lübeck", latitude=LUEBECK_HOLSTENTOR[0],
                                longitude=LUEBECK_HOLSTENTOR[1])
    paid, _code, payer = paid_order_with_its_pass(stack, business_id, "Antipasti box")
    holder = new_user_id()
    stack.telegram.create_user(holder, first_name="Hugo")
    make_user(holder, name="Hugo")
    with db.session_scope() as session:
        offer_id = session.get(Order, paid).offer_id
        held = reservations.reserve(session.connection(), offer_id, holder, 1, hold_minutes=10).order_id
    page, app = open_mini_app(browser, stack, f"user={owner}&name=Lena")
    app.get_by_role("button", name="🏪 My business").click()
    app.locator(f'[data-own-offer="{offer_id}"] button.manage').click()

    # Asked first, in the chat's words; "No" changes nothing.
    app.locator("#cancel-offer").click()
    expect(app.locator("#cancel-question")).to_contain_text("Cancel Antipasti box?")
    expect(app.locator("#cancel-question")).to_contain_text("every paid order is refunded. Customers are told.")
    app.locator("#cancel-no").click()
    expect(app.locator("#cancel-question")).to_have_count(0)
    with db.session_scope() as session:
        assert session.get(Offer, offer_id).status == OfferStatus.ACTIVE

    app.locator("#cancel-offer").click()
    shot(page, "mini-app-cancel.png")
    app.locator("#cancel-yes").click()
    # A worker cancels it as the chat does; the page watches the offer until it is cancelled.
    expect(app.locator("#offer-note")).to_contain_text("Offer cancelled. Customers with a reservation or a paid "
                                                       "order are told in their chat")
    expect(app.locator("[data-offer-screen]")).to_contain_text("cancelled")
    expect(app.locator("#cancel-offer")).to_have_count(0)  # nothing left to cancel
    bot_message(page, "🗑 Offer cancelled. 1 reservation released. 1 paid order is being refunded. (in the app)")
    with db.session_scope() as session:
        assert session.get(Offer, offer_id).status == OfferStatus.CANCELLED
        assert session.get(Order, paid).status in (OrderStatus.CANCELLED, OrderStatus.REFUNDED)
        assert session.get(Order, held).status != OrderStatus.HELD
    # Each customer hears it in their chat, as when the business cancels from the chat.
    wait_until(lambda: any("will be refunded" in text for text in bot_texts(stack.telegram, payer)), 20,
               "the paying customer is told of the refund")
    wait_until(lambda: any("you were not charged" in text for text in bot_texts(stack.telegram, holder)), 20,
               "the customer with a reservation is told")
    no_page_errors(page)
    page.close()


def test_on_telegram_web_the_dashboard_offers_no_scanner_and_takes_the_typed_code(stack, browser, webapp):
    """Telegram Web has no QR scanner (only Telegram's phone apps do): the app does not offer one
    there, and says to type the code, which confirms the pickup."""
    owner = new_user_id()
    business_id = make_business(owner, name="Kaffeerösterei", latitude=ERFURT_DOM[0] + 0.01,
                                longitude=ERFURT_DOM[1] + 0.01)
    _order_id, code, _customer = paid_order_with_its_pass(stack, business_id, "Coffee beans")
    page, app = open_mini_app(browser, stack, f"user={owner}&name=Wera&platform=weba")
    app.get_by_role("button", name="🏪 My business").click()
    expect(app.locator("#pickup-code")).to_be_visible()
    expect(app.locator("#scan-unavailable")).to_contain_text("Scanning the pickup pass works in Telegram's phone app")
    expect(app.locator("#scan-pass")).to_have_count(0)
    shot(page, "mini-app-no-scanner.png")
    app.locator("#pickup-code").fill(code)
    app.get_by_role("button", name="✅ Confirm").click()
    expect(app.locator("#pickup-answer")).to_contain_text(f"Code {code} is valid: hand over 1× Coffee beans")
    no_page_errors(page)
    page.close()


def test_an_admin_verifies_a_business_in_the_app_and_its_owner_hears_it(stack, browser, webapp):
    owner = new_user_id()
    business_id = make_business(owner, name="Neue Bäckerei", status=BusinessStatus.PENDING)
    stack.telegram.send_text(owner, "/start")  # the owner has a chat with the bot, as one who registered
    page, app = open_mini_app(browser, stack, f"persona={ADMIN}")
    app.get_by_role("button", name="🛡 Admin").click()
    card = app.locator(f'[data-business="{business_id}"]')
    expect(card).to_contain_text("Neue Bäckerei")
    card.get_by_role("button", name="✅ Verify").click()
    expect(card).to_contain_text("Neue Bäckerei is verified. The owner has been told.")
    bot_message(page, "is verified. The owner has been told")  # the admin's chat
    with db.session_scope() as session:
        assert session.get(Business, business_id).status == BusinessStatus.VERIFIED
    deadline = time.monotonic() + 20
    while not any("is verified!" in (m.get("text") or "") for m in stack.telegram.messages(owner)):
        assert time.monotonic() < deadline, "the owner was not told"
        time.sleep(0.1)
    no_page_errors(page)
    page.close()
