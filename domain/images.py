"""Offer photo pipeline: validate an uploaded photo and derive the images we publish.

Everything here is a pure function of its arguments: bytes in, bytes out, no file
or network I/O, no global Pillow settings changed.

``process_offer_photo`` turns the bytes a business uploads (JPEG, PNG or WebP, at
most 20 MB) into three metadata-free sRGB JPEGs:

* ``large``     - the upright photo, longest side at most 1280 px, progressive;
* ``thumbnail`` - longest side at most 320 px;
* ``card``      - a 960x960 cover-cropped "deal card" with the price, the
  struck-through original price and the discount drawn on it (960 because a
  4:3 or 3:4 phone photo's large is 1280x960: the card is then a plain crop).

The card says what the chat says: the prices formatted by ``domain.money.format_money`` for
the business's language ("4,50 €" in German, "€4.50" in English), the discount as "−40 %", the
title in its own script, right-to-left ones shaped and in reading order. The text is drawn with
real fonts found on disk, by ``domain.card_text`` (Noto Sans and DejaVu Sans from Debian's
packages, laid out by libraqm); only with no font installed does it fall back to Pillow's
embedded ASCII-only font, and says so in the log.

Bad input raises ``PhotoRejected`` whose ``reason`` is one of the stable codes in
``REJECTION_REASONS`` (the chat turns them into a message for the user).

Speed: the pixel dimensions are read from the file header by our own small
parsers *before* Pillow is asked to decode anything (so a decompression bomb never
allocates); JPEGs are decoded straight at 1/2, 1/4 or 1/8 scale with
``Image.draft``; the photo is resized once, and the thumbnail and the card are
derived from that ``large`` image, not from the original.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from functools import lru_cache

from PIL import Image, ImageDraw

from domain.card_text import displayable_title, draw_text, drawable, ellipsize, is_rtl, text_width
from domain.money import discount_percent, format_money, money_parts

try:  # LittleCMS is optional in Pillow builds; without it ICC profiles are just dropped.
    from PIL import ImageCms
except ImportError:  # pragma: no cover - depends on the Pillow build
    ImageCms = None  # type: ignore[assignment]

__all__ = [
    "CARD_SIZE",
    "LARGE_MAX_SIDE",
    "MAX_ASPECT_RATIO",
    "MAX_FILE_BYTES",
    "MAX_PIXELS",
    "MIN_SHORT_SIDE",
    "REJECTION_REASONS",
    "SUPPORTED_FORMATS",
    "THUMBNAIL_MAX_SIDE",
    "PhotoRejected",
    "ProcessedPhoto",
    "check_header",
    "process_offer_photo",
    "render_card",
]

# --------------------------------------------------------------------------- limits

MAX_FILE_BYTES = 20 * 1024 * 1024  # Telegram bots cannot getFile anything bigger.
MAX_PIXELS = 40_000_000  # decoded RGB at this size is ~120 MB: refuse anything bigger.
MIN_SHORT_SIDE = 200
MAX_ASPECT_RATIO = 4.0  # wider than 4:1 cannot be cover-cropped into a usable card.

LARGE_MAX_SIDE = 1280
THUMBNAIL_MAX_SIDE = 320
CARD_SIZE = (960, 960)  # see the module docstring

JPEG_QUALITY = 85
LARGE_PROGRESSIVE = True  # ~7 % smaller, but ~20 ms more per photo than baseline JPEG
THUMBNAIL_QUALITY = 80
_MAX_ICC_BYTES = 1 << 20  # bigger embedded profiles are dropped, not parsed

SUPPORTED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})

REJECTION_REASONS = frozenset(
    {
        "empty_file",  # zero bytes
        "too_large_file",  # more than MAX_FILE_BYTES
        "not_an_image",  # not a recognisable image at all (text, random bytes...)
        "unsupported_format",  # an image, but not JPEG/PNG/WebP (GIF, HEIC, TIFF...)
        "truncated",  # the file ends before the image data does
        "corrupt",  # recognised format but undecodable data
        "too_many_pixels",  # more than MAX_PIXELS (decompression-bomb guard)
        "too_small",  # short side below MIN_SHORT_SIDE
        "bad_aspect_ratio",  # long side more than MAX_ASPECT_RATIO x the short side
    }
)


class PhotoRejected(Exception):
    """The uploaded bytes cannot be used as an offer photo.

    ``reason`` is a stable machine-readable code from ``REJECTION_REASONS``;
    ``detail`` is free text for logs only (never shown to users).
    """

    def __init__(self, reason: str, detail: str = "") -> None:
        if reason not in REJECTION_REASONS:
            raise ValueError(f"unknown rejection reason {reason!r}")
        # Both values go to Exception.args so the exception pickles (Celery).
        super().__init__(reason, detail)
        self.reason = reason
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.reason}: {self.detail}" if self.detail else self.reason


@dataclass(frozen=True, slots=True)
class ProcessedPhoto:
    large: bytes
    thumbnail: bytes
    card: bytes
    width: int  # of the original, after EXIF orientation
    height: int
    format: str  # "JPEG", "PNG" or "WEBP" (the detected input format)

    def __repr__(self) -> str:  # never dump megabytes of bytes into a log line
        return (
            f"ProcessedPhoto(format={self.format!r}, width={self.width}, "
            f"height={self.height}, large={len(self.large)} B, "
            f"thumbnail={len(self.thumbnail)} B, card={len(self.card)} B)"
        )


# --------------------------------------------------------------------------- sniffing


def _riff_webp(data: bytes) -> bool:
    return data[:4] == b"RIFF" and data[8:12] == b"WEBP"


_BMFF_IMAGE_BRANDS = {b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm",
                      b"hevs", b"mif1", b"msf1", b"avif", b"avis"}  # fmt: skip


def _looks_like_other_image(data: bytes) -> bool:  # noqa: PLR0911 - one return per format reads as a table
    """Magic numbers of image formats we recognise but do not accept."""
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return True
    if data[:4] in (b"II*\x00", b"MM\x00*", b"8BPS", b"qoif", b"\xff\x4f\xff\x51"):
        return True  # TIFF (also most camera RAWs), PSD, QOI, JPEG 2000 codestream
    if data[:12] in (b"\x00\x00\x00\x0cjP  \r\n\x87\n", b"\x00\x00\x00\x0cJXL \r\n\x87\n"):
        return True  # JPEG 2000 / JPEG XL containers
    if data[:2] == b"\xff\x0a":
        return True  # JPEG XL codestream
    if data[4:8] == b"ftyp" and data[8:12] in _BMFF_IMAGE_BRANDS:
        return True  # HEIC / HEIF / AVIF
    if data[:2] == b"BM" and len(data) >= 18:  # BMP: also check the DIB header size
        return int.from_bytes(data[14:18], "little") in {12, 40, 52, 56, 64, 108, 124}
    if data[:4] == b"\x00\x00\x01\x00" and len(data) >= 6:  # ICO
        return 0 < int.from_bytes(data[4:6], "little") <= 256
    return False


def _sniff(data: bytes) -> str:
    if data[:3] == b"\xff\xd8\xff":
        return "JPEG"
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return "PNG"
    if _riff_webp(data):
        return "WEBP"
    if _looks_like_other_image(data):
        raise PhotoRejected("unsupported_format", f"magic {data[:12]!r}")
    raise PhotoRejected("not_an_image", f"magic {data[:12]!r}")


# ------------------------------------------------------------- header dimensions
# Each parser reads only the few header bytes that hold the pixel size, so limits
# are enforced before Pillow allocates anything (libwebp, for one, allocates the
# whole canvas while merely opening a file).

# SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC), which share the range.
_JPEG_SOF = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
_JPEG_MAX_SEGMENTS = 4096  # real files have a dozen or so before the frame header


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, n = 2, len(data)
    for _ in range(_JPEG_MAX_SEGMENTS):
        pos = data.find(b"\xff", pos)  # tolerate junk between segments like libjpeg
        if pos < 0:
            raise PhotoRejected("truncated", "JPEG ends before its frame header")
        while pos < n and data[pos] == 0xFF:  # fill bytes
            pos += 1
        if pos >= n:
            raise PhotoRejected("truncated", "JPEG ends before its frame header")
        marker = data[pos]
        pos += 1
        if marker in (0x00, 0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            continue  # stuffed byte, TEM, SOI, RSTn: no payload
        if marker in (0xD9, 0xDA):
            raise PhotoRejected("corrupt", "JPEG without a frame header")
        if pos + 2 > n:
            raise PhotoRejected("truncated", "JPEG ends inside a segment header")
        length = int.from_bytes(data[pos : pos + 2], "big")
        if length < 2:
            raise PhotoRejected("corrupt", "bad JPEG segment length")
        if marker in _JPEG_SOF:
            if pos + 7 > n:
                raise PhotoRejected("truncated", "JPEG ends inside its frame header")
            height = int.from_bytes(data[pos + 3 : pos + 5], "big")
            width = int.from_bytes(data[pos + 5 : pos + 7], "big")
            return width, height
        pos += length
    raise PhotoRejected("corrupt", "too many JPEG segments before the frame header")


def _png_size(data: bytes) -> tuple[int, int]:
    if len(data) < 24:
        raise PhotoRejected("truncated", "PNG ends before its IHDR chunk")
    if data[12:16] != b"IHDR":
        raise PhotoRejected("corrupt", "PNG does not start with IHDR")
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def _webp_size(data: bytes) -> tuple[int, int]:
    riff_size = int.from_bytes(data[4:8], "little")
    if len(data) < 8 + riff_size:
        raise PhotoRejected("truncated", "WebP shorter than its RIFF header says")
    chunk = data[12:16]
    if chunk == b"VP8X":  # extended: 24-bit canvas size minus one
        if len(data) < 30:
            raise PhotoRejected("truncated", "WebP ends inside VP8X")
        return (int.from_bytes(data[24:27], "little") + 1,
                int.from_bytes(data[27:30], "little") + 1)  # fmt: skip
    if chunk == b"VP8 ":  # lossy: key frame start code then two 14-bit sizes
        if len(data) < 30:
            raise PhotoRejected("truncated", "WebP ends inside VP8 frame header")
        if data[23:26] != b"\x9d\x01\x2a":
            raise PhotoRejected("corrupt", "bad VP8 start code")
        return (int.from_bytes(data[26:28], "little") & 0x3FFF,
                int.from_bytes(data[28:30], "little") & 0x3FFF)  # fmt: skip
    if chunk == b"VP8L":  # lossless: signature byte then 14+14 bits, minus one
        if len(data) < 25:
            raise PhotoRejected("truncated", "WebP ends inside VP8L header")
        if data[20] != 0x2F:
            raise PhotoRejected("corrupt", "bad VP8L signature")
        bits = int.from_bytes(data[21:25], "little")
        return (bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1
    raise PhotoRejected("corrupt", f"unknown WebP chunk {chunk!r}")


_HEADER_SIZE = {"JPEG": _jpeg_size, "PNG": _png_size, "WEBP": _webp_size}


def _pixel_limit() -> int:
    # Honour Image.MAX_IMAGE_PIXELS if some other code lowered it below ours, so
    # Pillow's own DecompressionBombWarning/Error never fires for what we accept.
    limit = Image.MAX_IMAGE_PIXELS
    return MAX_PIXELS if limit is None else min(MAX_PIXELS, int(limit))


def _check_dimensions(width: int, height: int) -> None:
    if width <= 0 or height <= 0:
        raise PhotoRejected("corrupt", f"zero dimension {width}x{height}")
    if width * height > _pixel_limit():
        raise PhotoRejected("too_many_pixels", f"{width}x{height}")
    short, long = sorted((width, height))
    if short < MIN_SHORT_SIDE:
        raise PhotoRejected("too_small", f"{width}x{height}")
    if long > MAX_ASPECT_RATIO * short:
        raise PhotoRejected("bad_aspect_ratio", f"{width}x{height}")


# --------------------------------------------------------------------------- decoding


def _looks_truncated(fmt: str, data: bytes) -> bool:
    """After a decode failure: does the file lack its end marker?"""
    if fmt == "JPEG":
        return not data.rstrip(b"\x00").endswith(b"\xff\xd9")
    if fmt == "PNG":
        return b"IEND" not in data[-16:]
    return len(data) < 8 + int.from_bytes(data[4:8], "little")


def _decode_failure(fmt: str, data: bytes, exc: Exception) -> PhotoRejected:
    text = str(exc)
    reason = "truncated" if "runcated" in text or _looks_truncated(fmt, data) else "corrupt"
    return PhotoRejected(reason, f"{type(exc).__name__}: {text}"[:300])


def _fit(size: tuple[int, int], max_side: int) -> tuple[int, int]:
    """Scale (w, h) down so the longest side is at most max_side (never up)."""
    w, h = size
    if max(w, h) <= max_side:
        return w, h
    scale = max_side / max(w, h)
    return max(1, round(w * scale)), max(1, round(h * scale))


# EXIF Orientation value -> the transpose that makes the image upright.
_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - malformed EXIF is common and harmless, and Pillow raises any kind for it
        return 1
    return value if isinstance(value, int) and value in _ORIENTATION else 1


@lru_cache(maxsize=1)
def _srgb_profile():
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))


@lru_cache(maxsize=16)
def _icc_transform(icc: bytes, mode: str):
    # NOCACHE: the transform is shared between threads, lcms' 1-pixel cache is not.
    return ImageCms.buildTransform(
        ImageCms.ImageCmsProfile(io.BytesIO(icc)),
        _srgb_profile(),
        mode,
        "RGB",
        renderingIntent=ImageCms.Intent.PERCEPTUAL,
        flags=ImageCms.Flags.NOCACHE,
    )


def _to_srgb(im: Image.Image, icc: object) -> Image.Image:
    """Convert to sRGB through the embedded ICC profile if we can, else plainly to RGB."""
    if ImageCms is not None and isinstance(icc, bytes) and 0 < len(icc) <= _MAX_ICC_BYTES:
        try:
            out = ImageCms.applyTransform(im, _icc_transform(icc, im.mode))
            if out is not None and out.mode == "RGB":
                return out
        except Exception:  # noqa: BLE001, S110 - a bad or mismatched profile (lcms raises any kind): just drop it
            pass
    return im if im.mode == "RGB" else im.convert("RGB")


def _normalised_mode(im: Image.Image, icc: object) -> tuple[Image.Image, object]:
    """Keep alpha until after the resize (Pillow resizes RGBA premultiplied), keep CMYK for the
    ICC transform, everything else to RGB; the profile goes where it no longer matches."""
    if im.has_transparency_data:
        return im.convert("RGBA"), icc
    if im.mode.startswith("I") or im.mode == "F":  # 16-bit greyscale PNG
        return im.convert("I").point(lambda v: v * (1 / 256)).convert("RGB"), None
    if im.mode not in ("RGB", "CMYK", "L"):
        return im.convert("RGB"), icc  # palette, 1-bit...
    return im, icc


def check_header(data: bytes) -> str:
    """The checks that need no decoding: not empty, at most MAX_FILE_BYTES, JPEG, PNG or WebP, and
    pixel dimensions (read from the header) within the limits. Returns the format; raises
    ``PhotoRejected``. Cheap, so an upload can be refused at once; decoding may still find the
    file truncated or corrupt."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"photo data must be bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data:
        raise PhotoRejected("empty_file")
    if len(data) > MAX_FILE_BYTES:
        raise PhotoRejected("too_large_file", f"{len(data)} bytes")
    fmt = _sniff(data)
    _check_dimensions(*_HEADER_SIZE[fmt](data))  # before Pillow touches the data
    return fmt


def _decode_large(data: bytes) -> tuple[Image.Image, str, tuple[int, int]]:
    """Validate ``data`` and return (upright sRGB image fitting LARGE_MAX_SIDE,
    detected format, upright original size)."""
    fmt = check_header(data)
    data = bytes(data)

    try:
        im: Image.Image = Image.open(io.BytesIO(data), formats=(fmt,))
        _check_dimensions(*im.size)  # Pillow's own reading must agree with ours
        original_size = im.size
        target = _fit(original_size, LARGE_MAX_SIDE)
        if fmt == "JPEG":
            # Let libjpeg decode at 1/2, 1/4 or 1/8 scale, never below `target`.
            im.draft("RGB", target)
        im.load()
        orientation = _orientation(im)  # PNG may keep eXIf after IDAT: read after load
        icc = im.info.get("icc_profile")
    except PhotoRejected:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise PhotoRejected("too_many_pixels", str(exc)) from exc
    except MemoryError:
        raise
    except Exception as exc:  # Pillow raises many types on hostile input
        raise _decode_failure(fmt, data, exc) from exc

    im, icc = _normalised_mode(im, icc)
    if im.size != target:
        # The one resize from the (possibly draft-reduced) decode. HAMMING is as
        # cheap as BILINEAR but sharper; `reducing_gap` box-averages big PNG/WebP
        # inputs first (fast, and invisible at these ratios).
        im = im.resize(target, Image.Resampling.HAMMING, reducing_gap=2.0)

    if orientation in _ORIENTATION:
        im = im.transpose(_ORIENTATION[orientation])
        if orientation >= 5:
            original_size = original_size[::-1]

    if im.mode == "RGBA":  # flatten transparency onto white
        flat = Image.new("RGB", im.size, (255, 255, 255))
        flat.paste(im, (0, 0), im)
        im = flat
    im = _to_srgb(im, icc)
    im.info = {}  # no EXIF, ICC, XMP, comments or DPI may reach an output
    return im, fmt, original_size


def _jpeg(im: Image.Image, quality: int, *, progressive: bool) -> bytes:
    """Encode without any metadata. Progressive files come out ~7 % smaller but
    take several times longer to encode (libjpeg always optimises their Huffman
    tables), so only the stored ``large`` is progressive: the card is re-encoded
    by Telegram anyway, and the thumbnail is tiny (cheap to optimise)."""
    out = io.BytesIO()
    im.info = {}
    im.save(out, "JPEG", quality=quality, progressive=progressive,
            optimize=not progressive and im.width * im.height <= 400_000)  # fmt: skip
    return out.getvalue()


# --------------------------------------------------------------------------- card
# Layout sizes are in thousandths of the card width, so CARD_SIZE can change.

_WHITE = (255, 255, 255)
_TITLE_GREY = (238, 238, 238)
_OLD_PRICE_GREY = (205, 205, 205)
_BADGE_RED = (213, 32, 39)
_BAND_ALPHA = 205  # darkness of the bottom band (0-255)


def _card_money(minor: int, currency: str, locale: str) -> str:
    """The price as the chat shows it to a reader of ``locale`` (format_money), or with the ISO
    code ("4.50 EUR") when no font can draw the symbol (only Pillow's embedded font: no "€")."""
    text = format_money(minor, currency, locale)
    if drawable(text):
        return text
    sign, amount, code = money_parts(minor, currency)
    return f"{sign}{amount} {code}"


def _badge_label(pct: int) -> str:
    """The discount as the chat writes it ("−62 %"), in ASCII for the embedded font."""
    label = f"−{pct} %"
    return label if drawable(label) else f"-{pct}%"


@lru_cache(maxsize=4)
def _band_mask(width: int, height: int, ramp: int) -> Image.Image:
    """Vertical alpha ramp: transparent at the top, _BAND_ALPHA from `ramp` down."""
    column = Image.new("L", (1, height))
    column.putdata([round(_BAND_ALPHA * min(1.0, y / ramp) ** 1.5) for y in range(height)])
    return column.resize((width, height), Image.Resampling.NEAREST)


def _cover(im: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Scale and centre-crop ``im`` to exactly ``size`` (CSS "object-fit: cover")."""
    w, h = im.size
    tw, th = size
    if (w >= tw and h == th) or (w == tw and h >= th):
        # The usual case: a 4:3 or 3:4 large (1280x960) and a 960 px card: crop only.
        left, top = (w - tw) // 2, (h - th) // 2
        return im.crop((left, top, left + tw, top + th))
    scale = max(tw / w, th / h)
    cw, ch = tw / scale, th / scale
    x0, y0 = (w - cw) / 2, (h - ch) / 2
    return im.resize(size, Image.Resampling.BILINEAR, box=(x0, y0, x0 + cw, y0 + ch))


def _draw_deal(card: Image.Image, *, price_minor: int, original_price_minor: int,
               currency: str, title: str, locale: str = "en") -> None:  # fmt: skip
    """Draw the band, prices, title and discount badge onto ``card`` in place, the prices as a
    reader of ``locale`` reads them in the chat."""
    width, height = card.size

    def u(thousandths: float) -> int:
        return max(1, round(width * thousandths / 1000))

    margin = u(45)
    inner = width - 2 * margin

    # Bottom band: a dark gradient so white text reads on any photo.
    band_h = min(u(310), height // 2)
    card.paste((0, 0, 0), (0, height - band_h, width, height), _band_mask(width, band_h, u(100)))

    price = _card_money(price_minor, currency, locale)
    old = _card_money(original_price_minor, currency, locale) if price_minor < original_price_minor else ""
    gap = u(34)
    price_size, old_size = u(140), u(78)
    while price_size > u(45):  # as large as fits on one line
        needed = text_width(price, price_size, bold=True)
        if old:
            needed += gap + text_width(old, old_size)
        if needed <= inner:
            break
        price_size, old_size = price_size * 9 // 10, old_size * 9 // 10
    baseline = height - margin - u(8)
    box = draw_text(card, margin, baseline, price, size=price_size, fill=_WHITE, bold=True)
    if old:
        obox = draw_text(card, box[2] + gap, baseline, old, size=old_size, fill=_OLD_PRICE_GREY)
        mid = (obox[1] + obox[3]) // 2
        ImageDraw.Draw(card).line((obox[0] - u(4), mid, obox[2] + u(4), mid),
                                  fill=_OLD_PRICE_GREY, width=max(3, old_size // 12))  # fmt: skip

    title = displayable_title(title)
    if title:  # above the price; a right-to-left title starts at the right, as it is read
        size = u(46)
        title = ellipsize(title, size, inner)
        x = width - margin - text_width(title, size) if is_rtl(title) else margin
        draw_text(card, x, box[1] - u(32), title, size=size, fill=_TITLE_GREY)

    pct = discount_percent(price_minor, original_price_minor)
    if pct >= 1:  # red badge with a white rim and a drop shadow, top-right corner
        label = _badge_label(pct)
        size = u(96)
        pad_x, pad_y, radius = u(28), u(24), u(26)
        x1, y0 = width - margin, margin
        x0 = x1 - text_width(label, size, bold=True) - 2 * pad_x
        y1 = y0 + round(size * 0.72) + 2 * pad_y  # digits' height is ~0.72 em
        draw = ImageDraw.Draw(card)
        shift = u(7)
        draw.rounded_rectangle((x0 + shift, y0 + shift, x1 + shift, y1 + shift), radius, (0, 0, 0))
        draw.rounded_rectangle((x0, y0, x1, y1), radius, _BADGE_RED, _WHITE, width=u(5))
        draw_text(card, x0 + pad_x, y1 - pad_y, label, size=size, fill=_WHITE, bold=True, shadow=False)


def _compose_card(photo: Image.Image, **deal) -> Image.Image:
    card = _cover(photo, CARD_SIZE)
    if card.mode != "RGB":
        card = card.convert("RGB")
    _draw_deal(card, **deal)
    return card


def _check_deal(price_minor: int, original_price_minor: int, currency: str, title: str) -> None:
    for name, value in (("price_minor", price_minor), ("original_price_minor", original_price_minor)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name} must be an int")
        if value < 0:
            raise ValueError(f"{name} must be >= 0, got {value}")
    if not isinstance(title, str):
        raise TypeError("title must be a str")
    money_parts(0, currency)  # validates the currency code


# --------------------------------------------------------------------------- public


def process_offer_photo(
    data: bytes, *, price_minor: int, original_price_minor: int, currency: str, title: str, locale: str = "en"
) -> ProcessedPhoto:
    """Validate an uploaded offer photo and derive the large image, the thumbnail
    and the deal card, all as metadata-free sRGB JPEGs. The card's prices read as they do in
    the chat for a reader of ``locale`` (the business's language).

    Raises ``PhotoRejected`` for unusable photos; ``TypeError``/``ValueError`` for
    bad prices, currency or title (programming errors, not user errors).
    """
    _check_deal(price_minor, original_price_minor, currency, title)
    large, fmt, (width, height) = _decode_large(data)

    thumb = large.resize(_fit(large.size, THUMBNAIL_MAX_SIDE), Image.Resampling.HAMMING,
                         reducing_gap=2.0)  # fmt: skip
    card = _compose_card(large, price_minor=price_minor, original_price_minor=original_price_minor,
                         currency=currency, title=title, locale=locale)  # fmt: skip
    return ProcessedPhoto(
        large=_jpeg(large, JPEG_QUALITY, progressive=LARGE_PROGRESSIVE),
        thumbnail=_jpeg(thumb, THUMBNAIL_QUALITY, progressive=False),
        card=_jpeg(card, JPEG_QUALITY, progressive=False),
        width=width,
        height=height,
        format=fmt,
    )


def render_card(
    photo: bytes, *, price_minor: int, original_price_minor: int, currency: str, title: str, locale: str = "en"
) -> bytes:
    """Re-render only the deal card, e.g. after a price edit, from a stored
    ``ProcessedPhoto.large`` (any acceptable photo works; it is validated again)."""
    _check_deal(price_minor, original_price_minor, currency, title)
    large, _, _ = _decode_large(photo)
    card = _compose_card(large, price_minor=price_minor, original_price_minor=original_price_minor,
                         currency=currency, title=title, locale=locale)  # fmt: skip
    return _jpeg(card, JPEG_QUALITY, progressive=False)
