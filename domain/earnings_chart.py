"""The earnings chart: a business's month, day by day, as a PNG (Pillow).

One bar per day: its height is the day's sales, the darker part what the business earned of them
(sales less refunds and the platform's fee). The chat and the Mini App word every label
(``chat.business.earnings`` and ``webapp/api.py`` pass them in, in the owner's language), so the
image says what the screen next to it says; the text is drawn with the deal card's fonts
(``domain.card_text``: Noto Sans and DejaVu Sans from Debian's packages).
"""

from __future__ import annotations

import io
from dataclasses import dataclass

from PIL import Image, ImageDraw

from domain.card_text import draw_text, ellipsize, text_width
from domain.money import format_money
from domain.payments.earnings import Statement

WIDTH, HEIGHT = 960, 540
MARGIN_LEFT, MARGIN_RIGHT, MARGIN_TOP, MARGIN_BOTTOM = 40, 40, 110, 70
BACKGROUND = (255, 255, 255)
INK = (26, 31, 54)
MUTED = (105, 115, 134)
GRID = (227, 232, 238)
GROSS = (190, 214, 246)
NET = (46, 125, 50)


@dataclass(frozen=True)
class ChartBar:
    label: str  # under the bar ("3"), or "" to leave it out
    gross: int
    net: int


@dataclass(frozen=True)
class ChartText:
    title: str  # "Earnings — December 2026"
    subtitle: str  # "Net €12.30 of €15.00 sales"
    gross_legend: str  # "Sales"
    net_legend: str  # "Earned"
    top_value: str  # the money the top grid line stands for, formatted


@dataclass(frozen=True)
class ChartWords:
    """The words on a month's chart, in the reader's language."""

    title: str  # "Earnings — December 2026"
    subtitle: str  # "Earned €12.30 of €15.00 in sales"
    gross_legend: str
    net_legend: str


def month_chart(statement: Statement, words: ChartWords, language: str) -> bytes:
    """The statement's month, day by day, as a PNG (a label under every day, or every third in a
    long month, and under the last)."""
    step = 1 if len(statement.days) <= 10 else 3
    bars = [ChartBar(str(day.day.day) if (i % step == 0 or i == len(statement.days) - 1) else "", day.gross, day.net)
            for i, day in enumerate(statement.days)]
    top = max([day.gross for day in statement.days] + [0])
    return render_chart(bars, ChartText(title=words.title, subtitle=words.subtitle, gross_legend=words.gross_legend,
                                        net_legend=words.net_legend,
                                        top_value=format_money(top, statement.currency, language)))


def render_chart(bars: list[ChartBar], text: ChartText) -> bytes:
    """The chart as PNG bytes (960 × 540)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    draw = ImageDraw.Draw(image)
    draw_text(image, MARGIN_LEFT, 48, ellipsize(text.title, 30, WIDTH - 2 * MARGIN_LEFT), size=30, fill=INK,
              bold=True, shadow=False)
    draw_text(image, MARGIN_LEFT, 84, ellipsize(text.subtitle, 20, WIDTH - 2 * MARGIN_LEFT), size=20, fill=MUTED,
              shadow=False)
    legend_x = WIDTH - MARGIN_RIGHT
    for label, colour in ((text.net_legend, NET), (text.gross_legend, GROSS)):
        width = text_width(label, 18)
        legend_x -= width
        draw_text(image, legend_x, 84, label, size=18, fill=MUTED, shadow=False)
        legend_x -= 26
        draw.rectangle((legend_x, 70, legend_x + 16, 86), fill=colour)
        legend_x -= 18

    plot_left, plot_right = MARGIN_LEFT, WIDTH - MARGIN_RIGHT
    plot_top, plot_bottom = MARGIN_TOP + 20, HEIGHT - MARGIN_BOTTOM
    top = max([bar.gross for bar in bars] + [bar.net for bar in bars] + [1])
    draw.line((plot_left, plot_top, plot_right, plot_top), fill=GRID, width=1)
    draw.line((plot_left, plot_bottom, plot_right, plot_bottom), fill=MUTED, width=2)
    draw_text(image, plot_left, plot_top - 6, text.top_value, size=16, fill=MUTED, shadow=False)
    if not bars:
        return _png(image)
    slot = (plot_right - plot_left) / len(bars)
    width = max(2, int(slot * 0.7))
    for index, bar in enumerate(bars):
        x = int(plot_left + index * slot + (slot - width) / 2)
        for value, colour in ((bar.gross, GROSS), (max(bar.net, 0), NET)):
            if value > 0:
                height = max(1, round((plot_bottom - plot_top) * value / top))
                draw.rectangle((x, plot_bottom - height, x + width, plot_bottom - 1), fill=colour)
        if bar.label:
            label_width = text_width(bar.label, 16)
            draw_text(image, int(x + width / 2 - label_width / 2), plot_bottom + 24, bar.label, size=16, fill=MUTED,
                      shadow=False)
    return _png(image)


def _png(image: Image.Image) -> bytes:
    out = io.BytesIO()
    image.save(out, "PNG", optimize=True)
    return out.getvalue()
