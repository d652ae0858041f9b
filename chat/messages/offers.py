"""Offers as the domain announces them: new deals to followers and nearby customers, photo results."""

from __future__ import annotations

from chat.cards import format_distance, offer_caption
from chat.registry import data
from core.i18n import Translator
from core.outbox import Reply, button, renders
from domain.announcements import DealAlert


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
    return Reply(text=caption, photo=offer.photo_card_file_id, keyboard=keyboard, kind="announcement")

