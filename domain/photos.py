"""What becomes of an offer's photo while it turns into a deal card (the images task applies these).

A photo is taken for processing only while the offer still waits for that very photo; a card that
reached the owner makes the photo ready (and, on a published offer, makes customers' older buttons
stale); a photo that can't be used fails a draft, while a published offer keeps the card it had.

Where the photo comes from: sent in the chat, the offer names it by Telegram's file_id; uploaded
from the Mini App, it is a ``photo_uploads`` row that the offer names ``upload:<id>``
(`store_upload`), checked at once by what needs no decoding (`domain.images.check_header`: size,
type, pixel dimensions) and then processed by the same images task, which reads it with
`uploaded`. An upload no offer names any more is forgotten after a day (`forget_unused_uploads`).
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import delete, exists, func, literal, select
from sqlalchemy.orm import Session

from core.db import rows_affected
from domain import images
from models import Business, Offer, OfferStatus, OfferTemplate, PhotoStatus, PhotoUpload

UPLOAD_PREFIX = "upload:"
UNUSED_UPLOADS_KEPT = timedelta(days=1)
UPLOADS_PER_HOUR = 30  # a business makes a few offers a day; more photos than this in an hour is abuse


class TooManyUploads(Exception):
    """The business uploaded UPLOADS_PER_HOUR photos in the last hour already."""


def store_upload(session: Session, business: Business, data: bytes, now: datetime) -> str:
    """Keep a photo uploaded by ``business`` for the images task; its name for the offer's
    ``photo_source_file_id``. Raises ``images.PhotoRejected`` for what can be refused unread, and
    TooManyUploads past UPLOADS_PER_HOUR."""
    images.check_header(data)
    recent = session.scalar(select(func.count()).select_from(PhotoUpload).where(
        PhotoUpload.business_id == business.id, PhotoUpload.created_at > now - timedelta(hours=1)))
    if (recent or 0) >= UPLOADS_PER_HOUR:
        raise TooManyUploads(business.id)
    upload = PhotoUpload(business_id=business.id, content=bytes(data))
    session.add(upload)
    session.flush()
    return f"{UPLOAD_PREFIX}{upload.id}"


def is_upload(source: str) -> bool:
    return source.startswith(UPLOAD_PREFIX)


def upload_of(session: Session, source: str, business: Business) -> str | None:
    """``source`` if it names an upload of ``business`` (another business's, or none: None)."""
    number = source.removeprefix(UPLOAD_PREFIX) if is_upload(source) else ""
    if not number.isdigit() or len(number) > 18:
        return None
    found = session.scalar(select(PhotoUpload.id).where(PhotoUpload.id == int(number),
                                                        PhotoUpload.business_id == business.id))
    return source if found is not None else None


def uploaded(session: Session, source: str) -> bytes | None:
    """The bytes of the upload ``source`` names (None: forgotten, or not an upload)."""
    number = source.removeprefix(UPLOAD_PREFIX)
    if not is_upload(source) or not number.isdigit():
        return None
    return session.scalar(select(PhotoUpload.content).where(PhotoUpload.id == int(number)))


def forget_unused_uploads(session: Session, now: datetime) -> int:
    """Delete the uploads older than a day that no offer or repeating offer names."""
    name = literal(UPLOAD_PREFIX) + PhotoUpload.id.cast(Offer.photo_source_file_id.type)
    return rows_affected(session, delete(PhotoUpload).where(
        PhotoUpload.created_at < now - UNUSED_UPLOADS_KEPT,
        ~exists().where(Offer.photo_source_file_id == name),
        ~exists().where(OfferTemplate.photo_source_file_id == name),
    ))


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
