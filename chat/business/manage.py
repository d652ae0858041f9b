"""/myoffers: a business manages its own offers — publish a draft, pause / resume, edit price,
quantity or what it is (category, diet, allergens), cancel (buyers released or refunded, and
told), see orders, confirm a pickup by code, export orders as CSV.

Every handler loads the offer through domain.offers with the user's id as owner: an offer of
another business (whatever ids a forged button carries) raises NotAllowed and changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from functools import wraps

from sqlalchemy.orm import Session

from chat.business.newoffer import back_from_preview, change_photo, enqueue_photo, verified_business
from chat.business.registration import status_text
from chat.business.tagging import tag_steps
from chat.business.texts import now, reask, reask_invalid
from chat.cards import escape, isolate, offer_caption, status_label, user_text
from chat.context import Context
from chat.flows import DONE, Flow, Step, ask
from chat.registry import NotAllowed, StaleButton, command, data, flow
from chat.registry import button as on_button
from core import outbox
from core.i18n import N_, Translator
from core.outbox import Keyboard, Reply, button
from domain import announcements, businesses, offers, payments, repeats
from domain.money import format_money
from domain.offers import InvalidInput, NotOwner, WrongState
from domain.shown import still_shown
from models import (
    Business,
    BusinessStatus,
    Offer,
    OfferStatus,
    OfferTemplate,
    Order,
    OrderStatus,
    PhotoStatus,
    TemplateStatus,
    User,
)

LIVE = (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT)
EDITABLE = (OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT)


def owner_only(handler: Callable[..., None]) -> Callable[..., None]:
    """Turn NotOwner from the domain into NotAllowed (a fresh menu, nothing revealed)."""

    @wraps(handler)
    def wrapper(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except NotOwner:
            raise NotAllowed from None

    return wrapper


def _offer_id(args: list[str]) -> int:
    try:
        return int(args[1])
    except (IndexError, ValueError):
        raise StaleButton from None


def _my_business(ctx: Context) -> Business | None:
    """The user's business if it is verified or suspended (a suspended one still serves its
    buyers); otherwise says why and returns None."""
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is None or business.status in (BusinessStatus.PENDING, BusinessStatus.REJECTED):
        return verified_business(ctx)
    return business


# --------------------------------------------------------------------------- the list


@command("myoffers")
def cmd_my_offers(ctx: Context, _argument: str) -> None:
    show_my_offers(ctx)


@on_button("bizoffers")
def btn_my_offers(ctx: Context, _args: list[str]) -> None:
    show_my_offers(ctx)


def _left_label(_: Translator, offer: Offer) -> str:
    return _("{left} of {quantity} left", left=offer.units_left, quantity=offer.quantity)


def show_my_offers(ctx: Context) -> None:
    _ = ctx._
    business = _my_business(ctx)
    if business is None:
        return
    items = offers.offers_of(ctx.session, business)
    rows: Keyboard = []
    lines = [_("📋 <b>Your offers</b>")]
    if business.status == BusinessStatus.SUSPENDED:
        lines += ["", status_text(_, business)]
    if not items:
        lines += ["", _("No offers yet. Post your first one with ➕ New offer.")]
    for offer in items:
        state = status_label(_, offer.status)
        lines.append(f"\n<b>{user_text(offer.title)}</b> — {state}, {_left_label(_, offer)}")
        rows.append([button(f"{isolate(offer.title[:30])} · {state}", data("bizoffer", "show", offer.id))])
    if business.status == BusinessStatus.VERIFIED:
        rows.append([button(_("➕ New offer"), data("biznew")), button(_("📄 Export orders (CSV)"), data("bizcsv"))])
        rows.append([button(_("💶 Earnings"), data("bizearn"))])
    rows.append([button(_("🏪 Business menu"), data("biz"))])
    ctx.show("\n".join(lines), rows)


# --------------------------------------------------------------------------- one offer


def offer_details(ctx: Context, offer: Offer) -> tuple[str, Keyboard]:
    _ = ctx._
    business = offer.business
    text = offer_caption(_, offer, business, now())
    text += "\n\n" + _("Sold: {sold} · Reserved: {held} · Left: {left} · Status: {status}",
                       sold=offer.units_sold, held=offer.units_held, left=offer.units_left,
                       status=status_label(_, offer.status))
    if offer.status == OfferStatus.DRAFT:
        if offer.photo_status == PhotoStatus.PROCESSING:
            text += "\n" + _("⏳ The photo is being processed.")
        elif offer.photo_status == PhotoStatus.FAILED:
            text += "\n" + _("❗ The photo could not be used: please send another one.")
    template = repeats.template_of(ctx.session, offer)
    if template is not None:
        text += "\n" + repeat_line(_, template)
    rows: Keyboard = []
    oid = offer.id
    if offer.status == OfferStatus.DRAFT:
        first = [button(_("🖼 Change photo"), data("bizoffer", "photo", oid))]
        if offer.photo_status == PhotoStatus.READY:
            first.insert(0, button(_("✅ Publish"), data("bizoffer", "publish", oid)))
        rows.append(first)
        rows.append([button(_("🗑 Discard draft"), data("bizoffer", "discard", oid))])
    if offer.status in LIVE:
        rows.append([button(_("⏸ Pause"), data("bizoffer", "pause", oid))])
    if offer.status == OfferStatus.PAUSED:
        rows.append([button(_("▶️ Resume"), data("bizoffer", "resume", oid))])
    if offer.status in EDITABLE:
        rows.append([button(_("💶 Edit price"), data("bizoffer", "price", oid)),
                     button(_("🔢 Edit quantity"), data("bizoffer", "qty", oid))])
    if offer.status in offers.TAGGABLE:
        rows.append([button(_("🏷 Category, diet, allergens"), data("bizoffer", "tags", oid))])
    rows.extend(repeat_rows(ctx, offer))
    if offer.status != OfferStatus.DRAFT:
        rows.append([button(_("🧾 Orders"), data("bizoffer", "orders", oid)),
                     button(_("✅ Confirm pickup"), data("bizoffer", "pickup", oid))])
    if offer.status in EDITABLE:
        rows.append([button(_("🗑 Cancel offer"), data("bizoffer", "cancelask", oid))])
    rows.append([button(_("⬅️ My offers"), data("bizoffers"))])
    return text, rows


def show_offer(ctx: Context, offer: Offer, note: str | None = None) -> None:
    text, rows = offer_details(ctx, offer)
    ctx.show(f"{note}\n\n{text}" if note else text, rows)


@on_button("bizoffer")
@owner_only
def btn_offer(ctx: Context, args: list[str]) -> None:
    action = args[0] if args else ""
    offer_id = _offer_id(args)
    # Ownership first, for every action: another business's offer is NotAllowed, whatever the action.
    offer = offers.owned_offer(ctx.session, offer_id, ctx.user.id)
    handler = _ACTIONS.get(action)
    if handler is None:
        raise StaleButton
    handler(ctx, offer)


def _show(ctx: Context, offer: Offer) -> None:
    show_offer(ctx, offer)


def _publish(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    moment = now()
    try:
        offer = offers.publish(ctx.session, offer.id, ctx.user.id, moment)
    except offers.PublishRefused as refused:
        if refused.reason == "payouts_not_ready":
            message = _("Set up payouts first: you can publish once Stripe has activated your account.")
            ctx.toast(message, alert=True)
            ctx.reply(message, [[button(_("💶 Set up payouts"), data("bizpay"))],
                                [button(_("📋 My offers"), data("bizoffers"))]])
            return
        message = {
            "not_verified": _("Your business is not verified, so it can't publish offers."),
            "not_draft": _("This offer is published already."),
            "photo_not_ready": _("The photo isn't ready yet: wait for the preview (or send another photo)."),
            "window_passed": _("The pickup window of this offer is over. Please create a new offer."),
        }[refused.reason]
        ctx.toast(message, alert=True)
        ctx.reply(message, [[button(_("📋 My offers"), data("bizoffers"))]])
        return
    told = announcements.announce(ctx.session, offer.id, moment)
    ctx.toast(_("Published!"))
    text, rows = offer_details(ctx, offer)
    note = _("🎉 <b>Published!</b> Customers can order it now.")
    _spend_previews(ctx, offer, note + "\n\n" + offer_caption(_, offer, offer.business, now()),
                    [[button(_("⚙️ Manage this offer"), data("bizoffer", "show", offer.id))]])
    audience = being_told(_, told)
    if audience:
        note += "\n" + audience
    ctx.reply(f"{note}\n\n{text}", rows)  # a new message: the preview above is a photo


def _spend_previews(ctx: Context, offer: Offer, caption: str, keyboard: Keyboard | None) -> None:
    ctx.outcome.replies.extend(spent_previews(ctx.session, ctx.chat_id, offer.id, caption, keyboard))


def spent_previews(session: Session, chat_id: int, offer_id: int, caption: str, keyboard: Keyboard | None,
                   ) -> list[Reply]:
    """The draft was published (or deleted): its previews' Publish / Change photo / Cancel, and a
    rejected photo's "Send another photo", can do nothing any more. Each such message the owner
    still sees is edited in place: a preview keeps its picture under ``caption`` and ``keyboard``;
    a rejection keeps its words, without buttons. The edits, for the caller to send."""
    draft_buttons = {data("bizoffer", action, offer_id) for action in ("publish", "photo", "back", "discard")}
    edits = []
    for message in still_shown(session, chat_id, key_prefix=f"offer:{offer_id}:photo:"):
        offered = {b.get("callback_data") for row in message.payload.get("keyboard") or [] for b in row}
        if not offered & draft_buttons:
            continue  # a published offer's new card: its "Manage this offer" still works
        if message.payload.get("photo"):
            edits.append(Reply(text=caption, keyboard=keyboard, photo=message.payload["photo"],
                               edit_message_id=message.message_id))
        else:
            edits.append(Reply(text=message.payload.get("text", ""), edit_message_id=message.message_id))
    return edits


def being_told(_: Translator, told: dict[str, int]) -> str | None:
    """Who hears of a just published offer (domain.announcements.announce's counts), if anyone."""
    if not (told["followers"] or told["nearby"]):
        return None
    return _("Being told now: {followers} and {nearby}.",
             followers=_.ngettext("{count} follower", "{count} followers", told["followers"]),
             nearby=_.ngettext("{count} customer nearby who asked for alerts",
                               "{count} customers nearby who asked for alerts", told["nearby"]))


def _still_a_draft(ctx: Context, offer: Offer) -> bool:
    """For a draft's buttons: False, with the offer as it is now shown instead, once it is published."""
    if offer.status == OfferStatus.DRAFT:
        return True
    ctx.toast(ctx._("This offer is published already."), alert=True)
    show_offer(ctx, offer)
    return False


def _photo(ctx: Context, offer: Offer) -> None:
    if _still_a_draft(ctx, offer):
        change_photo(ctx, offer)


def _back(ctx: Context, offer: Offer) -> None:
    """The preview's Back: the draft's questions again, from the one before the photo."""
    if _still_a_draft(ctx, offer):
        back_from_preview(ctx, offer)


def _discard(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    caption = offer_caption(_, offer, offer.business, now())
    if offers.discard_draft(ctx.session, offer.id, ctx.user.id):
        _spend_previews(ctx, offer, _("🗑 The draft was deleted.") + "\n\n" + caption, None)
        ctx.toast(_("Draft deleted."))
        ctx.reply(_("🗑 The draft was deleted."), [[button(_("🏪 Business menu"), data("biz"))]])
    else:
        ctx.toast(_("This offer is published already."), alert=True)
        ctx.reply(*offer_details(ctx, offer))


def _pause(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    try:
        offer = offers.pause(ctx.session, offer.id, ctx.user.id)
    except WrongState:
        ctx.toast(_("This offer can't be paused now."), alert=True)
    else:
        ctx.toast(_("Paused: customers can't order until you resume."))
    show_offer(ctx, offer)


def _resume(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    try:
        offer = offers.resume(ctx.session, offer.id, ctx.user.id)
    except WrongState as state:
        if state.status.startswith("business_"):
            ctx.toast(_("Your business is not verified, so it can't put offers on sale."), alert=True)
        else:
            ctx.toast(_("This offer can't be resumed now."), alert=True)
    else:
        if offer.status == OfferStatus.EXPIRED:
            ctx.toast(_("The pickup window is over: the offer has expired."), alert=True)
        else:
            ctx.toast(_("On sale again."))
    show_offer(ctx, offer)


def _orders(ctx: Context, offer: Offer, note: str | None = None) -> None:
    _ = ctx._
    items = offers.orders_of_offer(ctx.session, offer.id, ctx.user.id)
    lines = [_("🧾 <b>Orders of {title}</b>", title=user_text(offer.title)), ""]
    if note:
        lines[:0] = [note, ""]
    names: dict[int | None, str | None] = {u.id: u.first_name for u in ctx.session.query(User).filter(
        User.id.in_([o.customer_id for o in items if o.customer_id]))}
    labels = {
        OrderStatus.HELD: _("reserved, not paid yet"),
        OrderStatus.PAID: _("paid, to collect"),
        OrderStatus.COLLECTED: _("collected"),
        OrderStatus.NOT_COLLECTED: _("not collected"),
    }
    window_started = offer.pickup_start <= now()
    rows: Keyboard = []
    for order in items:
        name = names.get(order.customer_id)
        who = user_text(name) if name else _("a customer")
        amount = format_money(order.amount_minor, order.currency, _.language)
        lines.append(f"#{order.id} · {order.quantity}× · {amount} · "
                     f"{who} · {labels.get(order.status, order.status.value)}")
        if order.status == OrderStatus.PAID and window_started:
            rows.append([button(_("🚫 #{order} didn't come", order=order.id), data("bizns", order.id))])
    if not items:
        lines.append(_("No orders yet."))
    elif any(o.status == OrderStatus.NOT_COLLECTED for o in items):
        lines += ["", _("A customer who comes late can still show the code: confirm the pickup as usual.")]
    ctx.show("\n".join(lines), [
        [button(_("✅ Confirm pickup"), data("bizoffer", "pickup", offer.id))],
        *rows,
        [button(_("⬅️ Back to the offer"), data("bizoffer", "show", offer.id))],
    ])


def _order_of_mine(ctx: Context, args: list[str]) -> tuple[Order, Offer]:
    try:
        order_id = int(args[0])
    except (IndexError, ValueError):
        raise StaleButton from None
    order = ctx.session.get(Order, order_id)
    if order is None:
        raise NotAllowed
    try:
        offer = offers.owned_offer(ctx.session, order.offer_id, ctx.user.id)
    except NotOwner:
        raise NotAllowed from None  # another business's order looks exactly like a missing one
    return order, offer


@on_button("bizns")
def btn_no_show_ask(ctx: Context, args: list[str]) -> None:
    order, offer = _order_of_mine(ctx, args)
    _ = ctx._
    if order.status != OrderStatus.PAID:
        ctx.toast(_("This order is not open any more."))
        _orders(ctx, offer)
        return
    ctx.show(_("🚫 Mark order #{order} ({quantity}× {title}) as not collected? The customer is told; "
               "if they come later, you can still confirm the pickup.", order=order.id, quantity=order.quantity,
               title=user_text(offer.title)),
             [[button(_("🚫 Yes, they didn't come"), data("biznsok", order.id))],
              [button(_("⬅️ Back"), data("bizoffer", "orders", offer.id))]])


@on_button("biznsok")
def btn_no_show(ctx: Context, args: list[str]) -> None:
    order, offer = _order_of_mine(ctx, args)
    _ = ctx._
    try:
        outcome = payments.mark_no_show(ctx.session, order.id, ctx.user.id, now())
    except payments.NotYours:
        raise NotAllowed from None
    if outcome is payments.NoShowOutcome.CLOSED:
        note = _("🚫 Order #{order} is marked as not collected.", order=order.id)
    elif outcome is payments.NoShowOutcome.TOO_EARLY:
        note = _("The pickup time has not started yet: wait before marking a no-show.")
    else:
        note = _("This order is not open any more.")
    ctx.toast(note)
    ctx.session.expire_all()  # closed with plain SQL: read the orders afresh
    _orders(ctx, offer, note)


def _cancel_ask(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    if offer.status not in EDITABLE:
        ctx.toast(_("This offer can't be cancelled now."), alert=True)
        show_offer(ctx, offer)
        return
    ctx.show(
        _("🗑 Cancel <b>{title}</b>?\n\nNobody can order it any more; reservations are released and every paid "
          "order is refunded. Customers are told.", title=user_text(offer.title)),
        [[button(_("Yes, cancel the offer"), data("bizoffer", "cancel", offer.id))],
         [button(_("No, keep it"), data("bizoffer", "show", offer.id))]],
    )


def _cancel(ctx: Context, offer: Offer) -> None:
    _ = ctx._
    try:
        result = payments.cancel_offer(ctx.session, offer.id, ctx.user.id)
    except WrongState:
        ctx.toast(_("This offer can't be cancelled now."), alert=True)
        show_offer(ctx, offer)
        return
    ctx.toast(_("Offer cancelled."))
    show_offer(ctx, result.offer, cancelled_note(_, result))


def cancelled_note(_: Translator, result: offers.Cancellation) -> str:
    """What the owner reads once an offer is cancelled (here, or in the app)."""
    return " ".join([
        _("🗑 Offer cancelled."),
        _.ngettext("{count} reservation released.", "{count} reservations released.",
                   len(result.released_order_ids)),
        _.ngettext("{count} paid order is being refunded.", "{count} paid orders are being refunded.",
                   len(result.paid_order_ids)),
    ])


def _start_edit(ctx: Context, offer: Offer, edit: Flow) -> None:
    if offer.status not in EDITABLE:
        ctx.toast(ctx._("This offer can't be changed now."), alert=True)
        show_offer(ctx, offer)
        return
    edit.start(ctx, {"offer_id": offer.id}, back_to=data("bizoffer", "show", offer.id))


def _price(ctx: Context, offer: Offer) -> None:
    _start_edit(ctx, offer, EDIT_PRICE)


def _quantity(ctx: Context, offer: Offer) -> None:
    _start_edit(ctx, offer, EDIT_QUANTITY)


def _pickup(ctx: Context, offer: Offer) -> None:
    PICKUP.start(ctx, {"offer_id": offer.id}, back_to=data("bizoffer", "show", offer.id))


def _tags(ctx: Context, offer: Offer) -> None:
    if offer.status not in offers.TAGGABLE:
        ctx.toast(ctx._("This offer can't be changed now."), alert=True)
        show_offer(ctx, offer)
        return
    EDIT_TAGS.start(ctx, {"offer_id": offer.id, "category": offer.category, "diet": list(offer.diet),
                          "allergens": list(offer.allergens)}, back_to=data("bizoffer", "show", offer.id))


_ACTIONS: dict[str, Callable[[Context, Offer], None]] = {
    "show": _show, "publish": _publish, "photo": _photo, "back": _back, "discard": _discard, "pause": _pause,
    "resume": _resume, "orders": _orders, "cancelask": _cancel_ask, "cancel": _cancel, "price": _price,
    "qty": _quantity, "pickup": _pickup, "tags": _tags,
}


# --------------------------------------------------------------------------- repeating


WEEKDAY_LABELS = (N_("Mon"), N_("Tue"), N_("Wed"), N_("Thu"), N_("Fri"), N_("Sat"), N_("Sun"))


def _days(_: Translator, mask: int) -> str:
    if mask == repeats.EVERY_DAY:
        return _("every day")
    return ", ".join(_(WEEKDAY_LABELS[day]) for day in repeats.days_of(mask))


def repeat_line(_: Translator, template: OfferTemplate) -> str:
    start, end = divmod(template.start_minute, 60), divmod(template.end_minute, 60)
    window = f"{start[0]:02d}:{start[1]:02d}–{end[0]:02d}:{end[1]:02d}"
    days = _days(_, template.weekdays)
    if template.status == TemplateStatus.ACTIVE:
        return _("🔁 Repeats {days}, {window}: the next day's offer is posted at {hour}:00 the evening before.",
                 days=days, window=window, hour=repeats.REPEAT_HOUR)
    if template.status == TemplateStatus.PAUSED:
        return _("⏸ Repeating is paused ({days}, {window}).", days=days, window=window)
    return _("⏹ Repeating was stopped.")


def repeat_rows(ctx: Context, offer: Offer) -> Keyboard:
    _ = ctx._
    template = repeats.template_of(ctx.session, offer)
    oid = offer.id
    if template is None or template.status == TemplateStatus.STOPPED:
        if offer.status in repeats.REPEATABLE and offer.photo_card_file_id:
            return [[button(_("🔁 Repeat this offer"), data("bizrep", oid, "days", repeats.EVERY_DAY))]]
        return []
    pause = (button(_("⏸ Pause repeating"), data("bizrep", oid, "pause")) if template.status == TemplateStatus.ACTIVE
             else button(_("▶️ Resume repeating"), data("bizrep", oid, "resume")))
    return [[pause, button(_("⏹ Stop repeating"), data("bizrep", oid, "stop"))]]


def _choose_days(ctx: Context, offer: Offer, mask: int) -> None:
    _ = ctx._
    oid = offer.id
    keys = [button(("✅ " if mask & (1 << day) else "▫️ ") + _(label), data("bizrep", oid, "days", mask ^ (1 << day)))
            for day, label in enumerate(WEEKDAY_LABELS)]
    rows: Keyboard = [keys[:4], keys[4:], [button(_("Every day"), data("bizrep", oid, "days", repeats.EVERY_DAY)),
                                          button(_("Mon–Fri"), data("bizrep", oid, "days", repeats.WEEKDAYS))]]
    if mask:
        rows.append([button(_("✅ Repeat {days}", days=_days(_, mask)), data("bizrep", oid, "save", mask))])
    rows.append([button(_("⬅️ Back to the offer"), data("bizoffer", "show", oid))])
    ctx.show(_("🔁 <b>Repeat {title}</b>\n\nOn which days? Each chosen day gets this offer again, with the same "
               "card, price, quantity and pickup window, posted at {hour}:00 the evening before; your followers "
               "are told as usual. You can pause or stop it any time.", title=user_text(offer.title),
               hour=repeats.REPEAT_HOUR), rows)


@on_button("bizrep")
@owner_only
def btn_repeat(ctx: Context, args: list[str]) -> None:
    if len(args) < 2:
        raise StaleButton
    offer = offers.owned_offer(ctx.session, _offer_id(["", args[0]]), ctx.user.id)
    action = args[1]
    mask = int(args[2]) if len(args) > 2 and args[2].isdigit() else -1
    _ = ctx._
    try:
        if action == "days" and 0 <= mask <= repeats.EVERY_DAY:
            _choose_days(ctx, offer, mask)
            return
        if action == "save" and 1 <= mask <= repeats.EVERY_DAY:
            made = repeats.create_template(ctx.session, offer.id, ctx.user.id, mask)
            show_offer(ctx, offer, _("✅ This offer now repeats {days}.", days=_days(_, made.weekdays)))
            return
        template = repeats.template_of(ctx.session, offer)
        status = {"pause": TemplateStatus.PAUSED, "resume": TemplateStatus.ACTIVE,
                  "stop": TemplateStatus.STOPPED}.get(action)
        if template is None or status is None:
            raise StaleButton
        repeats.set_status(ctx.session, template.id, ctx.user.id, status)
    except WrongState:
        ctx.toast(_("This offer can't be changed now."), alert=True)
        show_offer(ctx, offer)
        return
    show_offer(ctx, offer, {TemplateStatus.PAUSED: _("⏸ Paused: no new days are posted until you resume."),
                            TemplateStatus.ACTIVE: _("▶️ Repeating again."),
                            TemplateStatus.STOPPED: _("⏹ Stopped: no more days are posted.")}[status])


# --------------------------------------------------------------------------- small flows


def _flow_offer(ctx: Context) -> Offer:
    try:
        return offers.owned_offer(ctx.session, int(ctx.state.data["offer_id"]), ctx.user.id)
    except NotOwner:
        raise NotAllowed from None


def _back_to_offers(ctx: Context) -> None:
    show_my_offers(ctx)  # the flow's answers (the offer id) are gone once it is cancelled


def _ask_price(ctx: Context) -> None:
    _ = ctx._
    offer = _flow_offer(ctx)
    ask(ctx, _("💶 New price for <b>{title}</b>? Now {price}; it must stay below the original {original}. "
               "Orders already made keep their price.", title=user_text(offer.title),
               price=format_money(offer.price_minor, offer.currency, _.language),
               original=format_money(offer.original_price_minor, offer.currency, _.language)))


def _on_price(ctx: Context, text: str) -> str | None:
    offer = _flow_offer(ctx)
    _ = ctx._
    try:
        price = offers.parse_money(text, offer.currency)
        offer = offers.edit_price(ctx.session, offer.id, ctx.user.id, price)
    except WrongState:
        ctx.reply(_("This offer can't be changed now."))
        show_offer(ctx, offer)
        return DONE
    note = _("✅ The price is now {price}.", price=format_money(offer.price_minor, offer.currency, _.language))
    if offers.request_card_rerender(ctx.session, offer):
        assert offer.photo_source_file_id, "request_card_rerender() is true only for an offer with a source photo"
        enqueue_photo(ctx, offer.id, offer.photo_source_file_id)
        note += " " + _("The deal card is being updated.")
    show_offer(ctx, offer, note)
    return DONE


def _ask_quantity(ctx: Context) -> None:
    _ = ctx._
    offer = _flow_offer(ctx)
    taken = offer.units_sold + offer.units_held
    ask(ctx, _.ngettext("🔢 New total quantity for <b>{title}</b>? Now {quantity}; {taken} is sold or reserved, "
                        "so at least {minimum}.",
                        "🔢 New total quantity for <b>{title}</b>? Now {quantity}; {taken} are sold or reserved, "
                        "so at least {minimum}.", taken, title=user_text(offer.title), quantity=offer.quantity,
                        taken=taken, minimum=max(taken, offers.MIN_QUANTITY)))


def _on_quantity(ctx: Context, text: str) -> str | None:
    offer = _flow_offer(ctx)
    _ = ctx._
    try:
        quantity = offers.parse_quantity(text)
        offer = offers.edit_quantity(ctx.session, offer.id, ctx.user.id, quantity)
    except WrongState:
        ctx.reply(_("This offer can't be changed now."))
        show_offer(ctx, offer)
        return DONE
    show_offer(ctx, offer, _("✅ The quantity is now {quantity}.", quantity=offer.quantity))
    return DONE


def _ask_code(ctx: Context) -> None:
    _ = ctx._
    offer = _flow_offer(ctx)
    ask(ctx, _("✅ <b>Confirm a pickup</b> of {title}\n\nType the customer's pickup code (6 characters, shown in "
               "their chat).", title=user_text(offer.title)))


def _on_code(ctx: Context, text: str) -> str | None:
    offer = _flow_offer(ctx)
    _ = ctx._
    result = offers.confirm_pickup(ctx.session, offer.id, ctx.user.id, text, now())
    code = escape(offers.normalize_pickup_code(text))
    if result.outcome == "collected":
        order = result.order
        assert order is not None, "confirm_pickup() returns the order it marked collected"
        tell_collected(ctx.session, offer, order)
        show_offer(ctx, offer, _("✅ Code {code} is valid: hand over {quantity}× {title}. The order is marked "
                                 "collected.", code=code, quantity=order.quantity, title=user_text(offer.title)))
        return DONE
    if result.outcome == "already_collected":
        problem = _("⚠️ The order with code {code} was already collected. Don't hand it over twice.", code=code)
    elif result.outcome == "not_paid":
        problem = _("⚠️ The order with code {code} is not paid (or was cancelled). Don't hand it over.", code=code)
    else:
        problem = _("❗ No order of this offer has the code {code}. Check the code and type it again.", code=code)
    reask(ctx, PICKUP, problem)
    return None


def tell_collected(session: Session, offer: Offer, order: Order) -> None:
    """The customer hears their pickup was confirmed (by code, QR or the Mini App), once."""
    if order.customer_id is None:
        return
    customer = session.get(User, order.customer_id)
    _ = Translator(customer.language if customer else "en")
    outbox.notify(
        session, f"order:{order.id}:collected", order.customer_id,
        Reply(text=_("🎉 Enjoy your {title}! Thanks for saving food from the bin with <b>{business}</b>.",
                     title=user_text(offer.title), business=user_text(offer.business.name))),
    )


def _tags_intro(ctx: Context) -> str:
    return ctx._("🏷 <b>{title}</b>: what it is", title=user_text(_flow_offer(ctx).title))


def _save_tags(ctx: Context) -> str | None:
    _ = ctx._
    offer = _flow_offer(ctx)
    values = ctx.state.data
    try:
        offer = offers.edit_tags(ctx.session, offer.id, ctx.user.id, category=values.get("category"),
                                 diet=list(values.get("diet", [])), allergens=list(values.get("allergens", [])))
    except WrongState:
        ctx.reply(_("This offer can't be changed now."))
        show_offer(ctx, offer)
        return DONE
    show_offer(ctx, offer, _("✅ Saved: customers see the category, diet and allergens as they are now."))
    return DONE


EDIT_PRICE = flow(Flow("offerprice", [Step("price", _ask_price, on_text=_on_price)], on_cancel=_back_to_offers,
                       refused_by=InvalidInput, on_refused=reask_invalid))
EDIT_QUANTITY = flow(Flow("offerqty", [Step("quantity", _ask_quantity, on_text=_on_quantity)],
                          on_cancel=_back_to_offers, refused_by=InvalidInput, on_refused=reask_invalid))
PICKUP = flow(Flow("pickup", [Step("code", _ask_code, on_text=_on_code)], on_cancel=_back_to_offers))
EDIT_TAGS = flow(Flow("offertags", tag_steps(_save_tags, intro=_tags_intro), on_cancel=_back_to_offers))


# --------------------------------------------------------------------------- CSV export


@on_button("bizcsv")
def btn_export(ctx: Context, _args: list[str]) -> None:
    _ = ctx._
    business = _my_business(ctx)
    if business is None:
        return
    content, count = offers.export_orders_csv(ctx.session, ctx.user.id)
    if count == 0:
        ctx.toast(_("No orders yet."))
        ctx.reply(_("There are no orders to export yet."), [[button(_("🏪 Business menu"), data("biz"))]])
        return
    stamp = now().strftime("%Y%m%d-%H%M")
    ctx.outcome.replies.append(Reply(
        text=_("📄 Your orders ({count}) as CSV.", count=count),
        document={"filename": f"orders-{business.id}-{stamp}.csv", "content_b64": base64.b64encode(content).decode()},
        keyboard=[[button(_("🏪 Business menu"), data("biz"))]],
    ))

