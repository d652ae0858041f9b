"""The web chat in a real browser (Debian's headless Chromium, driven by Playwright), against the
whole e2e stack: the page is served by the same Telegram fake the bot talks to, and a person
clicks through it. A customer finds a deal near them, orders, pays on the Stripe fake's hosted
page and sees the pickup code; a business posts an offer with a photo chosen from disk (after a PDF,
which the bot refuses itself); an admin verifies a business that registered through the page. The
page never loses what was typed, shows times as the bot writes them whatever the browser's zone,
and keeps every persona reachable on a phone. The screenshots of those moments are
written to .run/screenshots/ on every run, and to docs/screenshots/ (the ones the README shows) with
UPDATE_SCREENSHOTS=1, so a plain test run leaves the tracked pictures alone."""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import BrowserContext, Page, Playwright, expect, sync_playwright

from core import db
from models import Business, BusinessStatus, Offer, OfferStatus, Order, OrderStatus
from sandbox.demo import food_photo
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = _ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") else ".run") / "screenshots"
ADMIN = 4242  # ADMIN_IDS of the e2e worker, and the web chat's default admin persona
ALICE = 1001
WAIT_MS = 25_000
LEIPZIG_MARKT = (51.3403, 12.3750)  # one of the page's preset places; no other test puts a shop there
BERLIN = ZoneInfo("Europe/Berlin")  # the sandbox businesses' zone, in which the bot writes times
PHONE = {"width": 390, "height": 844}


@pytest.fixture(scope="module")
def playwright() -> Playwright:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: scripts/ensure-system-packages.sh test installs Debian's chromium")
    with sync_playwright() as driver:
        expect.set_options(timeout=WAIT_MS)
        yield driver


@pytest.fixture(scope="module")
def browser(playwright) -> BrowserContext:
    profile = tempfile.mkdtemp(prefix="web-chat-chromium-")
    context = playwright.chromium.launch_persistent_context(
        profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
        viewport={"width": 1180, "height": 820}, locale="en-GB", timezone_id="Europe/Berlin",
    )
    context.set_default_timeout(WAIT_MS)
    yield context
    context.close()
    shutil.rmtree(profile, ignore_errors=True)


def open_chat(browser: BrowserContext, stack, query: str) -> Page:
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{stack.telegram_url}/?{query}")
    page.wait_for_selector("body[data-live='1']")  # the event stream is open and the chat loaded
    page.errors = errors  # type: ignore[attr-defined]
    return page


def send(page: Page, text: str) -> None:
    box = page.locator("#composer-input")
    box.fill(text)
    box.press("Enter")


def bot_message(page: Page, text: str | re.Pattern):
    """The newest bot message showing ``text`` (waits for it)."""
    message = page.locator(".msg-wrap.in").filter(has_text=text).last
    expect(message).to_be_visible()
    return message


def tap(page: Page, label: str | re.Pattern, within=None) -> None:
    (within or page).get_by_role("button", name=label).last.click()


def share_place(page: Page, button: str, place: str) -> None:
    page.locator(".reply-button", has_text=button).click()
    dialog = page.locator("#location-dialog")
    expect(dialog).to_be_visible()
    dialog.locator(".place", has_text=place).click()
    dialog.get_by_role("button", name="Send location").click()


def attach(page: Page, file: Path) -> None:
    with page.expect_file_chooser() as chooser:
        page.locator("#attach-button").click()
    chooser.value.set_files(str(file))


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.wait_for_timeout(300)  # let the entry animation of the last bubble finish before the picture
    page.screenshot(path=str(SCREENSHOTS / name))


def no_page_errors(page: Page) -> None:
    assert page.errors == []  # type: ignore[attr-defined]


def test_an_admin_verifies_a_business_that_registered_in_the_page(stack, browser):
    owner = new_user_id()
    name = f"Hofladen {owner % 10_000}"
    shop = open_chat(browser, stack, f"user={owner}&name=Hans&role=business")
    send(shop, "/register")
    bot_message(shop, "What is the name of your business")
    send(shop, name)
    bot_message(shop, "where do customers pick up")
    share_place(shop, "Share the shop's location", "Berlin Kreuzberg")
    expect(shop.locator(".msg-wrap.out .location")).to_be_visible()
    bot_message(shop, "street address")
    expect(shop.locator("#reply-keyboard")).to_be_hidden()  # the location keyboard went away
    send(shop, "Oranienstraße 10, 10999 Berlin")
    bot_message(shop, "phone number")
    send(shop, "+49 30 5550101")
    bot_message(shop, "pending verification")

    admin = open_chat(browser, stack, f"persona={ADMIN}")
    expect(admin.locator(".persona.active")).to_contain_text("Ada")
    request = bot_message(admin, name)
    expect(request).to_contain_text("asks for verification")
    expect(request).to_contain_text("Oranienstraße 10")
    shot(admin, "admin-verify.png")
    tap(admin, "✅ Verify", within=request)
    # Names stand in direction isolates (chat.cards.isolate): U+2068 … U+2069 around them.
    bot_message(admin, re.compile(re.escape(name) + "\u2069?" + r" is verified\. The owner has been told"))
    expect(admin.locator(".toast", has_text="Done.")).to_be_visible()  # the callback answer
    # Behind the scenes: the Bot API calls the bot made for this chat (edit, answer to the tap).
    admin.locator("#panel-toggle").click()
    admin.get_by_role("button", name="Bot API").click()
    expect(admin.locator("#panel-body .entry", has_text="answerCallbackQuery").first).to_be_visible()
    expect(admin.locator("#panel-body .entry", has_text="editMessageText").first).to_be_visible()
    shot(admin, "admin-verified.png")
    admin.locator("#panel-toggle").click()
    with db.session_scope() as session:
        business = session.scalar(sa.select(Business).where(Business.owner_id == owner))
        assert business.name == name and business.status == BusinessStatus.VERIFIED
        assert (round(business.latitude, 3), round(business.longitude, 3)) == (52.501, 13.419)

    shop.bring_to_front()
    bot_message(shop, re.compile(re.escape(name) + "\u2069? is verified!"))
    no_page_errors(shop)
    no_page_errors(admin)
    shop.close()
    admin.close()


def test_a_business_posts_an_offer_with_a_photo_from_disk(stack, browser, tmp_path):
    owner = new_user_id()
    business_id = make_business(owner, name="Backstube Paul")
    photo = tmp_path / "cinnamon-rolls.jpg"
    photo.write_bytes(food_photo("pastries"))
    page = open_chat(browser, stack, f"user={owner}&name=Paul&role=business")

    page.locator("#composer-input").fill("/")  # the "/" menu comes from the bot's setMyCommands
    expect(page.locator("#command-popup .command", has_text="/newoffer")).to_be_visible()
    expect(page.locator("#command-popup .command", has_text="/start")).to_contain_text("Main menu")
    page.locator("#composer-input").fill("/newo")
    expect(page.locator("#command-popup .command")).to_have_count(1)
    page.locator("#composer-input").press("Enter")
    bot_message(page, "Give it a short title")
    send(page, "Cinnamon rolls")
    question = bot_message(page, "Describe it")
    tap(page, "Skip", within=question)
    bot_message(page, "What do customers pay")
    send(page, "abc")
    bot_message(page, "couldn't read that as a price")
    send(page, "3,20")
    bot_message(page, "original price")
    send(page, "8")
    bot_message(page, "How many units")
    send(page, "6")
    days = bot_message(page, "When can customers pick it up")
    tap(page, "Tomorrow", within=days)
    bot_message(page, "Pickup window")
    send(page, "17:00-18:30")
    tap(page, "Bakery", within=bot_message(page, "Which category fits best"))
    tap(page, "vegetarian", within=bot_message(page, "suitable for any of these diets"))
    tap(page, "Done", within=bot_message(page, "✅ vegetarian"))
    tap(page, "Done", within=bot_message(page, "14 allergens"))
    bot_message(page, "send a photo")
    # 📎 sends any file: a PDF goes as a document (as Telegram delivers it) and the bot answers it.
    menu = tmp_path / "menu.pdf"
    menu.write_bytes(b"%PDF-1.4\n% today's menu\n")
    attach(page, menu)
    expect(page.locator(".msg-wrap.out .document", has_text="menu.pdf")).to_be_visible()
    bot_message(page, re.compile(r"not an image|not what I asked for"))
    expect(page.locator(".toast.warn")).to_have_count(0)
    updates = httpx.get(f"{stack.telegram_url}/_sandbox/updates", params={"chat_id": owner}).json()["updates"]
    (document,) = [u["update"]["message"]["document"] for u in updates if "document" in u["update"].get("message", {})]
    assert set(document) == {"file_id", "file_unique_id", "file_name", "mime_type", "file_size"}  # Bot API's Document
    assert (document["file_name"], document["mime_type"], document["file_size"]) == (
        "menu.pdf", "application/pdf", menu.stat().st_size)
    bot_message(page, "send a photo")
    attach(page, photo)
    expect(page.locator(".msg-wrap.out img.photo")).to_be_visible()
    preview = bot_message(page, "Preview")
    expect(preview.locator("img.photo")).to_be_visible()
    expect(preview).to_contain_text("Cinnamon rolls")
    expect(preview).to_contain_text("Bakery · 🌱 vegetarian")
    expect(preview).to_contain_text("€3.20")
    expect(preview.locator(".bubble s", has_text="€8.00")).to_be_visible()  # the original price, struck through
    assert preview.locator("img.photo").evaluate("img => img.complete && img.naturalWidth > 0")
    shot(page, "business-offer-photo.png")
    tap(page, "✅ Publish", within=preview)
    bot_message(page, "Published")
    with db.session_scope() as session:
        (offer,) = session.scalars(sa.select(Offer).where(Offer.business_id == business_id))
        assert offer.title == "Cinnamon rolls" and offer.status == OfferStatus.ACTIVE
        assert (offer.price_minor, offer.original_price_minor, offer.quantity) == (320, 800, 6)
        assert offer.photo_card_file_id
    no_page_errors(page)
    page.close()


def test_a_customer_finds_a_deal_orders_pays_and_sees_the_pickup_code(stack, browser):
    business_id = make_business(name="Café am Markt", latitude=LEIPZIG_MARKT[0], longitude=LEIPZIG_MARKT[1])
    make_offer(business_id, "Lunch box", quantity=3, price_minor=450, original_price_minor=1000)
    page = open_chat(browser, stack, f"persona={ALICE}")
    expect(page.locator("#you-are")).to_contain_text("Alice")

    send(page, "/start")
    menu = bot_message(page, "What would you like to do")
    tap(page, "📍 Deals near me", within=menu)
    bot_message(page, "Share my location")
    share_place(page, "Share my location", "Leipzig Markt")
    listing = bot_message(page, "Deals near you")
    expect(listing).to_contain_text("Lunch box")
    expect(listing).to_contain_text("Café am Markt")
    tap(page, re.compile("^1\\. \u2068?Lunch box"), within=listing)  # the title stands in direction isolates
    card = bot_message(page, "3 left")
    tap(page, "2", within=card)
    confirm = bot_message(page, re.compile("2 × \u2068?Lunch box"))
    expect(confirm).to_contain_text("€9.00")
    tap(page, "✅ Reserve and pay", within=confirm)
    pay_message = bot_message(page, "Please pay by")
    pay_button = pay_message.get_by_role("button", name=re.compile(r"Pay €9\.00"))

    with browser.expect_page() as opened:
        pay_button.click()
    checkout = opened.value
    checkout.wait_for_load_state()
    assert checkout.url.startswith(stack.stripe.url + "/checkout/cs_")
    expect(checkout.get_by_text("Lunch box")).to_be_visible()
    checkout.get_by_role("button", name=re.compile(r"^Pay ")).click()
    expect(checkout.get_by_text("Payment received")).to_be_visible()
    shot(checkout, "customer-checkout-paid.png")
    checkout.close()

    page.bring_to_front()
    paid = bot_message(page, "Your pickup code")
    with db.session_scope() as session:
        order = session.scalar(sa.select(Order).where(Order.customer_id == ALICE))
        assert order.status == OrderStatus.PAID and order.quantity == 2
        code = order.pickup_code
    expect(paid).to_contain_text(code)
    shot(page, "customer-pickup-code.png")
    no_page_errors(page)
    page.close()


def test_times_are_the_bots_24_hour_berlin_times_whatever_the_browsers_zone(stack, playwright):
    user = new_user_id()
    # A browser in UTC with a 12-hour locale (the module's browser is set to Berlin and en-GB).
    chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
    elsewhere = chromium.new_context(locale="en-US", timezone_id="UTC")
    elsewhere.set_default_timeout(WAIT_MS)
    page = open_chat(elsewhere, stack, f"user={user}&name=Tom")
    assert page.evaluate("new Date(0).getTimezoneOffset()") == 0
    send(page, "hello")
    expect(page.locator(".msg-wrap.in")).not_to_have_count(0)  # the bot has answered
    messages = [m for m in stack.telegram.messages(user) if not m["deleted"]]
    assert {m["sender"] for m in messages} == {"user", "bot"}
    for message in messages:
        moment = datetime.fromtimestamp(message["date"], BERLIN)
        meta = page.locator(f'.msg-wrap[data-id="{message["message_id"]}"] .meta-line')
        expect(meta).to_contain_text(moment.strftime("%H:%M"))
        expect(meta).not_to_contain_text(re.compile(r"AM|PM"))
        expect(meta.locator("[title]")).to_have_attribute("title", re.compile(r"Europe/Berlin"))
    day = page.locator(".day").first
    expect(day.locator(".zone")).to_have_text(datetime.fromtimestamp(messages[0]["date"], BERLIN).tzname())
    expect(day).to_contain_text(datetime.fromtimestamp(messages[0]["date"], BERLIN).strftime("%A"))
    no_page_errors(page)
    chromium.close()


_FULLY_SHOWN = """button => {
    // Visible and neither covered nor clipped: its centre and the middle of each edge hit the button itself.
    const r = button.getBoundingClientRect();
    const [x, y] = [r.left + r.width / 2, r.top + r.height / 2];
    const points = [[x, y], [r.left + 3, y], [r.right - 3, y], [x, r.top + 3], [x, r.bottom - 3]];
    return r.width > 0 && points.every(([x, y]) => x >= 0 && y >= 0 && x <= innerWidth && y <= innerHeight
                                               && button.contains(document.elementFromPoint(x, y)));
}"""


def test_every_persona_is_reachable_at_phone_width(stack, browser):
    page = open_chat(browser, stack, f"persona={ALICE}")
    page.set_viewport_size(PHONE)
    personas = page.locator("#persona-list .persona")
    expect(personas).to_have_count(4)
    names = ["Alice", "Bob", "Greta", "Ada"]
    for index, name in enumerate(names):
        button = personas.nth(index)
        expect(button).to_contain_text(name)
        assert button.evaluate(_FULLY_SHOWN), f"{name} is hidden or covered at {PHONE}"
    assert page.evaluate("document.documentElement.scrollWidth <= innerWidth")  # nothing sticks out sideways
    shot(page, "phone-personas.png")
    for name in reversed(names):
        personas.filter(has_text=name).click()
        expect(page.locator(".persona.active")).to_contain_text(name)
    assert page.locator("#demo-button").evaluate(_FULLY_SHOWN)
    no_page_errors(page)
    page.close()


def test_a_message_over_telegrams_limit_stays_in_the_box_with_the_reason(stack, browser):
    user = new_user_id()
    page = open_chat(browser, stack, f"user={user}&name=Lena")
    box, note = page.locator("#composer-input"), page.locator("#composer-note")
    text = "Dear bakery, " + "a" * (5000 - 13)
    send(page, text)
    expect(note).to_have_text(re.compile(r"^Messages can be at most 4,096 characters \(this one has 5,000\)"))
    expect(box).to_have_value(text)  # nothing typed is lost
    expect(page.locator(".toast.warn")).to_have_count(0)
    assert stack.telegram.messages(user) == []  # and nothing was sent
    shot(page, "message-too-long.png")
    box.fill(text[:4096])  # Telegram's limit itself is fine: the note goes and the message is sent
    expect(note).to_be_hidden()
    box.press("Enter")
    expect(page.locator(".msg-wrap.out")).to_have_count(1)
    expect(box).to_have_value("")
    no_page_errors(page)
    page.close()


def test_inline_mode_in_the_page_and_the_deal_link_opens_the_bot(stack, browser):
    bob = 1002
    token = f"pg{new_user_id()}"
    offer = make_offer(make_business(name=f"Inline café {token}"), f"Cinnamon bun {token}")
    page = open_chat(browser, stack, f"persona={bob}")
    box = page.locator("#composer-input")
    box.fill(f"@surplus_sandbox_bot cinnamon {token}")
    results = page.locator("#inline-results")
    result = results.locator(".inline-result", has_text=f"Cinnamon bun {token}")
    expect(result).to_be_visible()
    result.click()
    sent = page.locator(".msg-wrap.out").filter(has_text=f"Cinnamon bun {token}").last
    expect(sent).to_contain_text("via @surplus_sandbox_bot")
    expect(box).to_have_value("")
    tap(page, "🛒 Open in the bot", within=sent)  # the deal's t.me link opens it in the bot
    card = bot_message(page, f"Inline café {token}")
    expect(card.get_by_role("button", name="Order 1")).to_be_visible()
    assert str(offer) in card.get_by_role("button", name="Order 1").get_attribute("title")
    no_page_errors(page)
    page.close()
