"""Offers as the domain announces them: new deals to followers and nearby customers, photo results."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

from chat.business.texts import photo_rejection
from chat.cards import format_distance, offer_caption
from chat.registry import data
from core.i18n import Translator
from core.outbox import Keyboard, Reply, button, renders
from domain.announcements import DealAlert
from models import Business, Offer, OfferStatus


@renders(DealAlert)
def deal_alert(notice: DealAlert) -> Reply:
    _ = Translator(notice.language)
    offer = notice.offer
    caption = offer_caption(_, offer, notice.business, notice.now)
    if notice.distance_km is not None and not notice.follower:
        caption = _("🔔 New near you ({distance}):", distance=format_distance(notice.distance_km)) + "\n" + caption
    keyboard = [[button(_("View"), data("offer", offer.id))]]
    if not notice.follower:
        keyboard[0].append(button(_("🔕 Stop alerts"), data("alerts", "off")))
    return Reply(text=caption, photo=offer.photo_card_file_id, keyboard=keyboard, kind="announcement",
                 paid_broadcast=notice.paid_broadcast)


# --------------------------------------------------------------------------- the photo task's results


def preview_caption(_: Translator, offer: Offer, business: Business) -> str:
    return (_("👀 <b>Preview</b> — this is how customers will see your offer.") + "\n\n"
            + offer_caption(_, offer, business, datetime.now(UTC)))


def preview_keyboard(_: Translator, offer_id: int) -> Keyboard:
    """Publish, or change something first: the photo, or (Back) the answers before it; or drop it."""
    return [
        [button(_("✅ Publish"), data("bizoffer", "publish", offer_id))],
        [button(_("🖼 Change photo"), data("bizoffer", "photo", offer_id))],
        [button(_("⬅️ Back"), data("bizoffer", "back", offer_id)),
         button(_("✖️ Cancel"), data("bizoffer", "discard", offer_id))],
    ]


def deal_card(language: str, offer: Offer, business: Business, card: bytes) -> Reply:
    """The freshly rendered deal card, uploaded to the business: a draft's preview with Publish /
    Change photo / Cancel, or, for a published offer whose price changed, the card with the new price."""
    _ = Translator(language)
    if offer.status == OfferStatus.DRAFT:
        caption, keyboard = preview_caption(_, offer, business), preview_keyboard(_, offer.id)
    else:
        caption = _("🖼 Your deal card shows the new price now.") + "\n\n" + offer_caption(
            _, offer, business, datetime.now(UTC))
        keyboard = [[button(_("⚙️ Manage this offer"), data("bizoffer", "show", offer.id))]]
    return Reply(text=caption, keyboard=keyboard, photo_upload=base64.b64encode(card).decode(), kind="deal_card")


def photo_rejected(language: str, offer_id: int, reason: str) -> Reply:
    """A photo that can't be used (a reason code of domain.images.PhotoRejected), and what to do."""
    _ = Translator(language)
    text = "❗ " + photo_rejection(_, reason) + "\n\n" + _("Your offer is saved as a draft: just send another photo.")
    return Reply(text=text, keyboard=[[button(_("🖼 Send another photo"), data("bizoffer", "photo", offer_id)),
                                       button(_("✖️ Cancel"), data("bizoffer", "discard", offer_id))]])
