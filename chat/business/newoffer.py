"""/newoffer: title, description, price, original price, quantity, pickup day and window, category,
diet and allergens (optional, chat/business/tagging.py), photo.

The draft offer row exists from the photo step on. The photo goes to the images queue; the business
sees "⏳ Processing your photo…" and then the deal card as a preview with Publish / Change photo /
Cancel (sent by tasks.images, worded in chat.messages.offers). A photo that can't be used gets a
clear message and the step stays open for another one.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete

from chat import menus
from chat.business.registration import status_text
from chat.business.tagging import tag_steps
from chat.business.texts import now, photo_rejection, reask, reask_invalid
from chat.cards import local_time
from chat.context import Context
from chat.flows import Flow, Step, ask, choice
from chat.registry import NotAllowed, command, data, flow
from chat.registry import button as on_button
from core.handover import enqueue_after_commit
from core.outbox import button
from domain import businesses, offers
from domain.images import MAX_FILE_BYTES
from domain.money import format_money
from domain.offers import InvalidInput
from models import Business, BusinessStatus, Offer, OfferStatus


@command("newoffer")
def cmd_new_offer(ctx: Context, _argument: str) -> None:
    start_new_offer(ctx)


@on_button("biznew")
def btn_new_offer(ctx: Context, _args: list[str]) -> None:
    start_new_offer(ctx)


def verified_business(ctx: Context) -> Business | None:
    """The user's business if it may post; otherwise says why (and returns None)."""
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is None:
        ctx.show(_("Only registered businesses can post offers. Register yours first: it takes a minute."),
                 [[button(_("📝 Register my business"), data("bizreg"))], menus.home_row(_)])
        return None
    if business.status != BusinessStatus.VERIFIED:
        ctx.show(status_text(_, business), [menus.home_row(_)])
        return None
    return business


def start_new_offer(ctx: Context) -> None:
    if verified_business(ctx) is not None:
        NEW_OFFER.start(ctx)


def _business(ctx: Context) -> Business:
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is None or business.status != BusinessStatus.VERIFIED:
        raise NotAllowed  # suspended mid-way: the router shows a fresh menu
    return business



def _money(ctx: Context, minor: int) -> str:
    return format_money(minor, ctx.state.data.get("currency", "EUR"), ctx._.language)


# --------------------------------------------------------------------------- the steps


def _ask_title(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("➕ <b>New offer</b>\n\nWhat are you offering? Give it a short title, e.g. <i>Surprise bag of "
               "pastries</i>."))


def _on_title(ctx: Context, text: str) -> str | None:
    NEW_OFFER.remember(ctx, title=offers.parse_title(text), currency=_business(ctx).currency)
    return "description"


def _ask_description(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("📝 Describe it in a sentence or two (what's inside, allergens…), or skip."),
        [[choice(ctx, _("Skip"), "skip")]])


def _on_description(ctx: Context, text: str) -> str | None:
    NEW_OFFER.remember(ctx, description=offers.parse_description(text))
    return "price"


def _skip_description(ctx: Context, value: str) -> str | None:
    if value != "skip":
        return None
    NEW_OFFER.remember(ctx, description="")
    return "price"


def _ask_price(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("💶 What do customers pay? Type the price, e.g. <b>4.50</b>."))


def _on_price(ctx: Context, text: str) -> str | None:
    price = offers.parse_money(text, ctx.state.data.get("currency", "EUR"))
    NEW_OFFER.remember(ctx, price_minor=price)
    return "original"


def _ask_original(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("🏷 And what would it cost normally (the original price)? It must be more than {price}.",
               price=_money(ctx, ctx.state.data.get("price_minor", 0))))


def _on_original(ctx: Context, text: str) -> str | None:
    original = offers.parse_money(text, ctx.state.data.get("currency", "EUR"))
    offers.check_discount(ctx.state.data["price_minor"], original)
    NEW_OFFER.remember(ctx, original_price_minor=original)
    return "quantity"


def _ask_quantity(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("🔢 How many units (bags, boxes…) do you have? A number from {min} to {max}.",
               min=offers.MIN_QUANTITY, max=offers.MAX_QUANTITY))


def _on_quantity(ctx: Context, text: str) -> str | None:
    NEW_OFFER.remember(ctx, quantity=offers.parse_quantity(text))
    return "day"


def _ask_day(ctx: Context) -> None:
    _ = ctx._
    ask(ctx, _("📅 When can customers pick it up?"),
        [[choice(ctx, _("Today"), "today"), choice(ctx, _("Tomorrow"), "tomorrow")]])


def _on_day(ctx: Context, value: str) -> str | None:
    if value not in ("today", "tomorrow"):
        return None
    NEW_OFFER.remember(ctx, day=value)
    return "window"


def _ask_window(ctx: Context) -> None:
    _ = ctx._
    business = _business(ctx)
    day = _("today") if ctx.state.data.get("day") == "today" else _("tomorrow")
    ask(ctx, _("🕒 Pickup window {day}? Type it like <b>18:00-19:30</b> (time in {zone}).", day=day,
               zone=business.timezone))


def _on_window(ctx: Context, text: str) -> str | None:
    business = _business(ctx)
    moment = now()
    day = offers.pickup_day(ctx.state.data.get("day", "today"), business.timezone, moment)
    start, end = offers.parse_time_window(text, day, business.timezone, moment)
    NEW_OFFER.remember(ctx, pickup_start=start.isoformat(), pickup_end=end.isoformat())
    return "category"


def _after_allergens(_ctx: Context) -> str | None:
    return "photo"


def _ask_photo(ctx: Context) -> None:
    _ = ctx._
    draft = _draft(ctx)
    keep = [[choice(ctx, _("🖼 Keep the current photo"), "keep")]] if draft is not None and draft.photo_card_file_id \
        else None
    ask(ctx, _("📸 Last step: send a photo of the food (as a photo, or as an image file up to 20 MB). We'll turn "
               "it into a deal card with your price."), keep)


def _draft(ctx: Context) -> Offer | None:
    """The draft this flow is filling in, once it has one (from the photo step on)."""
    offer_id = ctx.state.data.get("offer_id")
    if offer_id is None:
        return None
    offer = ctx.session.get(Offer, int(offer_id))
    business = businesses.business_of(ctx.session, ctx.user.id)
    if offer is None or business is None or offer.business_id != business.id or offer.status != OfferStatus.DRAFT:
        return None
    return offer


def _keep_photo(ctx: Context, value: str) -> str | None:
    """Back at the photo step of a draft with a photo: its card is made again, with the answers now."""
    draft = _draft(ctx) if value == "keep" else None
    if draft is None or not draft.photo_source_file_id:
        return None
    return _on_photo(ctx, draft.photo_source_file_id, 0)


def _on_photo(ctx: Context, file_id: str, file_size: int) -> str | None:
    _ = ctx._
    if file_size > MAX_FILE_BYTES:
        reask(ctx, NEW_OFFER, "❗ " + photo_rejection(_, "too_large_file"))
        return None
    business = _business(ctx)
    values = ctx.state.data
    fields = None
    if "pickup_end" in values:
        fields = offers.DraftFields(
            title=values["title"], description=values.get("description", ""), price_minor=values["price_minor"],
            original_price_minor=values["original_price_minor"], quantity=values["quantity"],
            pickup_start=datetime.fromisoformat(values["pickup_start"]),
            pickup_end=datetime.fromisoformat(values["pickup_end"]),
            category=values.get("category"), diet=list(values.get("diet", [])),
            allergens=list(values.get("allergens", [])),
        )
    try:
        offer = offers.save_draft_photo(ctx.session, business, fields, values.get("offer_id"), file_id)
    except offers.WrongState:
        ctx.leave_flow()
        ctx.reply(_("This offer is already published; its photo can't be changed any more."),
                  [menus.home_row(_)])
        return None
    NEW_OFFER.remember(ctx, offer_id=offer.id)
    enqueue_photo(ctx, offer.id, file_id)
    ctx.reply(_("⏳ Processing your photo… The preview follows in a moment."))
    return None  # stay here: a photo that can't be used is simply followed by another one


def enqueue_photo(ctx: Context, offer_id: int, file_id: str) -> None:
    enqueue_after_commit(ctx.session, "images.process_offer_photo", offer_id, file_id)


def _cancelled(ctx: Context) -> None:
    """Cancel leaves nothing behind: the business's unpublished drafts are deleted."""
    _ = ctx._
    business = businesses.business_of(ctx.session, ctx.user.id)
    if business is not None:
        ctx.session.execute(delete(Offer).where(Offer.business_id == business.id,
                                                Offer.status == OfferStatus.DRAFT))
    ctx.show(_("Cancelled: the offer was not created."),
             [[button(_("🏪 Business menu"), data("biz"))], menus.home_row(_)])


NEW_OFFER = flow(Flow("newoffer", [
    Step("title", _ask_title, on_text=_on_title),
    Step("description", _ask_description, on_text=_on_description, on_choice=_skip_description),
    Step("price", _ask_price, on_text=_on_price),
    Step("original", _ask_original, on_text=_on_original),
    Step("quantity", _ask_quantity, on_text=_on_quantity),
    Step("day", _ask_day, on_choice=_on_day),
    Step("window", _ask_window, on_text=_on_window),
    *tag_steps(_after_allergens),
    Step("photo", _ask_photo, on_photo=_on_photo, on_choice=_keep_photo),
], on_cancel=_cancelled, refused_by=InvalidInput, on_refused=reask_invalid, back_to="biz"))


def change_photo(ctx: Context, offer: Offer) -> None:
    """From the preview's "Change photo": back to the photo step for this draft (Back there
    returns to the draft)."""
    NEW_OFFER.start(ctx, {"offer_id": offer.id, "currency": offer.currency, "title": offer.title}, at="photo",
                    back_to=data("bizoffer", "show", offer.id))


def back_from_preview(ctx: Context, offer: Offer) -> None:
    """From the preview's "Back": the flow again with the draft's answers, at the step before the
    photo (the pickup window), so each earlier answer can be changed with Back; at the photo step
    the draft's photo can be kept."""
    business = offer.business
    start = local_time(offer.pickup_start, business.timezone).date()
    day = "tomorrow" if (start - local_time(now(), business.timezone).date()).days == 1 else "today"
    NEW_OFFER.start(ctx, {
        "offer_id": offer.id, "currency": offer.currency, "title": offer.title, "description": offer.description,
        "price_minor": offer.price_minor, "original_price_minor": offer.original_price_minor,
        "quantity": offer.quantity, "day": day, "category": offer.category, "diet": list(offer.diet),
        "allergens": list(offer.allergens),
    }, at="window", history=["title", "description", "price", "original", "quantity", "day"])
