"""`/privacy`: what we keep about a person, an export of it (a JSON file in the chat) and its
erasure, after a confirmation. The work is done by `maintenance.export_user_data` and
`maintenance.delete_user_data`, enqueued once this update's transaction committed."""

from __future__ import annotations

from datetime import UTC, datetime

from chat import menus
from chat.context import Context
from chat.registry import StaleButton, button, command, data
from core.handover import enqueue_after_commit
from core.outbox import button as key
from domain import audit, privacy
from models import Business


def _enqueue(ctx: Context, task_name: str) -> None:
    enqueue_after_commit(ctx.session, task_name, ctx.user.id,
                         kwargs={"actor": f"user:{ctx.user.id}", "request": str(ctx.update.update_id)})


@command("privacy")
def cmd_privacy(ctx: Context, _argument: str) -> None:
    show_privacy(ctx)


@button("privacy")
def btn_privacy(ctx: Context, args: list[str]) -> None:
    if not args:
        show_privacy(ctx)
    elif args == ["export"]:
        export(ctx)
    elif args == ["delete"]:
        ask_to_delete(ctx)
    elif args == ["delete", "yes"]:
        delete(ctx)
    else:
        raise StaleButton


def show_privacy(ctx: Context) -> None:
    _ = ctx._
    ctx.show(
        _("🔒 <b>Your data</b>\n"
          "We keep your Telegram name and username, your language, the location you last shared "
          "(to show deals near you), the businesses you follow and your orders.\n\n"
          "You can get all of it as a file, or have it deleted. Orders stay in our books for "
          "accounting, without your name."),
        [
            [key(_("📦 Export my data"), data("privacy", "export"))],
            [key(_("🗑 Delete my data"), data("privacy", "delete"))],
            menus.home_row(_),
        ],
    )


def export(ctx: Context) -> None:
    _ = ctx._
    audit.record(ctx.session, f"user:{ctx.user.id}", "privacy.export_requested", "ok", target=f"user:{ctx.user.id}")
    _enqueue(ctx, "maintenance.export_user_data")
    ctx.toast(_("Preparing your export…"))
    ctx.show(_("📦 Your data export is being prepared. It will arrive in this chat as a file in a moment."),
             [menus.home_row(_)])


def _refusal(ctx: Context) -> str | None:
    """Why this person's data cannot be erased right now, in their words; None if it can."""
    _ = ctx._
    owns_business = ctx.session.query(Business.id).filter(Business.owner_id == ctx.user.id).first() is not None
    if owns_business:
        return _("Your account runs a business on Surplus, so it cannot be deleted here. "
                 "Please ask us to close the business first.")
    if privacy.open_paid_orders(ctx.session, ctx.user.id, datetime.now(UTC)):
        return _("You have paid orders still to be collected. Please collect or cancel them first, "
                 "then delete your data.")
    return None


def ask_to_delete(ctx: Context) -> None:
    _ = ctx._
    refusal = _refusal(ctx)
    if refusal:
        ctx.show(refusal, [[key(_("⬅️ Back"), "privacy")], menus.home_row(_)])
        return
    ctx.show(
        _("⚠️ <b>Delete your data?</b>\n"
          "Your name, username, location, follows and our chat history will be erased, and any "
          "unpaid reservation released. This cannot be undone."),
        [
            [key(_("🗑 Yes, delete my data"), data("privacy", "delete", "yes"))],
            [key(_("Keep my data"), "privacy")],
        ],
    )


def delete(ctx: Context) -> None:
    _ = ctx._
    refusal = _refusal(ctx)
    if refusal:
        ctx.show(refusal, [[key(_("⬅️ Back"), "privacy")], menus.home_row(_)])
        return
    audit.record(ctx.session, f"user:{ctx.user.id}", "privacy.delete_requested", "ok", target=f"user:{ctx.user.id}")
    _enqueue(ctx, "maintenance.delete_user_data")
    ctx.toast(_("Deleting your data…"))
    ctx.show(_("🗑 Deleting your data. You will get a confirmation here in a moment."))
