"""The `images` queue: an offer's photo becomes its deal card.

Download the photo from Telegram (or, uploaded from the Mini App, read it from Postgres:
domain.photos), validate and render it (domain.images), upload the card once to
the business's chat as the preview, and keep the uploaded photo's file_id on the offer so showing
it later costs no upload. A photo that can't be used marks the offer's photo failed with the reason
and tells the business, in their language, what to send instead; the offer stays a draft.

The preview is an outbox message like every other, but sent at once inside this task's transaction
(`outbox.deliver_now`, with the outbox's rate limits and its handling of 429, 403 and 400): the
file_id Telegram returns is stored with the card in the same commit, and the offer's row stays
locked until then, so a quick tap on the preview's Publish waits for the card instead of hearing
"not ready". A blocked owner leaves the photo `undeliverable`; a card Telegram refuses is a
rejection the business is told about; flood control retries the task after the wait.

Idempotent: the offer row is taken only while its photo is still `processing` from this very
file_id (FOR UPDATE SKIP LOCKED), and held until the result is stored. A redelivered or duplicate
task finds it ready, failed, replaced by a newer photo, or being handled right now, and does
nothing. Only a crash between the upload and the commit can upload a second preview (the preview's
outbox row rolls back with the offer, so the redelivered task sends it again).
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from chat.messages.offers import deal_card, photo_rejected
from core import outbox
from core import telegram as tg
from core.db import session_scope
from core.logging import get_logger
from domain import images, photos
from domain.images import PhotoRejected
from models import Offer, User
from tasks.app import app
from tasks.base import BaseTask
from tasks.notifications import after_earlier_messages

log = get_logger(__name__)

PREVIEW_MAX_WAIT = 20.0  # seconds this task may wait its turn under the rate limits, else it retries


def _file_key(file_id: str) -> str:
    return hashlib.sha256(file_id.encode()).hexdigest()[:16]


@app.task(name="images.process_offer_photo", base=BaseTask, bind=True, max_retries=20)
def process_offer_photo(self: BaseTask, offer_id: int, file_id: str) -> str:
    started = datetime.now(UTC)
    with session_scope() as session:
        offer = photos.claim(session, offer_id, file_id)
        if offer is None:
            return "nothing_to_do"  # done before, replaced by a newer photo, or in hand elsewhere
        business = offer.business
        owner = session.get(User, business.owner_id)
        language = owner.language if owner else "en"

        if photos.is_upload(file_id):  # uploaded from the Mini App: kept in Postgres
            raw = photos.uploaded(session, file_id)
            if raw is None:
                return _rejected(session, offer, language, started, PhotoRejected("empty_file", "upload forgotten"))
        else:
            try:
                raw = tg.telegram_api().download_file(file_id)
            except tg.BadRequest as error:  # e.g. "file is too big" (over the Bot API's 20 MB)
                reason = "too_large_file" if "too big" in error.message.lower() else "corrupt"
                return _rejected(session, offer, language, started, PhotoRejected(reason, error.message))
            except (tg.TimedOut, tg.NetworkError) as error:
                raise self.retry(countdown=min(60, 2 ** self.request.retries), exc=error) from error

        try:
            processed = images.process_offer_photo(
                raw, price_minor=offer.price_minor, original_price_minor=offer.original_price_minor,
                currency=offer.currency, title=offer.title, locale=language,
            )
        except PhotoRejected as rejection:
            return _rejected(session, offer, language, started, rejection)

        after_earlier_messages(business.owner_id, started)
        # Once per run of this task (its retries and redeliveries keep the id): a later run for the
        # same photo, after a price change, uploads the new card.
        key = f"offer:{offer.id}:photo:{_file_key(file_id)}:card:{self.request.id or uuid.uuid4()}"
        try:
            sent = outbox.deliver_now(session, key, business.owner_id,
                                      deal_card(language, offer, business, processed.card),
                                      max_wait=PREVIEW_MAX_WAIT)
        except outbox.RetryLater as wait:  # rolls back: the preview's row goes with this attempt
            countdown = wait.delay + 1 if wait.pacing else min(60, 2 ** self.request.retries)
            raise self.retry(countdown=countdown, exc=wait) from wait
        return _card_sent(session, offer, sent, language=language, started=started, processed=processed)


def _card_sent(session: Session, offer: Offer, sent: outbox.Sent, *, language: str, started: datetime,
               processed: images.ProcessedPhoto) -> str:
    """Store what became of the deal card sent to the owner as the preview."""
    if sent.delivery is outbox.Delivery.ALREADY_DONE:
        return "nothing_to_do"  # this run's card was sent and stored before
    if sent.blocked:  # the owner blocked the bot: nobody to show a preview to
        log.warning("photo_preview_undeliverable", offer_id=offer.id, error=sent.error)
        photos.card_undeliverable(offer)
        return "undeliverable"
    if sent.delivery is outbox.Delivery.DROPPED:  # Telegram refused the card itself: say so
        log.error("photo_preview_refused", offer_id=offer.id, error=sent.error)
        return _rejected(session, offer, language, started, PhotoRejected("corrupt", sent.error or ""))
    photos.card_shown(offer, sent.photo)
    log.info("offer_photo_ready", offer_id=offer.id, photo=repr(processed))
    return "ready"


def _rejected(session: Session, offer: Offer, language: str, started: datetime, rejection: PhotoRejected) -> str:
    log.info("offer_photo_rejected", offer_id=offer.id, reason=rejection.reason, detail=rejection.detail)
    if not photos.rejected(offer, rejection.reason):
        return f"rejected:{rejection.reason}"  # a published offer keeps the card it had
    after_earlier_messages(offer.business.owner_id, started)
    outbox.notify(
        session, f"offer:{offer.id}:photo:{_file_key(offer.photo_source_file_id or '')}:rejected",
        offer.business.owner_id, photo_rejected(language, offer.id, rejection.reason),
    )
    return f"rejected:{rejection.reason}"
