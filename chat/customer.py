"""The customer's side of the chat: browse deals, look at one, reserve, see and cancel orders."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime
from urllib.parse import urlencode

from telegram import Message

from chat import menus, tags
from chat.cards import format_distance, format_window, isolate, local_time, offer_caption, user_text
from chat.context import Context
from chat.messages.orders import describe_cancellation, refusal
from chat.messages.pickup import bot_username
from chat.registry import StaleButton, button, command, data, deep_link
from core.handover import enqueue_after_commit
from core.i18n import N_, Translator
from core.outbox import Reply, render
from core.outbox import button as key
from core.settings import get_settings
from domain import announcements, catalog, ordering, payments, ratings
from domain.catalog import Sort
from domain.money import discount_percent, format_money
from domain.payments import CancelPolicy, notices
from models import Business, Offer, OfferStatus, Order, OrderStatus


def _now() -> datetime:
    return datetime.now(UTC)


def _int(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise StaleButton from None
    if not 0 <= number < 2**63:
        raise StaleButton
    return number


# -- browsing ---------------------------------------------------------------------------------

SORT_TITLES = {
    Sort.NEAREST: N_("📍 Deals near you"),
    Sort.NEWEST: N_("🆕 Newest deals"),
    Sort.POPULAR: N_("🔥 Popular deals"),
    Sort.RATED: N_("⭐ Best rated deals"),
}


@command("deals")
def cmd_deals(ctx: Context, argument: str) -> None:
    """/deals, or /deals croissant: a search by words (kept with the other filters until cleared)."""
    if argument.strip():
        filters = catalog.saved_filters(ctx.session, ctx.user.id)
        catalog.save_filters(ctx.session, ctx.user.id, replace(filters, words=catalog.search_words(argument)))
    show_deals(ctx, Sort.NEWEST, 0)


@button("deals")
def btn_deals(ctx: Context, args: list[str]) -> None:
    try:
        sort = Sort(args[0]) if args else Sort.NEWEST
    except ValueError:
        raise StaleButton from None
    page = _int(args[1]) if len(args) > 1 else 0
    if sort is Sort.NEAREST and ctx.user.latitude is None:
        ask_for_location(ctx)
        return
    show_deals(ctx, sort, page)


@button("near")
def btn_near(ctx: Context, _args: list[str]) -> None:
    if ctx.user.latitude is None:
        ask_for_location(ctx)
    else:
        show_deals(ctx, Sort.NEAREST, 0)


def ask_for_location(ctx: Context) -> None:
    _ = ctx._
    ctx.outcome.replies.append(Reply(
        text=_("To show deals near you, tap <b>📍 Share my location</b> below (on your phone). "
               "Or browse all deals with /deals."),
        location_request=_("📍 Share my location"),
    ))


def location_shared(ctx: Context, latitude: float, longitude: float) -> None:
    """A location shared outside any flow sets "near me" and shows what is close."""
    ctx.user.latitude = latitude
    ctx.user.longitude = longitude
    ctx.user.location_updated_at = _now()
    ctx.outcome.replies.append(Reply(text=ctx._("📍 Location saved."), remove_keyboard=True))
    show_deals(ctx, Sort.NEAREST, 0)


def show_deals(ctx: Context, sort: Sort, page: int) -> None:
    """A page of deals with the customer's remembered filters, their sorts, Filters and Search."""
    _ = ctx._
    latitude, longitude = ctx.user.latitude, ctx.user.longitude
    filters = catalog.saved_filters(ctx.session, ctx.user.id)
    result = catalog.browse(ctx.session, _now(), sort, page, latitude=latitude, longitude=longitude,
                            filters=filters)
    lines = [f"<b>{_(SORT_TITLES[sort])}</b>"]
    summary = tags.filter_summary(_, filters, user_text(" ".join(filters.words)) if filters.words else None)
    if summary:
        lines.append(_("🔎 Filters: {filters}", filters=summary))
    lines.append("")
    rows = []
    first = page * catalog.PAGE_SIZE
    rated = ratings.summaries(ctx.session, {item.business.id for item in result.items})
    for number, item in enumerate(result.items, start=first + 1):
        offer = item.offer
        price = format_money(offer.price_minor, offer.currency, _.language)
        details = [
            f"{price} (−{discount_percent(offer.price_minor, offer.original_price_minor)} %)",
            _("{count} left", count=offer.units_left),
            format_window(_, offer.pickup_start, offer.pickup_end, item.business.timezone, _now()),
            user_text(item.business.name),
        ]
        if item.distance_km is not None:
            details.append(format_distance(item.distance_km))
        summary_of = rated.get(item.business.id)
        if summary_of is not None and summary_of.shown:
            details.append(f"⭐ {summary_of.average:.1f}")
        details.extend(tags.list_details(_, offer.category, offer.diet, offer.allergens))
        lines.append(f"{number}. <b>{user_text(offer.title)}</b> — " + " · ".join(details))
        rows.append([key(f"{number}. {isolate(offer.title[:40])} · {price}", data("offer", offer.id))])
    if not result.items:
        lines.append(_nothing_found(ctx, sort, filters, result))
        if result.loosen is not None:
            rows.append([key(_("✖️ Without: {filter}", filter=tags.filter_name(_, result.loosen)),
                             data("filt", "drop", sort.value, result.loosen))])
    paging = []
    if page > 0:
        paging.append(key(_("◀️ Previous"), data("deals", sort.value, page - 1)))
    if result.has_next:
        paging.append(key(_("Next ▶️"), data("deals", sort.value, page + 1)))
    if paging:
        rows.append(paging)
    sorts = [(Sort.NEWEST, _("🆕 Newest")), (Sort.POPULAR, _("🔥 Popular")), (Sort.RATED, _("⭐ Best rated")),
             (Sort.NEAREST, _("📍 Near me"))]
    sort_keys = [key(("✓ " if s is sort else "") + label, data("deals", s.value, 0)) for s, label in sorts]
    rows += [sort_keys[:2], sort_keys[2:]]
    active = len(filters.active())
    filters_label = _("🔎 Filters ({count})", count=active) if active else _("🔎 Filters")
    rows.append([key(filters_label, data("filt", "show", sort.value)),
                 key(_("🔍 Search"), data("filt", "search", sort.value))])
    if sort is Sort.NEAREST and latitude is not None:
        rows.append([_alerts_button(ctx)])
    rows.append(menus.home_row(_))
    ctx.show("\n".join(lines), rows)


def _nothing_found(ctx: Context, sort: Sort, filters: catalog.Filters, result: catalog.Page) -> str:
    _ = ctx._
    if result.page > 0:
        return _("No more deals.")
    if result.loosen is not None:
        return _("Nothing matches all your filters right now. Without “{filter}” there are deals: tap below to "
                 "drop it.", filter=tags.filter_name(_, result.loosen))
    if filters.active():
        return _("Nothing matches your filters right now, even with one of them dropped. Clear some in 🔎 Filters, "
                 "or look again later.")
    if sort is Sort.NEAREST:
        return _("No deals within {km} km of you right now.", km=int(catalog.NEARBY_RADIUS_KM))
    return _("No deals right now. Please look again later.")


def _alerts_button(ctx: Context) -> dict:
    _ = ctx._
    if ctx.user.deal_alerts_km is None:
        return key(_("🔔 Tell me about new deals near here"), data("alerts", "on"))
    return key(_("🔕 Stop new-deal alerts"), data("alerts", "off"))


@button("alerts")
def btn_alerts(ctx: Context, args: list[str]) -> None:
    """Deal alerts on (within a walk or a short ride of the saved location) or off."""
    _ = ctx._
    if args[:1] == ["on"]:
        if ctx.user.latitude is None:
            ask_for_location(ctx)
            return
        announcements.set_deal_alerts(ctx.session, ctx.user.id, announcements.ALERT_RADIUS_KM)
        ctx.toast(_("🔔 Alerts on: we tell you when a deal is posted within {km} km of here.",
                    km=int(announcements.ALERT_RADIUS_KM)), alert=True)
        show_deals(ctx, Sort.NEAREST, 0)
    elif args[:1] == ["off"]:
        announcements.set_deal_alerts(ctx.session, ctx.user.id, None)
        ctx.toast(_("🔕 Alerts off. Followed businesses still tell you about their new deals."), alert=True)
        pressed_under = ctx.update.callback_query.message if ctx.update.callback_query else None
        # Only a Message has a photo; an InaccessibleMessage (deleted, or too old) cannot be edited anyway.
        if isinstance(pressed_under, Message) and pressed_under.photo:
            return  # pressed under an announcement: leave that message as it is
        show_deals(ctx, Sort.NEAREST, 0)
    else:
        raise StaleButton()


# -- one offer -----------------------------------------------------------------------------------


@deep_link("offer_")
def open_shared_offer(ctx: Context, rest: str) -> None:
    """t.me/<bot>?start=offer_<id>: a business shared its offer."""
    if not rest.isdigit():
        menus.show_main_menu(ctx)
        return
    show_offer(ctx, int(rest))


@button("offer")
def btn_offer(ctx: Context, args: list[str]) -> None:
    if not args:
        raise StaleButton
    show_offer(ctx, _int(args[0]))


def show_offer(ctx: Context, offer_id: int) -> None:
    _ = ctx._
    listing = catalog.offer_listing(ctx.session, offer_id, latitude=ctx.user.latitude,
                                    longitude=ctx.user.longitude)
    if listing is None or listing.offer.status == OfferStatus.DRAFT:
        ctx.toast(_("This offer doesn't exist (any more)."))
        show_deals(ctx, Sort.NEWEST, 0)
        return
    offer, business = listing.offer, listing.business
    rows = []
    if offer.status == OfferStatus.ACTIVE and offer.pickup_end > _now():
        rows.append(_quantity_buttons(_, offer))
    following = catalog.is_following(ctx.session, ctx.user.id, business.id)
    rows.append([key(_("💔 Unfollow {name}", name=isolate(business.name[:30])) if following
                     else _("❤️ Follow {name}", name=isolate(business.name[:30])),
                     data("follow", business.id, offer.id, 0 if following else 1))])
    share = share_link(_, offer)
    if share is not None:
        rows.append([share])
    rows.append([key(_("⬅️ Deals"), data("deals")), *menus.home_row(_)])
    rated = ratings.summaries(ctx.session, [business.id]).get(business.id)
    shown = (rated.average, rated.count) if rated is not None and rated.shown else None
    caption = offer_caption(_, offer, business, _now(), listing.distance_km, shown)
    if offer.photo_card_file_id:
        ctx.outcome.replies.append(Reply(text=caption, photo=offer.photo_card_file_id, keyboard=rows))
    else:
        ctx.show(caption, rows)


def share_link(_: Translator, offer: Offer) -> dict[str, str] | None:
    """"📤 Share": Telegram's share sheet with the deal's deep link (t.me/<bot>?start=offer_<id>),
    which opens the deal in the bot for whoever taps it. None when the bot's username is unknown."""
    username = bot_username(get_settings())
    if username is None:
        return None
    link = f"https://t.me/{username}?start=offer_{offer.id}"
    text = _("{title}: a deal on Surplus", title=offer.title)
    return {"text": _("📤 Share"), "url": f"https://t.me/share/url?{urlencode({'url': link, 'text': text})}"}


@button("follow")
def btn_follow(ctx: Context, args: list[str]) -> None:
    if len(args) != 3 or args[2] not in ("0", "1"):
        raise StaleButton
    business_id, offer_id, follow = _int(args[0]), _int(args[1]), args[2] == "1"
    business = ctx.session.get(Business, business_id)
    if business is None:
        raise StaleButton
    catalog.set_following(ctx.session, ctx.user.id, business_id, follow)
    _ = ctx._
    ctx.toast(_("You'll hear about new deals from {name}.", name=isolate(business.name)) if follow
              else _("You won't hear about {name} any more.", name=isolate(business.name)))
    show_offer(ctx, offer_id)


# -- ordering ------------------------------------------------------------------------------------


def _orderable(ctx: Context, offer_id: int) -> tuple[Offer, Business] | None:
    listing = catalog.offer_listing(ctx.session, offer_id)
    if listing is None or listing.offer.status != OfferStatus.ACTIVE or listing.offer.pickup_end <= _now():
        ctx.toast(ctx._("This offer can't be ordered any more."), alert=True)
        if listing is not None and listing.offer.status != OfferStatus.DRAFT:
            show_offer(ctx, offer_id)
        else:
            show_deals(ctx, Sort.NEWEST, 0)
        return None
    return listing.offer, listing.business


def _quantity_buttons(_: Translator, offer: Offer) -> list[dict[str, str]]:
    """"Order 1", "2", … up to what is left: each carries the price and the units left as they are
    shown now, so the next screen can say what changed meanwhile."""
    most = min(offer.units_left, ordering.MAX_PER_ORDER)
    return [key(_("Order {count}", count=n) if n == 1 else str(n),
                data("qty", offer.id, n, offer.price_minor, offer.units_left)) for n in range(1, most + 1)]


@button("qty")
def btn_quantity(ctx: Context, args: list[str]) -> None:
    # qty:<offer>:<n>:<price seen>:<left seen>; buttons of older cards carry only the first two.
    if len(args) not in (2, 4):
        raise StaleButton
    offer_id, quantity = _int(args[0]), _int(args[1])
    price_seen, left_seen = (_int(args[2]), _int(args[3])) if len(args) == 4 else (None, None)
    if not 1 <= quantity <= ordering.MAX_PER_ORDER:
        raise StaleButton
    found = _orderable(ctx, offer_id)
    if found is None:
        return
    offer, business = found
    confirm(ctx, offer, business, quantity, price_seen=price_seen, left_seen=left_seen)


def confirm(ctx: Context, offer: Offer, business: Business, quantity: int, *, price_seen: int | None,
            left_seen: int | None) -> None:
    """The screen before reserving: what the customer would reserve now, at the current price and
    with what is left now, and, on top, what changed since the screen they tapped was shown
    (``price_seen``, ``left_seen``: None when not known). When fewer are left than they chose,
    it asks again with the quantities still possible instead of offering what can't be had."""
    _ = ctx._
    left = offer.units_left
    if left <= 0:
        reply = refusal(_, ordering.ReserveOutcome.SOLD_OUT, offer.id, offer.title, 0)
        ctx.show(reply.text, reply.keyboard)
        return
    price = format_money(offer.price_minor, offer.currency, _.language)
    changes = []
    if price_seen is not None and price_seen != offer.price_minor:
        changes.append(_("⚠️ The price has changed since you saw it: {before} before, <b>{now}</b> now.",
                         before=format_money(price_seen, offer.currency, _.language), now=price))
    if left_seen is not None and left_seen != left:
        changes.append(_("⚠️ {count} left now; you saw {seen}.", count=left, seen=left_seen))
    back = [key(_("⬅️ Back"), data("offer", offer.id)), *menus.home_row(_)]
    if quantity > left:
        question = _.ngettext("Only {count} is left of <b>{title}</b> now. How many would you like?",
                              "Only {count} are left of <b>{title}</b> now. How many would you like?", left,
                              title=user_text(offer.title))
        ctx.show("\n".join([*changes, "", question] if changes else [question]),
                 [_quantity_buttons(_, offer), back])
        return
    lines = [
        _("Reserve <b>{count} × {title}</b> for <b>{total}</b>?", count=quantity, title=user_text(offer.title),
          total=format_money(offer.price_minor * quantity, offer.currency, _.language)),
        _("{price} each, {count} left now.", price=price, count=left),
        _("Pickup {window} at {place}.",
          window=format_window(_, offer.pickup_start, offer.pickup_end, business.timezone, _now()),
          place=f"{user_text(business.name)}, {user_text(business.address)}"),
        "",
        _.ngettext("You then have {minutes} minute to pay by card.", "You then have {minutes} minutes to pay by card.",
                   ctx.settings.hold_minutes, minutes=ctx.settings.hold_minutes),
    ]
    if changes:
        lines = [*changes, "", *lines]
    ctx.show("\n".join(lines), [
        [key(_("✅ Reserve and pay"), data("buy", offer.id, quantity, offer.price_minor))],
        back,
    ])


def _refused_at_sight(ctx: Context, offer_id: int, quantity: int) -> bool:
    """An offer that visibly has too few units left is refused here, with the reservation engine's
    own words, instead of queueing a reservation bound to fail (in a flash sale, most taps).
    Only advice: the engine's guarded update still decides every reservation that is queued."""
    offer = ordering.at_sight(ctx.session, offer_id)
    if offer is None or offer.pickup_end <= _now() or offer.units_left >= quantity \
            or offer.status not in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT):
        return False
    outcome = ordering.ReserveOutcome.SOLD_OUT if offer.units_left <= 0 else ordering.ReserveOutcome.NOT_ENOUGH_LEFT
    reply = refusal(ctx._, outcome, offer.offer_id, offer.title, max(offer.units_left, 0))
    ctx.show(reply.text, reply.keyboard)
    return True


@button("buy")
def btn_buy(ctx: Context, args: list[str]) -> None:
    if len(args) != 3:
        raise StaleButton
    offer_id, quantity, price_seen = _int(args[0]), _int(args[1]), _int(args[2])
    if not 1 <= quantity <= ordering.MAX_PER_ORDER:
        raise StaleButton
    if _refused_at_sight(ctx, offer_id, quantity):
        return
    found = _orderable(ctx, offer_id)
    if found is None:
        return
    offer, business = found
    _ = ctx._
    if offer.price_minor != price_seen:  # asked again, at the price it has now, saying so
        ctx.toast(_("⚠️ The price has changed."))
        confirm(ctx, offer, business, quantity, price_seen=price_seen, left_seen=None)
        return
    # The answer (the Pay button, or why not) takes the place of "⏳ Reserving…" below.
    enqueue_after_commit(ctx.session, "reservations.place_order", offer_id, ctx.user.id, quantity,
                         f"tap:{ctx.update.update_id}", kwargs={"edit_message_id": ctx.pressed_message_id})
    ctx.toast(_("Reserving…"))
    ctx.show(_("⏳ Reserving {count} × {title}…", count=quantity, title=user_text(offer.title)))


# -- my orders -----------------------------------------------------------------------------------

ORDER_STATES = {
    OrderStatus.HELD: N_("⏳ waiting for payment"),
    OrderStatus.PAID: N_("✅ paid"),
    OrderStatus.COLLECTED: N_("🛍 collected"),
    OrderStatus.CANCELLED: N_("✖️ cancelled"),
    OrderStatus.EXPIRED: N_("⌛ expired unpaid"),
    OrderStatus.REFUNDED: N_("↩️ refunded"),
    OrderStatus.NOT_COLLECTED: N_("🚫 not collected"),
}


@command("orders")
def cmd_orders(ctx: Context, _argument: str) -> None:
    show_orders(ctx)


@button("orders")
def btn_orders(ctx: Context, _args: list[str]) -> None:
    show_orders(ctx)


def _order_line(_: Translator, order: Order, offer: Offer, business: Business) -> str:
    amount = format_money(order.amount_minor, order.currency, _.language)
    line = (f"<b>{order.quantity} × {user_text(offer.title)}</b> — {amount} · {_(ORDER_STATES[order.status])}\n"
            f"   🏪 {user_text(business.name)} · "
            + format_window(_, offer.pickup_start, offer.pickup_end, business.timezone, _now()))
    if order.status == OrderStatus.PAID and order.pickup_code:
        line += "\n   " + _("Pickup code: <b>{code}</b>", code=order.pickup_code)
    if order.status == OrderStatus.NOT_COLLECTED and order.pickup_code:  # the business may still hand it over
        line += "\n   " + _("Came late? Show the code <b>{code}</b>: the business can still confirm the pickup.",
                            code=order.pickup_code)
    if order.status == OrderStatus.HELD and order.hold_expires_at:
        deadline = local_time(order.hold_expires_at, business.timezone)
        line += "\n   " + _("Pay by {time}", time=f"{deadline:%H:%M}")
    return line


def show_orders(ctx: Context) -> None:
    _ = ctx._
    current, past = catalog.customer_orders(ctx.session, ctx.user.id)
    lines = [f"<b>{_('🧾 My orders')}</b>", ""]
    rows = []
    if current:
        lines += [_order_line(_, *row) for row in current]
        for order, offer, business in current:
            label = f"{order.quantity} × {isolate(offer.title[:28])}"
            if order.status == OrderStatus.HELD and order.checkout_url:
                rows.append([{"text": _("💳 Pay: {label}", label=label), "url": order.checkout_url}])
            if order.status == OrderStatus.PAID and order.pickup_code:
                rows.append([key(_("🔳 Pickup pass: {label}", label=label), data("opass", order.id))])
            rows.append([key(_("✖️ Cancel: {label}", label=label), data("ocancel", order.id))])
            if order.status == OrderStatus.PAID and business.latitude is not None:
                rows.append([key(_("📍 Map and phone: {label}", label=label), data("venue", order.id))])
    else:
        lines.append(_("No open orders. Find something good with /deals."))
    if past:
        lines += ["", f"<b>{_('Earlier')}</b>", *[_order_line(_, *row) for row in past]]
    rows.append([key(_("🔎 Browse deals"), data("deals")), *menus.home_row(_)])
    ctx.show("\n".join(lines), rows)


def _own_order(ctx: Context, args: list[str]) -> tuple[Order, Offer]:
    """The order a button names (its one argument), if it is this customer's."""
    if len(args) != 1:
        raise StaleButton
    order = ctx.session.get(Order, _int(args[0]))
    if order is None or order.customer_id != ctx.user.id:
        raise StaleButton  # someone else's order looks exactly like a missing one
    return order, order.offer


@button("venue")
def btn_venue(ctx: Context, args: list[str]) -> None:
    """Where to pick up an order: the store as a map pin, with its address and phone (sendVenue)."""
    order, offer = _own_order(ctx, args)
    business = offer.business
    _ = ctx._
    if order.status not in (OrderStatus.PAID, OrderStatus.COLLECTED) or business.latitude is None \
            or business.longitude is None:
        ctx.toast(_("The map is shown for paid orders of shops with a location."), alert=True)
        return
    address = _("{address} · ☎ {phone}", address=business.address, phone=business.phone)
    ctx.outcome.replies.append(Reply(
        text=f"📍 {user_text(business.name)}\n{user_text(address)}",
        venue={"latitude": business.latitude, "longitude": business.longitude, "title": business.name,
               "address": address},
        keyboard=[[key(_("🧾 My orders"), data("orders")), *menus.home_row(_)]],
    ))


def _cancelling(ctx: Context, args: list[str]) -> tuple[Order, Offer, CancelPolicy]:
    """The order a cancel button names, and how it may be cancelled now."""
    order, offer = _own_order(ctx, args)
    return order, offer, payments.cancellation_policy(order, offer, ctx.user.id, _now())


@button("opass")
def btn_pickup_pass(ctx: Context, args: list[str]) -> None:
    """The pickup pass (QR code and code) again, for the counter: the one sent after "✅ Paid" may be
    far up the chat by now."""
    order, offer = _own_order(ctx, args)
    if order.status != OrderStatus.PAID or not order.pickup_code:
        ctx.toast(_pass_gone(ctx._, order.status))
        show_orders(ctx)
        return
    ctx.outcome.replies.append(render(notices.PickupPass(order, offer, offer.business, ctx._.language,
                                                         order.pickup_code)))


def _pass_gone(_: Translator, status: OrderStatus) -> str:
    if status == OrderStatus.COLLECTED:
        return _("This order was collected already.")
    return _("This order has no pickup pass any more.")


@button("ocancel")
def btn_cancel_order(ctx: Context, args: list[str]) -> None:
    order, offer, policy = _cancelling(ctx, args)
    _ = ctx._
    if policy is CancelPolicy.LET_GO:
        text = _("Let go of your reservation of {count} × {title}?", count=order.quantity, title=user_text(offer.title))
    elif policy is CancelPolicy.NOT_CANCELLABLE:
        ctx.toast(_("This order can't be cancelled any more."))
        show_orders(ctx)
        return
    else:  # past the cut-off too: the answer to the confirmation says why not
        text = _("Cancel your order of {count} × {title}? You get {amount} back on your card.",
                 count=order.quantity, title=user_text(offer.title),
                 amount=format_money(order.amount_minor, order.currency, _.language))
    ctx.show(text, [[key(_("✖️ Yes, cancel"), data("ocancelok", order.id)), key(_("⬅️ Back"), data("orders"))]])


@button("ocancelok")
def btn_cancel_order_confirmed(ctx: Context, args: list[str]) -> None:
    order, _offer, policy = _cancelling(ctx, args)
    _ = ctx._
    if policy is CancelPolicy.LET_GO:
        done = ordering.cancel_hold(ctx.session, order.id, ctx.user.id)
        ctx.toast(_("Reservation released.") if done else _("This order can't be cancelled any more."))
    elif policy is CancelPolicy.NOT_CANCELLABLE:
        ctx.toast(_("This order can't be cancelled any more."))
    else:  # the domain judges again, with the order locked
        outcome = payments.cancel_by_customer(ctx.session, order.id, ctx.user.id, _now())
        ctx.toast(describe_cancellation(_, outcome), alert=True)
    ctx.session.expire_all()  # the engine changed rows with plain SQL; read them afresh
    show_orders(ctx)
