"""Rating a collected order: stars (from the request beat sends about an hour after pickup),
then optional reasons and a comment; all of it can be changed for 24 hours. The domain
(domain/ratings.py) decides who may rate what; this module words it."""

from __future__ import annotations

from datetime import UTC, datetime

from chat import menus
from chat.cards import format_rating, user_text
from chat.context import Context
from chat.flows import DONE, Flow, Step, ask
from chat.messages.ratings import star_row
from chat.registry import StaleButton, button, data, flow
from core.i18n import N_, Translator
from core.outbox import button as key
from domain import businesses, ratings
from domain.ratings import RatingRefused
from models import Rating

REASON_LABELS = {
    "amount": N_("🍱 Amount"),
    "quality": N_("👌 Quality"),
    "variety": N_("🎨 Variety"),
    "friendliness": N_("😊 Friendliness"),
}


def _now() -> datetime:
    return datetime.now(UTC)


def _order_id(value: str) -> int:
    if not value.isdigit() or int(value) >= 2**63:
        raise StaleButton
    return int(value)


def refusal(_: Translator, error: RatingRefused) -> str:
    return {
        "not_yours": _("This isn't one of your orders."),
        "not_collected": _("You can rate an order once you have picked it up."),
        "closed": _("A rating can be changed for 24 hours; this one can't be changed any more."),
        "no_rating": _("Choose the stars first."),
    }.get(error.reason, _("This can't be done now."))


def show_rating(ctx: Context, rating: Rating, note: str | None = None) -> None:
    _ = ctx._
    order_id = rating.order_id
    reasons = [key(("✅ " if code in rating.reasons else "") + _(label), data("rrsn", order_id, code))
               for code, label in REASON_LABELS.items()]
    lines = [note] if note else []
    lines.append(_("Thanks! You gave {stars} of 5 stars.", stars=rating.stars))
    lines.append(_("What stood out? Tick any, or leave a comment. You can change all of this for 24 hours."))
    if rating.comment:
        lines.append(_("💬 Your comment: {comment}", comment=user_text(rating.comment)))
    ctx.show("\n".join(lines), [
        star_row(order_id, rating.stars), reasons[:2], reasons[2:],
        [key(_("💬 Comment"), data("rcom", order_id)), key(_("✔️ Done"), data("rdone", order_id))],
        menus.home_row(_),
    ])


def _refused(ctx: Context, error: RatingRefused) -> None:
    ctx.toast(refusal(ctx._, error), alert=True)


@button("rate")
def btn_rate(ctx: Context, args: list[str]) -> None:
    if len(args) != 2 or args[1] not in {"1", "2", "3", "4", "5"}:
        raise StaleButton
    try:
        rating = ratings.rate(ctx.session, _order_id(args[0]), ctx.user.id, int(args[1]), _now())
    except RatingRefused as error:
        _refused(ctx, error)
        return
    show_rating(ctx, rating)


@button("rrsn")
def btn_reason(ctx: Context, args: list[str]) -> None:
    if len(args) != 2 or args[1] not in ratings.REASONS:
        raise StaleButton
    try:
        rating = ratings.toggle_reason(ctx.session, _order_id(args[0]), ctx.user.id, args[1], _now())
    except RatingRefused as error:
        _refused(ctx, error)
        return
    show_rating(ctx, rating)


@button("rdone")
def btn_done(ctx: Context, args: list[str]) -> None:
    if len(args) != 1:
        raise StaleButton
    rating = ratings.rating_of(ctx.session, _order_id(args[0]))
    if rating is None or rating.customer_id != ctx.user.id:
        raise StaleButton
    _ = ctx._
    ctx.show(_("⭐ Thank you for rating! You can change it from this message for 24 hours."),
             [star_row(rating.order_id, rating.stars), menus.home_row(_)])


@button("rcom")
def btn_comment(ctx: Context, args: list[str]) -> None:
    if len(args) != 1:
        raise StaleButton
    order_id = _order_id(args[0])
    rating = ratings.rating_of(ctx.session, order_id)
    if rating is None or rating.customer_id != ctx.user.id:
        raise StaleButton
    COMMENT.start(ctx, {"order_id": order_id}, back_to=data("rate", order_id, rating.stars))


def _ask_comment(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("💬 Type your comment for the business (up to {max} characters). They read every one.",
               max=ratings.MAX_COMMENT))


def _on_comment(ctx: Context, text: str) -> str | None:
    try:
        rating = ratings.set_comment(ctx.session, int(ctx.state.data["order_id"]), ctx.user.id, text, _now())
    except RatingRefused as error:
        ctx.reply(refusal(ctx._, error), [menus.home_row(ctx._)])
        return DONE
    show_rating(ctx, rating, ctx._("✅ Comment saved."))
    return DONE


def _comment_cancelled(ctx: Context) -> None:
    menus.show_main_menu(ctx)


COMMENT = flow(Flow("ratecomment", [Step("comment", _ask_comment, on_text=_on_comment)],
                    on_cancel=_comment_cancelled))


# --------------------------------------------------------------------------- what a business reads


@button("bizrated")
def btn_business_ratings(ctx: Context, args: list[str]) -> None:
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is None or args:
        raise StaleButton
    summary = ratings.summaries(ctx.session, [business.id]).get(business.id)
    lines = [_("⭐ <b>Ratings of {name}</b>", name=user_text(business.name))]
    if summary is None:
        lines.append(_("No ratings yet. Customers are asked about an hour after each pickup."))
    else:
        lines.append(format_rating(_, summary.average, summary.count))
        if not summary.shown:
            lines.append(_("Customers see your average once you have {count} ratings.", count=ratings.MIN_SHOWN))
    for rating, offer in ratings.ratings_of_business(ctx.session, business.id):
        line = f"{'⭐' * rating.stars}{'☆' * (5 - rating.stars)} · {user_text(offer.title)}"
        if rating.reasons:
            line += " · " + ", ".join(_(REASON_LABELS[r]) for r in rating.reasons if r in REASON_LABELS)
        if rating.comment:
            line += "\n   💬 " + user_text(rating.comment)
        lines.append(line)
    ctx.show("\n".join(lines), [[key(_("🏪 Business menu"), data("biz"))], menus.home_row(_)])
