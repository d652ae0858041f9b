"""What Connect tells a business (its onboarding link, each change of its payouts), and the admins
(a difference between the ledger and Stripe)."""

from __future__ import annotations

from chat.cards import escape, user_text
from chat.menus import home_row
from chat.registry import data
from core.i18n import Translator
from core.outbox import Reply, button, renders
from domain.payments.connect import PayoutsChanged, PayoutsLink, PayoutsUnavailable
from domain.payments.reconcile import MoneyMismatch
from models import PayoutsStatus


@renders(PayoutsLink)
def _link(notice: PayoutsLink) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("🔐 Set up payouts for <b>{name}</b> on Stripe's secure page. The link works once and for a few "
               "minutes; when you are done, Stripe brings you back here.", name=user_text(notice.business_name)),
        keyboard=[[{"text": _("💶 Open Stripe"), "url": notice.url}],
                  [button(_("⬅️ Back"), data("bizpay")), *home_row(_)]],
        edit_message_id=notice.message_id, kind="payouts_link",
    )


@renders(PayoutsUnavailable)
def _unavailable(notice: PayoutsUnavailable) -> Reply:
    _ = Translator(notice.language)
    return Reply(
        text=_("😔 Payouts can't be set up right now. Please try again later; if it keeps happening, contact "
               "the Surplus team."),
        keyboard=[[button(_("🔄 Try again"), data("bizpaylink"))], [button(_("⬅️ Back"), data("biz"))]],
        edit_message_id=notice.message_id, kind="payouts_unavailable",
    )


@renders(PayoutsChanged)
def _changed(notice: PayoutsChanged) -> Reply:
    _ = Translator(notice.language)
    name = user_text(notice.business_name)
    rows = [[button(_("💶 Payouts"), data("bizpay"))], home_row(_)]
    if notice.status is PayoutsStatus.ACTIVE:
        text = _("✅ Payouts for <b>{name}</b> are active. Your sales are paid to your bank account by Stripe.",
                 name=name)
        rows.insert(0, [button(_("➕ New offer"), data("biznew"))])
    elif notice.status is PayoutsStatus.PENDING:
        text = _("⏳ Payouts for <b>{name}</b> are pending: the Stripe setup is not finished yet.", name=name)
    elif notice.status is PayoutsStatus.RESTRICTED:
        text = _("⚠️ Stripe restricted payouts for <b>{name}</b>: it needs more information.", name=name)
    else:
        text = _("🔌 Stripe was disconnected from <b>{name}</b>.", name=name)
    if notice.status is not PayoutsStatus.ACTIVE and notice.selling_needs_it:
        text += " " + _("Customers can't pay for your offers until payouts are active again; orders already "
                        "paid are not affected.")
    return Reply(text=text, keyboard=rows, kind="payouts_changed")


@renders(MoneyMismatch)
def _mismatch(notice: MoneyMismatch) -> Reply:
    _ = Translator(notice.language)
    head = _.ngettext("🧮 Reconciliation: {count} difference between our ledger and Stripe. Nothing was changed; "
                      "please look into it (audit log: payments.reconcile_connect).",
                      "🧮 Reconciliation: {count} differences between our ledger and Stripe. Nothing was changed; "
                      "please look into it (audit log: payments.reconcile_connect).", notice.count, count=notice.count)
    details = "\n".join(f"• <code>{escape(line)}</code>" for line in notice.lines)
    return Reply(text=f"{head}\n\n{details}", keyboard=[home_row(_)], kind="reconcile_mismatch")
