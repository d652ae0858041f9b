"""Every sentence the app's screens show, translated here (the catalogs in locales/) and sent to the
page with /api/me, so the front end holds no wording of its own."""

from __future__ import annotations

from core.i18n import N_, Translator
from webapp import dashboard_texts

TEXTS = {
    "title": N_("Surplus deals"),
    "tab_map": N_("🗺 Map"),
    "tab_orders": N_("🧾 My orders"),
    "tab_business": N_("🏪 My business"),
    "tab_admin": N_("🛡 Admin"),
    "list": N_("Deals near you"),
    "newest": N_("Newest deals"),
    "no_deals": N_("No deals right now. Check back later!"),
    "near_me": N_("📍 Near me"),
    "left": N_("{count} left"),
    "pickup": N_("Pickup {window}"),
    "instead_of": N_("instead of {price}"),
    "km": N_("{km} km away"),
    "order": N_("Order {count} for {total}"),
    "reserving": N_("⏳ Reserving… The Pay button comes in the chat and under My orders."),
    "pay": N_("💳 Pay {amount}"),
    "held": N_("⏳ waiting for payment"),
    "preparing_payment": N_("⏳ Preparing the payment…"),
    "paid": N_("✅ paid"),
    "collected": N_("🛍 collected"),
    "cancelled": N_("✖️ cancelled"),
    "expired": N_("⌛ expired unpaid"),
    "refunded": N_("↩️ refunded"),
    "pickup_code": N_("Pickup code: {code}"),
    "show_qr": N_("Show this QR code at the counter."),
    "no_orders": N_("No orders yet."),
    "earlier": N_("Earlier"),
    "today": N_("Today's orders"),
    "no_orders_today": N_("No orders today yet."),
    "confirm_code": N_("Confirm a pickup"),
    "code_placeholder": N_("Pickup code"),
    "confirm": N_("✅ Confirm"),
    "collected_ok": N_("✅ Code {code} is valid: hand over {quantity}× {title}."),
    "already_collected": N_("⚠️ The order with code {code} was already collected. Don't hand it over twice."),
    "not_paid": N_("⚠️ The order with code {code} is not paid (or was cancelled). Don't hand it over."),
    "unknown_code": N_("❗ No order of yours has the code {code}. Check the code and type it again."),
    "your_offers": N_("Your offers"),
    "pause": N_("⏸ Pause"),
    "resume": N_("▶️ Resume"),
    "status_active": N_("on sale"),
    "status_paused": N_("paused"),
    "status_sold_out": N_("sold out"),
    "status_expired": N_("expired"),
    "status_cancelled": N_("cancelled"),
    "status_draft": N_("draft"),
    "pending": N_("Businesses waiting for verification"),
    "no_pending": N_("Nobody is waiting for verification."),
    "verify": N_("✅ Verify"),
    "verified": N_("✅ {name} is verified. The owner has been told."),
    "not_in_telegram": N_("Open this app from the bot's chat in Telegram."),
    "back": N_("⬅️ Back"),
    "error": N_("Something went wrong. Please try again."),
}


def texts(language: str) -> dict[str, object]:
    _ = Translator(language)
    return {**{key: _(text) for key, text in TEXTS.items()}, **dashboard_texts.texts(language)}
