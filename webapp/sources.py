"""Where the Mini App reads from and acts through: the domain's public functions, in one place.

The API (webapp/api.py) calls only these. Deals are found by the chat's own /deals query
(`domain.catalog.browse`, with the same filters), one query for a whole map.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from core import handover, redis_client
from core import telegram as tg
from domain import businesses, catalog, offers, photos, ratings, stats
from domain.catalog import Filters, Listing, Sort
from domain.earnings_chart import ChartWords, month_chart
from domain.images import PhotoRejected
from domain.ordering import MAX_PER_ORDER
from domain.payments import earnings
from domain.pickup_pass import bot_username, code_of_scan, pickup_link, qr_png
from models import Business, Offer, Order, OrderStatus, User

__all__ = ["MAX_PER_ORDER", "ChartWords", "Filters", "Listing", "PhotoRejected", "bot_username", "code_of_scan",
           "month_chart", "pickup_link", "qr_png"]

# The deals a map shows at once: the same 20 it showed as four of the chat's pages, pins still apart
# on a phone's map, and a list short enough to scroll.
MAP_LIMIT = 4 * catalog.PAGE_SIZE
TELL_THE_CHAT = "notifications.tell_app_action"  # chat/app_actions.py words it, in the chat


@dataclass(frozen=True)
class Deals:
    items: list[Listing]
    has_more: bool
    loosen: str | None  # nothing matched: the one filter whose removal finds something


def deals(session: Session, now: datetime, *, latitude: float | None, longitude: float | None,
          filters: Filters | None = None) -> Deals:
    """What a customer can order now, matching the filters: nearest first around a point (within the
    chosen distance, else the catalogue's radius), else newest first; MAP_LIMIT of them, in the one
    query the chat's /deals runs for a page."""
    sort = Sort.NEAREST if latitude is not None and longitude is not None else Sort.NEWEST
    found = catalog.browse(session, now, sort, latitude=latitude, longitude=longitude, filters=filters,
                           size=MAP_LIMIT)
    return Deals(found.items, found.has_next, found.loosen)


def deal(session: Session, offer_id: int, *, latitude: float | None, longitude: float | None) -> Listing | None:
    return catalog.offer_listing(session, offer_id, latitude=latitude, longitude=longitude)


def customer_orders(session: Session, customer_id: int) -> tuple[list, list]:
    return catalog.customer_orders(session, customer_id)


def business_of(session: Session, owner_id: int) -> Business | None:
    return businesses.business_of(session, owner_id)


def todays_orders(session: Session, business: Business, now: datetime) -> list[tuple[Offer, list[Order]]]:
    """The business's offers whose pickup window touches today (in its time zone), each with its
    orders still held, paid or collected."""
    zone = ZoneInfo(business.timezone)
    start = now.astimezone(zone).replace(hour=0, minute=0, second=0, microsecond=0)
    end = start + timedelta(days=1)
    today = [offer for offer in offers.offers_of(session, business, limit=50)
             if offer.pickup_start < end and offer.pickup_end > start and offer.status != offers.OfferStatus.DRAFT]
    return [(offer, offers.orders_of_offer(session, offer.id, business.owner_id)) for offer in today]


def own_offers(session: Session, business: Business) -> list[Offer]:
    return offers.offers_of(session, business)


def order_of_customer(session: Session, order_id: int, customer_id: int) -> Order | None:
    order = session.get(Order, order_id)
    return order if order is not None and order.customer_id == customer_id else None


def pass_code(order: Order) -> str | None:
    """The pickup code of an order that is still to be collected."""
    return order.pickup_code if order.status == OrderStatus.PAID else None


def user(session: Session, user_id: int) -> User | None:
    return session.get(User, user_id)


def place_order(session: Session, offer_id: int, customer_id: int, quantity: int, request_key: str) -> None:
    """Hand the reservation over to the reservations queue after this transaction commits, as the
    chat's "Reserve" button does; the Pay button (or why not) then arrives in the chat."""
    handover.enqueue_after_commit(session, "reservations.place_order", offer_id, customer_id, quantity, request_key)


CANCEL_TASK = "payments.cancel_offer"  # chat/app_actions.py: the chat's cancellation, in a worker


def cancel_offer(session: Session, offer_id: int, owner_id: int, request_key: str) -> Offer:
    """Hand the offer's cancellation over, after this transaction commits, to the worker that does it
    as the chat's "🗑 Cancel offer" does (domain.payments.cancel_offer: reservations released, paid
    orders refunded, every customer told in their chat, which only a worker can word). NotOwner, or
    WrongState when it can't be cancelled (any more)."""
    offer = offers.owned_offer(session, offer_id, owner_id)
    if offer.status not in offers.CANCELLABLE:
        raise offers.WrongState(offer.status.value)
    handover.enqueue_after_commit(session, CANCEL_TASK, owner_id, offer.id, request_key)
    return offer


def tell_the_chat(session: Session, action: str, user_id: int, subject_id: int, request_key: str) -> None:
    """What was done in the app, told in the chat too (after the commit, durably)."""
    handover.enqueue_after_commit(session, TELL_THE_CHAT, action, user_id, subject_id, request_key)


saved_filters = catalog.saved_filters
save_filters = catalog.save_filters
rating_summaries = ratings.summaries
offer_of_pickup_code = offers.offer_of_pickup_code
confirm_pickup = offers.confirm_pickup
pause = offers.pause
resume = offers.resume
pending_businesses = businesses.pending
review = businesses.review
NotOwner = offers.NotOwner
WrongState = offers.WrongState
ReviewRefused = businesses.ReviewRefused


# --------------------------------------------------------------------------- the business dashboard

# The chat's photos go the same way (chat/business/newoffer.py): the card is made, and sent to the
# owner's chat as the preview, by this task.
IMAGES_TASK = "images.process_offer_photo"

# What a business types, checked by the rules /newoffer and /myoffers apply.
parse_title = offers.parse_title
parse_description = offers.parse_description
parse_money = offers.parse_money
check_discount = offers.check_discount
parse_quantity = offers.parse_quantity
pickup_day = offers.pickup_day
parse_time_window = offers.parse_time_window

owned_offer = offers.owned_offer
store_photo = photos.store_upload
own_upload = photos.upload_of
publish = offers.publish
discard_draft = offers.discard_draft
edit_price = offers.edit_price
edit_quantity = offers.edit_quantity
edit_tags = offers.edit_tags
TAGGABLE = offers.TAGGABLE
statement = earnings.statement
statement_csv = earnings.statement_csv
InvalidInput = offers.InvalidInput
PublishRefused = offers.PublishRefused
TooManyUploads = photos.TooManyUploads
DraftFields = offers.DraftFields


def offer_with_photo(session: Session, business: Business, source: str) -> Offer | None:
    """The business's offer made with this photo already: one photo, one offer, so an app that
    sends its "create" twice (a lost answer, a second tap) makes one offer."""
    return session.scalar(select(Offer).where(Offer.business_id == business.id,
                                              Offer.photo_source_file_id == source).limit(1))


def draft_with_photo(session: Session, business: Business, fields: offers.DraftFields | None, offer_id: int | None,
                     source: str) -> Offer:
    """A new draft with its photo (``fields`` given), or a draft's new photo (``offer_id``), as the
    chat's photo step saves it; the images task makes its card after the commit."""
    offer = offers.save_draft_photo(session, business, fields, offer_id, source)
    handover.enqueue_after_commit(session, IMAGES_TASK, offer.id, source)
    return offer


def remake_card(session: Session, offer: Offer) -> bool:
    """After a price change the card shows the old price: made again from the offer's photo."""
    if not offers.request_card_rerender(session, offer) or not offer.photo_source_file_id:
        return False
    handover.enqueue_after_commit(session, IMAGES_TASK, offer.id, offer.photo_source_file_id)
    return True


def admin_stats(session: Session, now: datetime) -> stats.Stats:
    """What /admin shows: offers, orders and money today, businesses waiting, queue lengths."""
    return stats.collect(session, now, redis_client.client())


CARDS_KEPT = 64  # deal cards (~100 kB each) kept in memory, so a dashboard's reloads cost no download
_cards: OrderedDict[str, bytes] = OrderedDict()
_cards_lock = threading.Lock()


def card_jpeg(file_id: str) -> bytes | None:
    """An offer's deal card, by the file_id Telegram gave it when it was sent to the owner (None:
    Telegram does not know it any more)."""
    with _cards_lock:
        if file_id in _cards:
            _cards.move_to_end(file_id)
            return _cards[file_id]
    try:
        content = tg.telegram_api().download_file(file_id)
    except tg.BadRequest:
        return None
    with _cards_lock:
        _cards[file_id] = content
        while len(_cards) > CARDS_KEPT:
            _cards.popitem(last=False)
    return content
