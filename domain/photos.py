"""What becomes of an offer's photo while it turns into a deal card (the images task applies these).

A photo is taken for processing only while the offer still waits for that very photo; a card that
reached the owner makes the photo ready (and, on a published offer, makes customers' older buttons
stale); a photo that can't be used fails a draft, while a published offer keeps the card it had.
"""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from models import Offer, OfferStatus, PhotoStatus


def claim(session: Session, offer_id: int, file_id: str) -> Offer | None:
    """The offer, locked, if it is still waiting for this photo and nobody is processing it now;
    None when it was done before, replaced by a newer photo, or is in hand elsewhere."""
    return session.execute(
        select(Offer)
        .where(Offer.id == offer_id, Offer.photo_source_file_id == file_id,
               Offer.photo_status == PhotoStatus.PROCESSING)
        .with_for_update(skip_locked=True)
    ).scalar_one_or_none()


def card_shown(offer: Offer, card_file_id: str | None) -> None:
    """The card reached the owner: Telegram's file_id for it is the offer's photo from now on."""
    offer.photo_card_file_id = card_file_id
    offer.photo_status = PhotoStatus.READY
    offer.photo_error = None
    if offer.status != OfferStatus.DRAFT:
        offer.version += 1  # customers' buttons made before the new card are stale now


def card_undeliverable(offer: Offer) -> None:
    """The owner blocked the bot: nobody to show a preview to. A draft's photo failed; a published
    offer goes on with the card it had."""
    offer.photo_status = PhotoStatus.FAILED if offer.status == OfferStatus.DRAFT else PhotoStatus.READY
    offer.photo_error = "undeliverable"


def rejected(offer: Offer, reason: str) -> bool:
    """The photo can't be used. True when the owner must be told (the offer has no card to show);
    a published offer with a card keeps it, and nothing needs saying."""
    if offer.status != OfferStatus.DRAFT and offer.photo_card_file_id:
        offer.photo_status = PhotoStatus.READY
        return False
    offer.photo_status = PhotoStatus.FAILED
    offer.photo_error = reason
    return True
