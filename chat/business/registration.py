"""The business hub ("🏪 For businesses") and /register: name, address and location, phone; then
pending verification, with every admin told (and given the buttons to decide), or, for an admin
Telegram would not let us reach then, told when they next open the bot."""

from __future__ import annotations

from chat import menus
from chat.business.texts import reask_invalid
from chat.cards import escape, user_text
from chat.context import Context
from chat.flows import DONE, Flow, Step, ask, choice
from chat.registry import button as on_button
from chat.registry import command, data, flow
from core import outbox
from core.i18n import Translator
from core.outbox import Keyboard, Reply, button
from domain import businesses, verification_requests
from domain.offers import InvalidInput
from models import Business, BusinessStatus, PayoutsStatus, User

# --------------------------------------------------------------------------- the hub


@on_button("biz")
def btn_business_hub(ctx: Context, _args: list[str]) -> None:
    show_hub(ctx)


def show_hub(ctx: Context) -> None:
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    home = menus.home_row(_)
    if business is None:
        ctx.show(
            _("🏪 <b>Sell your surplus food on Surplus</b>\n\nBakeries, cafés and shops post what would otherwise "
              "be thrown away, with a pickup window; customers nearby reserve and pay in the chat.\n\n"
              "Register your business to start: it takes a minute, then we verify it."),
            [[button(_("📝 Register my business"), data("bizreg"))], home],
        )
    elif business.status == BusinessStatus.PENDING:
        ctx.show(status_text(_, business), [home])
    elif business.status == BusinessStatus.REJECTED:
        ctx.show(status_text(_, business), [[button(_("📝 Apply again"), data("bizreg"))], home])
    elif business.status == BusinessStatus.SUSPENDED:
        ctx.show(status_text(_, business), [[button(_("📋 My offers"), data("bizoffers"))], home])
    else:
        ctx.show(
            _("🏪 <b>{name}</b>\n{address}\n\nWhat would you like to do?", name=user_text(business.name),
              address=user_text(business.address)),
            [[button(_("➕ New offer"), data("biznew")), button(_("📋 My offers"), data("bizoffers"))],
             [button(_("💶 Payouts") if business.payouts_status == PayoutsStatus.ACTIVE else _("💶 Set up payouts"),
                     data("bizpay")),
              button(_("📄 Export orders (CSV)"), data("bizcsv"))],
             [button(_("⭐ Ratings"), data("bizrated"))], home],
        )


def status_text(_: Translator, business: Business) -> str:
    """Where the business stands, for anything it may not do yet (or any more)."""
    name = user_text(business.name)
    reason = user_text(business.status_reason) if business.status_reason else _("no reason given")
    if business.status == BusinessStatus.PENDING:
        return _("⏳ <b>{name}</b> is waiting for verification. We'll message you as soon as an admin has "
                 "looked at it; then you can post offers.", name=name)
    if business.status == BusinessStatus.REJECTED:
        return _("❌ The registration of <b>{name}</b> was rejected.\nReason: {reason}\n\nYou can correct it and "
                 "apply again.", name=name, reason=reason)
    if business.status == BusinessStatus.SUSPENDED:
        return _("⛔ <b>{name}</b> is suspended and can't post offers.\nReason: {reason}", name=name,
                 reason=reason)
    return _("✅ <b>{name}</b> is verified.", name=name)


# --------------------------------------------------------------------------- /register


@command("register")
def cmd_register(ctx: Context, _argument: str) -> None:
    start_registration(ctx)


@on_button("bizreg")
def btn_register(ctx: Context, _args: list[str]) -> None:
    start_registration(ctx)


def start_registration(ctx: Context) -> None:
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is not None and business.status != BusinessStatus.REJECTED:
        rows: Keyboard = [menus.home_row(_)]
        if business.status == BusinessStatus.VERIFIED:
            rows.insert(0, [button(_("🏪 Business menu"), data("biz"))])
        ctx.show(status_text(_, business), rows)
        return
    REGISTER.start(ctx)


def _ask_name(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("📝 <b>Register your business</b> (step 1 of 3)\n\nWhat is the name of your business, as "
               "customers know it?"))


def _on_name(ctx: Context, text: str) -> str | None:
    REGISTER.remember(ctx, name=businesses.parse_name(text))
    return "address"


def _ask_address(ctx: Context) -> None:
    _ = ctx._
    ctx.outcome.replies.append(Reply(
        text=_("📍 You can share the shop's location with the button below (on your phone)."),
        location_request=_("📍 Share the shop's location"),
    ))
    ask(ctx, _("📍 <b>Step 2 of 3</b>: where do customers pick up?\n\nType the address (street, number, "
               "town), or share the location."))


def _on_address(ctx: Context, text: str) -> str | None:
    _take_address(ctx, text)
    return "location"


def _on_address_location(ctx: Context, latitude: float, longitude: float) -> str | None:
    _take_location(ctx, latitude, longitude)
    return "address_text"


def _take_address(ctx: Context, text: str) -> None:
    REGISTER.remember(ctx, address=businesses.parse_address(text))


def _take_location(ctx: Context, latitude: float, longitude: float) -> None:
    latitude, longitude = businesses.check_location(latitude, longitude)
    REGISTER.remember(ctx, latitude=latitude, longitude=longitude)
    ctx.outcome.replies.append(Reply(text=ctx._("📍 Location received."), remove_keyboard=True))


def _ask_location(ctx: Context) -> None:
    _ = ctx._
    ctx.outcome.replies.append(Reply(
        text=_("📍 Customers nearby find you more easily with the shop's location."),
        location_request=_("📍 Share the shop's location"),
    ))
    ask(ctx, _("Would you also share the shop's exact location? Tap the button below, or skip."),
        [[choice(ctx, _("Skip"), "skip")]])


def _on_location(ctx: Context, latitude: float, longitude: float) -> str | None:
    _take_location(ctx, latitude, longitude)
    return "phone"


def _on_location_skip(ctx: Context, value: str) -> str | None:
    if value != "skip":
        return None
    REGISTER.remember(ctx, latitude=None, longitude=None)
    ctx.outcome.replies.append(Reply(text=ctx._("OK, no location."), remove_keyboard=True))
    return "phone"


def _ask_address_text(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("Thanks! Now type the street address customers should see (street, number, town)."))


def _on_address_text(ctx: Context, text: str) -> str | None:
    _take_address(ctx, text)
    return "phone"  # the location came first


def _ask_phone(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("📞 <b>Step 3 of 3</b>: a phone number where we (and customers, for their pickup) can reach "
               "you?"))


def _on_phone(ctx: Context, text: str) -> str | None:
    phone = businesses.parse_phone(text)
    values = ctx.state.data
    registration = businesses.Registration(
        name=values["name"], address=values["address"], phone=phone,
        latitude=values.get("latitude"), longitude=values.get("longitude"),
    )
    try:
        business = businesses.register(ctx.session, ctx.user.id, registration)
    except businesses.CannotRegister:
        show_hub(ctx)
        return DONE
    _notify_admins(ctx, business)
    _ = ctx._
    ctx.reply(
        _("✅ Thank you! <b>{name}</b> is registered and <b>pending verification</b>. We'll message you as soon "
          "as it's verified; then you can post offers with /newoffer.", name=user_text(business.name)),
        [menus.home_row(_)],
    )
    return DONE



def _cancelled(ctx: Context) -> None:
    ctx.outcome.replies.append(Reply(text=ctx._("Registration cancelled. Nothing was saved."), remove_keyboard=True))
    menus.show_main_menu(ctx)


REGISTER = flow(Flow("register", [
    Step("name", _ask_name, on_text=_on_name),
    Step("address", _ask_address, on_text=_on_address, on_location=_on_address_location),
    Step("location", _ask_location, on_location=_on_location, on_choice=_on_location_skip),
    Step("address_text", _ask_address_text, on_text=_on_address_text),
    Step("phone", _ask_phone, on_text=_on_phone),
], on_cancel=_cancelled, refused_by=InvalidInput, on_refused=reask_invalid, back_to="biz"))


# --------------------------------------------------------------------------- telling the admins


def review_keyboard(_: Translator, business_id: int) -> Keyboard:
    """The admin's decision, two buttons a row at most, so no label is cut off on a phone."""
    return [
        [button(_("✅ Verify"), data("bizrev", "verify", business_id))],
        [button(_("❌ Reject"), data("bizrev", "reject", business_id)),
         button(_("⛔ Suspend"), data("bizrev", "suspend", business_id))],
    ]


def owner_label(_: Translator, owner: User | None, owner_id: int) -> str:
    """Who runs a business, as an admin recognises them: their name and @username (as Telegram
    has them), with the Telegram id; the id alone for an owner we know nothing more about."""
    known = []
    if owner is not None and owner.first_name:
        known.append(user_text(owner.first_name))
    if owner is not None and owner.username:
        known.append("@" + escape(owner.username))
    if not known:
        return _("Telegram user {id}", id=owner_id)
    return _("{who} (Telegram id {id})", who=" ".join(known), id=owner_id)


def business_card(_: Translator, business: Business, owner: User | None) -> str:
    """A business as an admin reviews it; ``owner`` is its owner's user row (None if unknown)."""
    location = (f"{business.latitude:.5f}, {business.longitude:.5f}" if business.latitude is not None
                else _("not shared"))
    return _("🏪 <b>{name}</b> (#{id})\n📍 {address}\n🧭 {location}\n📞 {phone}\n👤 {owner}",
             name=user_text(business.name), id=business.id, address=user_text(business.address),
             location=location, phone=escape(business.phone), owner=owner_label(_, owner, business.owner_id))


def _notify_admins(ctx: Context, business: Business) -> None:
    for admin_id in sorted(ctx.settings.admin_ids):
        admin = ctx.session.get(User, admin_id)
        _ = Translator(admin.language if admin else "en")
        text = _("🆕 <b>A business asks for verification</b>\n\n") + business_card(_, business, ctx.user)
        key = verification_requests.request_key(business.id, str(ctx.update.update_id), admin_id)
        outbox.notify(ctx.session, key, admin_id,
                      Reply(text=text, keyboard=review_keyboard(_, business.id), kind=verification_requests.KIND))


@menus.when_admin_arrives
def ask_again(ctx: Context) -> None:
    """An admin Telegram would not let us reach when a business registered (403: they had blocked
    the bot or never started it) gets the request when they come: on /start or /admin, once per
    business and application, and only while the business is still pending."""
    _ = ctx._
    for business, application in verification_requests.not_received(ctx.session, ctx.user.id,
                                                                     ctx.settings.admin_ids):
        text = _("⏳ <b>A business is waiting for your verification</b> (it asked while I could not reach "
                 "you)\n\n") + business_card(_, business, ctx.session.get(User, business.owner_id))
        key = verification_requests.request_key(business.id, application, ctx.user.id, again=True)
        outbox.notify(ctx.session, key, ctx.chat_id,
                      Reply(text=text, keyboard=review_keyboard(_, business.id), kind=verification_requests.KIND))
