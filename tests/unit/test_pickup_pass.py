"""The pickup pass's QR code: it decodes (with zxing-cpp, a real decoder) to the deep link that
opens the bot with /start pickup_<code>, and the bot's username comes from the settings; what a scanner
reads off it gives back the code (the Mini App's scanner), and nothing else does."""

from __future__ import annotations

import base64
import io

import pytest
import zxingcpp
from PIL import Image

import chat.messages  # noqa: F401 - registers the renderers
from core import outbox
from core.settings import Settings
from domain.payments.notices import PickupPass
from domain.pickup_pass import bot_username, code_of_scan, pickup_link, qr_png
from models import Business, Offer, Order


def decode(png: bytes) -> list[str]:
    return [found.text for found in zxingcpp.read_barcodes(Image.open(io.BytesIO(png)))]


def test_the_link_opens_the_bot_with_the_pickup_code():
    assert pickup_link("surplus_sandbox_bot", "K7Q2MX") == "https://t.me/surplus_sandbox_bot?start=pickup_K7Q2MX"


@pytest.mark.parametrize("label", ["", "K7Q2MX"])
def test_the_qr_code_decodes_to_the_link(label):
    link = pickup_link("surplus_sandbox_bot", "K7Q2MX")
    png = qr_png(link, label=label)
    assert png.startswith(b"\x89PNG") and decode(png) == [link]
    im = Image.open(io.BytesIO(png))
    assert min(im.size) >= 300  # big enough to scan off a phone screen after Telegram's JPEG


def test_the_qr_code_still_decodes_after_telegram_recompresses_it():
    link = pickup_link("a_rather_long_bot_username_here", "ABCDEFGHJKLM")
    im = Image.open(io.BytesIO(qr_png(link, label="ABCDEFGHJKLM"))).convert("RGB")
    small = io.BytesIO()
    im.resize((im.width // 2, im.height // 2)).save(small, "JPEG", quality=60)
    assert decode(small.getvalue()) == [link]


@pytest.mark.parametrize(
    ("environment", "username"),
    [
        ({}, "surplus_sandbox_bot"),  # the sandbox: its bot's chat is the return URL
        ({"checkout_return_url": "https://t.me/surplus_bot"}, "surplus_bot"),
        ({"checkout_return_url": "https://t.me/surplus_bot/", "bot_token": "1:x"}, "surplus_bot"),
        ({"checkout_return_url": "http://127.0.0.1:8081/"}, "surplus_sandbox_bot"),  # make run's web chat
        ({"checkout_return_url": "https://shop.example/thanks", "bot_token": "1:x"}, None),
        ({"bot_token": "1:x"}, None),
    ],
)
def test_the_bot_username_comes_from_the_settings(monkeypatch, environment, username):
    for name in ("CHECKOUT_RETURN_URL", "BOT_TOKEN", "STRIPE_SECRET_KEY"):
        monkeypatch.delenv(name, raising=False)
    assert bot_username(Settings(**environment)) == username


@pytest.mark.parametrize(("language", "words"), [("en", "Your pickup pass"), ("de", "Dein Abholpass")])
def test_the_pass_is_a_photo_of_the_qr_code_in_the_customers_language(monkeypatch, language, words):
    monkeypatch.delenv("BOT_TOKEN", raising=False)
    monkeypatch.delenv("CHECKOUT_RETURN_URL", raising=False)
    from core.settings import get_settings

    get_settings.cache_clear()
    try:
        order = Order(id=7, quantity=2, amount_minor=700, currency="EUR")
        notice = PickupPass(order=order, offer=Offer(title="Brötchen <frisch>"), business=Business(name="Sonne"),
                            language=language, pickup_code="K7Q2MX")
        reply = outbox.render(notice)
    finally:
        get_settings.cache_clear()
    assert words in reply.text and "K7Q2MX" in reply.text and "Brötchen &lt;frisch&gt;" in reply.text
    assert reply.photo is None and reply.photo_upload
    assert decode(base64.b64decode(reply.photo_upload)) == ["https://t.me/surplus_sandbox_bot?start=pickup_K7Q2MX"]
    assert len(reply.text) <= 1024  # a photo's caption


@pytest.mark.parametrize(("scanned", "bot", "code"), [
    ("https://t.me/surplus_sandbox_bot?start=pickup_AB12CD", "surplus_sandbox_bot", "AB12CD"),
    ("  https://t.me/Surplus_Sandbox_Bot?start=pickup_ab12cd\n", "surplus_sandbox_bot", "AB12CD"),
    ("https://t.me/any_other_bot?start=pickup_AB12CD", None, "AB12CD"),  # no username known: any bot's pass
    ("https://t.me/any_other_bot?start=pickup_AB12CD", "surplus_sandbox_bot", None),  # another bot's pass
    ("https://t.me/surplus_sandbox_bot?start=offer_42", "surplus_sandbox_bot", None),
    ("https://example.com/?start=pickup_AB12CD", "surplus_sandbox_bot", None),
    ("ab12-cd", "surplus_sandbox_bot", "AB12CD"),  # a pass of a deployment without the bot's username
    ("WIFI:S:Cafe;T:WPA;P:secret;;", "surplus_sandbox_bot", None),
    ("", None, None),
])
def test_a_scanned_qr_code_gives_the_pickup_code_only_of_a_pass(scanned, bot, code):
    assert code_of_scan(scanned, bot) == code


def test_the_pass_scans_back_to_its_code():
    link = pickup_link("surplus_sandbox_bot", "K7Q2XZ")
    (text,) = decode(qr_png(link, label="K7Q2XZ"))
    assert code_of_scan(text, "surplus_sandbox_bot") == "K7Q2XZ"
