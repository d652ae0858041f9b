"""Everything the fake remembers, behind one lock.

`FakeState` owns the stored objects, the fake clock, idempotency records, injected faults, the
webhook endpoint and its delivery queue. Every public method takes `self.lock` (re-entrant), so
an API call runs atomically: two concurrent requests with one Idempotency-Key cannot both
create an object, and the webhook thread never sees half an update. Nothing here does I/O while
holding the lock.
"""

from __future__ import annotations

import builtins
import copy
import fnmatch
import heapq
import itertools
import json
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from . import errors, objects
from .connect import ConnectMixin, Destination

OBJECT_KINDS = (
    "checkout.session", "payment_intent", "charge", "refund", "event",
    # Connect (connect.py)
    "account", "transfer", "transfer_reversal", "application_fee", "fee_refund", "payout", "balance_transaction",
)
MIN_SESSION_LIFETIME = 30 * 60
MAX_SESSION_LIFETIME = 24 * 60 * 60
# The client computes expires_at a moment before the fake checks it; don't fail "exactly 30 min".
EXPIRES_AT_GRACE = 5
DEFAULT_CUSTOMER_EMAIL = "customer@example.com"
FAULT_KINDS = ("api_error", "rate_limit", "delay", "card_decline")


@dataclass(frozen=True)
class RequestContext:
    """Who caused a change; events copy it into `event.request` as Stripe does."""

    request_id: str | None = None
    idempotency_key: str | None = None


# Customer actions (the hosted page) and Stripe's own (expiry, settlement) have no API request.
NO_REQUEST = RequestContext()


@dataclass
class Fault:
    id: str
    kind: str
    path: str  # fnmatch pattern on the URL path, e.g. "/v1/checkout/sessions*"
    method: str | None
    remaining: int | None  # None: until cleared
    delay_seconds: float
    decline_code: str

    def matches(self, kinds: tuple[str, ...], method: str, path: str) -> bool:
        if self.kind not in kinds:
            return False
        if self.kind == "card_decline":
            return True  # Declines hit payment attempts, not API paths.
        return (self.method is None or self.method == method) and fnmatch.fnmatchcase(path, self.path)


@dataclass
class WebhookConfig:
    url: str
    secret: str
    duplicates: int = 1  # every event is delivered this many times
    out_of_order: bool = False  # hold events for `reorder_window` s, then deliver newest first
    reorder_window: float = 0.2
    drop_first_attempts: int = 0  # the first N attempts per delivery are sent but counted as timeouts
    enabled_events: list[str] = field(default_factory=lambda: ["*"])
    max_attempts: int = 6
    retry_base_delay: float = 1.0  # attempt n+1 waits retry_base_delay * 2**(n-1)
    timeout: float = 10.0

    def wants(self, event_type: str) -> bool:
        return any(fnmatch.fnmatchcase(event_type, pattern) for pattern in self.enabled_events)


@dataclass(order=True)
class ScheduledDelivery:
    due: float  # time.monotonic()
    order: int  # tie-break; negative numbers deliver a held batch newest first
    event_id: str = field(compare=False)
    event_type: str = field(compare=False)
    copy: int = field(compare=False)
    attempt: int = field(compare=False)
    payload: bytes = field(compare=False)


@dataclass(frozen=True)
class DeliveryJob:
    delivery: ScheduledDelivery
    config: WebhookConfig
    generation: int  # deliveries started before a reset are not recorded after it


@dataclass(frozen=True)
class AttemptOutcome:
    status: str  # succeeded | failed | timeout | connection_error
    http_status: int | None
    error: str | None
    duration_ms: int


@dataclass
class SessionExtras:
    """What Stripe keeps about a session but does not put on the object."""

    line_items: list[dict[str, Any]]
    payment_intent_metadata: dict[str, str]
    payment_intent_description: str | None
    last_decline: str | None = None
    settle_at: float | None = None
    settle_outcome: str | None = None
    destination: Destination | None = None  # a destination charge (Connect)


@dataclass(frozen=True)
class IdempotentResponse:
    fingerprint: str
    status: int
    body: bytes
    request_id: str


@dataclass(frozen=True)
class PaymentResult:
    session: dict[str, Any]
    decline: errors.StripeApiError | None = None


class FakeState(ConnectMixin):
    def __init__(self, *, api_key: str | None = None, webhook: WebhookConfig | None = None) -> None:
        self.lock = threading.RLock()
        self._deliveries_changed = threading.Condition(self.lock)
        self.api_key = api_key  # None: any sk_test_ key is accepted
        self._startup_webhook = webhook
        self._generation = 0
        self._clear()

    def _clear(self) -> None:
        self._clock_offset = 0.0
        self._objects: dict[str, dict[str, dict[str, Any]]] = {kind: {} for kind in OBJECT_KINDS}
        self._session_extras: dict[str, SessionExtras] = {}
        self._idempotency: dict[tuple[str, str], IdempotentResponse] = {}
        self._faults: list[Fault] = []
        self._fault_ids = itertools.count(1)
        self.webhook = copy.deepcopy(self._startup_webhook)
        self._queue: list[ScheduledDelivery] = []
        self._delivery_order = itertools.count(1)
        self._in_flight = 0
        self._attempt_log: list[dict[str, Any]] = []
        self._reorder_release = 0.0
        self._generation += 1
        self._clear_connect()

    def reset(self) -> None:
        """Forget all objects, events, keys, faults and deliveries; restore the startup webhook."""
        with self.lock:
            self._clear()
            self._deliveries_changed.notify_all()

    # ----------------------------------------------------------------- clock

    def now(self) -> float:
        return time.time() + self._clock_offset

    def timestamp(self) -> int:
        return int(self.now())

    def advance_clock(self, seconds: float) -> int:
        """Move the fake clock forward; sessions past expires_at expire, due settlements run."""
        with self.lock:
            self._clock_offset += seconds
            self.tick()
            return self.timestamp()

    def tick(self) -> None:
        with self.lock:
            now = self.now()
            for session in list(self._objects["checkout.session"].values()):
                if session["status"] == "open" and session["expires_at"] <= now:
                    self._expire(session, NO_REQUEST)
            for session_id, extras in self._session_extras.items():
                if extras.settle_at is not None and extras.settle_at <= now:
                    self._settle(self._objects["checkout.session"][session_id], extras.settle_outcome or "succeeded")

    # --------------------------------------------------------------- objects

    def _store(self, obj: dict[str, Any]) -> None:
        self._objects[obj["object"]][obj["id"]] = obj

    def _require(self, kind: str, object_id: str, *, param: str = "id") -> dict[str, Any]:
        obj = self._objects[kind].get(object_id)
        if obj is None:
            name = "checkout session" if kind == "checkout.session" else kind
            raise errors.no_such(name, object_id, param=param)
        return obj

    def get(self, kind: str, object_id: str, *, param: str = "id") -> dict[str, Any]:
        with self.lock:
            self.tick()
            return copy.deepcopy(self._require(kind, object_id, param=param))

    def find(self, object_id: str) -> dict[str, Any] | None:
        with self.lock:
            kind = objects.kind_of_id(object_id)
            obj = self._objects[kind].get(object_id) if kind else None
            return copy.deepcopy(obj) if obj else None

    def all_objects(self, kind: str | None = None) -> list[dict[str, Any]]:
        with self.lock:
            kinds = [kind] if kind else list(OBJECT_KINDS)
            return [copy.deepcopy(obj) for name in kinds for obj in self._objects.get(name, {}).values()]

    def line_items(self, session_id: str) -> list[dict[str, Any]]:
        with self.lock:
            self._require("checkout.session", session_id, param="session")
            return copy.deepcopy(self._session_extras[session_id].line_items)

    def last_decline(self, session_id: str) -> str | None:
        with self.lock:
            return self._session_extras[session_id].last_decline if session_id in self._session_extras else None

    # Named as Stripe names its list calls; below this point in the class, the built-in is `builtins.list`.
    def list(
        self,
        kind: str,
        *,
        limit: int,
        starting_after: str | None,
        ending_before: str | None,
        where: Callable[[dict[str, Any]], bool],
    ) -> tuple[list[dict[str, Any]], bool]:
        """Newest first, cursor-paginated like every Stripe list."""
        with self.lock:
            self.tick()
            newest_first = [obj for obj in reversed(self._objects[kind].values()) if where(obj)]
            ids = [obj["id"] for obj in newest_first]
            if starting_after:
                if starting_after not in self._objects[kind]:
                    raise errors.no_such(kind, starting_after, param="starting_after")
                start = ids.index(starting_after) + 1 if starting_after in ids else len(ids)
                page = newest_first[start : start + limit]
                has_more = start + limit < len(newest_first)
            elif ending_before:
                if ending_before not in self._objects[kind]:
                    raise errors.no_such(kind, ending_before, param="ending_before")
                end = ids.index(ending_before) if ending_before in ids else 0
                page = newest_first[max(end - limit, 0) : end]
                has_more = end - limit > 0
            else:
                page = newest_first[:limit]
                has_more = len(newest_first) > limit
            return copy.deepcopy(page), has_more

    # ----------------------------------------------------------- idempotency

    def run_idempotent(
        self,
        scope: tuple[str, str],
        fingerprint: str,
        request_id: str,
        produce: Callable[[], tuple[int, bytes]],
    ) -> tuple[int, bytes, str | None]:
        """Run `produce` once per (api key, idempotency key); returns (status, body, replayed-from id).

        As at Stripe, only requests that got through validation are remembered: `produce`
        raising StripeApiError stores nothing, so the client may retry with the same key.
        """
        with self.lock:
            saved = self._idempotency.get(scope)
            if saved is not None:
                if saved.fingerprint != fingerprint:
                    raise errors.idempotency_mismatch(scope[1])
                return saved.status, saved.body, saved.request_id
            status, body = produce()
            self._idempotency[scope] = IdempotentResponse(fingerprint, status, body, request_id)
            return status, body, None

    # ---------------------------------------------------------------- faults

    def add_fault(
        self,
        *,
        kind: str,
        path: str = "*",
        method: str | None = None,
        count: int | None = 1,
        delay_seconds: float = 0.0,
        decline_code: str = "generic_decline",
    ) -> dict[str, Any]:
        if kind not in FAULT_KINDS:
            raise ValueError(f"kind must be one of {', '.join(FAULT_KINDS)}")
        if count is not None and count < 1:
            raise ValueError("count must be at least 1, or null for 'until cleared'")
        with self.lock:
            fault = Fault(
                id=f"fault_{next(self._fault_ids)}",
                kind=kind,
                path=path,
                method=method.upper() if method else None,
                remaining=count,
                delay_seconds=delay_seconds,
                decline_code=decline_code,
            )
            self._faults.append(fault)
            return asdict(fault)

    def faults(self) -> builtins.list[dict[str, Any]]:
        with self.lock:
            return [asdict(fault) for fault in self._faults]

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def take_fault(self, kinds: tuple[str, ...], method: str = "", path: str = "") -> Fault | None:
        """The first armed fault that matches, with one use consumed."""
        with self.lock:
            for fault in self._faults:
                if fault.matches(kinds, method, path):
                    if fault.remaining is not None:
                        fault.remaining -= 1
                        if fault.remaining == 0:
                            self._faults.remove(fault)
                    return copy.copy(fault)
            return None

    # ------------------------------------------------------ checkout sessions

    def create_checkout_session(
        self,
        *,
        page_base_url: str,
        line_items: builtins.list[dict[str, Any]],
        expires_at: int | None,
        payment_intent_metadata: dict[str, str],
        payment_intent_description: str | None,
        destination: Destination | None = None,
        **fields: Any,
    ) -> dict[str, Any]:
        with self.lock:
            now = self.timestamp()
            if expires_at is None:
                expires_at = now + MAX_SESSION_LIFETIME
            elif expires_at > now + MAX_SESSION_LIFETIME:
                raise errors.invalid_param(
                    "expires_at",
                    "The `expires_at` timestamp must be less than 24 hours from Checkout Session creation.",
                )
            elif expires_at < now + MIN_SESSION_LIFETIME - EXPIRES_AT_GRACE:
                raise errors.invalid_param(
                    "expires_at",
                    "The `expires_at` timestamp must be at least 30 minutes from Checkout Session creation.",
                )
            currencies = {item["currency"] for item in line_items}
            if len(currencies) > 1:
                raise errors.invalid_param(
                    "line_items", "All line items in a Checkout Session must use the same currency."
                )
            items = [objects.line_item(created=now, **item) for item in line_items]
            amount = sum(item["amount_total"] for item in items)
            self.check_destination(destination, amount)
            session_id = objects.new_checkout_session_id()
            session = objects.checkout_session(
                id=session_id,
                created=now,
                expires_at=expires_at,
                url=f"{page_base_url}/checkout/{session_id}",
                amount_subtotal=amount,
                amount_total=amount,
                currency=currencies.pop(),
                **fields,
            )
            self._store(session)
            self._session_extras[session_id] = SessionExtras(
                line_items=items,
                payment_intent_metadata=payment_intent_metadata,
                payment_intent_description=payment_intent_description,
                destination=destination,
            )
            return copy.deepcopy(session)

    def expire_session(self, ctx: RequestContext, session_id: str) -> dict[str, Any]:
        with self.lock:
            self.tick()
            session = self._require("checkout.session", session_id, param="session")
            if session["status"] != "open":
                raise errors.invalid_request(
                    'Only Checkout Sessions with a status in ["open"] can be expired. '
                    f"This Checkout Session has a status of `{session['status']}`."
                )
            self._expire(session, ctx)
            return copy.deepcopy(session)

    def _expire(self, session: dict[str, Any], ctx: RequestContext) -> None:
        session.update(status="expired", url=None)
        self._emit("checkout.session.expired", session, ctx)

    def _open_session(self, session_id: str) -> dict[str, Any]:
        self.tick()
        session = self._require("checkout.session", session_id, param="session")
        if session["status"] != "open":
            raise errors.invalid_request(f"This Checkout Session is no longer open (status `{session['status']}`).")
        return session

    def pay_session(
        self,
        session_id: str,
        *,
        asynchronous: bool = False,
        outcome: str | None = "succeeded",
        settle_after: float = 0.0,
        email: str | None = None,
    ) -> PaymentResult:
        """The customer pays. With `asynchronous`, the session completes unpaid (like a bank
        debit) and settles to `outcome` `settle_after` seconds later; outcome None waits for
        settle_session()."""
        with self.lock:
            session = self._open_session(session_id)
            extras = self._session_extras[session_id]
            declined = self.take_fault(("card_decline",))
            if declined is not None:
                return self._record_decline(session, extras, declined.decline_code)
            now = self.timestamp()
            email = email or session["customer_email"] or DEFAULT_CUSTOMER_EMAIL
            charge_id = objects.new_id("ch_")
            payment_method = objects.new_id("pm_")
            intent = objects.payment_intent(
                created=now,
                amount=session["amount_total"],
                currency=session["currency"],
                status="processing" if asynchronous else "succeeded",
                latest_charge=charge_id,
                payment_method=payment_method,
                metadata=dict(extras.payment_intent_metadata),
                description=extras.payment_intent_description,
            )
            charge = objects.charge(
                charge_id=charge_id,
                created=now,
                amount=session["amount_total"],
                currency=session["currency"],
                status="pending" if asynchronous else "succeeded",
                payment_intent=intent["id"],
                payment_method=payment_method,
                metadata=dict(extras.payment_intent_metadata),
                billing_email=email,
            )
            self._store(intent)
            self._store(charge)
            session.update(
                status="complete",
                payment_status="unpaid" if asynchronous else "paid",
                payment_intent=intent["id"],
                customer_details=objects.customer_details(email),
                url=None,
            )
            extras.last_decline = None
            if asynchronous:
                self._emit("checkout.session.completed", session, NO_REQUEST)
                if outcome is not None:
                    extras.settle_outcome = outcome
                    extras.settle_at = self.now() + settle_after
                    self.tick()
            else:
                if extras.destination is not None:
                    self.settle_destination(charge, intent, extras.destination)
                self._emit("charge.succeeded", charge, NO_REQUEST)
                self._emit("payment_intent.succeeded", intent, NO_REQUEST)
                self._emit("checkout.session.completed", session, NO_REQUEST)
            return PaymentResult(copy.deepcopy(session))

    def decline_session(self, session_id: str, decline_code: str = "generic_decline") -> PaymentResult:
        """The customer's card is declined: the session stays open and can be paid again."""
        with self.lock:
            session = self._open_session(session_id)
            return self._record_decline(session, self._session_extras[session_id], decline_code)

    def _record_decline(self, session: dict[str, Any], extras: SessionExtras, decline_code: str) -> PaymentResult:
        decline = errors.card_declined(decline_code)
        extras.last_decline = decline.message
        return PaymentResult(copy.deepcopy(session), decline)

    def settle_session(self, session_id: str, outcome: str) -> dict[str, Any]:
        """Finish an asynchronous payment that pay_session left processing."""
        with self.lock:
            session = self._require("checkout.session", session_id, param="session")
            intent = self._objects["payment_intent"].get(session["payment_intent"] or "")
            if intent is None or intent["status"] != "processing":
                raise errors.invalid_request("This Checkout Session has no payment waiting to settle.")
            self._settle(session, outcome)
            return copy.deepcopy(session)

    def _settle(self, session: dict[str, Any], outcome: str) -> None:
        extras = self._session_extras[session["id"]]
        extras.settle_at = extras.settle_outcome = None
        intent = self._objects["payment_intent"][session["payment_intent"]]
        charge = self._objects["charge"][intent["latest_charge"]]
        if outcome == "succeeded":
            intent.update(status="succeeded", amount_received=intent["amount"])
            charge.update(
                status="succeeded",
                paid=True,
                captured=True,
                amount_captured=charge["amount"],
                balance_transaction=objects.new_id("txn_"),
            )
            session["payment_status"] = "paid"
            if extras.destination is not None:
                self.settle_destination(charge, intent, extras.destination)
            self._emit("charge.succeeded", charge, NO_REQUEST)
            self._emit("payment_intent.succeeded", intent, NO_REQUEST)
            self._emit("checkout.session.async_payment_succeeded", session, NO_REQUEST)
        else:
            failure = {
                "code": "payment_method_provider_decline",
                "message": "The payment was declined by the customer's bank.",
                "type": "invalid_request_error",
            }
            intent.update(status="requires_payment_method", last_payment_error=failure)
            charge.update(status="failed", failure_code=failure["code"], failure_message=failure["message"])
            self._emit("charge.failed", charge, NO_REQUEST)
            self._emit("payment_intent.payment_failed", intent, NO_REQUEST)
            self._emit("checkout.session.async_payment_failed", session, NO_REQUEST)

    # --------------------------------------------------------------- refunds

    def create_refund(
        self,
        ctx: RequestContext,
        *,
        payment_intent: str | None,
        charge: str | None,
        amount: int | None,
        reason: str | None,
        metadata: dict[str, str],
        reverse_transfer: bool = False,
        refund_application_fee: bool = False,
    ) -> dict[str, Any]:
        with self.lock:
            if payment_intent:
                intent = self._require("payment_intent", payment_intent, param="payment_intent")
                if intent["status"] != "succeeded":
                    raise errors.invalid_param(
                        "payment_intent",
                        f"This PaymentIntent ({payment_intent}) does not have a successful charge to refund.",
                    )
                charge_obj = self._objects["charge"][intent["latest_charge"]]
                if charge and charge != charge_obj["id"]:
                    raise errors.invalid_param(
                        "charge", f"Charge {charge} does not belong to PaymentIntent {payment_intent}."
                    )
            elif charge:
                charge_obj = self._require("charge", charge, param="charge")
                if charge_obj["status"] != "succeeded":
                    raise errors.invalid_param("charge", f"Charge {charge} has not succeeded and cannot be refunded.")
            else:
                raise errors.invalid_request(
                    "One of the following params should be provided for this request: payment_intent or charge."
                )
            remaining = charge_obj["amount"] - charge_obj["amount_refunded"]
            if remaining == 0:
                raise errors.invalid_request(
                    f"Charge {charge_obj['id']} has already been refunded.", code="charge_already_refunded"
                )
            if amount is None:
                amount = remaining
            elif amount > remaining:
                currency = charge_obj["currency"]
                limit = "charge amount" if charge_obj["amount_refunded"] == 0 else "unrefunded amount on charge"
                raise errors.invalid_param(
                    "amount",
                    f"Refund amount ({objects.format_amount(amount, currency)}) is greater than {limit} "
                    f"({objects.format_amount(remaining, currency)})",
                    code="amount_too_large",
                )
            refund = objects.refund(
                created=self.timestamp(),
                amount=amount,
                currency=charge_obj["currency"],
                charge_id=charge_obj["id"],
                payment_intent=charge_obj["payment_intent"],
                reason=reason,
                metadata=metadata,
            )
            self.reverse_for_refund(charge_obj, refund, reverse_transfer=reverse_transfer,
                                    refund_application_fee=refund_application_fee)
            self._store(refund)
            charge_obj["amount_refunded"] += amount
            charge_obj["refunded"] = charge_obj["amount_refunded"] == charge_obj["amount"]
            charge_obj["refunds"]["data"].insert(0, copy.deepcopy(refund))
            self._emit("refund.created", refund, ctx)
            self._emit("charge.refunded", charge_obj, ctx)
            return copy.deepcopy(refund)

    # ---------------------------------------------------------------- events

    def _emit(self, event_type: str, obj: dict[str, Any], ctx: RequestContext | None, *,
              account: str | None = None) -> None:
        ctx = ctx or NO_REQUEST
        wanted = self.webhook is not None and self.webhook.wants(event_type)
        event = objects.event(
            account=account,
            event_type=event_type,
            data_object=copy.deepcopy(obj),
            created=self.timestamp(),
            request_id=ctx.request_id,
            idempotency_key=ctx.idempotency_key,
            pending_webhooks=1 if wanted else 0,
        )
        self._store(event)
        if wanted:
            self._schedule(event)

    # ------------------------------------------------------------- webhooks

    def configure_webhook(self, config: WebhookConfig | None) -> None:
        """Replace the endpoint settings. Deliveries still queued for another URL are dropped."""
        with self.lock:
            if config is None or self.webhook is None or config.url != self.webhook.url:
                self._queue.clear()
            self.webhook = config
            self._deliveries_changed.notify_all()

    def webhook_settings(self) -> dict[str, Any] | None:
        with self.lock:
            return asdict(self.webhook) if self.webhook else None

    def _schedule(self, event: dict[str, Any]) -> None:
        config = self.webhook
        assert config is not None
        # Stripe sends the event pretty-printed; every copy and retry carries the same bytes.
        payload = json.dumps(event, indent=2).encode("utf-8")
        now = time.monotonic()
        if config.out_of_order:
            if now >= self._reorder_release:
                self._reorder_release = now + config.reorder_window
            due, direction = self._reorder_release, -1
        else:
            due, direction = now, 1
        for copy_number in range(1, config.duplicates + 1):
            heapq.heappush(
                self._queue,
                ScheduledDelivery(
                    due=due,
                    order=direction * next(self._delivery_order),
                    event_id=event["id"],
                    event_type=event["type"],
                    copy=copy_number,
                    attempt=1,
                    payload=payload,
                ),
            )
        self._deliveries_changed.notify_all()

    def next_delivery(self, stop: threading.Event) -> DeliveryJob | None:
        """Block until a delivery is due (None once `stop` is set); the caller must record it."""
        with self._deliveries_changed:
            while not stop.is_set():
                if self._queue and self.webhook is not None:
                    wait = self._queue[0].due - time.monotonic()
                    if wait <= 0:
                        self._in_flight += 1
                        return DeliveryJob(heapq.heappop(self._queue), self.webhook, self._generation)
                    self._deliveries_changed.wait(wait)
                else:
                    self._deliveries_changed.wait()
            return None

    def wake_deliveries(self) -> None:
        with self._deliveries_changed:
            self._deliveries_changed.notify_all()

    def record_delivery(self, job: DeliveryJob, outcome: AttemptOutcome) -> None:
        with self.lock:
            if job.generation != self._generation:
                return
            self._in_flight -= 1
            delivery, config = job.delivery, job.config
            retry_in = None
            if outcome.status == "succeeded":
                event = self._objects["event"].get(delivery.event_id)
                if event is not None:
                    event["pending_webhooks"] = 0
            elif delivery.attempt < config.max_attempts:
                retry_in = config.retry_base_delay * 2 ** (delivery.attempt - 1)
                retry = copy.copy(delivery)
                retry.attempt += 1
                retry.due = time.monotonic() + retry_in
                retry.order = next(self._delivery_order)
                heapq.heappush(self._queue, retry)
            self._attempt_log.append(
                {
                    "id": f"whattempt_{len(self._attempt_log) + 1}",
                    "event_id": delivery.event_id,
                    "event_type": delivery.event_type,
                    "copy": delivery.copy,
                    "attempt": delivery.attempt,
                    "url": config.url,
                    "status": outcome.status,
                    "http_status": outcome.http_status,
                    "error": outcome.error,
                    "duration_ms": outcome.duration_ms,
                    "at": time.time(),
                    "retry_in": retry_in,
                }
            )
            self._deliveries_changed.notify_all()

    def delivery_attempts(self, event_id: str | None = None) -> builtins.list[dict[str, Any]]:
        with self.lock:
            return [dict(a) for a in self._attempt_log if event_id is None or a["event_id"] == event_id]

    def wait_deliveries_idle(self, timeout: float) -> bool:
        """True once nothing is queued or in flight (retries included) within `timeout` seconds."""
        with self._deliveries_changed:
            return self._deliveries_changed.wait_for(lambda: not self._queue and self._in_flight == 0, timeout)


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_hex(16)

