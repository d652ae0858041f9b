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

import hashlib
import math
import re
import time
from collections.abc import Awaitable, Callable, Container
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import bindparam, select
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
from models import Business, BusinessStatus, Offer, OfferStatus, Order, OrderStatus, PhotoStatus, User
from webapp import auth, dashboard_texts, sources
from webapp.errors import ApiError, error_response, photo_message
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


# Built once: every request reads it (bench/report.md, section 9).
_LANGUAGE = select(User.language).where(User.id == bindparam("id"))


def _remember(session: Session, user: auth.WebAppUser) -> str:
    """The caller's language: their own choice in the chat, or, at first contact (someone who opened
    the app before writing to the bot), Telegram's, recorded as the chat records it."""
    known = session.scalar(_LANGUAGE, {"id": user.id})
    if known is not None:
        return known
    language = pick_language(user.language_code)
    session.execute(insert(User).values(id=user.id, first_name=user.first_name[:128], language=language)
                    .on_conflict_do_nothing(index_elements=[User.id]))
    return language


Handler = Callable[[Request, Session, Caller], Response]


def endpoint(settings: Settings, handler: Handler, max_body: int = MAX_BODY_BYTES,
             ) -> Callable[[Request], Awaitable[Response]]:
    """`handler` behind initData authentication, in one transaction, with refusals as JSON. The
    caller is authenticated and the body read here (bounded by ``max_body``: past it, reading stops
    and ``webapp.body_too_large`` is set), the rest runs in the thread pool."""

    async def receive(request: Request) -> Response:
        header = request.headers.get("authorization", "")
        scheme, _, init_data = header.partition(" ")
        try:  # before the body is read: nobody uploads anything unsigned
            if scheme.lower() != "tma":
                raise auth.InvalidInitData("no_tma_header")
            user = auth.validate(init_data.strip(), settings.telegram_token, now=time.time(),
                                 max_age=settings.webapp_auth_max_age_seconds)
        except auth.InvalidInitData as refused:
            log.info("webapp_unauthorized", reason=refused.reason, path=request.url.path)
            return error_response("unauthorized", accept_language(request))
        if request.method == "POST":
            chunks: list[bytes] = []
            size = 0
            declared = request.headers.get("content-length", "")
            too_large = declared.isdigit() and int(declared) > max_body
            if not too_large:
                async for chunk in request.stream():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size > max_body:
                        too_large = True
                        break
            request.scope["webapp.body"] = b"".join(chunks)
            request.scope["webapp.body_too_large"] = too_large
        return await run_in_threadpool(run, request, user)

    def run(request: Request, user: auth.WebAppUser) -> Response:
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
            return error_response(refused.code, language, field=refused.field, rule=refused.rule, **refused.values)
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


_EDITABLE = (OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT)  # price and quantity, as in /myoffers


def _card_url(offer: Offer) -> str | None:
    """Where the app gets the offer's deal card; the address changes with the card, so it can be kept."""
    card = offer.photo_card_file_id
    return f"/api/business/offers/{offer.id}/card.jpg?v={hashlib.sha256(card.encode()).hexdigest()[:12]}" \
        if card else None


def _own_offer(offer: Offer, language: str) -> dict[str, Any]:
    failed = offer.photo_status == PhotoStatus.FAILED
    return {"id": offer.id, "title": offer.title, "description": offer.description, "status": offer.status.value,
            "price": _money(offer.price_minor, offer.currency, language),
            "original_price": _money(offer.original_price_minor, offer.currency, language),
            "units_left": max(offer.units_left, 0), "units_sold": offer.units_sold, "units_held": offer.units_held,
            "quantity": offer.quantity,
            "pickup_start": offer.pickup_start.isoformat(), "pickup_end": offer.pickup_end.isoformat(),
            "category": offer.category, "diet": list(offer.diet), "allergens": list(offer.allergens),
            "photo": {"status": offer.photo_status.value,
                      "problem": photo_message(language, offer.photo_error) if failed else None,
                      "card_url": _card_url(offer)},
            "can_pause": offer.status in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT),
            "can_resume": offer.status == OfferStatus.PAUSED,
            "can_cancel": offer.status in _EDITABLE,
            "can_publish": offer.status == OfferStatus.DRAFT and offer.photo_status == PhotoStatus.READY,
            "is_draft": offer.status == OfferStatus.DRAFT,
            "can_edit": offer.status in _EDITABLE,
            "can_edit_tags": offer.status in sources.TAGGABLE}


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
        "business": {"id": business.id, "name": business.name, "status": business.status.value,
                     "timezone": business.timezone} if business else None,
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
        jpeg = sources.card_jpeg(listing.offer.photo_card_file_id)
    except TelegramError as error:
        log.warning("webapp_photo_unavailable", offer_id=listing.offer.id, error=str(error))
        raise ApiError("photo_unavailable") from None
    if jpeg is None:  # Telegram no longer has it
        raise ApiError("not_found")
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
    scanned = body.get("scanned")
    if isinstance(scanned, str) and len(scanned) <= 512:  # the text of a QR code the camera read
        code = sources.code_of_scan(scanned, sources.bot_username(caller.settings)) or ""
        if not code.isalnum():
            raise ApiError("bad_scan")
    else:
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


def cancel_offer(request: Request, session: Session, caller: Caller) -> Response:
    """The chat's "🗑 Cancel offer", after the app asked "are you sure": checked here, done by a worker
    as the chat does it (sources.cancel_offer), so the answer is 202 and the app watches the offer
    until it is cancelled; the owner's chat gets the chat's note."""
    _business(session, caller)
    request_id = _request_id(_body(request))
    try:
        offer = sources.cancel_offer(session, _id(request), caller.user.id, request_id)
    except sources.NotOwner:
        raise ApiError("not_found") from None
    except sources.WrongState:
        raise ApiError("wrong_state") from None
    return _json({**_own_offer(offer, caller.language), "cancelling": True}, status=202)


# --------------------------------------------------------------------------- the dashboard: offers made in the app
# The same rules as /newoffer and /myoffers (domain.offers), the photo made into a card by the same
# images task, and the chat told of each change (chat/app_actions.py).


def _verified_business(session: Session, caller: Caller) -> Business:
    """The caller's business, if it may post offers (as /newoffer asks)."""
    business = _business(session, caller)
    if business.status != BusinessStatus.VERIFIED:
        raise ApiError("not_verified")
    return business


def _checked(field: str, parse: Callable[..., Any], *args: Any) -> Any:
    """A domain rule applied to a field; its refusal names the field and the rule."""
    try:
        return parse(*args)
    except sources.InvalidInput as refused:
        raise ApiError("invalid", field=field, rule=refused.code, **refused.values) from None


def _text(body: dict[str, Any], name: str) -> str:
    value = body.get(name, "")
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ApiError("bad_request")
    return value


def _codes(body: dict[str, Any], name: str) -> list[str]:
    value = body.get(name) or []
    if not isinstance(value, list) or len(value) > 32:
        raise ApiError("bad_request")
    return [code for code in value if isinstance(code, str)]


def _category(body: dict[str, Any]) -> str | None:
    value = body.get("category")
    if value is not None and not isinstance(value, str):
        raise ApiError("bad_request")
    return value


def _draft_fields(body: dict[str, Any], business: Business) -> sources.DraftFields:
    """The answers /newoffer asks for, checked by the same rules, in the same order."""
    title = _checked("title", sources.parse_title, _text(body, "title"))
    description = _checked("description", sources.parse_description, _text(body, "description"))
    price = _checked("price", sources.parse_money, _text(body, "price"), business.currency)
    original = _checked("original_price", sources.parse_money, _text(body, "original_price"), business.currency)
    _checked("original_price", sources.check_discount, price, original)
    quantity = _checked("quantity", sources.parse_quantity, _text(body, "quantity"))
    moment = _now()
    day = _checked("window", sources.pickup_day, _text(body, "day"), business.timezone, moment)
    start, end = _checked("window", sources.parse_time_window, _text(body, "window"), day, business.timezone, moment)
    return sources.DraftFields(title=title, description=description, price_minor=price, original_price_minor=original,
                               quantity=quantity, pickup_start=start, pickup_end=end, category=_category(body),
                               diet=_codes(body, "diet"), allergens=_codes(body, "allergens"))


def _photo(session: Session, body: dict[str, Any], business: Business) -> str:
    """The photo the app uploaded for this offer (POST /api/business/photos), if it is this business's."""
    source = body.get("photo")
    if not isinstance(source, str) or not source:
        raise ApiError("no_photo", field="photo")
    if sources.own_upload(session, source, business) is None:
        raise ApiError("photo_gone", field="photo")
    return source


def upload_photo(request: Request, session: Session, caller: Caller) -> Response:
    business = _verified_business(session, caller)
    if request.scope.get("webapp.body_too_large"):
        raise ApiError("bad_photo", field="photo", rule="too_large_file")
    try:
        source = sources.store_photo(session, business, request.scope.get("webapp.body", b""), _now())
    except sources.PhotoRejected as rejected:
        raise ApiError("bad_photo", field="photo", rule=rejected.reason) from None
    except sources.TooManyUploads:
        raise ApiError("too_many_uploads", field="photo") from None
    return _json({"photo": source}, status=201)


def create_offer(request: Request, session: Session, caller: Caller) -> Response:
    business = _verified_business(session, caller)
    body = _body(request)
    request_id = _request_id(body)
    fields = _draft_fields(body, business)
    source = _photo(session, body, business)
    made = sources.offer_with_photo(session, business, source)
    if made is not None:  # this request was answered before (or the photo is another offer's already)
        return _json(_own_offer(made, caller.language))
    offer = sources.draft_with_photo(session, business, fields, None, source)
    sources.tell_the_chat(session, "created", caller.user.id, offer.id, request_id)
    return _json(_own_offer(offer, caller.language), status=201)


def _my_offer(request: Request, session: Session, caller: Caller) -> Offer:
    """The offer the path names, if it is the caller's (another business's looks missing)."""
    _business(session, caller)
    try:
        return sources.owned_offer(session, _id(request), caller.user.id)
    except sources.NotOwner:
        raise ApiError("not_found") from None


def own_offer(request: Request, session: Session, caller: Caller) -> Response:
    return _json(_own_offer(_my_offer(request, session, caller), caller.language))


def offer_card(request: Request, session: Session, caller: Caller) -> Response:
    offer = _my_offer(request, session, caller)
    card = sources.card_jpeg(offer.photo_card_file_id) if offer.photo_card_file_id else None
    if card is None:
        raise ApiError("not_found")
    return Response(card, media_type="image/jpeg",
                    headers={"cache-control": "private, max-age=86400"})  # its address changes with the card


def change_photo(request: Request, session: Session, caller: Caller) -> Response:
    business = _verified_business(session, caller)
    body = _body(request)
    _request_id(body)
    source = _photo(session, body, business)
    try:
        offer = sources.draft_with_photo(session, business, None, _id(request), source)
    except sources.NotOwner:
        raise ApiError("not_found") from None
    except sources.WrongState:
        raise ApiError("not_draft") from None
    return _json(_own_offer(offer, caller.language))


def publish_offer(request: Request, session: Session, caller: Caller) -> Response:
    _business(session, caller)
    request_id = _request_id(_body(request))
    try:
        offer = sources.publish(session, _id(request), caller.user.id, _now())
    except sources.NotOwner:
        raise ApiError("not_found") from None
    except sources.PublishRefused as refused:
        raise ApiError(refused.reason) from None
    # The chat's worker tells the offer's audience (domain.announcements), as the chat's Publish does.
    sources.tell_the_chat(session, "published", caller.user.id, offer.id, request_id)
    return _json(_own_offer(offer, caller.language))


def discard_offer(request: Request, session: Session, caller: Caller) -> Response:
    _business(session, caller)
    request_id = _request_id(_body(request))
    offer_id = _id(request)
    try:
        gone = sources.discard_draft(session, offer_id, caller.user.id)
    except sources.NotOwner:
        raise ApiError("not_found") from None
    if not gone:
        raise ApiError("not_draft")
    sources.tell_the_chat(session, "discarded", caller.user.id, offer_id, request_id)
    return _json({"id": offer_id, "status": "discarded"})


def edit_offer(request: Request, session: Session, caller: Caller) -> Response:
    """What /myoffers lets a business change, in one go: price, quantity, and what the offer is."""
    _business(session, caller)
    body = _body(request)
    request_id = _request_id(body)
    offer_id = _id(request)
    try:
        offer = sources.owned_offer(session, offer_id, caller.user.id)
        changes = [name for name in ("price", "quantity", "category", "diet", "allergens") if name in body]
        if not changes:
            raise ApiError("nothing_to_change")
        if {"category", "diet", "allergens"} & set(changes):  # what is not given stays as it is
            offer = sources.edit_tags(
                session, offer_id, caller.user.id,
                category=_category(body) if "category" in body else offer.category,
                diet=_codes(body, "diet") if "diet" in body else list(offer.diet),
                allergens=_codes(body, "allergens") if "allergens" in body else list(offer.allergens))
        if "price" in changes:
            price = _checked("price", sources.parse_money, _text(body, "price"), offer.currency)
            if price != offer.price_minor:
                offer = _checked("price", sources.edit_price, session, offer_id, caller.user.id, price)
                sources.remake_card(session, offer)
        if "quantity" in changes:
            quantity = _checked("quantity", sources.parse_quantity, _text(body, "quantity"))
            offer = _checked("quantity", sources.edit_quantity, session, offer_id, caller.user.id, quantity)
    except sources.NotOwner:
        raise ApiError("not_found") from None
    except sources.WrongState:
        raise ApiError("wrong_state") from None
    sources.tell_the_chat(session, "edited", caller.user.id, offer.id, request_id)
    return _json(_own_offer(offer, caller.language))


# --------------------------------------------------------------------------- the dashboard: earnings


def _statement(session: Session, caller: Caller) -> Any:
    _business(session, caller)
    statement = sources.statement(session, caller.user.id, _now())
    if statement is None:  # erased between the two reads
        raise ApiError("not_business")
    return statement


def earnings(_request: Request, session: Session, caller: Caller) -> Response:
    """This week and this month, as "💶 Earnings" in /myoffers shows them (domain.payments.earnings)."""
    statement = _statement(session, caller)
    language = caller.language

    def period(figures: Any) -> dict[str, Any]:
        return {name: _money(getattr(figures, name), statement.currency, language)
                for name in ("gross", "refunds", "fee", "net", "paid_out")}

    return _json({
        "currency": statement.currency, "connected": statement.connected,
        "week": {**period(statement.week), "since": dashboard_texts.day_label(statement.week_start, language)},
        "month": {**period(statement.month), "name": dashboard_texts.month_label(statement.month_start, language)},
        "days": [{"day": day.day.isoformat(), "gross": day.gross, "net": day.net} for day in statement.days],
        "chart_url": "/api/business/earnings/chart.png", "csv_url": "/api/business/earnings/statement.csv",
    })


def earnings_chart(_request: Request, session: Session, caller: Caller) -> Response:
    statement = _statement(session, caller)
    png = sources.month_chart(statement, dashboard_texts.chart_words(statement, caller.language), caller.language)
    return Response(png, media_type="image/png")


def earnings_csv(_request: Request, session: Session, caller: Caller) -> Response:
    _business(session, caller)
    exported = sources.statement_csv(session, caller.user.id)
    if exported is None:
        raise ApiError("not_business")
    name = f"statement-{_now().strftime('%Y%m%d-%H%M')}.csv"
    return Response(exported[0], media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{name}"'})


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


def admin_stats(_request: Request, session: Session, caller: Caller) -> Response:
    """The figures at the top of /admin (domain.stats)."""
    _admin(caller)
    figures = sources.admin_stats(session, _now())
    return _json({
        "active_offers": figures.active_offers, "orders_today": figures.orders_today,
        "paid_today": figures.paid_today, "pending_businesses": figures.pending_businesses,
        "revenue_today": [_money(amount, currency, caller.language)
                          for currency, amount in figures.revenue_today.items()],
        "queues": figures.queues,
    })


HANDLERS: dict[str, Handler] = {
    "me": me, "deals": deals, "deal": deal, "deal_photo": deal_photo, "save_filters": save_filters,
    "place_order": place_order, "my_orders": my_orders,
    "order_qr": order_qr, "business_today": business_today, "business_offers": business_offers,
    "confirm_pickup": confirm_pickup, "pause_offer": offer_action("pause"),
    "resume_offer": offer_action("resume"), "cancel_offer": cancel_offer,
    "upload_photo": upload_photo, "create_offer": create_offer, "own_offer": own_offer, "offer_card": offer_card,
    "change_photo": change_photo, "publish_offer": publish_offer, "discard_offer": discard_offer,
    "edit_offer": edit_offer, "earnings": earnings, "earnings_chart": earnings_chart, "earnings_csv": earnings_csv,
    "pending_businesses": pending, "verify_business": verify, "admin_stats": admin_stats,
}
