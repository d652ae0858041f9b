"""Admins review businesses: verify at once, reject or suspend with a reason (asked in a flow).

Only configured admins may act: anybody else pressing (or forging) these buttons gets NotAllowed
before anything is read or changed. Every decision is an audit entry, and the owner is told in
their own language.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from chat import menus
from chat.business.registration import business_card, review_keyboard, status_text
from chat.business.texts import now, reask_invalid
from chat.cards import isolate, user_text
from chat.context import Context
from chat.flows import DONE, Flow, Step, ask
from chat.registry import BUTTONS, NotAllowed, StaleButton, data, flow
from chat.registry import button as on_button
from core import outbox
from core.i18n import Translator
from core.outbox import Keyboard, Reply, button
from core.settings import get_settings
from domain import businesses
from domain.offers import InvalidInput
from models import Business, BusinessStatus, User

PENDING_BUTTON = "adm_biz"


def _require_admin(ctx: Context) -> None:
    if not ctx.is_admin:
        raise NotAllowed


def _business_id(args: list[str], position: int) -> int:
    try:
        return int(args[position])
    except (IndexError, ValueError):
        raise StaleButton from None


def _back_rows(ctx: Context) -> Keyboard:
    _ = ctx._
    rows: Keyboard = [[button(_("📋 Pending businesses"), data(PENDING_BUTTON))]]
    if "admin" in BUTTONS:
        rows.append([button(_("🛠 Admin"), data("admin"))])
    rows.append(menus.home_row(_))
    return rows


@on_button(PENDING_BUTTON)
def btn_pending(ctx: Context, _args: list[str]) -> None:
    show_pending_businesses(ctx)


def show_pending_businesses(ctx: Context) -> None:
    """The businesses waiting for verification, oldest first, each with a button to review it."""
    _require_admin(ctx)
    _ = ctx._
    waiting = businesses.pending(ctx.session, limit=20)
    if not waiting:
        ctx.show(_("✅ No business is waiting for verification."), _back_rows(ctx)[1:] or [menus.home_row(_)])
        return
    lines = [_("⏳ <b>Businesses waiting for verification</b>"), ""]
    rows: Keyboard = []
    for business in waiting:
        lines.append(f"#{business.id} <b>{user_text(business.name)}</b> — {user_text(business.address)}")
        rows.append([button(f"🔎 #{business.id} {isolate(business.name[:40])}", data("bizrev", "show", business.id))])
    ctx.show("\n".join(lines), [*rows, *_back_rows(ctx)[1:]])


@on_button("bizrev")
def btn_review(ctx: Context, args: list[str]) -> None:
    _require_admin(ctx)  # first: a forged press by anybody else reads and changes nothing
    action = args[0] if args else ""
    business_id = _business_id(args, 1)
    business = ctx.session.get(Business, business_id)
    if business is None:
        raise StaleButton
    _ = ctx._
    if action == "show":
        _show_business(ctx, business)
    elif action == "verify":
        _decide(ctx, business_id, "verify", None)
    elif action in ("reject", "suspend"):
        if not businesses.can_review(business, action):
            _already(ctx, business)
            return
        REASON.start(ctx, {"action": action, "business_id": business_id, "name": business.name},
                     back_to=data("bizrev", "show", business_id))
    else:
        raise StaleButton


def _show_business(ctx: Context, business: Business) -> None:
    _ = ctx._
    owner = ctx.session.get(User, business.owner_id)
    text = business_card(_, business, owner) + "\n\n" + status_text(_, business)
    ctx.show(text, [*review_keyboard(_, business.id), *_back_rows(ctx)])


def _already(ctx: Context, business: Business) -> None:
    _ = ctx._
    ctx.toast(_("Nothing changed: this business is {status} already.", status=_status_name(_, business.status)))
    _show_business(ctx, business)


def _status_name(_: Translator, status: BusinessStatus) -> str:
    return {
        BusinessStatus.PENDING: _("pending"),
        BusinessStatus.VERIFIED: _("verified"),
        BusinessStatus.REJECTED: _("rejected"),
        BusinessStatus.SUSPENDED: _("suspended"),
    }[status]


def _ask_reason(ctx: Context) -> None:
    _ = ctx._
    values = ctx.state.data
    if values.get("action") == "reject":
        question = _("❌ Why is <b>{name}</b> rejected? Type the reason: the owner will read it.",
                     name=user_text(values.get("name", "")))
    else:
        question = _("⛔ Why is <b>{name}</b> suspended? Type the reason: the owner will read it. Its live "
                     "offers stop taking orders.", name=user_text(values.get("name", "")))
    ask(ctx, question)


def _on_reason(ctx: Context, text: str) -> str | None:
    _require_admin(ctx)
    reason = businesses.parse_reason(text)
    values = ctx.state.data
    _decide(ctx, int(values["business_id"]), values["action"], reason)
    return DONE


REASON = flow(Flow("bizreason", [Step("reason", _ask_reason, on_text=_on_reason)],
                   on_cancel=show_pending_businesses, refused_by=InvalidInput,
                   on_refused=reask_invalid))


def _decide(ctx: Context, business_id: int, action: str, reason: str | None) -> None:
    _ = ctx._
    try:
        business, _paused = businesses.review(ctx.session, business_id, action, ctx.user.id, now(), reason=reason)
    except businesses.ReviewRefused:
        current = ctx.session.get(Business, business_id, populate_existing=True)
        if current is None:
            raise StaleButton from None
        _already(ctx, current)
        return
    tell_owner(ctx.session, business, action)
    done = {
        "verify": _("✅ <b>{name}</b> is verified. The owner has been told.", name=user_text(business.name)),
        "reject": _("❌ <b>{name}</b> is rejected. The owner has been told why.", name=user_text(business.name)),
        "suspend": _("⛔ <b>{name}</b> is suspended. The owner has been told why.", name=user_text(business.name)),
    }[action]
    ctx.toast(_("Done."))
    ctx.show(done, _back_rows(ctx))


def tell_owner(session: Session, business: Business, action: str) -> None:
    """The owner hears the admin's decision (from the chat or the Mini App), once per decision."""
    owner = session.get(User, business.owner_id)
    _ = Translator(owner.language if owner else "en")
    name = user_text(business.name)
    reason = user_text(business.status_reason or "")
    if action == "verify":
        if get_settings().payouts_require_connect:
            text = _("🎉 <b>{name}</b> is verified! Next, set up payouts with Stripe: then you can publish offers.",
                     name=name)
            keyboard = [[button(_("💶 Set up payouts"), data("bizpay")), button(_("🏪 Business menu"), data("biz"))]]
        else:
            text = _("🎉 <b>{name}</b> is verified! You can post your first offer now with /newoffer.", name=name)
            keyboard = [[button(_("➕ New offer"), data("biznew")), button(_("🏪 Business menu"), data("biz"))],
                        [button(_("💶 Set up payouts"), data("bizpay"))]]
    elif action == "reject":
        text = _("❌ Sorry, the registration of <b>{name}</b> was rejected.\nReason: {reason}\n\nYou can correct "
                 "it and apply again.", name=name, reason=reason)
        keyboard = [[button(_("📝 Apply again"), data("bizreg"))]]
    else:
        text = _("⛔ <b>{name}</b> has been suspended: you can't post offers, and your live offers stopped "
                 "taking orders.\nReason: {reason}", name=name, reason=reason)
        keyboard = [[button(_("🏪 Business menu"), data("biz"))]]
    stamp = int(business.reviewed_at.timestamp() * 1000) if business.reviewed_at else 0
    outbox.notify(session, f"business:{business.id}:{action}:{stamp}", business.owner_id,
                         Reply(text=text, keyboard=keyboard))
