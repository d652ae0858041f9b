"""💶 Earnings under /myoffers: this week and this month (sales, refunds, the platform's fee, net,
what Stripe paid out), a chart of the month, and the statement as CSV. The figures are the
business's ledger rows (``domain.payments.earnings``); every label on the chart is worded here."""

from __future__ import annotations

import base64

from babel.dates import format_date

from chat.business.newoffer import verified_business
from chat.business.texts import now
from chat.cards import user_text
from chat.context import Context
from chat.registry import button as on_button
from chat.registry import data
from core.i18n import Translator
from core.outbox import Keyboard, Reply, button
from domain.earnings_chart import ChartWords, month_chart
from domain.money import format_money
from domain.payments import earnings


def _keyboard(_: Translator) -> Keyboard:
    return [[button(_("📄 Statement (CSV)"), data("bizearncsv"))],
            [button(_("⬅️ My offers"), data("bizoffers")), button(_("🏪 Business menu"), data("biz"))]]


def _period(_: Translator, heading: str, figures: earnings.Figures, currency: str) -> str:
    def money(minor: int) -> str:
        return format_money(minor, currency, _.language)

    return "\n".join([
        heading,
        _("Sales {gross} · refunds {refunds} · platform fee {fee}", gross=money(figures.gross),
          refunds=money(figures.refunds), fee=money(figures.fee)),
        _("<b>Net {net}</b> · paid out by Stripe {paid_out}", net=money(figures.net), paid_out=money(figures.paid_out)),
    ])


def earnings_text(_: Translator, statement: earnings.Statement) -> str:
    week = format_date(statement.week_start, "EEE d MMM", locale=_.language)
    month = format_date(statement.month_start, "LLLL yyyy", locale=_.language)
    lines = [
        _("💶 <b>Earnings of {name}</b>", name=user_text(statement.business.name)),
        "",
        _period(_, _("<b>This week</b> (since {day})", day=week), statement.week, statement.currency),
        "",
        _period(_, _("<b>This month</b> ({month})", month=month), statement.month, statement.currency),
        "",
    ]
    if statement.connected:
        lines.append(_("Stripe pays what you earn to your bank account on its payout schedule."))
    else:
        lines.append(_("Surplus collects your sales and pays what you earn by bank transfer."))
    return "\n".join(lines)


def earnings_chart(_: Translator, statement: earnings.Statement) -> bytes:
    def money(minor: int) -> str:
        return format_money(minor, statement.currency, _.language)

    month = format_date(statement.month_start, "LLLL yyyy", locale=_.language)
    return month_chart(statement, ChartWords(
        title=_("Earnings — {month}", month=month),
        subtitle=_("Earned {net} of {gross} in sales", net=money(statement.month.net),
                   gross=money(statement.month.gross)),
        gross_legend=_("Sales"), net_legend=_("Earned"),
    ), _.language)


@on_button("bizearn")
def btn_earnings(ctx: Context, _args: list[str]) -> None:
    if verified_business(ctx) is None:
        return
    _ = ctx._
    statement = earnings.statement(ctx.session, ctx.user.id, now())
    if statement is None:  # verified_business() found it: only a race with erasure gets here
        ctx.toast(_("No business found."))
        return
    ctx.toast(_("💶 Earnings"))
    ctx.outcome.replies.append(Reply(
        text=earnings_text(_, statement), keyboard=_keyboard(_),
        photo_upload=base64.b64encode(earnings_chart(_, statement)).decode(), kind="earnings",
    ))


@on_button("bizearncsv")
def btn_statement_csv(ctx: Context, _args: list[str]) -> None:
    if verified_business(ctx) is None:
        return
    _ = ctx._
    exported = earnings.statement_csv(ctx.session, ctx.user.id)
    if exported is None or exported[1] == 0:
        ctx.toast(_("Nothing to export yet."))
        ctx.reply(_("Your statement is empty so far: it fills with your first sale."), _keyboard(_))
        return
    content, count = exported
    stamp = now().strftime("%Y%m%d-%H%M")
    ctx.outcome.replies.append(Reply(
        text=_("📄 Your statement ({count} rows) as CSV.", count=count),
        document={"filename": f"statement-{stamp}.csv", "content_b64": base64.b64encode(content).decode()},
        keyboard=_keyboard(_),
    ))
