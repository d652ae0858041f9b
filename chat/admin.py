"""The admin menu (`/admin`, only for `ADMIN_IDS`): live figures, pending businesses, dead letters
(chat/dead_letters.py), and a button per maintenance job. Anyone else sees exactly what an unknown
command or a stale button shows, so the menu's existence is not revealed. Every admin action is in
the audit log."""

from __future__ import annotations

import functools
from datetime import UTC, datetime

import redis

from chat import dead_letters as dead_letter_screens
from chat import menus
from chat.cards import escape
from chat.context import Context
from chat.registry import NotAllowed, StaleButton, button, command, data
from core.handover import enqueue_after_commit
from core.i18n import N_
from core.outbox import Keyboard
from core.outbox import button as key
from core.settings import get_settings
from domain import audit, dead_letters, stats
from domain.money import format_money

# Button argument → Celery task name. Short names keep the button data well under 64 bytes.
JOBS = {
    "expire": "maintenance.expire_offers",
    "holds": "maintenance.release_expired_holds",
    "reconcile": "maintenance.reconcile_payments",
    "remind": "maintenance.send_pickup_reminders",
    "summary": "maintenance.send_daily_summaries",
    "retry": "maintenance.retry_failed_notifications",
    "handovers": "maintenance.resend_handovers",
    "updates": "maintenance.requeue_lost_updates",
    "cleanup": "maintenance.cleanup",
}
JOB_LABELS = {
    "expire": N_("⌛ Expire offers"),
    "holds": N_("🔓 Release lapsed holds"),
    "reconcile": N_("💳 Reconcile payments"),
    "remind": N_("⏰ Pickup reminders"),
    "summary": N_("📊 Daily summaries"),
    "retry": N_("📨 Retry failed messages"),
    "handovers": N_("📮 Resend stuck hand-overs"),
    "updates": N_("📥 Requeue lost updates"),
    "cleanup": N_("🧹 Clean up"),
}


@functools.cache
def _redis() -> redis.Redis:
    return redis.Redis.from_url(get_settings().redis_url, socket_timeout=2, socket_connect_timeout=2)


def actor(ctx: Context) -> str:
    return f"user:{ctx.user.id}"


@command("admin")
def cmd_admin(ctx: Context, _argument: str) -> None:
    if not ctx.is_admin:
        # Exactly what an unknown command gets.
        ctx.reply(ctx._("Sorry, I don't know that command."))
        menus.show_main_menu(ctx)
        return
    audit.record(ctx.session, actor(ctx), "admin.open_menu", "ok")
    show_admin_menu(ctx)
    menus.admin_arrived(ctx)


@button("admin")
def btn_admin(ctx: Context, args: list[str]) -> None:
    if not ctx.is_admin:
        raise NotAllowed
    if args:
        raise StaleButton
    audit.record(ctx.session, actor(ctx), "admin.open_menu", "ok")
    show_admin_menu(ctx)


@button("adm_run")
def btn_run(ctx: Context, args: list[str]) -> None:
    if not ctx.is_admin:
        raise NotAllowed
    if len(args) != 1 or args[0] not in JOBS:
        raise StaleButton
    name = JOBS[args[0]]
    audit.record(ctx.session, actor(ctx), "admin.run_task", "started", target=name)
    enqueue_after_commit(ctx.session, name, kwargs={"actor": actor(ctx), "report_to": ctx.chat_id})
    ctx.toast(ctx._("Started {name}", name=name))
    show_admin_menu(ctx, note=ctx._("▶️ Started {name}. Its report will follow here.",
                                    name=f"<code>{escape(name)}</code>"))


def admin_menu_text(ctx: Context, figures: stats.Stats) -> str:
    _ = ctx._
    revenue = ", ".join(format_money(amount, currency, _.language)
                        for currency, amount in figures.revenue_today.items())
    queues = " · ".join(f"{name} {'?' if length is None else length}" for name, length in figures.queues.items())
    return "\n".join([
        _("🛠 <b>Admin</b>"),
        "",
        _("Active offers: {count}", count=figures.active_offers),
        _("Orders today: {count} (paid: {paid})", count=figures.orders_today, paid=figures.paid_today),
        _("Revenue today (after refunds): {amount}", amount=revenue or "0"),
        _("Businesses waiting for review: {count}", count=figures.pending_businesses),
        _("Queues: {queues}", queues=queues),
    ])


def admin_keyboard(ctx: Context, figures: stats.Stats) -> Keyboard:
    _ = ctx._
    rows: Keyboard = [
        [key(_("🏪 Pending businesses ({count})", count=figures.pending_businesses), "adm_biz")],
        [key(_("☠️ Dead letters ({count})", count=dead_letters.count_waiting(ctx.session)),
             dead_letter_screens.BUTTON)],
    ]
    names = list(JOBS)
    for index in range(0, len(names), 2):
        rows.append([key(_(JOB_LABELS[short]), data("adm_run", short)) for short in names[index:index + 2]])
    rows.append([key(_("🔄 Refresh"), "admin")])
    rows.append(menus.home_row(_))
    return rows


def show_admin_menu(ctx: Context, note: str | None = None) -> None:
    figures = stats.collect(ctx.session, datetime.now(UTC), _redis())
    text = admin_menu_text(ctx, figures)
    if note:
        text += "\n\n" + note
    ctx.show(text, admin_keyboard(ctx, figures))
