"""The `/v1/...` endpoints, as the official stripe library calls them.

Each request passes, in order: injected API faults, authentication, parameter decoding, the
Idempotency-Key layer (POST only), the operation, then an injected delay if one was armed.
The delay comes after the work so it behaves like a lost answer: the object exists, and the
client's retry with the same key gets the saved response replayed.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import fnmatch
import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import errors, objects, params
from .connect import Destination
from .state import FakeState, RequestContext

logger = logging.getLogger(__name__)

# description and metadata are accepted as Stripe does; the fake keeps no product objects.
_PRODUCT_DATA = {"name": None, "description": None, "metadata": None}
_LINE_ITEM = {
    "price_data": {"currency": None, "unit_amount": None, "product_data": _PRODUCT_DATA},
    "quantity": None,
}
SESSION_CREATE_PARAMS = {
    "mode": None,
    "line_items": [_LINE_ITEM],
    "success_url": None,
    "cancel_url": None,
    "client_reference_id": None,
    "metadata": None,
    "expires_at": None,
    "customer_email": None,
    "payment_intent_data": {"metadata": None, "description": None, "application_fee_amount": None,
                            "transfer_data": {"destination": None}, "transfer_group": None},
    "locale": None,
    "payment_method_types": None,
    "submit_type": None,
    "customer_creation": None,
    "billing_address_collection": None,
    "expand": None,
}
REFUND_CREATE_PARAMS = dict.fromkeys(("payment_intent", "charge", "amount", "reason", "metadata", "expand",
                                      "reverse_transfer", "refund_application_fee"))
ACCOUNT_CREATE_PARAMS = {
    "type": None, "country": None, "email": None, "metadata": None, "default_currency": None,
    "business_profile": {"name": None, "url": None, "mcc": None, "product_description": None},
    "capabilities": {"card_payments": {"requested": None}, "transfers": {"requested": None}},
    "business_type": None, "expand": None,
}
ACCOUNT_UPDATE_PARAMS = {"metadata": None, "business_profile": {"name": None}, "expand": None}
ACCOUNT_LINK_PARAMS = dict.fromkeys(("account", "refresh_url", "return_url", "type", "collect", "expand"))
REFUND_REASONS = ("duplicate", "fraudulent", "requested_by_customer")
_PAGINATION = {"limit": None, "starting_after": None, "ending_before": None, "expand": None}
_CURRENCY = re.compile(r"[a-z]{3}")


@dataclass(frozen=True)
class ApiCall:
    params: dict[str, Any]
    path_params: dict[str, str]
    context: RequestContext
    page_base_url: str  # where the hosted checkout page is reachable
    stripe_account: str | None = None  # the Stripe-Account header: a call made as a connected account


Operation = Callable[[ApiCall], dict[str, Any]]


class StripeApi:
    def __init__(self, state: FakeState, *, public_url: str | None = None) -> None:
        self._state = state
        self._public_url = public_url.rstrip("/") if public_url else None

    def routes(self) -> list[Route]:
        def route(path: str, method: str, operation: Operation) -> Route:
            return Route(path, self._endpoint(operation), methods=[method])

        return [
            route("/v1/checkout/sessions", "POST", self.create_checkout_session),
            route("/v1/checkout/sessions", "GET", self.list_checkout_sessions),
            route("/v1/checkout/sessions/{id}", "GET", self.retrieve_checkout_session),
            route("/v1/checkout/sessions/{id}/expire", "POST", self.expire_checkout_session),
            route("/v1/checkout/sessions/{id}/line_items", "GET", self.list_line_items),
            route("/v1/payment_intents/{id}", "GET", self.retrieve_payment_intent),
            route("/v1/charges/{id}", "GET", self.retrieve_charge),
            route("/v1/refunds", "POST", self.create_refund),
            route("/v1/refunds", "GET", self.list_refunds),
            route("/v1/refunds/{id}", "GET", self.retrieve_refund),
            route("/v1/events", "GET", self.list_events),
            route("/v1/accounts", "POST", self.create_account),
            route("/v1/accounts/{id}", "GET", self.retrieve_account),
            route("/v1/accounts/{id}", "POST", self.update_account),
            route("/v1/account_links", "POST", self.create_account_link),
            route("/v1/transfers", "GET", self.list_transfers),
            route("/v1/transfers/{id}", "GET", self.retrieve_transfer),
            route("/v1/application_fees", "GET", self.list_application_fees),
            route("/v1/application_fees/{id}", "GET", self.retrieve_application_fee),
            route("/v1/payouts", "GET", self.list_payouts),
            route("/v1/balance_transactions", "GET", self.list_balance_transactions),
            route("/v1/events/{id}", "GET", self.retrieve_event),
            # Anything else under /v1 gets Stripe's JSON 404, never Starlette's text 404/405.
            Route("/v1/{rest:path}", self._endpoint(None), methods=["GET", "POST", "DELETE", "PUT", "PATCH"]),
        ]

    # ------------------------------------------------------------ pipeline

    def _endpoint(self, operation: Operation | None) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            request_id = objects.new_id("req_", 14)
            fault = self._state.take_fault(("api_error", "rate_limit", "delay"), request.method, request.url.path)
            replayed_from = None
            try:
                if fault is not None and fault.kind == "api_error":
                    raise errors.internal_error("An unknown error occurred (injected by the local Stripe fake).")
                if fault is not None and fault.kind == "rate_limit":
                    raise errors.rate_limited()
                api_key = self._authenticate(request)
                if operation is None:
                    raise errors.unrecognized_url(request.method, request.url.path)
                raw = await request.body() if request.method == "POST" else request.url.query
                idempotency_key = request.headers.get("idempotency-key") if request.method == "POST" else None
                call = ApiCall(
                    params=params.decode(raw),
                    path_params=dict(request.path_params),
                    context=RequestContext(request_id, idempotency_key),
                    page_base_url=self._public_url or str(request.base_url).rstrip("/"),
                    stripe_account=request.headers.get("stripe-account"),
                )
                if idempotency_key:
                    fingerprint = json.dumps([request.method, request.url.path, call.params], sort_keys=True)
                    status, body, replayed_from = self._state.run_idempotent(
                        (api_key, idempotency_key), fingerprint, request_id, lambda: self._run(operation, call)
                    )
                else:
                    status, body = self._run(operation, call)
            except errors.StripeApiError as exc:
                status, body = exc.status, _to_json(exc.body())
            except Exception:
                logger.exception("stripe fake: unexpected failure on %s %s", request.method, request.url.path)
                status, body = 500, _to_json(errors.internal_error().body())
            if fault is not None and fault.kind == "delay":
                await asyncio.sleep(fault.delay_seconds)
            return self._response(request, status, body, request_id, replayed_from)

        return endpoint

    @staticmethod
    def _run(operation: Operation, call: ApiCall) -> tuple[int, bytes]:
        return 200, _to_json(operation(call))

    @staticmethod
    def _response(request: Request, status: int, body: bytes, request_id: str, replayed_from: str | None) -> Response:
        headers = {
            "Request-Id": request_id,
            "Stripe-Version": request.headers.get("stripe-version", objects.API_VERSION),
        }
        if request.headers.get("idempotency-key") and request.method == "POST":
            headers["Idempotency-Key"] = request.headers["idempotency-key"]
        if replayed_from is not None:
            headers["Idempotent-Replayed"] = "true"
            headers["Original-Request"] = replayed_from
        return Response(body, status_code=status, headers=headers, media_type="application/json")

    def _authenticate(self, request: Request) -> str:
        scheme, _, credentials = request.headers.get("authorization", "").partition(" ")
        key = ""
        if scheme.lower() == "bearer":
            key = credentials.strip()
        elif scheme.lower() == "basic":  # `curl -u sk_test_...:`
            try:
                key = base64.b64decode(credentials.strip()).decode("utf-8").partition(":")[0]
            except (binascii.Error, UnicodeDecodeError):
                key = ""
        if not key:
            raise errors.missing_api_key()
        expected = self._state.api_key
        if (expected is not None and key != expected) or (expected is None and not key.startswith("sk_test_")):
            raise errors.invalid_api_key(key)
        return key

    # ------------------------------------------------------------ helpers

    def _expand(self, obj: dict[str, Any], call: ApiCall) -> dict[str, Any]:
        for path in params.string_list(call.params.get("expand"), "expand"):
            self._expand_path(obj, path.split("."), path)
        return obj

    def _expand_path(self, node: dict[str, Any], parts: list[str], full_path: str) -> None:
        head, rest = parts[0], parts[1:]
        if node.get("object") == "list" and head == "data":
            for item in node["data"]:
                if rest:
                    self._expand_path(item, rest, full_path)
            return
        if head == "line_items" and node.get("object") == "checkout.session":
            items = self._state.line_items(node["id"])
            node["line_items"] = objects.list_object(items, f"/v1/checkout/sessions/{node['id']}/line_items")
        elif isinstance(node.get(head), str):
            found = self._state.find(node[head])
            if found is None:
                raise errors.invalid_param("expand", f"This property cannot be expanded ({full_path}).")
            node[head] = found
        elif head not in node:
            raise errors.invalid_param("expand", f"This property cannot be expanded ({full_path}).")
        value = node[head]
        if rest and isinstance(value, dict):
            self._expand_path(value, rest, full_path)

    def _list(
        self, kind: str, call: ApiCall, url: str, where: Callable[[dict[str, Any]], bool]
    ) -> dict[str, Any]:
        p = call.params
        limit = params.integer(p.get("limit"), "limit", minimum=1) or 10
        if limit > 100:
            raise errors.invalid_param("limit", "This value must be less than or equal to 100.")
        data, has_more = self._state.list(
            kind,
            limit=limit,
            starting_after=params.string(p.get("starting_after"), "starting_after"),
            ending_before=params.string(p.get("ending_before"), "ending_before"),
            where=where,
        )
        return self._expand(objects.list_object(data, url, has_more), call)

    # ------------------------------------------------- checkout sessions

    def create_checkout_session(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, SESSION_CREATE_PARAMS)
        mode = params.string(p.get("mode"), "mode", required=True, choices=("payment", "setup", "subscription"))
        if mode != "payment":
            raise errors.invalid_param("mode", "The local Stripe fake supports only mode=payment.")
        raw_items = p.get("line_items")
        if not raw_items:
            raise errors.missing_param("line_items")
        intent_data = p.get("payment_intent_data") or {}
        optional = {
            "locale": params.string(p.get("locale"), "locale"),
            "payment_method_types": params.string_list(p.get("payment_method_types"), "payment_method_types") or None,
            "submit_type": params.string(
                p.get("submit_type"), "submit_type", choices=("auto", "book", "donate", "pay", "subscribe")
            ),
            "customer_creation": params.string(
                p.get("customer_creation"), "customer_creation", choices=("always", "if_required")
            ),
            "billing_address_collection": params.string(
                p.get("billing_address_collection"), "billing_address_collection", choices=("auto", "required")
            ),
        }
        destination = _destination(intent_data)
        session = self._state.create_checkout_session(
            page_base_url=call.page_base_url,
            destination=destination,
            line_items=[_line_item(item, f"line_items[{i}]") for i, item in enumerate(raw_items)],
            expires_at=params.integer(p.get("expires_at"), "expires_at"),
            payment_intent_metadata=params.metadata(intent_data.get("metadata"), "payment_intent_data[metadata]"),
            payment_intent_description=params.string(
                intent_data.get("description"), "payment_intent_data[description]"
            ),
            mode=mode,
            success_url=params.string(p.get("success_url"), "success_url"),
            cancel_url=params.string(p.get("cancel_url"), "cancel_url"),
            client_reference_id=params.string(p.get("client_reference_id"), "client_reference_id"),
            customer_email=params.string(p.get("customer_email"), "customer_email"),
            metadata=params.metadata(p.get("metadata")),
            # Only what the caller set; the rest keeps the object's defaults.
            **{name: value for name, value in optional.items() if value is not None},
        )
        return self._expand(session, call)

    def retrieve_checkout_session(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("checkout.session", call.path_params["id"], param="session"), call)

    def list_checkout_sessions(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, {**_PAGINATION, "payment_intent": None, "status": None, "created": None})
        intent = params.string(p.get("payment_intent"), "payment_intent")
        status = params.string(p.get("status"), "status", choices=("open", "complete", "expired"))
        created = params.created_filter(p.get("created"))

        def where(session: dict[str, Any]) -> bool:
            return (
                (intent is None or session["payment_intent"] == intent)
                and (status is None or session["status"] == status)
                and params.created_matches(session["created"], created)
            )

        return self._list("checkout.session", call, "/v1/checkout/sessions", where)

    def expire_checkout_session(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.expire_session(call.context, call.path_params["id"]), call)

    def list_line_items(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, _PAGINATION)
        session_id = call.path_params["id"]
        items = self._state.line_items(session_id)
        limit = params.integer(call.params.get("limit"), "limit", minimum=1) or 10
        url = f"/v1/checkout/sessions/{session_id}/line_items"
        return self._expand(objects.list_object(items[:limit], url, len(items) > limit), call)

    # ------------------------------------------------- payment intents, charges

    def retrieve_payment_intent(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None, "client_secret": None})
        return self._expand(self._state.get("payment_intent", call.path_params["id"], param="intent"), call)

    def retrieve_charge(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("charge", call.path_params["id"], param="charge"), call)

    # ------------------------------------------------------------ refunds

    def create_refund(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, REFUND_CREATE_PARAMS)
        refund = self._state.create_refund(
            call.context,
            payment_intent=params.string(p.get("payment_intent"), "payment_intent"),
            charge=params.string(p.get("charge"), "charge"),
            amount=params.integer(p.get("amount"), "amount", minimum=1),
            reason=params.string(p.get("reason"), "reason", choices=REFUND_REASONS),
            metadata=params.metadata(p.get("metadata")),
            reverse_transfer=params.boolean(p.get("reverse_transfer"), "reverse_transfer"),
            refund_application_fee=params.boolean(p.get("refund_application_fee"), "refund_application_fee"),
        )
        return self._expand(refund, call)

    def retrieve_refund(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("refund", call.path_params["id"], param="refund"), call)

    def list_refunds(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, {**_PAGINATION, "payment_intent": None, "charge": None, "created": None})
        intent = params.string(p.get("payment_intent"), "payment_intent")
        charge = params.string(p.get("charge"), "charge")
        created = params.created_filter(p.get("created"))

        def where(refund: dict[str, Any]) -> bool:
            return (
                (intent is None or refund["payment_intent"] == intent)
                and (charge is None or refund["charge"] == charge)
                and params.created_matches(refund["created"], created)
            )

        return self._list("refund", call, "/v1/refunds", where)

    # ------------------------------------------------------------ Connect

    def create_account(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, ACCOUNT_CREATE_PARAMS)
        profile = p.get("business_profile") or {}
        account = self._state.create_account(
            account_type=params.string(p.get("type"), "type", required=True, choices=("custom", "express", "standard")),
            country=(params.string(p.get("country"), "country") or "DE").upper(),
            email=params.string(p.get("email"), "email"),
            business_name=params.string(profile.get("name"), "business_profile[name]"),
            metadata=params.metadata(p.get("metadata")),
            default_currency=params.string(p.get("default_currency"), "default_currency"),
        )
        return self._expand(account, call)

    def retrieve_account(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("account", call.path_params["id"], param="account"), call)

    def update_account(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, ACCOUNT_UPDATE_PARAMS)
        profile = p.get("business_profile") or {}
        account = self._state.update_account(
            call.context, call.path_params["id"],
            metadata=params.metadata(p.get("metadata")) if "metadata" in p else None,
            business_name=params.string(profile.get("name"), "business_profile[name]"),
        )
        return self._expand(account, call)

    def create_account_link(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, ACCOUNT_LINK_PARAMS)
        return self._state.create_account_link(
            account_id=params.string(p.get("account"), "account", required=True),
            refresh_url=params.string(p.get("refresh_url"), "refresh_url", required=True),
            return_url=params.string(p.get("return_url"), "return_url", required=True),
            link_type=params.string(p.get("type"), "type", required=True),
            page_base_url=call.page_base_url,
        )

    def list_transfers(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, {**_PAGINATION, "destination": None, "transfer_group": None, "created": None})
        destination = params.string(p.get("destination"), "destination")
        group = params.string(p.get("transfer_group"), "transfer_group")
        created = params.created_filter(p.get("created"))

        def where(transfer: dict[str, Any]) -> bool:
            return ((destination is None or transfer["destination"] == destination)
                    and (group is None or transfer["transfer_group"] == group)
                    and params.created_matches(transfer["created"], created))

        return self._list("transfer", call, "/v1/transfers", where)

    def retrieve_transfer(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("transfer", call.path_params["id"], param="transfer"), call)

    def list_application_fees(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, {**_PAGINATION, "charge": None, "created": None})
        charge = params.string(p.get("charge"), "charge")
        created = params.created_filter(p.get("created"))

        def where(fee: dict[str, Any]) -> bool:
            return (charge is None or fee["charge"] == charge) and params.created_matches(fee["created"], created)

        return self._list("application_fee", call, "/v1/application_fees", where)

    def retrieve_application_fee(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("application_fee", call.path_params["id"], param="id"), call)

    def list_payouts(self, call: ApiCall) -> dict[str, Any]:
        """A connected account's payouts (called with its Stripe-Account header)."""
        params.reject_unknown(call.params, {**_PAGINATION, "status": None, "created": None})
        mine = {p["id"] for p in self._state.payouts_of(self._connected(call))}
        return self._list("payout", call, "/v1/payouts", lambda payout: payout["id"] in mine)

    def list_balance_transactions(self, call: ApiCall) -> dict[str, Any]:
        """A connected account's balance transactions (called with its Stripe-Account header)."""
        params.reject_unknown(call.params, {**_PAGINATION, "type": None, "created": None})
        mine = set(self._state.transactions_of(self._connected(call)))
        kind = params.string(call.params.get("type"), "type")
        return self._list("balance_transaction", call, "/v1/balance_transactions",
                          lambda txn: txn["id"] in mine and (kind is None or txn["type"] == kind))

    def _connected(self, call: ApiCall) -> str:
        if not call.stripe_account:
            raise errors.invalid_request("The local Stripe fake keeps balances only for connected accounts: "
                                         "send the Stripe-Account header.")
        self._state.get("account", call.stripe_account, param="account")
        return call.stripe_account

    # ------------------------------------------------------------- events

    def retrieve_event(self, call: ApiCall) -> dict[str, Any]:
        params.reject_unknown(call.params, {"expand": None})
        return self._expand(self._state.get("event", call.path_params["id"]), call)

    def list_events(self, call: ApiCall) -> dict[str, Any]:
        p = call.params
        params.reject_unknown(p, {**_PAGINATION, "type": None, "types": None, "created": None})
        # `type` may use `*` as a wildcard ("checkout.session.*"), as Stripe allows.
        patterns = params.string_list(p.get("types"), "types")
        single = params.string(p.get("type"), "type")
        if single:
            patterns = [*patterns, single]
        created = params.created_filter(p.get("created"))

        def where(event: dict[str, Any]) -> bool:
            type_ok = not patterns or any(fnmatch.fnmatchcase(event["type"], pattern) for pattern in patterns)
            return type_ok and params.created_matches(event["created"], created)

        return self._list("event", call, "/v1/events", where)


def _destination(intent_data: dict[str, Any]) -> Destination | None:
    transfer_data = intent_data.get("transfer_data") or {}
    account = params.string(transfer_data.get("destination"), "payment_intent_data[transfer_data][destination]")
    fee = params.integer(intent_data.get("application_fee_amount"), "payment_intent_data[application_fee_amount]",
                         minimum=0)
    if account is None:
        if fee is not None:
            raise errors.invalid_param("payment_intent_data[application_fee_amount]",
                                       "An application fee needs a destination (transfer_data[destination]).")
        return None
    return Destination(account, fee, params.string(intent_data.get("transfer_group"),
                                                   "payment_intent_data[transfer_group]"))


def _line_item(item: dict[str, Any], path: str) -> dict[str, Any]:
    price_data = item.get("price_data")
    if not isinstance(price_data, dict):
        raise errors.missing_param(f"{path}[price_data]")
    currency = params.string(price_data.get("currency"), f"{path}[price_data][currency]", required=True).lower()
    if not _CURRENCY.fullmatch(currency):
        raise errors.invalid_param(f"{path}[price_data][currency]", f"Invalid currency: {currency}.")
    product = price_data.get("product_data")
    if not isinstance(product, dict):
        raise errors.missing_param(f"{path}[price_data][product_data]")
    return {
        "name": params.string(product.get("name"), f"{path}[price_data][product_data][name]", required=True),
        "unit_amount": params.integer(
            price_data.get("unit_amount"), f"{path}[price_data][unit_amount]", required=True, minimum=0
        ),
        "quantity": params.integer(item.get("quantity"), f"{path}[quantity]", required=True, minimum=1),
        "currency": currency,
    }


def _to_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, indent=2).encode("utf-8")
