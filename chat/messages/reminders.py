"""What beat tells people: lapsed holds, expired offers, pickup reminders, daily summaries."""

from __future__ import annotations

from chat.cards import format_window, user_text
from chat.menus import home_row
from core.i18n import Translator
from core.outbox import Reply, renders
from domain.maintenance import DailySummary, HoldExpired, OfferExpired, PickupReminder
from domain.money import format_money


@renders(OfferExpired)
def offer_expired(notice: OfferExpired) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("⌛ The pickup time for <b>{title}</b> is over, so your unpaid reservation was "
               "released. Nothing was charged.", title=user_text(notice.title)),
        keyboard=[home_row(_)], kind="order_expired",
    )


@renders(HoldExpired)
def hold_expired(notice: HoldExpired) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("⌛ Your reservation of <b>{title}</b> lapsed before it was paid, so it went back "
               "on sale. Nothing was charged. You can reserve again if some are left.",
               title=user_text(notice.title)),
        keyboard=[home_row(_)], kind="order_expired",
    )


@renders(PickupReminder)
def pickup_reminder(notice: PickupReminder) -> Reply:
    _ = Translator(notice.language)
    window = format_window(_, notice.pickup_start, notice.pickup_end, notice.timezone, notice.now)
    lines = [
        _("⏰ Pickup soon: <b>{title}</b>", title=user_text(notice.title)),
        _("🕒 {window}", window=window),
        f"🏪 {user_text(notice.business_name)}, {user_text(notice.address)}",
    ]
    if notice.pickup_code:
        lines.append(_("Show this code at the counter: <b>{code}</b>", code=notice.pickup_code))
    return Reply(text="\n".join(lines), keyboard=[home_row(_)], kind="pickup_reminder")


@renders(DailySummary)
def daily_summary(notice: DailySummary) -> Reply:
    _ = Translator(notice.language)
    revenue = ", ".join(format_money(amount, currency, _.language) for currency, amount in notice.revenue)
    text = "\n".join([
        _("📊 <b>{name}</b>: your day ({day})", name=user_text(notice.business_name), day=notice.day),
        _("Offers with pickup today: {count}", count=notice.offers),
        _.ngettext("Paid orders: {count} ({units} item)", "Paid orders: {count} ({units} items)", notice.units,
                   count=notice.orders, units=notice.units),
        _("Collected: {count}", count=notice.collected),
        _("Not collected: {count} · cancelled: {cancelled} · refunded: {refunded}", count=notice.not_collected,
          cancelled=notice.cancelled, refunded=notice.refunded),
        _("Revenue after refunds: {amount}", amount=revenue or "0"),
    ])
    return Reply(text=text, keyboard=[home_row(_)], kind="daily_summary")
