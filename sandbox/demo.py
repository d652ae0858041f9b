"""A short demo for the sandbox, played through the Telegram fake's public user API only.

Greta registers her bakery through the chat, the admin verifies it, Greta sets up payouts on the
Stripe fake's onboarding page, posts a few offers with photos (drawn here with Pillow), and Alice
shares her location and looks at the deals nearby.
Every step is a message, a tap or an upload, exactly as the web chat or a phone would send it,
and every answer is awaited from the bot, so the demo also shows that the whole system works.

Run again, it picks up where things stand: a registered business is not registered twice, a
pending one is verified, offers already posted (same title) are not posted again.

    python -m sandbox.demo                  # asks the running fake (make run) to play it
    make demo                               # the same

The web chat's "Demo" button starts the same scenario (``POST /_sandbox/demo``).
"""

from __future__ import annotations

import argparse
import io
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from PIL import Image, ImageDraw, ImageFilter

from sandbox.telegram_fake.client import SandboxError, TelegramFakeClient

DEFAULT_URL = "http://127.0.0.1:8081"
REPLY_TIMEOUT_SECONDS = 40.0

BUSINESS_NAME = "Bäckerei Sonne"
BUSINESS_ADDRESS = "Rathausstraße 5, 10178 Berlin"
BUSINESS_PHONE = "+49 30 1234567"
BUSINESS_LOCATION = (52.5200, 13.4050)  # Berlin Mitte, next to the web chat's preset places
CUSTOMER_LOCATION = (52.5186, 13.4081)  # "Berlin Mitte (Rotes Rathaus)" in the web chat


@dataclass(frozen=True)
class DemoOffer:
    title: str
    description: str
    price: str
    original_price: str
    quantity: int
    window: str
    picture: str  # which drawing
    category: str = "other"  # domain/tags.py codes
    allergens: tuple[str, ...] = ()


OFFERS = [
    DemoOffer("Surprise bag of pastries", "Croissants, buns and a pretzel from this morning.", "3.90", "12",
              5, "18:00-19:30", "pastries", "bakery", ("gluten", "eggs", "milk")),
    DemoOffer("Sourdough loaf", "A whole rye sourdough loaf, baked today.", "2.50", "5.80", 4, "17:30-19:00",
              "loaf", "bakery", ("gluten",)),
    DemoOffer("Fruit box", "Apples and pears that are a little bruised but sweet.", "4", "11", 3, "16:00-18:00",
              "fruit", "produce"),
]


class DemoError(RuntimeError):
    pass


# --------------------------------------------------------------------------- pictures


def food_photo(kind: str, size: tuple[int, int] = (960, 720)) -> bytes:
    """A simple drawn JPEG of the food: enough to look like a photo of it in the chat."""
    width, height = size
    image = Image.new("RGB", size, (236, 222, 199))
    draw = ImageDraw.Draw(image)
    # A wooden table and a plate or a board.
    for y in range(0, height, 48):
        draw.rectangle([0, y, width, y + 46], fill=(178 - y % 96 // 8, 126, 84))
    if kind == "pastries":
        draw.ellipse([120, 110, width - 120, height - 90], fill=(246, 243, 236), outline=(210, 205, 195), width=6)
        for index, (cx, cy) in enumerate([(330, 300), (560, 280), (420, 470), (640, 470)]):
            if index % 2 == 0:  # croissant: overlapping crescents
                for step in range(5):
                    offset = (step - 2) * 34
                    draw.ellipse([cx + offset - 44, cy - 52 + abs(step - 2) * 14, cx + offset + 44,
                                  cy + 52 - abs(step - 2) * 14], fill=(214 - step * 6, 146, 52),
                                 outline=(150, 92, 30), width=3)
            else:  # bun with seeds
                draw.ellipse([cx - 80, cy - 62, cx + 80, cy + 62], fill=(222, 170, 92), outline=(160, 108, 46),
                             width=4)
                for seed in range(12):
                    angle = seed * 2.4
                    sx, sy = cx + math.cos(angle) * 40 * (seed % 3 + 1) / 3, cy + math.sin(angle) * 30
                    draw.ellipse([sx - 5, sy - 3, sx + 5, sy + 3], fill=(250, 244, 226))
    elif kind == "loaf":
        draw.rounded_rectangle([90, 150, width - 90, height - 110], radius=40, fill=(196, 150, 98),
                               outline=(140, 98, 56), width=6)
        draw.ellipse([180, 200, width - 180, height - 170], fill=(150, 88, 40), outline=(96, 54, 20), width=6)
        for line in range(5):
            x = 300 + line * 90
            draw.line([x, 250, x + 60, height - 230], fill=(232, 200, 150), width=14)
    else:  # fruit in a crate
        draw.rectangle([110, 220, width - 110, height - 80], fill=(160, 112, 62), outline=(110, 72, 36), width=8)
        for row in range(2):
            for column in range(4):
                cx, cy = 230 + column * 165, 250 + row * 150
                apple = (row + column) % 2 == 0
                colour = (200, 40, 40) if apple else (188, 200, 70)
                draw.ellipse([cx - 72, cy - 68, cx + 72, cy + 70], fill=colour, outline=(90, 30, 20), width=3)
                draw.line([cx, cy - 66, cx + 10, cy - 100], fill=(90, 60, 20), width=8)
                draw.ellipse([cx + 8, cy - 104, cx + 52, cy - 84], fill=(70, 150, 60))
                draw.ellipse([cx - 40, cy - 40, cx - 14, cy - 16], fill=(255, 255, 255))
    image = image.filter(ImageFilter.SMOOTH)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=88)
    return out.getvalue()


# --------------------------------------------------------------------------- chatting


def _text(message: dict[str, Any]) -> str:
    return message.get("text") or message.get("caption") or ""


def _buttons(message: dict[str, Any]) -> list[dict[str, Any]]:
    markup = message.get("reply_markup") or {}
    return [button for row in markup.get("inline_keyboard", []) for button in row]


class Chatter:
    """One persona's side of the chat: say things, tap buttons, wait for the bot's answers."""

    def __init__(self, client: TelegramFakeClient, user_id: int, timeout: float = REPLY_TIMEOUT_SECONDS):
        self.client = client
        self.user_id = user_id
        self.timeout = timeout

    def expect(self, after_seq: int, *needles: str, data_prefix: str | None = None) -> dict[str, Any]:
        """The first bot message sent or edited after ``after_seq`` containing one of ``needles``
        (and, if given, a button whose data starts with ``data_prefix``)."""
        deadline = time.monotonic() + self.timeout
        cursor = after_seq
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DemoError(f"the bot did not answer with {needles!r} in chat {self.user_id} "
                                f"within {self.timeout:.0f}s (are the workers running?)")
            try:
                changed = self.client.wait_for_reply(self.user_id, after_seq=cursor, timeout=min(remaining, 10))
            except TimeoutError:
                continue
            for message in changed:
                if message.get("deleted"):
                    continue
                if any(needle in _text(message) for needle in needles) and (
                    data_prefix is None
                    or any(str(b.get("callback_data", "")).startswith(data_prefix) for b in _buttons(message))
                ):
                    return message
            cursor = max(message["seq"] for message in changed)

    def say(self, text: str, *needles: str) -> dict[str, Any]:
        sent = self.client.send_text(self.user_id, text)
        return self.expect(sent["seq"], *needles)

    def tap(self, message: dict[str, Any], *needles: str, data: str | None = None, text: str | None = None,
            data_prefix: str | None = None) -> dict[str, Any]:
        pressed = self.client.press_button(self.user_id, message["message_id"], data, text=text)
        return self.expect(pressed["seq"], *needles, data_prefix=data_prefix)

    def last_bot_message(self, predicate: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
        for message in reversed(self.client.messages(self.user_id, include_deleted=False)):
            if message.get("sender") == "bot" and predicate(message):
                return message
        return None


def _button_data(message: dict[str, Any], prefix: str, label: str | None = None) -> str | None:
    for button in _buttons(message):
        data = str(button.get("callback_data", ""))
        if data.startswith(prefix) and (label is None or label in button.get("text", "")):
            return data
    return None


# --------------------------------------------------------------------------- the scenario


def run(
    base_url: str = DEFAULT_URL,
    *,
    admin_id: int = 4242,
    owner: dict[str, Any] | None = None,
    customer: dict[str, Any] | None = None,
    progress: Callable[[str], None] = print,
    timeout: float = REPLY_TIMEOUT_SECONDS,
) -> None:
    owner = owner or {"id": 2001, "first_name": "Greta", "last_name": "Sonne"}
    customer = customer or {"id": 1001, "first_name": "Alice"}
    with TelegramFakeClient(base_url, timeout=timeout + 10) as client:
        client.create_user(admin_id, "Ada", last_name="Admin", language_code="en")
        client.create_user(owner["id"], owner["first_name"], last_name=owner.get("last_name"), language_code="en")
        client.create_user(customer["id"], customer["first_name"], last_name=customer.get("last_name"),
                           language_code="en")
        greta = Chatter(client, owner["id"], timeout)
        ada = Chatter(client, admin_id, timeout)
        alice = Chatter(client, customer["id"], timeout)

        greta.say("/cancel", "Cancelled", "nothing to cancel")
        progress(f"{owner['first_name']} opens the business registration")
        status = greta.say("/register", "step 1 of 3", "waiting for verification", "is verified", "is suspended")
        status_text = _text(status)
        if "is suspended" in status_text:
            raise DemoError(f"{BUSINESS_NAME} is suspended; un-suspend it or reset the database")
        if "step 1 of 3" in status_text:
            register(greta, progress)
            verify(ada, progress)
        elif "waiting for verification" in status_text:
            progress("the business is registered already and waits for verification")
            verify(ada, progress)
        else:
            progress("the business is registered and verified already")

        set_up_payouts(greta, progress)
        listing = _text(greta.say("/myoffers", "Your offers"))
        for offer in OFFERS:
            if f"{offer.title} — active" in listing or f"{offer.title} — sold out" in listing:
                progress(f"“{offer.title}” is on offer already")
                continue
            post_offer(greta, offer, progress)

        browse(alice, progress)
    progress("demo finished: open Alice's chat, pick a deal and pay for it")


def register(greta: Chatter, progress: Callable[[str], None]) -> None:
    progress(f"registering “{BUSINESS_NAME}”")
    greta.say(BUSINESS_NAME, "where do customers pick up")
    sent = greta.client.send_location(greta.user_id, *BUSINESS_LOCATION)
    greta.expect(sent["seq"], "street address")
    greta.say(BUSINESS_ADDRESS, "phone number")
    greta.say(BUSINESS_PHONE, "pending verification")
    progress("registered; waiting for the admin")


def verify(ada: Chatter, progress: Callable[[str], None]) -> None:
    """The admin verifies: from the request the bot sent, else through /admin → pending businesses."""
    deadline = time.monotonic() + 5
    request = None
    while request is None and time.monotonic() < deadline:
        request = ada.last_bot_message(
            lambda m: BUSINESS_NAME in _text(m) and _button_data(m, "bizrev:verify:") is not None
        )
        if request is None:
            time.sleep(0.2)
    if request is None:
        menu = ada.say("/admin", "Admin", "admin")
        data = _button_data(menu, "adm_biz")
        if data is None:
            raise DemoError("the admin persona gets no admin menu: is its id in ADMIN_IDS?")
        pending = ada.tap(menu, "waiting for verification", data=data)
        show = _button_data(pending, "bizrev:show:", BUSINESS_NAME)
        if show is None:
            raise DemoError(f"{BUSINESS_NAME} is not in the admin's list of pending businesses")
        request = ada.tap(pending, BUSINESS_NAME, data=show, data_prefix="bizrev:verify:")
    progress("the admin taps ✅ Verify")
    ada.tap(request, "is verified", data=_button_data(request, "bizrev:verify:"))


def set_up_payouts(greta: Chatter, progress: Callable[[str], None]) -> None:
    """Greta taps "💶 Set up payouts", opens Stripe's onboarding page from the link the bot sends and
    presses "Complete", as she would in the browser; Stripe's account.updated webhook makes the bot
    say payouts are active."""
    screen = greta.say("/start payouts", "Payouts are active", "Set up a Stripe account", "Payouts pending",
                       "Payouts restricted", "Stripe disconnected")
    if "Payouts are active" in _text(screen):
        progress("payouts are set up already")
        return
    progress("setting up payouts on Stripe's onboarding page")
    link_message = greta.tap(screen, "secure page", data="bizpaylink")
    url = next(b["url"] for b in _buttons(link_message) if b.get("url"))
    with httpx.Client(timeout=15, trust_env=False) as browser:
        browser.post(url.rstrip("/") + "/complete").raise_for_status()  # the page's "Complete" button
    greta.expect(link_message["seq"], "are active")
    progress("Stripe says payouts are active")


def post_offer(greta: Chatter, offer: DemoOffer, progress: Callable[[str], None]) -> None:
    progress(f"posting “{offer.title}”")
    greta.say("/newoffer", "short title")
    greta.say(offer.title, "Describe it")
    greta.say(offer.description, "What do customers pay")
    greta.say(offer.price, "original price")
    greta.say(offer.original_price, "How many units")
    days = greta.say(str(offer.quantity), "When can customers pick it up")
    greta.tap(days, "Pickup window", text="Tomorrow")
    category = greta.say(offer.window, "Which category fits best")
    diet = greta.tap(category, "suitable for any of these diets", data=f"flow:pick:category:{offer.category}")
    allergens = greta.tap(diet, "14 allergens", data="flow:pick:diet:done")
    for allergen in offer.allergens:
        allergens = greta.tap(allergens, "14 allergens", data=f"flow:pick:allergens:{allergen}")
    greta.tap(allergens, "send a photo", data="flow:pick:allergens:done")
    sent = greta.client.send_photo(greta.user_id, food_photo(offer.picture), filename=f"{offer.picture}.jpg")
    preview = greta.expect(sent["seq"], "Preview", data_prefix="bizoffer:publish:")
    greta.tap(preview, "Published", data=_button_data(preview, "bizoffer:publish:"))


def browse(alice: Chatter, progress: Callable[[str], None]) -> None:
    progress("Alice looks for deals near her")
    menu = alice.say("/start", "What would you like to do")
    answer = alice.tap(menu, "Share my location", "Deals near you", data="near")
    if "Deals near you" not in _text(answer):
        sent = alice.client.send_location(alice.user_id, *CUSTOMER_LOCATION)
        answer = alice.expect(sent["seq"], "Deals near you")
    first = _button_data(answer, "offer:")
    if first is not None:
        alice.tap(answer, "left", data=first)


# --------------------------------------------------------------------------- command line


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sandbox.demo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", default=DEFAULT_URL, help=f"the Telegram fake (default {DEFAULT_URL})")
    args = parser.parse_args(argv)
    url = args.url.rstrip("/")
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            started = http.post("/_sandbox/demo")
            if started.status_code not in (202, 409):
                print(f"the fake refused: {started.status_code} {started.text}", file=sys.stderr)
                return 1
            if started.status_code == 409:
                print("a demo is running already; following it")
            print(f"Open {url}/ to watch it in the web chat.")
            shown = 0
            while True:
                status = http.get("/_sandbox/demo").json()
                for step in status["steps"][shown:]:
                    print(" •", step["text"])
                shown = len(status["steps"])
                if not status["running"]:
                    break
                time.sleep(0.5)
    except httpx.HTTPError as error:
        print(f"cannot reach the Telegram fake at {url} ({error}); start it with `make run`", file=sys.stderr)
        return 1
    if status.get("error"):
        print(f"demo failed: {status['error']}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["OFFERS", "Chatter", "DemoError", "SandboxError", "food_photo", "main", "run", "set_up_payouts"]
