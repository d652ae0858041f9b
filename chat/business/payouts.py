"""💶 Payouts: a verified business sets up its Stripe Connect account from the chat.

"💶 Set up payouts" hands the work to the payments queue (``payments.start_onboarding``: the
account is created once, the onboarding link each time), which replaces "⏳ Preparing…" with the
link. Stripe sends the owner back to ``/start payouts``, which shows this screen again; the
states change by Stripe's ``account.updated`` events, each told in the chat
(``chat.messages.payouts``).
"""

from __future__ import annotations

from chat import menus
from chat.business.newoffer import verified_business
from chat.context import Context
from chat.registry import button as on_button
from chat.registry import data, deep_link
from core.handover import enqueue_after_commit
from core.i18n import Translator
from core.outbox import Keyboard, button
from core.settings import get_settings
from models import Business, PayoutsStatus

DEEP_LINK = "payouts"  # /start payouts: where Stripe's onboarding sends the owner back


def payouts_text(_: Translator, business: Business) -> str:
    """Where the business's payouts stand, in a sentence or two."""
    needed = get_settings().payouts_require_connect
    if business.payouts_status == PayoutsStatus.ACTIVE:
        return _("✅ <b>Payouts are active.</b> Customers pay by card and Stripe pays your sales, minus the "
                 "platform fee, to your bank account.")
    if business.payouts_status == PayoutsStatus.PENDING:
        text = _("⏳ <b>Payouts pending.</b> Your Stripe account is not finished yet, or Stripe is still "
                 "checking it.")
    elif business.payouts_status == PayoutsStatus.RESTRICTED:
        text = _("⚠️ <b>Payouts restricted.</b> Stripe needs more information before your account can take "
                 "payments again.")
    elif business.payouts_status == PayoutsStatus.DISCONNECTED:
        text = _("🔌 <b>Stripe disconnected.</b> Your Stripe account is no longer linked to Surplus.")
    else:
        text = _("💶 <b>Get paid for your sales.</b> Set up a Stripe account (a few minutes: your bank "
                 "account and some details). Stripe pays your sales, minus the platform fee, to your bank.")
    if needed:
        text += "\n\n" + _("You can publish offers once payouts are active.")
    else:
        text += "\n\n" + _("Until then, Surplus collects your sales and pays you by bank transfer.")
    return text


def payouts_rows(_: Translator, business: Business) -> Keyboard:
    rows: Keyboard = []
    if business.payouts_status != PayoutsStatus.ACTIVE:
        label = {
            PayoutsStatus.NONE: _("💶 Set up payouts"),
            PayoutsStatus.PENDING: _("💶 Continue setting up payouts"),
            PayoutsStatus.RESTRICTED: _("💶 Update my Stripe details"),
            PayoutsStatus.DISCONNECTED: _("💶 Connect Stripe again"),
        }[business.payouts_status]
        rows.append([button(label, data("bizpaylink"))])
    rows.append([button(_("⬅️ Back"), data("biz")), *menus.home_row(_)])
    return rows


def show_payouts(ctx: Context) -> None:
    business = verified_business(ctx)
    if business is not None:
        ctx.show(payouts_text(ctx._, business), payouts_rows(ctx._, business))


@on_button("bizpay")
def btn_payouts(ctx: Context, _args: list[str]) -> None:
    show_payouts(ctx)


@deep_link(DEEP_LINK)
def back_from_stripe(ctx: Context, _rest: str) -> None:
    show_payouts(ctx)


@on_button("bizpaylink")
def btn_payouts_link(ctx: Context, _args: list[str]) -> None:
    business = verified_business(ctx)
    if business is None:
        return
    _ = ctx._
    if business.payouts_status == PayoutsStatus.ACTIVE:
        ctx.toast(_("Payouts are active already."))
        show_payouts(ctx)
        return
    # The link (or why not) takes the place of "⏳ Preparing…" below.
    enqueue_after_commit(ctx.session, "payments.start_onboarding", business.id, ctx.user.id,
                         kwargs={"request": f"tap:{ctx.update.update_id}", "edit_message_id": ctx.pressed_message_id})
    ctx.toast(_("Preparing your Stripe link…"))
    ctx.show(_("⏳ Preparing your secure Stripe link…"), [[button(_("⬅️ Back"), data("bizpay"))]])
