"""❤️ My favourites: the businesses a customer follows with their deals now, alerts per business
on or off, and all new-deal alerts muted for a day or a week."""

from __future__ import annotations

from datetime import UTC, datetime

from chat import menus
from chat.cards import isolate, local_time, user_text
from chat.context import Context
from chat.registry import StaleButton, button, data
from core.outbox import Keyboard
from core.outbox import button as key
from domain import announcements, catalog
from domain.money import format_money


def _now() -> datetime:
    return datetime.now(UTC)


def show_favourites(ctx: Context) -> None:
    _ = ctx._
    now = _now()
    favourites = catalog.favourites(ctx.session, ctx.user.id, now)
    lines = [_("❤️ <b>My favourites</b>")]
    rows: Keyboard = []
    if not favourites:
        lines.append(_("You don't follow any business yet. Open a deal and tap ❤️ Follow to hear about its "
                       "new deals and find it here."))
    for favourite in favourites:
        business = favourite.business
        bell = "🔔" if favourite.alerts else "🔕"
        lines.append("")
        lines.append(f"{bell} <b>{user_text(business.name)}</b>")
        if not favourite.deals:
            lines.append(_("No deals right now."))
        for offer in favourite.deals[:3]:
            price = format_money(offer.price_minor, offer.currency, _.language)
            lines.append(f"• {user_text(offer.title)} · {price}")
            rows.append([key(f"{isolate(offer.title[:30])} · {price}", data("offer", offer.id))])
        toggle = (_("🔕 No alerts from {name}", name=isolate(business.name[:25])) if favourite.alerts
                  else _("🔔 Alerts from {name}", name=isolate(business.name[:25])))
        rows.append([key(toggle, data("favalert", business.id, 0 if favourite.alerts else 1))])
    muted = ctx.user.alerts_muted_until
    lines.append("")
    if muted is not None and muted > now:
        # Customers have no time zone of their own: their businesses' (Business.timezone's default otherwise).
        zone = favourites[0].business.timezone if favourites else "Europe/Berlin"
        until = local_time(muted, zone).strftime("%d.%m. %H:%M")
        lines.append(_("🔕 All new-deal alerts are muted until {until}.", until=until))
        rows.append([key(_("🔔 Alerts on again"), data("mute", "off"))])
    else:
        rows.append([key(_("🔕 Mute alerts for a day"), data("mute", "day")),
                     key(_("🔕 For a week"), data("mute", "week"))])
    rows.append(menus.home_row(_))
    ctx.show("\n".join(lines), rows)


@button("favs")
def btn_favourites(ctx: Context, args: list[str]) -> None:
    if args:
        raise StaleButton
    show_favourites(ctx)


@button("favalert")
def btn_business_alerts(ctx: Context, args: list[str]) -> None:
    if len(args) != 2 or not args[0].isdigit() or args[1] not in ("0", "1"):
        raise StaleButton
    on = args[1] == "1"
    if not announcements.set_business_alerts(ctx.session, ctx.user.id, int(args[0]), on):
        raise StaleButton
    ctx.toast(ctx._("🔔 Alerts on for this business.") if on else ctx._("🔕 No more alerts from this business."))
    show_favourites(ctx)


@button("mute")
def btn_mute(ctx: Context, args: list[str]) -> None:
    if len(args) != 1 or args[0] not in ("day", "week", "off"):
        raise StaleButton
    period = None if args[0] == "off" else args[0]
    announcements.mute_alerts(ctx.session, ctx.user.id, period, _now())
    _ = ctx._
    ctx.toast({"day": _("🔕 No new-deal alerts for a day."), "week": _("🔕 No new-deal alerts for a week."),
               None: _("🔔 New-deal alerts are on again.")}[period])
    show_favourites(ctx)
