"""Pictures of the deal card as businesses and customers see it, in German and English, with
umlauts and right-to-left titles: written to .run/screenshots/ on every run, and to
docs/screenshots/ (tracked) with UPDATE_SCREENSHOTS=1, as tests/e2e/test_web_chat.py does."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFilter

from domain import images

_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOTS = _ROOT / ("docs" if os.environ.get("UPDATE_SCREENSHOTS") else ".run") / "screenshots"

CARDS = {
    # name: (the business's language, title, price, original price)
    "deal-card-de": ("de", "Brötchen & Süßes vom Vortag – Überraschungstüte", 450, 1200),
    "deal-card-en": ("en", "Crème brûlée & Brötchen surprise bag", 450, 1200),
    "deal-card-de-rtl": ("de", "مناقيش زعتر وجبنة", 390, 990),  # Arabic: za'atar and cheese manakish
    "deal-card-en-rtl": ("en", "חלות ולחם מחמצת", 500, 1450),  # Hebrew: challahs and sourdough bread
}


def bakery_photo(seed: int) -> bytes:
    """A photo-like picture drawn here: loaves on a wooden counter, softly lit."""
    im = Image.new("RGB", (1280, 960), (120, 78, 46))
    draw = ImageDraw.Draw(im)
    for y in range(0, 960, 48):  # planks
        shade = 110 + (y * 7 + seed * 13) % 30
        draw.rectangle((0, y, 1280, y + 46), fill=(shade, int(shade * 0.66), int(shade * 0.4)))
    loaves = [(260, 300), (620, 260), (960, 330), (420, 560), (820, 600)]
    for i, (x, y) in enumerate(loaves):
        w, h = 300 - 20 * ((i + seed) % 3), 170
        draw.ellipse((x - w // 2 + 14, y - h // 2 + 18, x + w // 2 + 14, y + h // 2 + 18), fill=(60, 36, 20))
        draw.ellipse((x - w // 2, y - h // 2, x + w // 2, y + h // 2), fill=(205, 142, 70))
        draw.ellipse((x - w // 3, y - h // 3, x + w // 4, y + h // 8), fill=(228, 176, 104))
        for cut in (-1, 0, 1):
            draw.line((x + cut * 60 - 30, y - 40, x + cut * 60 + 30, y + 40), fill=(160, 100, 45), width=10)
    im = im.filter(ImageFilter.GaussianBlur(3))
    out = io.BytesIO()
    im.save(out, "PNG")
    return out.getvalue()


@pytest.mark.parametrize("name", sorted(CARDS))
def test_deal_card_screenshot(name):
    locale, title, price, original = CARDS[name]
    card = images.process_offer_photo(bakery_photo(len(name)), price_minor=price, original_price_minor=original,
                                      currency="EUR", title=title, locale=locale).card
    im = Image.open(io.BytesIO(card))
    assert im.size == images.CARD_SIZE
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    im.convert("RGB").resize((640, 640), Image.Resampling.LANCZOS).save(SCREENSHOTS / f"{name}.png", optimize=True)
