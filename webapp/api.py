"""The Mini App's HTTP API under /api: reads straight from Postgres, changes through the domain.

Every request carries Telegram's signed initData in ``Authorization: tma <initData>`` (webapp/auth.py).
Then each endpoint checks the caller's role: a business reads and changes only its own offers and
orders (anyone else's look missing: 404), and admin endpoints answer admins only (403). Changes
are made in one transaction with what the chat is told about them (`sources.tell_the_chat`), and an
order is handed to the reservations queue exactly as the chat's "Reserve" button hands it.

Endpoints are plain functions: Starlette runs them in its thread pool, so the database and the
broker never block the event loop.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from core.db import after_commit, session_scope
from core.handover import set_origin
from core.i18n import Translator, pick_language
from core.logging import get_logger
from core.settings import Settings
from core.telegram import TelegramError
from domain import tags
from domain.catalog import DISTANCES_KM, NEARBY_RADIUS_KM, PRICE_LIMITS_MINOR, Filters, When, search_words
from domain.money import format_money
from domain.offers import normalize_pickup_code
from domain.ratings import Summary
from models import Business, Offer, OfferStatus, Order, OrderStatus, User
from webapp import auth, sources
from webapp.errors import ApiError, error_response
from webapp.texts import texts

log = get_logger(__name__)

MAX_BODY_BYTES = 4096
REQUEST_ID = re.compile(r"[A-Za-z0-9_-]{8,64}")


@dataclass(frozen=True)
class Caller:
    user: auth.WebAppUser
    language: str
    is_admin: bool
    settings: Settings


def _now() -> datetime:
    return datetime.now(UTC)


def accept_language(request: Request) -> str:
    header = request.headers.get("accept-language", "")
    return pick_language(header.split(",")[0].split(";")[0].strip() or None)


def _remember(session: Session, user: auth.WebAppUser) -> str:
    """The caller's language: their own choice in the chat, or, at first contact (someone who opened
    the app before writing to the bot), Telegram's, recorded as the chat records it."""
    known = session.scalar(select(User.language).where(User.id == user.id))
    if known is not None:
        return known
    language = pick_language(user.language_code)
    session.execute(insert(User).values(id=user.id, first_name=user.first_name[:128], language=language)
                    .on_conflict_do_nothing(index_elements=[User.id]))
    return language


Handler = Callable[[Request, Session, Caller], Response]


def endpoint(settings: Settings, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
    """`handler` behind initData authentication, in one transaction, with refusals as JSON. The
    body is read here (bounded), the rest runs in the thread pool."""

    async def receive(request: Request) -> Response:
        if request.method == "POST":
            body = b""
            async for chunk in request.stream():
                body += chunk
                if len(body) > MAX_BODY_BYTES:
                    break
            request.scope["webapp.body"] = body
        return await run_in_threadpool(run, request)

    def run(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, init_data = header.partition(" ")
        try:
            if scheme.lower() != "tma":
                raise auth.InvalidInitData("no_tma_header")
            user = auth.validate(init_data.strip(), settings.telegram_token, now=time.time(),
                                 max_age=settings.webapp_auth_max_age_seconds)
        except auth.InvalidInitData as refused:
            log.info("webapp_unauthorized", reason=refused.reason, path=request.url.path)
            return error_response("unauthorized", accept_language(request))
        language = pick_language(user.language_code)
        committed: list[bool] = []
        response: Response | None = None
        try:
            with session_scope() as session:
                after_commit(session, lambda: committed.append(True))  # runs before the hand-overs' publish
                language = _remember(session, user)
                response = handler(request, session, Caller(user, language, user.id in settings.admin_ids, settings))
            return response
        except ApiError as refused:
            return error_response(refused.code, language, **refused.values)
        except Exception:
            if committed and response is not None:
                # Done and recorded; only publishing a hand-over failed (Redis away): the sweeper
                # (maintenance.resend_handovers) publishes it, so the answer stands.
                log.warning("webapp_handover_publish_deferred", path=request.url.path, exc_info=True)
                return response
            log.exception("webapp_error", path=request.url.path)
            return error_response("server_error", language)

    return receive


# --------------------------------------------------------------------------- reading requests


def _float(request: Request, name: str, low: float, high: float) -> float | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except ValueError:
        raise ApiError("bad_location") from None
    if not math.isfinite(value) or not low <= value <= high:
        raise ApiError("bad_location")
    return value


def _point(request: Request) -> tuple[float | None, float | None]:
    latitude, longitude = _float(request, "lat", -90, 90), _float(request, "lon", -180, 180)
    return (latitude, longitude) if latitude is not None and longitude is not None else (None, None)


def _id(request: Request, name: str = "id") -> int:
    raw = request.path_params.get(name, "")
    if not str(raw).isdigit() or len(str(raw)) > 18:
        raise ApiError("not_found")
    return int(raw)


def _body(request: Request) -> dict[str, Any]:
    """The JSON object of a POST (read in the thread pool: Starlette caches it for us)."""
    raw = request.scope.get("webapp.body", b"")
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError("bad_request")
    try:
        data = orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError:
        raise ApiError("bad_request") from None
    if not isinstance(data, dict):
        raise ApiError("bad_request")
    return data


def _request_id(body: dict[str, Any]) -> str:
    value = body.get("request_id")
    if not isinstance(value, str) or not REQUEST_ID.fullmatch(value):
        raise ApiError("bad_request")
    return value


# The /deals filters, as the chat offers them (domain.catalog.Filters), by their own names: in the
# query of GET /api/deals (a list as "a,b" or repeated) and in the body of POST /api/filters.
FILTER_PARAMETERS = Filters.NAMES
MAX_SEARCH_CHARS = 200


def _values(raw: Any) -> list[str]:
    """One filter's values from a query (strings) or a JSON body (a string, number, list or null)."""
    if raw is None:
        return []
    items = raw if isinstance(raw, list) else [raw]
    values: list[str] = []
    for item in items:
        if isinstance(item, bool) or not isinstance(item, str | int):
            raise ApiError("bad_filter")
        values += [part.strip() for part in str(item).split(",") if part.strip()]
    return values


def _one(values: list[str], allowed: Any) -> str | None:
    if len(values) > 1 or (values and values[0] not in allowed):
        raise ApiError("bad_filter")
    return values[0] if values else None


def _number(values: list[str], allowed: Container[int]) -> int | None:
    if not values:
        return None
    value = values[0]
    if len(values) > 1 or not (value.isascii() and value.isdigit() and len(value) < 10) or int(value) not in allowed:
        raise ApiError("bad_filter")
    return int(value)


def _many(values: list[str], vocabulary: tuple[str, ...]) -> tuple[str, ...]:
    if any(value not in vocabulary for value in values):
        raise ApiError("bad_filter")
    return tuple(tags.known(values, vocabulary))


def _filters(raw: dict[str, list[str]]) -> Filters:
    """Filters from each parameter's values; an unknown code or a value out of range is refused
    (422), a parameter that is not a filter is left alone."""
    words = " ".join(raw.get("words", []))
    if len(words) > MAX_SEARCH_CHARS:
        raise ApiError("bad_filter")
    when = _one(raw.get("when", []), set(When))
    return Filters(category=_one(raw.get("category", []), tags.CATEGORIES),
                   diet=_many(raw.get("diet", []), tags.DIETS), avoid=_many(raw.get("avoid", []), tags.ALLERGENS),
                   when=When(when) if when else None,
                   radius_km=_number(raw.get("radius_km", []), DISTANCES_KM),
                   max_price_minor=_number(raw.get("max_price_minor", []), range(1, 10**9)),
                   words=search_words(words))


def _query_filters(request: Request) -> Filters:
    return _filters({name: _values(request.query_params.getlist(name)) for name in FILTER_PARAMETERS})


def _filters_json(filters: Filters) -> dict[str, Any]:
    """Every filter by name, unset ones as null or [] (what the app's filter screen starts from)."""
    return {"category": filters.category, "diet": list(filters.diet), "avoid": list(filters.avoid),
            "when": filters.when.value if filters.when else None, "radius_km": filters.radius_km,
            "max_price_minor": filters.max_price_minor, "words": " ".join(filters.words)}


def _filter_choices(_: Translator) -> dict[str, Any]:
    """What the filter screen offers, worded for the reader: the chat's /deals choices."""
    return {
        "category": _labelled(_, tags.CATEGORIES, tags.CATEGORY_LABELS),
        "diet": _labelled(_, tags.DIETS, tags.DIET_LABELS),
        "avoid": _labelled(_, tags.ALLERGENS, tags.ALLERGEN_LABELS),
        "when": _labelled(_, [when.value for when in When], tags.WHEN_LABELS),
        "radius_km": [{"code": km, "label": f"{km} km"} for km in DISTANCES_KM],
        "max_price_minor": [{"code": limit, "label": _("up to {price}", price=format_money(limit, "EUR", _.language))}
                            for limit in PRICE_LIMITS_MINOR],
        "names": {name: _(label) for name, label in tags.FILTER_NAMES.items()},
        "nearby_km": int(NEARBY_RADIUS_KM),  # "near me" until a distance is chosen
    }


def _json(data: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


# --------------------------------------------------------------------------- shaping answers


def _money(minor: int, currency: str, language: str) -> dict[str, Any]:
    return {"minor": minor, "currency": currency, "text": format_money(minor, currency, language)}


def _labelled(_: Translator, codes: Any, labels: dict[str, str]) -> list[dict[str, str]]:
    """Known codes in their vocabulary's order, each with its name in the reader's language."""
    return [{"code": code, "label": _(label)} for code, label in labels.items() if code in set(codes or ())]


def _rating(_: Translator, summary: Summary | None) -> dict[str, Any] | None:
    """The business's stars, once it has enough ratings to show (as the chat's card shows them)."""
    if summary is None or not summary.shown:
        return None
    return {"average": round(summary.average, 1), "count": summary.count,
            "text": _.ngettext("⭐ {average} ({count} rating)", "⭐ {average} ({count} ratings)", summary.count,
                               average=f"{summary.average:.1f}", count=summary.count)}


def _deal(listing: sources.Listing, _: Translator, rating: Summary | None = None) -> dict[str, Any]:
    offer, business = listing.offer, listing.business
    language = _.language
    category = tags.category(offer.category)
    return {
        "id": offer.id,
        "title": offer.title,
        "description": offer.description,
        "category": {"code": category, "label": _(tags.CATEGORY_LABELS[category])} if category else None,
        "diet": _labelled(_, offer.diet, tags.DIET_LABELS),
        "allergens": _labelled(_, offer.allergens, tags.ALLERGEN_LABELS),
        "rating": _rating(_, rating),
        "photo_url": f"/api/deals/{offer.id}/photo.jpg?v={offer.version}" if offer.photo_card_file_id else None,
        "price": _money(offer.price_minor, offer.currency, language),
        "original_price": _money(offer.original_price_minor, offer.currency, language),
        "units_left": max(offer.units_left, 0),
        "max_per_order": min(max(offer.units_left, 0), sources.MAX_PER_ORDER),
        "pickup_start": offer.pickup_start.isoformat(),
        "pickup_end": offer.pickup_end.isoformat(),
        "orderable": offer.status == OfferStatus.ACTIVE and offer.units_left > 0,
        "distance_km": round(listing.distance_km, 2) if listing.distance_km is not None else None,
        "business": {"id": business.id, "name": business.name, "address": business.address,
                     "latitude": business.latitude, "longitude": business.longitude,
                     "timezone": business.timezone},
    }


def _order(order: Order, offer: Offer, business: Business, language: str) -> dict[str, Any]:
    code = sources.pass_code(order)
    return {
        "id": order.id,
        "status": order.status.value,
        "quantity": order.quantity,
        "amount": _money(order.amount_minor, order.currency, language),
        "offer": {"id": offer.id, "title": offer.title, "pickup_start": offer.pickup_start.isoformat(),
                  "pickup_end": offer.pickup_end.isoformat()},
        "business": {"id": business.id, "name": business.name, "address": business.address},
        "checkout_url": order.checkout_url if order.status == OrderStatus.HELD else None,
        "pickup_code": code,
        "qr_url": f"/api/orders/{order.id}/qr.png" if code else None,
    }


def _own_offer(offer: Offer, language: str) -> dict[str, Any]:
    return {"id": offer.id, "title": offer.title, "status": offer.status.value,
            "price": _money(offer.price_minor, offer.currency, language),
            "units_left": max(offer.units_left, 0), "units_sold": offer.units_sold, "quantity": offer.quantity,
            "pickup_start": offer.pickup_start.isoformat(), "pickup_end": offer.pickup_end.isoformat(),
            "can_pause": offer.status in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT),
            "can_resume": offer.status == OfferStatus.PAUSED}


# --------------------------------------------------------------------------- roles


def _business(session: Session, caller: Caller) -> Business:
    business = sources.business_of(session, caller.user.id)
    if business is None:
        raise ApiError("not_business")
    return business


def _admin(caller: Caller) -> None:
    if not caller.is_admin:
        raise ApiError("not_admin")


# --------------------------------------------------------------------------- endpoints


def me(_request: Request, session: Session, caller: Caller) -> Response:
    business = sources.business_of(session, caller.user.id)
    known = sources.user(session, caller.user.id)
    roles = ["customer", *(["business"] if business else []), *(["admin"] if caller.is_admin else [])]
    _ = Translator(caller.language)
    return _json({
        "id": caller.user.id, "first_name": caller.user.first_name, "language": caller.language, "roles": roles,
        "business": {"id": business.id, "name": business.name, "status": business.status.value}
        if business else None,
        "map": {"tile_url": caller.settings.map_tile_url, "attribution": caller.settings.map_attribution},
        # Where the customer last shared their location in the chat ("📍 Near me" there), if they did.
        "location": {"lat": known.latitude, "lon": known.longitude}
        if known is not None and known.latitude is not None and known.longitude is not None else None,
        "filters": _filters_json(sources.saved_filters(session, caller.user.id)),
        "filter_choices": _filter_choices(_),
        "texts": texts(caller.language),
    })


def deals(request: Request, session: Session, caller: Caller) -> Response:
    latitude, longitude = _point(request)
    found = sources.deals(session, _now(), latitude=latitude, longitude=longitude, filters=_query_filters(request))
    _ = Translator(caller.language)
    rated = sources.rating_summaries(session, {item.business.id for item in found.items})
    return _json({"deals": [_deal(item, _, rated.get(item.business.id)) for item in found.items],
                  "has_more": found.has_more, "loosen": found.loosen})


def deal(request: Request, session: Session, caller: Caller) -> Response:
    latitude, longitude = _point(request)
    listing = sources.deal(session, _id(request), latitude=latitude, longitude=longitude)
    if listing is None or listing.offer.status == OfferStatus.DRAFT:
        raise ApiError("not_found")
    business_id = listing.business.id
    return _json(_deal(listing, Translator(caller.language),
                       sources.rating_summaries(session, [business_id]).get(business_id)))


def deal_photo(request: Request, session: Session, caller: Caller) -> Response:
    """The deal's card (its photo with the price on it, as the chat shows it), from Telegram."""
    listing = sources.deal(session, _id(request), latitude=None, longitude=None)
    if listing is None or listing.offer.status == OfferStatus.DRAFT or not listing.offer.photo_card_file_id:
        raise ApiError("not_found")
    try:
        jpeg = sources.photo(listing.offer.photo_card_file_id)
    except TelegramError as error:
        log.warning("webapp_photo_unavailable", offer_id=listing.offer.id, error=str(error))
        raise ApiError("photo_unavailable") from None
    # The address carries the offer's version, which a new card changes: cached until then.
    return Response(jpeg, media_type="image/jpeg", headers={"cache-control": "private, max-age=86400"})


def save_filters(request: Request, session: Session, caller: Caller) -> Response:
    """Remember the customer's filters, where the chat's /deals keeps them: one choice for both."""
    body = _body(request)
    raw = body.get("filters")
    if not isinstance(raw, dict):
        raise ApiError("bad_request")
    filters = _filters({name: _values(raw.get(name)) for name in FILTER_PARAMETERS})
    sources.save_filters(session, caller.user.id, filters)
    return _json({"filters": _filters_json(filters)})


def place_order(request: Request, session: Session, caller: Caller) -> Response:
    body = _body(request)
    request_id = _request_id(body)
    offer_id, quantity = body.get("offer_id"), body.get("quantity", 1)
    if not isinstance(offer_id, int) or isinstance(offer_id, bool) or not 0 < offer_id < 2**63:
        raise ApiError("not_found")
    if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= sources.MAX_PER_ORDER:
        raise ApiError("bad_quantity", most=sources.MAX_PER_ORDER)
    listing = sources.deal(session, offer_id, latitude=None, longitude=None)
    if listing is None or listing.offer.status == OfferStatus.DRAFT:
        raise ApiError("not_found")
    if listing.offer.status != OfferStatus.ACTIVE or listing.offer.pickup_end <= _now():
        raise ApiError("not_orderable")
    # The reservation engine decides (sold out, not enough left, …) and says so in the chat.
    set_origin(session, f"webapp:{caller.user.id}:{request_id}")
    sources.place_order(session, offer_id, caller.user.id, quantity, f"app:{caller.user.id}:{request_id}")
    return _json({"status": "reserving", "offer_id": offer_id, "quantity": quantity}, status=202)


def my_orders(_request: Request, session: Session, caller: Caller) -> Response:
    current, past = sources.customer_orders(session, caller.user.id)
    return _json({"current": [_order(o, offer, b, caller.language) for o, offer, b in current],
                  "past": [_order(o, offer, b, caller.language) for o, offer, b in past]})


def order_qr(request: Request, session: Session, caller: Caller) -> Response:
    order = sources.order_of_customer(session, _id(request), caller.user.id)
    code = sources.pass_code(order) if order is not None else None
    if code is None:
        raise ApiError("not_found")
    username = sources.bot_username(caller.settings)
    png = sources.qr_png(sources.pickup_link(username, code) if username else code, label=code)
    return Response(png, media_type="image/png", headers={"cache-control": "private, max-age=300"})


def business_today(_request: Request, session: Session, caller: Caller) -> Response:
    business = _business(session, caller)
    today = sources.todays_orders(session, business, _now())
    return _json({
        "business": {"id": business.id, "name": business.name, "status": business.status.value},
        "offers": [{**_own_offer(offer, caller.language),
                    "orders": [{"id": o.id, "status": o.status.value, "quantity": o.quantity,
                                "amount": _money(o.amount_minor, o.currency, caller.language)}
                               for o in orders]} for offer, orders in today],
    })


def business_offers(_request: Request, session: Session, caller: Caller) -> Response:
    business = _business(session, caller)
    own = sources.own_offers(session, business)
    return _json({"offers": [_own_offer(offer, caller.language) for offer in own]})


def confirm_pickup(request: Request, session: Session, caller: Caller) -> Response:
    _business(session, caller)
    body = _body(request)
    request_id = _request_id(body)
    raw = body.get("code")
    code = normalize_pickup_code(raw) if isinstance(raw, str) and len(raw) <= 64 else ""
    if not code or not code.isalnum():
        raise ApiError("bad_code")
    offer_id = sources.offer_of_pickup_code(session, caller.user.id, code)
    if offer_id is None:
        return _json({"outcome": "not_found", "code": code})
    result = sources.confirm_pickup(session, offer_id, caller.user.id, code, _now())
    answer: dict[str, Any] = {"outcome": result.outcome, "code": code}
    if result.order is not None:
        answer["order"] = {"id": result.order.id, "quantity": result.order.quantity,
                           "offer": {"id": offer_id, "title": result.order.offer.title}}
    if result.outcome == "collected" and result.order is not None:
        sources.tell_the_chat(session, "collected", caller.user.id, result.order.id, request_id)
    return _json(answer)


def offer_action(action: str) -> Handler:
    change = sources.pause if action == "pause" else sources.resume

    def act(request: Request, session: Session, caller: Caller) -> Response:
        _business(session, caller)
        request_id = _request_id(_body(request))
        try:
            offer = change(session, _id(request), caller.user.id)
        except sources.NotOwner:
            raise ApiError("not_found") from None
        except sources.WrongState as state:
            raise ApiError("not_verified" if str(state).startswith("business_") else "wrong_state") from None
        sources.tell_the_chat(session, action, caller.user.id, offer.id, request_id)
        return _json(_own_offer(offer, caller.language))

    return act


def pending(_request: Request, session: Session, caller: Caller) -> Response:
    _admin(caller)
    return _json({"businesses": [
        {"id": b.id, "name": b.name, "address": b.address, "phone": b.phone, "latitude": b.latitude,
         "longitude": b.longitude, "created_at": b.created_at.isoformat()}
        for b in sources.pending_businesses(session)]})


def verify(request: Request, session: Session, caller: Caller) -> Response:
    _admin(caller)
    request_id = _request_id(_body(request))
    try:
        business, _paused = sources.review(session, _id(request), "verify", caller.user.id, _now())
    except sources.ReviewRefused as refused:
        raise ApiError("not_found" if refused.status is None else "already_reviewed") from None
    sources.tell_the_chat(session, "verified", caller.user.id, business.id, request_id)
    return _json({"id": business.id, "name": business.name, "status": business.status.value})


HANDLERS: dict[str, Handler] = {
    "me": me, "deals": deals, "deal": deal, "deal_photo": deal_photo, "save_filters": save_filters,
    "place_order": place_order, "my_orders": my_orders,
    "order_qr": order_qr, "business_today": business_today, "business_offers": business_offers,
    "confirm_pickup": confirm_pickup, "pause_offer": offer_action("pause"),
    "resume_offer": offer_action("resume"), "pending_businesses": pending, "verify_business": verify,
}
