"""Unit tests for domain.images: every input is generated here with Pillow."""

from __future__ import annotations

import io
import pickle
import random
import re
import struct
import warnings
import zlib
from decimal import Decimal

import pytest
from babel.numbers import get_currency_symbol, get_decimal_symbol, get_group_symbol, parse_decimal
from hypothesis import given
from hypothesis import strategies as st
from PIL import ExifTags, Image, ImageCms, ImageDraw, JpegImagePlugin

from domain import card_text, images
from domain.images import (
    CARD_SIZE,
    MAX_FILE_BYTES,
    REJECTION_REASONS,
    PhotoRejected,
    ProcessedPhoto,
    process_offer_photo,
    render_card,
)
from domain.money import discount_percent, format_money

DEAL = {"price_minor": 450, "original_price_minor": 750, "currency": "EUR", "title": "Croissants"}


# ----------------------------------------------------------------------- helpers


def encode(im: Image.Image, fmt: str, **kw) -> bytes:
    out = io.BytesIO()
    im.save(out, fmt, **kw)
    return out.getvalue()


def photo(size=(800, 600), seed=0) -> Image.Image:
    """A photo-like RGB image: gradients plus a little noise."""
    w, h = size
    grad = Image.merge(
        "RGB",
        [
            Image.linear_gradient("L").resize((w, h)),
            Image.linear_gradient("L").transpose(Image.Transpose.ROTATE_90).resize((w, h)),
            Image.new("L", (w, h), 120),
        ],
    )
    rnd = random.Random(seed)
    noise = Image.frombytes("RGB", (w, h), rnd.randbytes(w * h * 3))
    return Image.blend(grad, noise, 0.1)


def decode(data: bytes) -> Image.Image:
    im = Image.open(io.BytesIO(data))
    im.load()
    return im


def jpeg_segments(data: bytes) -> list[tuple[int, bytes]]:
    """(marker, payload) of every segment before the first scan."""
    assert data[:2] == b"\xff\xd8", "not a JPEG"
    pos, out = 2, []
    while pos < len(data):
        assert data[pos] == 0xFF
        marker = data[pos + 1]
        if marker == 0xDA:  # start of scan: metadata can only come before
            out.append((marker, b""))
            return out
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        out.append((marker, data[pos + 4 : pos + 2 + length]))
        pos += 2 + length
    raise AssertionError("no scan")


def assert_clean_jpeg(data: bytes) -> Image.Image:
    """A baseline/progressive RGB JPEG carrying no metadata besides JFIF."""
    markers = [m for m, _ in jpeg_segments(data)]
    for m in markers:
        assert not (0xE1 <= m <= 0xEF), f"APP{m - 0xE0} segment in output"
        assert m != 0xFE, "COM segment in output"
    for needle in (b"Exif\x00\x00", b"ICC_PROFILE", b"http://ns.adobe.com/xap", b"TestCam"):
        assert needle not in data
    im = decode(data)
    assert im.format == "JPEG" and im.mode == "RGB"
    assert not im.getexif()
    assert "icc_profile" not in im.info and "exif" not in im.info
    return im


def rejected(data, reason: str) -> PhotoRejected:
    with pytest.raises(PhotoRejected) as info:
        process_offer_photo(data, **DEAL)
    assert info.value.reason == reason, str(info.value)
    return info.value


def png_chunk(kind: bytes, payload: bytes) -> bytes:
    body = kind + payload
    return struct.pack(">I", len(payload)) + body + struct.pack(">I", zlib.crc32(body))


def crafted_png(width: int, height: int) -> bytes:
    """A PNG header declaring width x height (1-bit grey) and almost no data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return (b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat)
            + png_chunk(b"IEND", b""))  # fmt: skip


def crafted_jpeg(width: int, height: int) -> bytes:
    """SOI, a baseline frame header declaring width x height, EOI."""
    comps = b"".join(bytes([i, 0x11, 0]) for i in (1, 2, 3))
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 8 + len(comps), 8, height, width, 3) + comps
    return b"\xff\xd8" + sof + b"\xff\xd9"


def crafted_webp(width: int, height: int) -> bytes:
    """An extended (VP8X) WebP header declaring a width x height canvas."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


# -------------------------------------------------------------- accepted inputs


@pytest.mark.parametrize(
    ("fmt", "mode", "save_kw"),
    [
        ("JPEG", "RGB", {"quality": 90}),
        ("JPEG", "L", {}),
        ("JPEG", "CMYK", {}),
        ("JPEG", "RGB", {"progressive": True}),
        ("PNG", "RGB", {}),
        ("PNG", "RGBA", {}),
        ("PNG", "P", {}),
        ("PNG", "LA", {}),
        ("PNG", "1", {}),
        ("WEBP", "RGB", {"quality": 80}),
        ("WEBP", "RGBA", {"lossless": True}),
    ],
)
def test_supported_inputs_give_three_clean_jpegs(fmt, mode, save_kw):
    data = encode(photo((900, 700)).convert(mode), fmt, **save_kw)
    result = process_offer_photo(data, **DEAL)

    assert isinstance(result, ProcessedPhoto)
    assert (result.format, result.width, result.height) == (fmt, 900, 700)
    large = assert_clean_jpeg(result.large)
    thumb = assert_clean_jpeg(result.thumbnail)
    card = assert_clean_jpeg(result.card)
    assert large.size == (900, 700)  # never upscaled
    assert thumb.size == (320, 249)
    assert card.size == CARD_SIZE
    assert len(repr(result)) < 200  # the repr shows byte counts, not the bytes


def test_big_jpeg_is_draft_decoded_and_resized_once(monkeypatch):
    data = encode(photo((2600, 1950)), "JPEG", quality=90)
    calls = []
    original = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = original(self, mode, size)
        calls.append((size, self.size))
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    result = process_offer_photo(data, **DEAL)

    # libjpeg was asked for the target size and decoded at 1/2 scale (1300x975).
    assert calls == [((1280, 960), (1300, 975))]
    assert (result.width, result.height) == (2600, 1950)
    large = assert_clean_jpeg(result.large)
    assert large.size == (1280, 960)
    markers = [m for m, _ in jpeg_segments(result.large)]
    assert (0xC2 in markers) == images.LARGE_PROGRESSIVE  # SOF2 = progressive
    assert 0xC0 in markers or 0xC2 in markers
    assert decode(result.thumbnail).size == (320, 240)
    assert decode(result.card).size == CARD_SIZE


@pytest.mark.parametrize(
    ("size", "expected_large"),
    [((3000, 4000), (960, 1280)), ((3000, 1700), (1280, 725)), ((2000, 2000), (1280, 1280)),
     ((300, 250), (300, 250))],
)
def test_output_geometry(size, expected_large):
    result = process_offer_photo(encode(photo(size), "JPEG"), **DEAL)
    assert decode(result.large).size == expected_large
    assert max(decode(result.thumbnail).size) == min(320, max(expected_large))
    assert decode(result.card).size == CARD_SIZE


def test_exif_orientation_is_applied():
    # Stored 400x300 with a red top-left corner; orientation 6 = "rotate 90° CW to display",
    # so the displayed image is 300x400 with the red corner top-right.
    im = Image.new("RGB", (400, 300), (30, 60, 200))
    ImageDraw.Draw(im).rectangle((0, 0, 99, 99), fill=(230, 20, 20))
    exif = Image.Exif()
    exif[ExifTags.Base.Orientation] = 6
    result = process_offer_photo(encode(im, "JPEG", exif=exif.tobytes(), quality=95), **DEAL)

    assert (result.width, result.height) == (300, 400)
    large = assert_clean_jpeg(result.large)
    assert large.size == (300, 400)
    r, g, b = large.getpixel((300 - 50, 50))
    assert r > 180 and g < 80 and b < 80, "red corner should be top-right"
    for corner in ((50, 50), (50, 350), (250, 350)):
        assert large.getpixel(corner)[2] > 150, f"{corner} should be blue"


@pytest.mark.parametrize("with_icc", [True, False])
def test_all_metadata_is_stripped(with_icc):
    im = photo((600, 450))
    exif = Image.Exif()
    exif[ExifTags.Base.Make] = "TestCam"
    gps = exif.get_ifd(ExifTags.IFD.GPSInfo)
    gps[ExifTags.GPS.GPSLatitudeRef] = "N"
    gps[ExifTags.GPS.GPSLatitude] = (48.0, 51.0, 24.0)
    gps[ExifTags.GPS.GPSLongitudeRef] = "E"
    gps[ExifTags.GPS.GPSLongitude] = (2.0, 21.0, 3.0)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes() if with_icc else None
    data = encode(im, "JPEG", exif=exif.tobytes(), icc_profile=srgb, comment=b"secret comment")

    source = Image.open(io.BytesIO(data))  # the fixture really carries all of it
    assert source.getexif().get_ifd(ExifTags.IFD.GPSInfo)
    assert source.info["comment"] == b"secret comment"
    assert bool(source.info.get("icc_profile")) == with_icc

    result = process_offer_photo(data, **DEAL)
    for out in (result.large, result.thumbnail, result.card):
        assert_clean_jpeg(out)
        assert b"secret comment" not in out
    # The sRGB profile conversion keeps the colours.
    assert _mean_diff(decode(result.large), im) < 6


def test_png_metadata_and_bad_icc_are_dropped():
    info_exif = Image.Exif()
    info_exif[ExifTags.Base.Make] = "TestCam"
    data = encode(photo((500, 400)), "PNG", exif=info_exif.tobytes(), icc_profile=b"not a profile")
    result = process_offer_photo(data, **DEAL)
    for out in (result.large, result.thumbnail, result.card):
        assert_clean_jpeg(out)


def _mean_diff(a: Image.Image, b: Image.Image) -> float:
    a = a.convert("RGB").resize((64, 64))
    b = b.convert("RGB").resize((64, 64))
    pa, pb = a.tobytes(), b.tobytes()
    return sum(abs(x - y) for x, y in zip(pa, pb, strict=True)) / len(pa)


@pytest.mark.parametrize("fmt", ["PNG", "WEBP"])
def test_alpha_is_flattened_onto_white(fmt):
    im = Image.new("RGBA", (400, 300), (0, 0, 0, 0))  # transparent *black*
    ImageDraw.Draw(im).rectangle((200, 0, 399, 299), fill=(20, 40, 220, 255))
    kw = {"lossless": True} if fmt == "WEBP" else {}
    large = decode(process_offer_photo(encode(im, fmt, **kw), **DEAL).large)
    assert min(large.getpixel((50, 150))) > 245  # white, not black
    r, _g, b = large.getpixel((350, 150))
    assert b > 180 and r < 60


def test_palette_transparency_is_flattened_onto_white():
    im = Image.new("P", (300, 300), 0)
    im.putpalette([0, 0, 0, 200, 30, 30] + [0, 0, 0] * 254)
    ImageDraw.Draw(im).rectangle((150, 0, 299, 299), fill=1)
    data = encode(im, "PNG", transparency=0)
    large = decode(process_offer_photo(data, **DEAL).large)
    assert min(large.getpixel((40, 150))) > 245
    assert large.getpixel((250, 150))[0] > 170


def test_16_bit_greyscale_png_is_scaled_not_clipped():
    data = encode(Image.new("I;16", (300, 300), 32768), "PNG")
    r, g, b = decode(process_offer_photo(data, **DEAL).large).getpixel((150, 150))
    assert 118 <= r <= 138 and r == g == b


def test_cmyk_jpeg_colours_survive():
    im = Image.new("CMYK", (300, 300), (255, 0, 0, 0))  # pure cyan
    r, g, b = decode(process_offer_photo(encode(im, "JPEG"), **DEAL).large).getpixel((150, 150))
    assert r < 60 and g > 190 and b > 190


def test_processing_is_deterministic():
    data = encode(photo((700, 500)), "WEBP")
    first = process_offer_photo(data, **DEAL)
    assert process_offer_photo(bytearray(data), **DEAL) == first
    assert process_offer_photo(memoryview(data), **DEAL) == first


def test_size_limit_is_inclusive():
    jpeg = encode(photo((300, 300)), "JPEG")
    padded = jpeg + b"\x00" * (MAX_FILE_BYTES - len(jpeg))  # data after EOI is ignored
    assert len(padded) == MAX_FILE_BYTES
    assert process_offer_photo(padded, **DEAL).width == 300
    rejected(padded + b"\x00", "too_large_file")


# -------------------------------------------------------------- rejected inputs


def test_empty_input():
    rejected(b"", "empty_file")


def test_over_20_mb_is_rejected_without_decoding(monkeypatch):
    monkeypatch.setattr(Image, "open", _must_not_open)
    rejected(b"\xff\xd8\xff\xe0" + bytes(20 * 1024 * 1024), "too_large_file")


def test_random_bytes():
    data = random.Random(1234).randbytes(50_000)
    assert data[:2] != b"\xff\xd8"
    rejected(data, "not_an_image")


def test_text_file():
    rejected(b"Fresh bread, 50% off until 8pm!\nCome by.\n" * 20, "not_an_image")
    rejected(b"<svg xmlns='http://www.w3.org/2000/svg'/>", "not_an_image")


@pytest.mark.parametrize(
    "data",
    [
        encode(photo((300, 300)), "GIF"),
        encode(photo((300, 300)), "BMP"),
        encode(photo((300, 300)), "TIFF"),
        b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + bytes(100),
        b"\x00\x00\x00\x1cftypavif\x00\x00\x00\x00avifmif1miaf" + bytes(100),
    ],
    ids=["gif", "bmp", "tiff", "heic", "avif"],
)
def test_other_image_formats_are_unsupported(data):
    rejected(data, "unsupported_format")


def _must_not_open(*args, **kwargs):
    raise AssertionError("Image.open called: the header check should have rejected this")


@pytest.mark.parametrize(
    "data",
    [crafted_png(20000, 20000), crafted_jpeg(20000, 20000), crafted_webp(16384, 16384),
     crafted_png(7000, 6000)],
    ids=["png-400MP", "jpeg-400MP", "webp-268MP", "png-42MP"],
)
def test_decompression_bombs_are_rejected_from_the_header(data, monkeypatch):
    monkeypatch.setattr(Image, "open", _must_not_open)
    before = Image.MAX_IMAGE_PIXELS
    rejected(data, "too_many_pixels")
    assert before == Image.MAX_IMAGE_PIXELS


def test_real_bomb_over_our_limit_but_under_pillows():
    # 7000x6000 = 42 MP: a valid 1-bit PNG that Pillow's default limit (89 MP) accepts.
    data = encode(Image.new("1", (7000, 6000)), "PNG")
    assert len(data) < 100_000
    rejected(data, "too_many_pixels")


def test_a_lower_global_pillow_limit_is_honoured_without_warnings(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 50_000)
    data = encode(photo((300, 300)), "PNG")  # 90 000 px: Pillow would warn, then refuse
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        rejected(data, "too_many_pixels")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", None)  # "no limit" still means ours
    rejected(crafted_png(8000, 8000), "too_many_pixels")


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_truncated_files(fmt):
    data = encode(photo((640, 480)), fmt)
    rejected(data[: len(data) * 6 // 10], "truncated")


def test_jpeg_truncated_inside_its_header():
    data = encode(photo((640, 480)), "JPEG")
    rejected(data[:40], "truncated")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (crafted_jpeg(0, 500), "corrupt"),
        (b"\xff\xd8\xff\xda" + bytes(100), "corrupt"),  # scan before any frame header
        (b"\x89PNG\r\n\x1a\n" + png_chunk(b"tEXt", b"a\x00b") + bytes(20), "corrupt"),
        (b"RIFF\x0c\x00\x00\x00WEBPJUNK\x00\x00\x00\x00", "corrupt"),
    ],
)
def test_corrupt_headers(data, reason):
    rejected(data, reason)


def test_corrupt_png_data():
    data = bytearray(encode(photo((400, 300)), "PNG"))
    start = data.index(b"IDAT") + 4
    data[start + 100 : start + 400] = bytes(300)
    rejected(bytes(data), "corrupt")


@pytest.mark.parametrize(
    ("size", "reason"),
    [((150, 400), "too_small"), ((199, 500), "too_small"), ((1000, 200), "bad_aspect_ratio"),
     ((210, 1000), "bad_aspect_ratio")],
)
def test_dimension_limits(size, reason):
    rejected(encode(photo(size), "PNG"), reason)


@pytest.mark.parametrize("size", [(200, 200), (800, 200), (200, 800)])
def test_dimension_limits_are_inclusive(size):
    assert process_offer_photo(encode(photo(size), "PNG"), **DEAL).width == size[0]


def test_photo_rejected_is_stable_and_picklable():
    exc = PhotoRejected("truncated", "cut at 123")
    copy = pickle.loads(pickle.dumps(exc))
    assert (copy.reason, copy.detail, str(copy)) == ("truncated", "cut at 123", "truncated: cut at 123")
    assert str(PhotoRejected("too_small")) == "too_small"
    with pytest.raises(ValueError):
        PhotoRejected("some_new_reason")
    assert {"not_an_image", "unsupported_format", "too_many_pixels", "too_small", "truncated",
            "too_large_file", "empty_file", "corrupt", "bad_aspect_ratio"} == REJECTION_REASONS  # fmt: skip


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"price_minor": 4.5}, TypeError),
        ({"price_minor": True}, TypeError),
        ({"original_price_minor": -1}, ValueError),
        ({"currency": "EURO"}, ValueError),
        ({"currency": "€"}, ValueError),
        ({"title": None}, TypeError),
    ],
)
def test_bad_deal_arguments(kwargs, error):
    data = encode(photo((300, 300)), "PNG")
    with pytest.raises(error):
        process_offer_photo(data, **{**DEAL, **kwargs})


def test_data_must_be_bytes():
    with pytest.raises(TypeError):
        process_offer_photo("not bytes", **DEAL)  # type: ignore[arg-type]


# -------------------------------------------------------------------- the card


def flat_card(**deal) -> Image.Image:
    """Card drawn on a flat grey 1280x960 photo, before JPEG encoding."""
    return images._compose_card(Image.new("RGB", (1280, 960), (128, 128, 128)), **{**DEAL, **deal})


def region_stats(im: Image.Image, box) -> tuple[float, int, int]:
    """(mean abs difference from flat grey 128, bright pixel count, red pixel count)."""
    raw = im.crop(box).convert("RGB").tobytes()
    px = [raw[i : i + 3] for i in range(0, len(raw), 3)]
    diff = sum(abs(c - 128) for p in px for c in p) / (3 * len(px))
    bright = sum(1 for p in px if min(p) > 220)
    red = sum(1 for p in px if p[0] > 180 and p[1] < 80 and p[2] < 80)
    return diff, bright, red


W, H = CARD_SIZE
BAND = (0, H * 3 // 4, W, H)
TOP_LEFT = (0, 0, W // 2, H // 2)
BADGE = (W * 3 // 4, 0, W, H // 6)


def test_card_draws_price_band_and_badge():
    card = flat_card()
    assert card.size == CARD_SIZE
    plain = images._cover(Image.new("RGB", (1280, 960), (128, 128, 128)), CARD_SIZE)
    assert region_stats(plain, BAND) == (0.0, 0, 0)  # the plain crop is flat grey

    band_diff, band_bright, _ = region_stats(card, BAND)
    assert band_diff > 40  # darkened band
    assert band_bright > 0.03 * (BAND[2] - BAND[0]) * (BAND[3] - BAND[1])  # white price text
    assert region_stats(card, TOP_LEFT) == (0.0, 0, 0)  # the photo itself is untouched
    _, _, badge_red = region_stats(card, BADGE)
    assert badge_red > 0.15 * (BADGE[2] - BADGE[0]) * (BADGE[3] - BADGE[1])


def test_card_text_depends_on_the_price():
    a, b = flat_card(price_minor=450), flat_card(price_minor=199)
    band = (0, H - H // 5, W // 2, H)  # where the (big, white) price is
    assert _mean_diff(a.crop(band), b.crop(band)) > 5
    assert a.crop(TOP_LEFT).tobytes() == b.crop(TOP_LEFT).tobytes()


def test_card_without_discount_has_no_badge_and_no_old_price():
    same = flat_card(price_minor=750, original_price_minor=750)
    assert region_stats(same, BADGE)[2] == 0
    discounted = flat_card(price_minor=450, original_price_minor=750)
    cheaper = flat_card(price_minor=450, original_price_minor=450)
    right_of_price = (W // 2, H - H // 6, W, H)
    assert _mean_diff(discounted.crop(right_of_price), cheaper.crop(right_of_price)) > 2


def test_card_badge_shows_the_discount():
    forty = flat_card(price_minor=450, original_price_minor=750)
    ninety = flat_card(price_minor=75, original_price_minor=750)
    assert forty.crop(BADGE).tobytes() != ninety.crop(BADGE).tobytes()


def test_card_is_drawn_in_the_encoded_output_too():
    data = encode(Image.new("RGB", (1280, 960), (128, 128, 128)), "PNG")
    card = assert_clean_jpeg(process_offer_photo(data, **DEAL).card)
    assert card.size == CARD_SIZE
    assert region_stats(card, BAND)[1] > 1000
    assert region_stats(card, TOP_LEFT)[0] < 2


def test_long_titles_are_ellipsized_to_fit():
    width = CARD_SIZE[0] - 100
    for title in ("Bread", "x" * 500, "Large sourdough loaves and seeded rye " * 5, "خبز طازج من الفرن " * 8):
        fitted = card_text.ellipsize(title, 46, width)
        assert card_text.text_width(fitted, 46) <= width
        assert fitted == title or (fitted.endswith("…") and title.startswith(fitted[:-1]))
    assert card_text.ellipsize("Bread", 46, width) == "Bread"


def test_card_handles_long_amounts_titles_and_scripts():
    for deal in (
        {"price_minor": 123456789, "original_price_minor": 999999999, "currency": "CHF"},
        {"price_minor": 123456789, "original_price_minor": 999999999, "currency": "EUR", "locale": "de"},
        {"title": "x" * 500},
        {"title": "Пирожки с капустой"},  # noqa: RUF001 - Cyrillic on purpose: a non-Latin title
        {"title": "😀🍞"},
        {"title": ""},
        {"title": "\u200fخبز\u200e 2 Brot"},
    ):
        assert flat_card(**deal).size == CARD_SIZE


def test_card_text_fallbacks_without_any_font(monkeypatch):
    """No font file installed: the embedded ASCII font, and a warning that says what to install."""
    warnings_logged = []
    monkeypatch.setattr(card_text, "FONT_CANDIDATES", [("/nonexistent/Sans.ttf", "/nonexistent/Sans-Bold.ttf")])
    monkeypatch.setattr(card_text.log, "warning", lambda event, **kw: warnings_logged.append((event, kw)))
    card_text.reload_fonts()
    try:
        assert card_text.faces() == ()
        assert [event for event, _ in warnings_logged] == ["card_fonts_missing"]
        assert "fonts-noto-core" in warnings_logged[0][1]["fix"]
        assert card_text.displayable_title("Café — crème brûlée") == "Cafe - creme brulee"
        assert card_text.displayable_title("Пирожки") == ""  # the embedded font has no Cyrillic
        assert card_text.displayable_title("  Bread   & rolls ") == "Bread & rolls"
        for currency in ("EUR", "GBP", "USD", "CHF", "JPY"):
            text = images._card_money(450, currency, "en")
            assert card_text.drawable(text)
            assert "4.50" in text or "450" in text
        assert images._card_money(450, "EUR", "de") == "4.50 EUR"
        assert images._badge_label(40) == "-40%"
        card = flat_card(title="Brötchen")
        assert region_stats(card, BAND)[1] > 500
    finally:
        monkeypatch.undo()
        card_text.reload_fonts()


def test_card_without_freetype(monkeypatch):
    monkeypatch.setattr(card_text, "_HAS_FREETYPE", False)
    card_text.reload_fonts()
    try:
        card = flat_card()
        assert region_stats(card, BAND)[1] > 500
        assert region_stats(card, BADGE)[2] > 500
    finally:
        monkeypatch.undo()
        card_text.reload_fonts()


def test_render_card_from_the_stored_large():
    result = process_offer_photo(encode(photo((1600, 1200)), "JPEG"), **DEAL)
    again = render_card(result.large, **DEAL)
    edited = render_card(result.large, **{**DEAL, "price_minor": 300})
    assert assert_clean_jpeg(again).size == CARD_SIZE
    assert _mean_diff(decode(again), decode(result.card)) < 3
    assert decode(edited).crop(BAND).tobytes() != decode(again).crop(BAND).tobytes()
    with pytest.raises(PhotoRejected):
        render_card(b"nope", **DEAL)


# ----------------------------------------------------------------------- money


NBSP = "\u00a0"


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (450, "EUR", "€4.50"),
        (450, "GBP", "£4.50"),
        (450, "USD", "$4.50"),
        (450, "CHF", f"CHF{NBSP}4.50"),
        (450, "eur", "€4.50"),
        (0, "EUR", "€0.00"),
        (5, "EUR", "€0.05"),
        (100, "USD", "$1.00"),
        (123456, "EUR", "€1,234.56"),
        (-450, "EUR", "-€4.50"),
        (-5, "SEK", f"-SEK{NBSP}0.05"),
        (500, "JPY", "¥500"),
        (1500, "KWD", f"KWD{NBSP}1.500"),
    ],
)
def test_format_money(minor, currency, text):
    assert format_money(minor, currency) == text
    assert format_money(minor, currency, "en") == text


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (450, "EUR", f"4,50{NBSP}€"),
        (450, "eur", f"4,50{NBSP}€"),
        (123456, "EUR", f"1.234,56{NBSP}€"),
        (-450, "EUR", f"-4,50{NBSP}€"),
        (450, "CHF", f"4,50{NBSP}CHF"),
        (500, "JPY", f"500{NBSP}¥"),
        (1500, "IQD", f"1,500{NBSP}IQD"),  # ISO's three decimals, not CLDR's none: nothing is rounded
    ],
)
def test_format_money_in_german(minor, currency, text):
    assert format_money(minor, currency, "de") == text


def test_format_money_unknown_locale_reads_as_english():
    assert format_money(450, "EUR", "xx") == format_money(450, "EUR", "") == "€4.50"


@pytest.mark.parametrize(
    ("minor", "currency", "error"),
    [(4.5, "EUR", TypeError), (True, "EUR", TypeError), (450, "EURO", ValueError),
     (450, "", ValueError), (450, "E1R", ValueError), (450, "ÉUR", ValueError),
     (450, None, TypeError)],
)
def test_format_money_rejects_bad_arguments(minor, currency, error):
    with pytest.raises(error):
        format_money(minor, currency)


# ISO 4217 minor-unit exponents that are not 2 (the test's own list, not the module's).
EXPONENTS = {"JPY": 0, "KRW": 0, "ISK": 0, "CLP": 0, "VND": 0, "XOF": 0, "KWD": 3, "BHD": 3,
             "JOD": 3, "OMR": 3, "TND": 3}  # fmt: skip
OTHER_EXPONENTS = {"BIF", "DJF", "GNF", "KMF", "PYG", "RWF", "UGX", "VUV", "XAF", "XPF", "IQD", "LYD"}
currencies = st.one_of(
    st.sampled_from(["EUR", "GBP", "USD", "CHF", "eur", "Usd", *EXPONENTS]),
    st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz", min_size=3, max_size=3).filter(
        lambda c: c.upper() not in EXPONENTS and c.upper() not in OTHER_EXPONENTS
    ),
)


@given(minor=st.integers(min_value=-(10**15), max_value=10**15), currency=currencies,
       locale=st.sampled_from(["en", "de"]))
def test_format_money_round_trips(minor, currency, locale):
    text = format_money(minor, currency, locale)
    code = currency.upper()
    symbol = get_currency_symbol(code, locale)
    digits = EXPONENTS.get(code, 2)

    sign = -1 if text.startswith("-") else 1
    body = text[1:] if sign < 0 else text
    assert body.count(symbol) == 1, text
    amount = body.replace(symbol, "").strip(NBSP)
    group, decimal = get_group_symbol(locale=locale), get_decimal_symbol(locale=locale)
    assert re.fullmatch(r"\d{1,3}(" + re.escape(group) + r"\d{3})*" + (re.escape(decimal) + rf"\d{{{digits}}}"
                        if digits else ""), amount), text
    assert sign * parse_decimal(amount, locale=locale, strict=True) * 10**digits == minor
    assert (minor < 0) == (sign < 0)


@given(
    price=st.integers(min_value=0, max_value=10**9),
    original=st.integers(min_value=0, max_value=10**9),
)
def test_discount_percent_is_the_real_discount_rounded_half_up(price, original):
    pct = discount_percent(price, original)
    assert 0 <= pct <= 100
    if price >= original or original == 0:
        assert pct == 0
    else:
        real = Decimal(original - price) * 100 / original
        if pct == 99 and real >= Decimal("99.5"):
            assert price > 0  # something that costs money never reads -100 %
        else:
            assert pct - Decimal("0.5") <= real < pct + Decimal("0.5")


@pytest.mark.parametrize(
    ("price", "original", "pct"),
    [(450, 750, 40), (499, 999, 50), (0, 750, 100), (750, 750, 0), (800, 750, 0), (1, 3, 67), (300, 900, 67),
     (200, 300, 33), (1, 2, 50), (199, 200, 1), (399, 400, 0), (1, 1000, 99), (1, 10_000, 99), (5, 1000, 99)],
)
def test_discount_percent_examples(price, original, pct):
    assert discount_percent(price, original) == pct
