"""Text on the deal card image: fonts by path, every script the chat can show, right-to-left.

The card must say what the chat says: "Brötchen" with its umlaut, "4,50 €" for a German business,
an Arabic or Hebrew title shaped and in reading order. So text is drawn with real fonts found on
disk, from ``FONT_CANDIDATES`` (Debian's ``fonts-noto-core`` and ``fonts-dejavu-core``, installed
by ``scripts/ensure-system-packages.sh`` and the ``Dockerfile``), each character in the first face
that has it (Noto Sans for Latin, Greek and Cyrillic, Noto Sans Arabic, Noto Sans Hebrew, then
DejaVu Sans for what they lack, such as "−"). Pillow lays the text out with libraqm when it has it
(``ImageFont.Layout.RAQM``: Arabic letters joined, right-to-left runs reversed by FriBiDi).

Text that needs more than one face is split into runs; the runs' order follows the Unicode
bidirectional algorithm's levels (a reduced form: no explicit embeddings), and each run is laid
out by raqm in its own direction. Only when no font file is installed at all does the card fall
back to Pillow's embedded font, which is ASCII-only: a warning says so once, prices read
"4.50 EUR" and titles are reduced to what it can draw ("Café" -> "Cafe", nothing of a non-Latin
title).
"""

from __future__ import annotations

import bisect
import struct
import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont, features

from core.logging import get_logger

log = get_logger(__name__)

__all__ = [
    "FONT_CANDIDATES",
    "displayable_title",
    "draw_text",
    "drawable",
    "ellipsize",
    "faces",
    "has_glyph",
    "is_rtl",
    "reload_fonts",
    "text_width",
]

_NOTO = "/usr/share/fonts/truetype/noto"
_DEJAVU = "/usr/share/fonts/truetype/dejavu"

# (regular, bold) font files, in the order a character is looked for; a face whose regular file is
# missing is skipped, a missing bold is faked with a stroke. Debian: fonts-noto-core, fonts-dejavu-core.
FONT_CANDIDATES: list[tuple[str, str]] = [
    (f"{_NOTO}/NotoSans-Regular.ttf", f"{_NOTO}/NotoSans-Bold.ttf"),  # Latin, Greek, Cyrillic
    (f"{_NOTO}/NotoSansArabic-Regular.ttf", f"{_NOTO}/NotoSansArabic-Bold.ttf"),
    (f"{_NOTO}/NotoSansHebrew-Regular.ttf", f"{_NOTO}/NotoSansHebrew-Bold.ttf"),
    (f"{_DEJAVU}/DejaVuSans.ttf", f"{_DEJAVU}/DejaVuSans-Bold.ttf"),  # all of those, less well; "−"
]

_HAS_FREETYPE = features.check("freetype2")
_HAS_RAQM = features.check("raqm")


# --------------------------------------------------------------------------- fonts


def _cmap_ranges(path: str) -> tuple[tuple[int, int], ...]:
    """The code points a TrueType/OpenType font maps to glyphs, as sorted (first, last) ranges, read
    from its 'cmap' table (format 12 for all planes, else format 4 for the BMP)."""
    data = Path(path).read_bytes()
    tables = {}
    for i in range(struct.unpack_from(">H", data, 4)[0]):
        tag, _checksum, offset, _length = struct.unpack_from(">4sIII", data, 12 + 16 * i)
        tables[tag] = offset
    base = tables[b"cmap"]
    subtables: dict[int, int] = {}
    for i in range(struct.unpack_from(">H", data, base + 2)[0]):
        platform, encoding, offset = struct.unpack_from(">HHI", data, base + 4 + 8 * i)
        if (platform, encoding) in ((0, 3), (0, 4), (0, 6), (3, 1), (3, 10)):  # Unicode subtables
            subtables.setdefault(struct.unpack_from(">H", data, base + offset)[0], base + offset)
    ranges: list[tuple[int, int]] = []
    if 12 in subtables:
        start = subtables[12]
        for group in range(struct.unpack_from(">I", data, start + 12)[0]):
            first, last, _glyph = struct.unpack_from(">III", data, start + 16 + 12 * group)
            ranges.append((first, last))
    elif 4 in subtables:
        start = subtables[4]
        count = struct.unpack_from(">H", data, start + 6)[0] // 2
        ends = struct.unpack_from(f">{count}H", data, start + 14)
        starts = struct.unpack_from(f">{count}H", data, start + 16 + 2 * count)
        ranges = [(first, last) for first, last in zip(starts, ends, strict=True) if first != 0xFFFF]
    return tuple(sorted(ranges))


@dataclass(frozen=True)
class Face:
    """One typeface: its files and the code points it covers."""

    regular: str
    bold: str | None
    _ranges: tuple[tuple[int, int], ...]
    _firsts: tuple[int, ...]

    @classmethod
    def load(cls, regular: str, bold: str | None) -> Face:
        ranges = _cmap_ranges(regular)
        return cls(regular, bold, ranges, tuple(first for first, _ in ranges))

    def covers(self, ch: str) -> bool:
        point = ord(ch)
        i = bisect.bisect_right(self._firsts, point) - 1
        return i >= 0 and self._ranges[i][1] >= point


@lru_cache(maxsize=1)
def faces() -> tuple[Face, ...]:
    """The installed faces of ``FONT_CANDIDATES``, in order (read once per process)."""
    found = []
    if _HAS_FREETYPE:
        for regular, bold in FONT_CANDIDATES:
            if not Path(regular).is_file():
                continue
            try:
                found.append(Face.load(regular, bold if Path(bold).is_file() else None))
            except (OSError, KeyError, struct.error) as error:
                log.warning("card_font_unreadable", path=regular, error=str(error))
    if not found:
        log.warning("card_fonts_missing", candidates=[regular for regular, _ in FONT_CANDIDATES],
                    freetype=_HAS_FREETYPE,
                    consequence="the deal card uses Pillow's embedded ASCII-only font: prices read "
                                "'4.50 EUR' and titles lose their accents and non-Latin letters",
                    fix="apt-get install fonts-noto-core fonts-dejavu-core libraqm0")
    elif not _HAS_RAQM:
        log.warning("card_layout_basic", consequence="no libraqm: Arabic letters are drawn unjoined",
                    fix="apt-get install libraqm0")
    else:
        log.debug("card_fonts", faces=[face.regular for face in found])
    return tuple(found)


def reload_fonts() -> None:
    """Look for the font files again (after ``FONT_CANDIDATES`` changed: tests)."""
    for cached in (faces, has_glyph, _runs, _truetype):
        cached.cache_clear()


@lru_cache(maxsize=128)
def _truetype(path: str, size: int) -> ImageFont.FreeTypeFont:
    engine = ImageFont.Layout.RAQM if _HAS_RAQM else ImageFont.Layout.BASIC
    return ImageFont.truetype(path, size, layout_engine=engine)


@lru_cache(maxsize=64)
def _embedded(size: int) -> Any:
    return ImageFont.load_default(size=size)


@lru_cache(maxsize=1)
def _bitmap_font() -> Any:
    return ImageFont.load_default_imagefont()


@lru_cache(maxsize=1)
def _notdef_mask() -> tuple[tuple[int, int], bytes]:
    mask = _embedded(64).getmask("\ue000")  # private-use code point: in no font
    return mask.size, bytes(mask)


def _embedded_has(ch: str) -> bool:
    if ch.isspace():
        return ch == " "
    if not _HAS_FREETYPE:
        return " " <= ch <= "~"
    mask = _embedded(64).getmask(ch)
    return (mask.size, bytes(mask)) != _notdef_mask()


@lru_cache(maxsize=4096)
def has_glyph(ch: str) -> bool:
    """Can the card draw this character (in any installed face, else in the embedded font)?"""
    installed = faces()
    if installed:
        return unicodedata.category(ch) not in ("Cc", "Cs", "Co") and any(face.covers(ch) for face in installed)
    return _embedded_has(ch)


def drawable(text: str) -> bool:
    return all(has_glyph(ch) for ch in text)


# --------------------------------------------------------------------------- titles

_TITLE_REPLACEMENTS = {"–": "-", "—": "-", "‐": "-", "−": "-", "«": '"', "»": '"',
                       "„": '"', "ß": "ss", "æ": "ae", "Æ": "AE", "œ": "oe", "Œ": "OE",
                       "ø": "o", "Ø": "O", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D"}  # fmt: skip
_JOINERS = frozenset("\u200c\u200d")  # zero-width (non-)joiner: they change how Arabic letters join


def displayable_title(title: str) -> str:
    """The title as the card can show it: whitespace collapsed, characters no installed font has
    (emoji, say) and formatting characters (bidi marks: the layout orders the text itself) left
    out; or "" when too little of it would be left. With only the embedded font, reduced to ASCII
    ("Café" -> "Cafe")."""
    title = unicodedata.normalize("NFC", " ".join(title.split()))
    kept: list[str] = []
    for ch in title:
        if faces():
            keep = has_glyph(ch) and (unicodedata.category(ch) != "Cf" or ch in _JOINERS)
            kept.append(ch if keep else "")
            continue
        if not has_glyph(ch):
            ch = _TITLE_REPLACEMENTS.get(ch) or "".join(  # noqa: PLW2901 - the character, reduced
                c for c in unicodedata.normalize("NFKD", ch) if not unicodedata.combining(c)
            )
        kept.append(ch if ch and drawable(ch) else "")
    out = " ".join("".join(kept).split())
    letters = sum(ch.isalnum() for ch in title)
    return out if letters and 2 * sum(ch.isalnum() for ch in out) >= letters else ""


# --------------------------------------------------------------------------- direction

_RTL = frozenset({"R", "AL"})
_NUMBER = frozenset({"EN", "AN"})


def _bidi_class(ch: str) -> str:
    return unicodedata.bidirectional(ch) or "ON"


def is_rtl(text: str) -> bool:
    """The paragraph direction: that of the first letter with a direction (left-to-right if none)."""
    for ch in text:
        kind = _bidi_class(ch)
        if kind == "L":
            return False
        if kind in _RTL:
            return True
    return False


def _weak_types(text: str, base: int) -> list[str]:
    """W1-W7 in short: "L", "R", "N" (a number not after a left-to-right letter) or "ON" (neutral)
    per character; a mark takes its base's type, a number after a left-to-right letter is one."""
    types: list[str] = []
    last_strong = "R" if base else "L"
    for ch in text:
        kind = _bidi_class(ch)
        if kind == "NSM":
            types.append(types[-1] if types else "ON")
            continue
        if kind in _RTL:
            kind = "R"
        if kind in ("L", "R"):
            last_strong = kind
        elif kind in _NUMBER:
            kind = "L" if last_strong == "L" else "N"
        else:
            kind = "ON"
        types.append(kind)
    return types


def _resolve_neutrals(types: list[str], base: int) -> list[str]:
    """N1/N2: neutrals between two like directions take it (a number counts as right-to-left), the
    others the paragraph's."""
    paragraph = "R" if base else "L"
    resolved = list(types)
    i = 0
    while i < len(types):
        if types[i] != "ON":
            i += 1
            continue
        j = i
        while j < len(types) and types[j] == "ON":
            j += 1
        before = paragraph if i == 0 else types[i - 1].replace("N", "R")
        after = paragraph if j == len(types) else types[j].replace("N", "R")
        resolved[i:j] = [before if before == after else paragraph] * (j - i)
        i = j
    return resolved


def _levels(text: str) -> list[int]:
    """Embedding levels per character by the Unicode bidirectional algorithm, reduced: one
    paragraph, no explicit embeddings or isolates (titles come without them: see
    `displayable_title`). Even levels run left to right, odd ones right to left."""
    base = 1 if is_rtl(text) else 0
    by_type = {"L": 0, "R": 1, "N": 2} if base == 0 else {"L": 2, "R": 1, "N": 2}  # I1, I2
    levels = [by_type[kind] for kind in _resolve_neutrals(_weak_types(text, base), base)]
    for k in range(len(text) - 1, -1, -1):  # L1: trailing whitespace at the paragraph level
        if not text[k].isspace():
            break
        levels[k] = base
    return levels


def _visual_order(items: list[Any], levels: list[int]) -> list[Any]:
    """L2: from the highest level down to 1, reverse every run of items at that level or higher."""
    order = list(range(len(items)))
    lv = list(levels)
    for level in range(max(levels, default=0), 0, -1):
        i = 0
        while i < len(order):
            if lv[i] < level:
                i += 1
                continue
            j = i
            while j < len(order) and lv[j] >= level:
                j += 1
            order[i:j] = reversed(order[i:j])
            lv[i:j] = reversed(lv[i:j])
            i = j
    return [items[k] for k in order]


# --------------------------------------------------------------------------- layout


@dataclass(frozen=True)
class _Run:
    text: str  # in logical order
    font: Any
    direction: str | None  # "ltr" / "rtl" for raqm; None: let raqm find it (or basic layout)
    stroke: int  # fake bold, for a face without a bold file and for the embedded font


def _stroke(size: int) -> int:
    return max(1, size // 40)


def _face_of(text: str, installed: tuple[Face, ...]) -> list[Face | None]:
    """Each character's face: the first that has it; a space, punctuation or mark stays in the
    face before it when that one has it too (so "−40 %" is one run after the minus)."""
    chosen: list[Face | None] = []
    for ch in text:
        previous = chosen[-1] if chosen else None
        if previous is not None and _bidi_class(ch) not in ("L", "R", "AL", "EN", "AN") and previous.covers(ch):
            chosen.append(previous)
            continue
        chosen.append(next((face for face in installed if face.covers(ch)), None))
    return chosen


@lru_cache(maxsize=512)
def _runs(text: str, size: int, bold: bool) -> tuple[_Run, ...]:
    """``text`` as runs in visual order (left to right), each with its font and direction."""
    installed = faces()
    if not installed:
        return (_Run(text, _embedded(size), None, _stroke(size) if bold else 0),)
    chosen = _face_of(text, installed)
    keep = [i for i, face in enumerate(chosen) if face is not None]
    text = "".join(text[i] for i in keep)
    chosen = [chosen[i] for i in keep]
    if not text:
        return ()

    def run(piece: str, face: Face | None, direction: str | None) -> _Run:
        assert face is not None, "faceless characters were left out above"
        if bold and face.bold:
            return _Run(piece, _truetype(face.bold, size), direction, 0)
        return _Run(piece, _truetype(face.regular, size), direction, _stroke(size) if bold else 0)

    if _HAS_RAQM and len(set(chosen)) == 1:  # one face: raqm (FriBiDi) does the whole algorithm
        return (run(text, chosen[0], None),)
    levels = _levels(text)
    if not _HAS_RAQM:  # basic layout draws left to right: hand it the characters in visual order
        runs: list[_Run] = []
        for ch, face in _visual_order(list(zip(text, chosen, strict=True)), levels):
            piece = run(ch, face, None)
            if runs and runs[-1].font is piece.font:
                piece = _Run(runs.pop().text + ch, piece.font, None, piece.stroke)
            runs.append(piece)
        return tuple(runs)
    # Several faces: cut where the face or the level changes, order the pieces by level, and let
    # raqm lay out each piece in its own direction.
    groups: list[tuple[str, Face | None, int]] = []
    for ch, face, level in zip(text, chosen, levels, strict=True):
        if groups and groups[-1][1] is face and groups[-1][2] == level:
            groups[-1] = (groups[-1][0] + ch, face, level)
        else:
            groups.append((ch, face, level))
    ordered = _visual_order(groups, [level for _, _, level in groups])
    return tuple(run(piece, face, "rtl" if level % 2 else "ltr") for piece, face, level in ordered)


def _advance(run: _Run) -> float:
    if run.direction is not None:
        return float(run.font.getlength(run.text, direction=run.direction)) + 2 * run.stroke
    return float(run.font.getlength(run.text)) + 2 * run.stroke


def text_width(text: str, size: int, bold: bool = False) -> int:
    """How wide ``text`` is drawn at ``size`` px (its advance)."""
    if not faces() and not _HAS_FREETYPE:
        left, _, right, _ = _bitmap_font().getbbox(text)
        return round((right - left) * size / 11)
    return round(sum(_advance(run) for run in _runs(text, size, bold)))


def draw_text(im: Image.Image, x: int, baseline: int, text: str, *, size: int, fill: Any,
              bold: bool = False, shadow: bool = True) -> tuple[int, int, int, int]:  # fmt: skip
    """Draw ``text`` from x (its left end) on ``baseline``, with a hard drop shadow that keeps white
    text legible on bright spots; return its bounding box."""
    if not faces() and not _HAS_FREETYPE:
        return _draw_text_bitmap(im, x, baseline, text, size=size, fill=fill)
    draw = ImageDraw.Draw(im)
    placed = []
    pen = float(x)
    for run in _runs(text, size, bold):
        options: dict[str, Any] = {"font": run.font, "anchor": "ls", "stroke_width": run.stroke}
        if run.direction is not None:
            options["direction"] = run.direction
        placed.append((round(pen) + run.stroke, run.text, options))
        pen += _advance(run)
    if not placed:
        return x, baseline, x, baseline
    if shadow:  # every shadow first, so no run's shadow falls on the run before it
        off = max(2, size // 30)
        for left, piece, options in placed:
            draw.text((left + off, baseline + off), piece, fill=(0, 0, 0), stroke_fill=(0, 0, 0), **options)
    boxes = []
    for left, piece, options in placed:
        draw.text((left, baseline), piece, fill=fill, stroke_fill=fill, **options)
        boxes.append(draw.textbbox((left, baseline), piece, **options))
    return (round(min(b[0] for b in boxes)), round(min(b[1] for b in boxes)),
            round(max(b[2] for b in boxes)), round(max(b[3] for b in boxes)))  # fmt: skip


def _draw_text_bitmap(im: Image.Image, x: int, baseline: int, text: str, *, size: int,
                      fill: Any) -> tuple[int, int, int, int]:  # fmt: skip
    # Pillow built without FreeType: upscale the 11 px bitmap font. Crude, legible.
    font = _bitmap_font()
    left, top, right, bottom = font.getbbox(text)
    mask = Image.new("L", (max(1, right - left), max(1, bottom - top)), 0)
    ImageDraw.Draw(mask).text((-left, -top), text, font=font, fill=255)
    scale = size / 11
    mask = mask.resize((max(1, round(mask.width * scale)), max(1, round(mask.height * scale))),
                       Image.Resampling.BICUBIC)  # fmt: skip
    top_y = baseline - mask.height
    im.paste(fill, (x, top_y), mask)
    return x, top_y, x + mask.width, baseline


def ellipsize(text: str, size: int, max_width: int) -> str:
    """``text`` cut with an ellipsis so it fits in ``max_width`` px (binary search). The cut is in
    reading order, so a right-to-left title loses its end, at its left."""
    if text_width(text, size) <= max_width:
        return text
    dots = "…" if has_glyph("…") else "..."
    lo, hi = 0, min(len(text), 300)  # longest prefix that fits is text[:lo]
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if text_width(text[:mid].rstrip() + dots, size) <= max_width:
            lo = mid
        else:
            hi = mid - 1
    return text[:lo].rstrip() + dots if lo else ""
