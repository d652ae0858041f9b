"""Where the Mini App reads from and acts through: the domain's public functions, in one place.

The API (webapp/api.py) calls only these. Deals are found by the chat's own /deals query
(`domain.catalog.browse`, with the same filters), one query for a whole map.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from core import handover
from core.telegram import telegram_api
from domain import businesses, catalog, offers, ratings
from domain.catalog import Filters, Listing, Sort
from domain.ordering import MAX_PER_ORDER
from domain.pickup_pass import bot_username, pickup_link, qr_png
from models import Business, Offer, Order, OrderStatus, User

__all__ = ["MAX_PER_ORDER", "Filters", "Listing", "bot_username", "pickup_link", "qr_png"]

# The deals a map shows at once: the same 20 it showed as four of the chat's pages, pins still apart
# on a phone's map, and a list short enough to scroll.
MAP_LIMIT = 4 * catalog.PAGE_SIZE
PHOTOS_CACHED = 64  # deal cards (about 100 kB each) kept in memory, so a card is fetched from Telegram once
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


@lru_cache(maxsize=PHOTOS_CACHED)
def photo(file_id: str) -> bytes:
    """A deal card's JPEG, from Telegram (where the images task uploaded it): Telegram errors
    (core.telegram's) are the caller's to answer, and are not cached."""
    return telegram_api().download_file(file_id)


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
