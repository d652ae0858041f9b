"""The deal card shows what the chat shows: umlauts, any script, right-to-left titles in reading
order and shaped, prices formatted as the chat formats them for the business's language.

These need the fonts and libraqm that scripts/ensure-system-packages.sh installs for tests."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageDraw, ImageFont, features

from domain import card_text, images
from domain.card_text import displayable_title, draw_text, text_width
from domain.money import format_money

DEAL = {"price_minor": 450, "original_price_minor": 750, "currency": "EUR", "title": "Croissants"}
W, H = images.CARD_SIZE
TITLE_LINE = (0, H - H * 31 // 100, W, H - H * 15 // 100)  # above the price, inside the dark band

NBSP = "\u00a0"
ARABIC = "خبز طازج"  # "fresh bread"
HEBREW = "אבג"  # alef, bet, gimel: read from the right


def flat_card(**deal) -> Image.Image:
    return images._compose_card(Image.new("RGB", (1280, 960), (128, 128, 128)), **{**DEAL, **deal})


def difference(a: Image.Image, b: Image.Image) -> float:
    """How much two images differ: the sum of absolute differences, in full-intensity pixels."""
    diff = ImageChops.difference(a.convert("L"), b.convert("L"))
    return sum(value * count for value, count in enumerate(diff.histogram())) / 255


def ink_columns(im: Image.Image, box) -> tuple[int, int]:
    """The leftmost and rightmost columns inside ``box`` where the card differs from a card
    without a title (the title's ink)."""
    bare = flat_card(title="").crop(box)
    bbox = ImageChops.difference(im.crop(box).convert("L"), bare.convert("L")).point(
        lambda v: 255 if v > 40 else 0).getbbox()
    assert bbox is not None, "nothing drawn there"
    return box[0] + bbox[0], box[0] + bbox[2]


def test_fonts_from_debian_packages_are_found():
    faces = card_text.faces()
    assert faces, ("no card font installed: scripts/ensure-system-packages.sh installs fonts-noto-core and "
                   "fonts-dejavu-core")
    assert Path(faces[0].regular).name == "NotoSans-Regular.ttf"
    covered = {name: any(face.covers(ch) for face in faces) for name, ch in
               {"umlaut": "ö", "euro": "€", "arabic": "ب", "hebrew": "א", "cyrillic": "Ж", "minus": "−"}.items()}
    assert all(covered.values()), covered
    assert all(face.bold for face in faces)  # real bold faces, no faked strokes


def test_pillow_lays_out_with_raqm():
    assert features.check("raqm"), "libraqm missing: apt-get install libraqm0"
    font = card_text._truetype(card_text.faces()[0].regular, 40)
    assert font.layout_engine == ImageFont.Layout.RAQM


def test_titles_keep_their_letters():
    assert displayable_title("Brötchen") == "Brötchen"
    assert displayable_title("Café — crème brûlée") == "Café — crème brûlée"
    assert displayable_title("Пирожки с капустой") == "Пирожки с капустой"  # noqa: RUF001 - Cyrillic
    assert displayable_title(ARABIC) == ARABIC
    assert displayable_title("לחם טרי") == "לחם טרי"
    assert displayable_title("Brot 🍞") == "Brot"  # no colour emoji font: left out
    assert displayable_title("\u200fخبز\u200e") == "خبز"  # bidi marks: the layout orders the text itself
    assert displayable_title("😀🍞") == ""


def test_an_umlaut_is_drawn():
    with_umlaut, without = flat_card(title="Brötchen"), flat_card(title="Brotchen")
    assert difference(with_umlaut.crop(TITLE_LINE), without.crop(TITLE_LINE)) > 20


def test_a_right_to_left_title_is_drawn_from_the_right():
    card = flat_card(title=ARABIC)
    left, right = ink_columns(card, TITLE_LINE)
    margin = W * 45 // 1000
    assert right > W - margin - 10 and left > W // 2  # short: it ends at the right margin
    latin_left, _ = ink_columns(flat_card(title="Fresh bread"), TITLE_LINE)
    assert latin_left < margin + 10


def test_arabic_letters_are_joined():
    # Joined (initial, medial, final) forms are narrower than three isolated letters.
    assert text_width("ببب", 60) < 0.8 * 3 * text_width("ب", 60)


def test_hebrew_reads_from_the_right():
    def render(draw) -> Image.Image:
        im = Image.new("L", (600, 150), 0)
        draw(im)
        return im

    drawn = render(lambda im: draw_text(im, 20, 100, HEBREW, size=60, fill=255, shadow=False))
    font = ImageFont.truetype(card_text.faces()[2].regular, 60, layout_engine=ImageFont.Layout.BASIC)
    reversed_by_hand = render(lambda im: ImageDraw.Draw(im).text((20, 100), HEBREW[::-1], font=font, fill=255,
                                                                   anchor="ls"))
    as_typed = render(lambda im: ImageDraw.Draw(im).text((20, 100), HEBREW, font=font, fill=255, anchor="ls"))
    assert difference(drawn, reversed_by_hand) < 0.3 * difference(drawn, as_typed)


@pytest.mark.parametrize(
    ("text", "runs"),
    [
        ("Brötchen", ["Brötchen"]),
        (ARABIC, [ARABIC]),  # one face: raqm orders it
        ("Falafel فلافل", ["Falafel ", "فلافل"]),
        ("خبز Brot", ["Brot", "خبز "]),  # a right-to-left title: the Latin word is read second, at the left
        ("خبز 12 قطعة", ["قطعة", " ", "12", "خبز "]),
        ("לחם 2 טרי", ["טרי", " ", "2", "לחם "]),
        ("−40 %", ["−", "40 %"]),  # Noto Sans has no minus sign: DejaVu Sans draws it
    ],
)
def test_mixed_scripts_are_cut_into_runs_in_visual_order(text, runs):
    assert [run.text for run in card_text._runs(text, 40, False)] == runs


def test_the_card_prices_read_as_in_the_chat():
    for locale, price in (("en", "€4.50"), ("de", f"4,50{NBSP}€")):
        assert images._card_money(450, "EUR", locale) == format_money(450, "EUR", locale) == price
        assert card_text.drawable(price)
    assert images._badge_label(40) == "−40 %"  # as the chat's caption: "(−40 %)"
    band = (0, H * 3 // 4, W, H)
    english, german = flat_card(locale="en"), flat_card(locale="de")
    assert difference(english.crop(band), german.crop(band)) > 100
    assert flat_card(locale="de").tobytes() == flat_card(locale="de").tobytes()


def test_the_photo_pipeline_renders_the_card_for_a_language():
    photo = Image.new("RGB", (1280, 960), (128, 128, 128))
    buffer = io.BytesIO()
    photo.save(buffer, "PNG")
    english = images.process_offer_photo(buffer.getvalue(), **DEAL).card
    german = images.process_offer_photo(buffer.getvalue(), **DEAL, locale="de").card
    assert english != german
    assert images.render_card(buffer.getvalue(), **DEAL, locale="de") == german
