"""The API's routes, and the OpenAPI 3.1 document built from the same table (GET /api/openapi.json),
so the document cannot leave a route out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from domain.catalog import DISTANCES_KM, When
from domain.tags import ALLERGENS, CATEGORIES, DIETS


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: str  # the name in api.make_handlers
    summary: str
    role: str  # "customer" (anyone signed in), "business", "admin"
    params: tuple[str, ...] = ()  # query parameters
    body: dict[str, Any] | None = None  # JSON schema of the request body
    answer: str = "application/json"
    statuses: tuple[int, ...] = field(default=(200,))
    upload: bool = False  # the body is a photo's bytes (image/jpeg, image/png or image/webp), not JSON


# The /deals filters (domain.catalog.Filters), as query parameters and as the saved filters' fields.
_FILTERS: dict[str, dict[str, Any]] = {
    "category": {"type": "string", "enum": list(CATEGORIES), "description": "one category"},
    "diet": {"type": "array", "items": {"type": "string", "enum": list(DIETS)},
             "description": "every one of these diets (comma-separated, or the parameter repeated)"},
    "avoid": {"type": "array", "items": {"type": "string", "enum": list(ALLERGENS)},
              "description": "none of these allergens (comma-separated, or the parameter repeated)"},
    "when": {"type": "string", "enum": [when.value for when in When],
             "description": "pickup time in the business's time zone: open within the hour, after 17:00 today, "
                            "tomorrow"},
    "radius_km": {"type": "integer", "enum": list(DISTANCES_KM),
                  "description": "within this many km of lat/lon (nearest first: 15 km unless chosen)"},
    "max_price_minor": {"type": "integer", "minimum": 1, "maximum": 10**9 - 1,
                        "description": "at most this price, in minor units (cents)"},
    "words": {"type": "string", "maxLength": 200,
              "description": "words searched in titles, descriptions and business names (the first 5)"},
}
_PARAMETERS: dict[str, dict[str, Any]] = {
    "lat": {"type": "number", "minimum": -90, "maximum": 90, "description": "the customer's latitude"},
    "lon": {"type": "number", "minimum": -180, "maximum": 180, "description": "the customer's longitude"},
    **_FILTERS,
}
_REQUEST_ID = {"type": "string", "pattern": "^[A-Za-z0-9_-]{8,64}$",
               "description": "made by the app once per action; repeating it repeats nothing"}
_ACTION = {"type": "object", "required": ["request_id"], "properties": {"request_id": _REQUEST_ID}}
_MONEY_TEXT = {"type": "string", "maxLength": 32, "description": "as typed: 4.50, 4,50, 4 €"}
_TAGS = {
    "category": {"type": ["string", "null"], "enum": [*CATEGORIES, None]},
    "diet": {"type": "array", "items": {"type": "string", "enum": list(DIETS)}},
    "allergens": {"type": "array", "items": {"type": "string", "enum": list(ALLERGENS)}},
}
_PHOTO = {"type": "string", "description": "what POST /api/business/photos answered"}
_NEW_OFFER = {"type": "object", "required": ["title", "price", "original_price", "quantity", "day", "window", "photo",
                                             "request_id"], "properties": {
    "title": {"type": "string", "maxLength": 200}, "description": {"type": "string", "maxLength": 1000},
    "price": _MONEY_TEXT, "original_price": _MONEY_TEXT,
    "quantity": {"type": ["integer", "string"], "description": "1 to 500"},
    "day": {"type": "string", "enum": ["today", "tomorrow"]},
    "window": {"type": "string", "description": "in the business's time zone, e.g. 18:00-19:30"},
    **_TAGS, "photo": _PHOTO, "request_id": _REQUEST_ID}}
_EDIT = {"type": "object", "required": ["request_id"], "description": "only what is given changes", "properties": {
    "price": _MONEY_TEXT, "quantity": {"type": ["integer", "string"]}, **_TAGS, "request_id": _REQUEST_ID}}

OPERATIONS = (
    Operation("GET", "/api/me", "me", "Who I am: roles, language, the map's tiles, the screens' sentences", "customer"),
    Operation("GET", "/api/deals", "deals",
              "Deals I can order now, with the filters of the chat's /deals: nearest first around lat/lon (else "
              "newest), at most 20; when none match, `loosen` names the filter whose removal finds some",
              "customer", params=("lat", "lon", *_FILTERS), statuses=(200, 422)),
    Operation("GET", "/api/deals/{id}", "deal",
              "One deal, with its distance from lat/lon, allergens, diet, the business's rating and its photo's URL",
              "customer", params=("lat", "lon"), statuses=(200, 404, 422)),
    Operation("GET", "/api/deals/{id}/photo.jpg", "deal_photo", "The deal's photo (its card, as the chat shows it)",
              "customer", answer="image/jpeg", statuses=(200, 404, 502)),
    Operation("POST", "/api/filters", "save_filters",
              "Remember my filters, where the chat's /deals keeps them (both use the same)", "customer",
              body={"type": "object", "required": ["filters"], "properties": {
                  "filters": {"type": "object", "properties": _FILTERS}}}, statuses=(200, 422)),
    Operation("POST", "/api/orders", "place_order",
              "Reserve: handed to the reservations queue; the Pay link then comes in the chat and in /api/orders",
              "customer", body={"type": "object", "required": ["offer_id", "request_id"], "properties": {
                  "offer_id": {"type": "integer"}, "quantity": {"type": "integer", "minimum": 1, "maximum": 5},
                  "request_id": _REQUEST_ID}}, statuses=(202, 404, 409, 422)),
    Operation("GET", "/api/orders", "my_orders", "My orders: current (with Pay link or pickup code) and past",
              "customer"),
    Operation("GET", "/api/orders/{id}/qr.png", "order_qr", "The pickup pass of my paid order, as a QR code",
              "customer", answer="image/png", statuses=(200, 404)),
    Operation("GET", "/api/business/today", "business_today", "My business's offers of today with their orders",
              "business", statuses=(200, 403)),
    Operation("GET", "/api/business/offers", "business_offers", "My business's offers", "business",
              statuses=(200, 403)),
    Operation("POST", "/api/business/pickups", "confirm_pickup",
              "Confirm a pickup by the customer's code, or by the text of their pickup pass's QR code", "business",
              body={"type": "object", "required": ["request_id"], "properties": {
                  "code": {"type": "string", "maxLength": 64},
                  "scanned": {"type": "string", "maxLength": 512, "description": "what the QR scanner read"},
                  "request_id": _REQUEST_ID}}, statuses=(200, 403, 422)),
    Operation("POST", "/api/business/offers/{id}/pause", "pause_offer", "Pause my offer", "business", body=_ACTION,
              statuses=(200, 403, 404, 409, 422)),
    Operation("POST", "/api/business/offers/{id}/resume", "resume_offer", "Put my paused offer on sale again",
              "business", body=_ACTION, statuses=(200, 403, 404, 409, 422)),
    Operation("POST", "/api/business/offers/{id}/cancel", "cancel_offer",
              "Cancel my offer as /myoffers does (by a worker, so 202): reservations released, paid orders "
              "refunded, customers told", "business", body=_ACTION, statuses=(202, 403, 404, 409, 422)),
    Operation("POST", "/api/business/photos", "upload_photo",
              "Upload a photo for an offer (at most 20 MB): checked at once, made into the deal card later",
              "business", upload=True, statuses=(201, 403, 409, 413, 422, 429)),
    Operation("POST", "/api/business/offers", "create_offer",
              "Create an offer as /newoffer does: a draft whose deal card the images task makes from the photo",
              "business", body=_NEW_OFFER, statuses=(200, 201, 403, 409, 422)),
    Operation("GET", "/api/business/offers/{id}", "own_offer", "One of my offers, with its photo's progress",
              "business", statuses=(200, 403, 404)),
    Operation("GET", "/api/business/offers/{id}/card.jpg", "offer_card", "My offer's deal card, once it is made",
              "business", answer="image/jpeg", statuses=(200, 403, 404)),
    Operation("POST", "/api/business/offers/{id}/photo", "change_photo", "Give my draft another photo", "business",
              body={"type": "object", "required": ["photo", "request_id"],
                    "properties": {"photo": _PHOTO, "request_id": _REQUEST_ID}}, statuses=(200, 403, 404, 409, 422)),
    Operation("POST", "/api/business/offers/{id}/publish", "publish_offer",
              "Publish my draft; its followers and nearby customers are told", "business", body=_ACTION,
              statuses=(200, 403, 404, 409, 422)),
    Operation("POST", "/api/business/offers/{id}/discard", "discard_offer", "Delete my draft", "business",
              body=_ACTION, statuses=(200, 403, 404, 409, 422)),
    Operation("POST", "/api/business/offers/{id}/edit", "edit_offer",
              "Change my offer's price, quantity, category, diet or allergens, as /myoffers does", "business",
              body=_EDIT, statuses=(200, 403, 404, 409, 422)),
    Operation("GET", "/api/business/earnings", "earnings", "My earnings this week and this month", "business",
              statuses=(200, 403)),
    Operation("GET", "/api/business/earnings/chart.png", "earnings_chart", "This month's earnings as a chart",
              "business", answer="image/png", statuses=(200, 403)),
    Operation("GET", "/api/business/earnings/statement.csv", "earnings_csv", "Every money row of my business",
              "business", answer="text/csv", statuses=(200, 403)),
    Operation("GET", "/api/admin/businesses/pending", "pending_businesses", "Businesses waiting for verification",
              "admin", statuses=(200, 403)),
    Operation("POST", "/api/admin/businesses/{id}/verify", "verify_business", "Verify a business", "admin",
              body=_ACTION, statuses=(200, 403, 404, 409, 422)),
    Operation("GET", "/api/admin/stats", "admin_stats", "The figures /admin shows: offers, orders, money, queues",
              "admin", statuses=(200, 403)),
)

_STATUS_TEXT = {200: "OK", 201: "Created", 202: "Accepted: handed over", 413: "Too large",
                429: "Too many in a short time", 401: "No genuine initData (forged, tampered or stale)",
                403: "Not allowed for this role", 404: "Not found (or not yours)", 409: "Not in a state for that",
                422: "Bad input", 500: "Server error", 502: "Telegram did not give us the file"}
_ERROR = {"$ref": "#/components/schemas/Error"}


def _operation(op: Operation) -> dict[str, Any]:
    responses: dict[str, Any] = {}
    for status in (*op.statuses, 401, 500):
        if status in (200, 201, 202):
            responses[str(status)] = {"description": _STATUS_TEXT[status], "content": {op.answer: {"schema": {
                "type": "string", "format": "binary"} if op.answer != "application/json" else {"type": "object"}}}}
        else:
            responses[str(status)] = {"description": _STATUS_TEXT[status],
                                      "content": {"application/json": {"schema": _ERROR}}}
    parameters = [{"name": name, "in": "query", "required": False,
                   "description": _PARAMETERS[name]["description"],
                   "schema": {key: value for key, value in _PARAMETERS[name].items() if key != "description"},
                   **({"style": "form", "explode": False} if _PARAMETERS[name]["type"] == "array" else {})}
                  for name in op.params]
    if "{id}" in op.path:
        parameters.insert(0, {"name": "id", "in": "path", "required": True, "schema": {"type": "integer"}})
    document: dict[str, Any] = {"operationId": op.handler, "summary": op.summary, "tags": [op.role],
                                "responses": responses}
    if parameters:
        document["parameters"] = parameters
    if op.body is not None:
        document["requestBody"] = {"required": True, "content": {"application/json": {"schema": op.body}}}
    if op.upload:
        binary = {"schema": {"type": "string", "format": "binary"}}
        document["requestBody"] = {"required": True,
                                   "content": dict.fromkeys(("image/jpeg", "image/png", "image/webp"), binary)}
    return document


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method.lower()] = _operation(op)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Surplus Mini App API", "version": "1",
                 "description": "Every request is signed by Telegram: `Authorization: tma <initData>`."},
        "paths": paths,
        "components": {
            "securitySchemes": {"telegramInitData": {
                "type": "apiKey", "in": "header", "name": "Authorization",
                "description": "`tma ` followed by Telegram.WebApp.initData, checked as Telegram specifies"}},
            "schemas": {"Error": {"type": "object", "required": ["error", "message"], "properties": {
                "error": {"type": "string"},
                "message": {"type": "string", "description": "in the caller's language"}}}},
        },
        "security": [{"telegramInitData": []}],
    }
