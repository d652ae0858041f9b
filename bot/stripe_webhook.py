"""`POST /stripe/webhook` in the gateway: check Stripe's signature, queue the event, answer.

As for Telegram updates, nothing on this path touches the database or calls an API. The
signature (HMAC of the raw body with STRIPE_WEBHOOK_SECRET, at most five minutes old) is checked
first; then the event is trimmed to what the payments worker needs (no customer names, e-mail
addresses or card details in Redis, task arguments or Flower) and pushed onto the `payments`
queue together with a dedup key, by one Redis script, so a repeated event id is dropped and an
event is never marked seen without being queued; the script also copies it for the workers' sweep
(core/broker.py), as Stripe will not send an event again once it has its 200. 200 only once it is
queued; 503 when Redis is down, so Stripe delivers it again. Event types we do not act on are
acknowledged and dropped. The worker deduplicates by event id once more, in the transaction of its
effects.
"""

from __future__ import annotations

import time
from typing import Any

import orjson
import redis.asyncio as aioredis
from celery import Celery
from prometheus_client import Counter
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from bot.publisher import BrokerUnavailable, TaskMessage, task_envelope
from core import stripe_api
from core.broker import KEEP_COPY_LUA, UNDELIVERED_INDEX_KEY, UNDELIVERED_KEY
from core.logging import get_logger
from core.settings import Settings

log = get_logger(__name__)

PAYMENTS_QUEUE = "payments"
HANDLE_EVENT_TASK = "payments.handle_event"
DEDUP_KEY_PREFIX = "stripe:event:"
SIGNATURE_HEADER = "stripe-signature"
MAX_EVENT_BYTES = 512 * 1024  # Stripe caps an event's payload far below this

EVENTS = Counter("gateway_stripe_events_total", "Stripe webhook deliveries by outcome", ["outcome"])

# KEYS[1] = queue, KEYS[2] = dedup key, KEYS[3] and KEYS[4] = the broker's copies (core.broker);
# ARGV[1] = TTL, ARGV[2] = message, ARGV[3] = its delivery tag, ARGV[4] = now (the publisher's clock).
# The message is copied until a worker records it: Stripe has its 200 and will not send the event
# again, so a message lost between the queue and a worker's BRPOP must come back from the copy.
_ENQUEUE_NEW_SCRIPT = KEEP_COPY_LUA + """
if redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[1]) then
  redis.call('LPUSH', KEYS[1], ARGV[2])
  keep_copy(KEYS[3], KEYS[4], KEYS[1], ARGV[2], ARGV[3], ARGV[4])
  return 1
end
return 0
"""
_EMBED = {"callbacks": None, "errbacks": None, "chain": None, "chord": None}


def _error(status: int, reason: str) -> JSONResponse:
    return JSONResponse({"ok": False, "error": reason}, status_code=status)


def celery_message(app: Celery, event: dict[str, Any]) -> TaskMessage:
    """A `payments.handle_event(event)` task message."""
    body = orjson.dumps([[event], {}, _EMBED])
    return task_envelope(app, HANDLE_EVENT_TASK, PAYMENTS_QUEUE, body, argsrepr=f"(stripe event {event['id']})",
                         cid=f"stripe:{event['id']}")


class EventPublisher:
    """Queues verified Stripe events for the payments worker, once per event id."""

    def __init__(self, redis_url: str, app: Celery, dedup_ttl_seconds: int) -> None:
        self._redis = aioredis.Redis.from_url(redis_url, socket_connect_timeout=1.0, socket_timeout=2.0,
                                              max_connections=16, health_check_interval=10)
        self._script = self._redis.register_script(_ENQUEUE_NEW_SCRIPT)
        self._app = app
        self._ttl = dedup_ttl_seconds

    async def publish(self, event: dict[str, Any]) -> bool:
        """True if queued now, False if this event id was queued before."""
        message = celery_message(self._app, event)
        try:
            new = await self._script(
                keys=[PAYMENTS_QUEUE, f"{DEDUP_KEY_PREFIX}{event['id']}", UNDELIVERED_KEY, UNDELIVERED_INDEX_KEY],
                args=[self._ttl, message.pushed, message.tag, time.time()])
        except (aioredis.ConnectionError, aioredis.TimeoutError, aioredis.ResponseError, OSError) as error:
            raise BrokerUnavailable(str(error)) from error
        return bool(new)

    async def close(self) -> None:
        await self._redis.aclose()


def read_event(body: bytes) -> dict[str, Any]:
    """The event in a (verified) webhook body, or ValueError if it is not one."""
    event = orjson.loads(body)
    if not isinstance(event, dict):
        raise ValueError("not a JSON object")
    if not isinstance(event.get("id"), str) or not event["id"].startswith("evt_") or len(event["id"]) > 255:
        raise ValueError("no event id")
    if not isinstance(event.get("type"), str) or not isinstance(event.get("data"), dict) \
            or not isinstance(event["data"].get("object"), dict):
        raise ValueError("no type or object")
    return event


class StripeWebhook:
    """The endpoint and its publisher; the gateway opens it at start-up and closes it at the end."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._secret = settings.stripe_webhook_secret.get_secret_value() if settings.stripe_webhook_secret else None
        self.publisher: EventPublisher | None = None
        if self._secret is None:
            log.warning("no_stripe_webhook_secret",
                        detail="STRIPE_WEBHOOK_SECRET is unset: Stripe webhooks are refused")

    def open(self, app: Celery, publisher: EventPublisher | None = None) -> None:
        self.publisher = publisher or EventPublisher(self._settings.redis_url, app,
                                                     self._settings.update_dedup_ttl_seconds)

    async def close(self) -> None:
        if self.publisher is not None:
            await self.publisher.close()

    async def endpoint(self, request: Request) -> Response:  # noqa: PLR0911 - one return per HTTP answer, in order
        if self._secret is None:
            EVENTS.labels("unconfigured").inc()
            return _error(401, "webhook secret not configured")
        body = await request.body()
        if len(body) > MAX_EVENT_BYTES:
            EVENTS.labels("too_large").inc()
            return _error(413, "too large")
        try:
            stripe_api.verify_webhook(body, request.headers.get(SIGNATURE_HEADER), self._secret)
        except stripe_api.InvalidSignature as error:
            EVENTS.labels("bad_signature").inc()
            log.warning("stripe_signature_refused", reason=str(error))
            return _error(400, "invalid signature")
        try:
            event = read_event(body)
        except ValueError:  # orjson.JSONDecodeError is a ValueError too
            EVENTS.labels("malformed").inc()
            return _error(400, "not a Stripe event")
        if event["type"] not in stripe_api.HANDLED_EVENT_TYPES:
            EVENTS.labels("ignored").inc()
            return JSONResponse({"ok": True, "ignored": True})
        assert self.publisher is not None, "StripeWebhook.open() was not called"
        try:
            new = await self.publisher.publish(stripe_api.slim_event(event))
        except BrokerUnavailable as error:
            EVENTS.labels("broker_down").inc()
            log.warning("stripe_enqueue_failed", event_id=event["id"], error=str(error))
            return _error(503, "broker unavailable, retry")
        EVENTS.labels("enqueued" if new else "duplicate").inc()
        return JSONResponse({"ok": True})
