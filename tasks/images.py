"""The `images` queue: an offer's photo becomes its deal card.

Download the photo from Telegram, validate and render it (domain.images), upload the card once to
the business's chat as the preview, and keep the uploaded photo's file_id on the offer so showing
it later costs no upload. A photo that can't be used marks the offer's photo failed with the reason
and tells the business, in their language, what to send instead; the offer stays a draft.

Idempotent: the offer row is taken only while its photo is still `processing` from this very
file_id (FOR UPDATE SKIP LOCKED), and held until the result is stored. A redelivered or duplicate
task finds it ready, failed, replaced by a newer photo, or being handled right now, and does
nothing. Only a crash between the upload and the commit can upload a second preview.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

from sqlalchemy import select

from chat.business.newoffer import preview_caption, preview_keyboard
from chat.business.texts import photo_rejection
from chat.cards import offer_caption
from chat.registry import data
from core.outbox import Reply, button
from core import metrics
from core import telegram as tg
from core.db import session_scope
from core.i18n import Translator
from core.logging import get_logger
from core.ratelimit import RateLimitTimeout, rate_limiter
from core import outbox
from domain import images
from domain.images import PhotoRejected
from models import Offer, OfferStatus, PhotoStatus, User
from tasks.app import app
from tasks.base import BaseTask
from tasks.notifications import after_earlier_messages

log = get_logger(__name__)


def _file_key(file_id: str) -> str:
    return hashlib.sha256(file_id.encode()).hexdigest()[:16]


@app.task(name="images.process_offer_photo", base=BaseTask, bind=True, max_retries=8)
def process_offer_photo(self: BaseTask, offer_id: int, file_id: str) -> str:
    started = datetime.now(UTC)
    with session_scope() as session:
        offer = session.execute(
            select(Offer)
            .where(Offer.id == offer_id, Offer.photo_source_file_id == file_id,
                   Offer.photo_status == PhotoStatus.PROCESSING)
            .with_for_update(skip_locked=True)
        ).scalar_one_or_none()
        if offer is None:
            return "nothing_to_do"  # done before, replaced by a newer photo, or in hand elsewhere
        business = offer.business
        owner = session.get(User, business.owner_id)
        _ = Translator(owner.language if owner else "en")
        api = tg.telegram_api()

        try:
            raw = api.download_file(file_id)
        except tg.BadRequest as error:  # e.g. "file is too big" (over the Bot API's 20 MB)
            reason = "too_large_file" if "too big" in error.message.lower() else "corrupt"
            return _rejected(session, offer, _, started, PhotoRejected(reason, error.message))
        except (tg.TimedOut, tg.NetworkError) as error:
            raise self.retry(countdown=min(60, 2 ** self.request.retries), exc=error) from error

        try:
            processed = images.process_offer_photo(
                raw, price_minor=offer.price_minor, original_price_minor=offer.original_price_minor,
                currency=offer.currency, title=offer.title,
            )
        except PhotoRejected as rejection:
            return _rejected(session, offer, _, started, rejection)

        if offer.status == OfferStatus.DRAFT:
            caption, keyboard = preview_caption(_, offer, business), preview_keyboard(_, offer.id)
        else:  # a published offer whose price changed: the card now shows the new price
            caption = _("🖼 Your deal card shows the new price now.") + "\n\n" + offer_caption(
                _, offer, business, _now())
            keyboard = [[button(_("⚙️ Manage this offer"), data("bizoffer", "show", offer.id))]]
        after_earlier_messages(business.owner_id, started)
        try:
            rate_limiter().acquire(business.owner_id, max_wait=20)
            message = api.send_photo(business.owner_id, processed.card, caption=caption, keyboard=keyboard)
        except RateLimitTimeout as error:
            raise self.retry(countdown=5, exc=error) from error
        except tg.RetryAfter as error:
            metrics.TELEGRAM_FLOOD.inc()
            rate_limiter().penalize(tg.retry_after_seconds(error))
            raise self.retry(countdown=tg.retry_after_seconds(error) + 1, exc=error) from error
        except tg.Forbidden as error:  # the owner blocked the bot: nobody to show a preview to
            log.warning("photo_preview_undeliverable", offer_id=offer_id, error=error.message)
            offer.photo_status = PhotoStatus.FAILED if offer.status == OfferStatus.DRAFT else PhotoStatus.READY
            offer.photo_error = "undeliverable"
            return "undeliverable"
        except tg.BadRequest as error:  # Telegram refused the card itself: say so rather than spin
            log.error("photo_preview_refused", offer_id=offer_id, error=error.message)
            return _rejected(session, offer, _, started, PhotoRejected("corrupt", error.message))
        except (tg.TimedOut, tg.NetworkError) as error:
            raise self.retry(countdown=min(60, 2 ** self.request.retries), exc=error) from error
        offer.photo_card_file_id = message.photo[-1].file_id
        offer.photo_status = PhotoStatus.READY
        offer.photo_error = None
        if offer.status != OfferStatus.DRAFT:
            offer.version += 1  # customers' buttons made before the new card are stale now
        log.info("offer_photo_ready", offer_id=offer_id, photo=repr(processed))
        return "ready"


def _rejected(session, offer: Offer, _: Translator, started: datetime, rejection: PhotoRejected) -> str:
    log.info("offer_photo_rejected", offer_id=offer.id, reason=rejection.reason, detail=rejection.detail)
    if offer.status != OfferStatus.DRAFT and offer.photo_card_file_id:
        offer.photo_status = PhotoStatus.READY  # a published offer keeps the card it had
        return f"rejected:{rejection.reason}"
    offer.photo_status = PhotoStatus.FAILED
    offer.photo_error = rejection.reason
    text = "❗ " + photo_rejection(_, rejection.reason) + "\n\n" + _(
        "Your offer is saved as a draft: just send another photo.")
    after_earlier_messages(offer.business.owner_id, started)
    outbox.notify(
        session, f"offer:{offer.id}:photo:{_file_key(offer.photo_source_file_id or '')}:rejected",
        offer.business.owner_id,
        Reply(text=text, keyboard=[[button(_("🖼 Send another photo"), data("bizoffer", "photo", offer.id)),
                                    button(_("✖️ Cancel"), data("bizoffer", "discard", offer.id))]]),
    )
    return f"rejected:{rejection.reason}"


def _now() -> datetime:
    return datetime.now(UTC)
