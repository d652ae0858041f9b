"""The sentences of the business dashboard and the admin's figures (sent to the page with /api/me,
next to webapp/texts.py's), and the words on the earnings chart.

Where the chat says the same thing (what an offer is, the earnings, the admin's figures) the
sentence is the chat's own, so it reads and translates the same in both.
"""

from __future__ import annotations

from datetime import date

from babel.dates import format_date

from core.i18n import N_, Translator
from domain import tags
from domain.earnings_chart import ChartWords
from domain.money import format_money
from domain.payments.earnings import Statement

TEXTS = {
    # offers: the list, the form, the card
    "new_offer": N_("➕ New offer"),
    "field_title": N_("What are you offering?"),
    "title_hint": N_("e.g. Surprise bag of pastries"),
    "field_description": N_("Description (optional)"),
    "field_price": N_("Price customers pay"),
    "field_original_price": N_("Original price"),
    "field_quantity": N_("Units (bags, boxes…)"),
    "field_day": N_("Pickup day"),
    "today_word": N_("Today"),
    "tomorrow_word": N_("Tomorrow"),
    "field_window": N_("Pickup window (time in {zone})"),
    "field_category": N_("Category"),
    "no_category": N_("No category"),
    "field_diet": N_("Suitable for"),
    "field_allergens": N_("Contains"),
    "field_photo": N_("Photo of the food"),
    "choose_photo": N_("📷 Choose a photo"),
    "photo_uploading": N_("⏳ Uploading the photo…"),
    "photo_received": N_("✅ Photo received."),
    "create_offer": N_("Create the offer"),
    "creating": N_("⏳ Saving…"),
    "card_processing": N_("⏳ Making the deal card from your photo…"),
    "card_in_chat": N_("The preview is in your chat with the bot too."),
    "publish": N_("🚀 Publish"),
    "published_ok": N_("🎉 Published! Customers can order it now."),
    "discard": N_("🗑 Discard draft"),
    "discarded": N_("🗑 The draft was deleted."),
    "change_photo": N_("🖼 Change photo"),
    "edit": N_("✏️ Edit"),
    "save": N_("💾 Save"),
    "saved": N_("✅ Saved."),
    "card_updating": N_("The deal card is being updated."),
    "sold_held": N_("Sold: {sold} · Reserved: {held} · Left: {left}"),
    "manage": N_("⚙️ Manage"),
    # cancelling an offer, as /myoffers asks and does it
    "cancel_offer": N_("🗑 Cancel offer"),
    "cancel_ask": N_("🗑 Cancel <b>{title}</b>?\n\nNobody can order it any more; reservations are released and every "
                     "paid order is refunded. Customers are told."),
    "cancel_yes": N_("Yes, cancel the offer"),
    "cancel_no": N_("No, keep it"),
    "cancelling": N_("⏳ Cancelling the offer…"),
    "cancelled_ok": N_("🗑 Offer cancelled. Customers with a reservation or a paid order are told in their chat, "
                       "and paid orders are refunded."),
    "cancel_later": N_("The cancellation is taking longer than usual: your chat with the bot will say when it is "
                       "done."),
    # pickups by scanning the customer's pickup pass
    "scan_qr": N_("📷 Scan the pickup pass"),
    "scan_hint": N_("Point the camera at the QR code in the customer's chat."),
    "scan_unavailable": N_("📷 Scanning the pickup pass works in Telegram's phone app. Here, type the code "
                           "shown under the customer's QR code."),
    # earnings, as "💶 Earnings" in /myoffers words them
    "earnings": N_("💶 Earnings"),
    "this_week": N_("<b>This week</b> (since {day})"),
    "this_month": N_("<b>This month</b> ({month})"),
    "sales_line": N_("Sales {gross} · refunds {refunds} · platform fee {fee}"),
    "net_line": N_("<b>Net {net}</b> · paid out by Stripe {paid_out}"),
    "paid_by_stripe": N_("Stripe pays what you earn to your bank account on its payout schedule."),
    "paid_by_transfer": N_("Surplus collects your sales and pays what you earn by bank transfer."),
    "statement_csv": N_("📄 Statement (CSV)"),
    "chart_alt": N_("Earnings — {month}"),
    # the admin's figures, as /admin words them
    "stats": N_("🛠 <b>Admin</b>"),
    "active_offers": N_("Active offers: {count}"),
    "orders_today": N_("Orders today: {count} (paid: {paid})"),
    "revenue_today": N_("Revenue today (after refunds): {amount}"),
    "waiting_review": N_("Businesses waiting for review: {count}"),
    "queues": N_("Queues: {queues}"),
}

def texts(language: str) -> dict[str, object]:
    """The dashboard's sentences, and what an offer can be (domain/tags.py, in its order) as [code, label]."""
    _ = Translator(language)
    return {
        **{key: _(text) for key, text in TEXTS.items()},
        "categories": [[code, _(tags.CATEGORY_LABELS[code])] for code in tags.CATEGORIES],
        "diets": [[code, _(tags.DIET_LABELS[code])] for code in tags.DIETS],
        "allergens": [[code, _(tags.ALLERGEN_LABELS[code])] for code in tags.ALLERGENS],
    }


def day_label(day: date, language: str) -> str:
    return format_date(day, "EEE d MMM", locale=Translator(language).language)


def month_label(day: date, language: str) -> str:
    return format_date(day, "LLLL yyyy", locale=Translator(language).language)


def chart_words(statement: Statement, language: str) -> ChartWords:
    """The chart's words, as the chat's "💶 Earnings" draws them."""
    _ = Translator(language)

    def money(minor: int) -> str:
        return format_money(minor, statement.currency, _.language)

    return ChartWords(
        title=_("Earnings — {month}", month=month_label(statement.month_start, language)),
        subtitle=_("Earned {net} of {gross} in sales", net=money(statement.month.net),
                   gross=money(statement.month.gross)),
        gross_legend=_("Sales"), net_legend=_("Earned"),
    )
