"""Putting Telegram updates on the `updates` queue from an asyncio process, fast and durably.

Celery's own `send_task` is synchronous (about 0.5 ms a publish, blocking the event loop), so the
gateway builds the same message Celery would (headers from Celery's `as_task_v2`, the envelope of
kombu's Redis transport) and pushes it with an asynchronous Redis client. Requests that arrive in
the same event-loop tick share one round trip: a Lua script that, per update, sets the dedup key
(SET NX with a TTL) and pushes the message only if the key was new, atomically, so a repeated
update_id is dropped and an update is never marked seen without being queued. The same script keeps
a copy of each new update in the inbox (core/inbox.py) until a worker has processed it.
"""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass

import orjson
import redis.asyncio as aioredis
from celery import Celery

from core import inbox
from core.celery_app import PUBLISHED_AT_HEADER

UPDATES_QUEUE = "updates"
HANDLE_UPDATE_TASK = "updates.handle_update"
DEDUP_KEY_PREFIX = "tg:update:"

# KEYS[1] = queue, KEYS[2] and KEYS[3] = the inbox (core.inbox); then per update i: KEYS[i+3] = its
# dedup key, ARGV[i+1] = its message, ARGV[1] = the dedup TTL. A new update's copy is kept in the
# inbox, stamped with Redis's clock, in the same script that queues it.
_ENQUEUE_NEW_SCRIPT = """
local results = {}
local now = redis.call('TIME')
local stamp = now[1] * 1000 + math.floor(now[2] / 1000)
for i = 4, #KEYS do
  if redis.call('SET', KEYS[i], '1', 'NX', 'EX', ARGV[1]) then
    local update_id = string.sub(KEYS[i], """ + str(len(DEDUP_KEY_PREFIX) + 1) + """)
    redis.call('HSET', KEYS[2], update_id, ARGV[i - 2])
    redis.call('ZADD', KEYS[3], stamp, update_id)
    redis.call('LPUSH', KEYS[1], ARGV[i - 2])
    results[i - 3] = 1
  else
    results[i - 3] = 0
  end
end
return results
"""

# Celery protocol 2 "embed" part of the body: no callbacks, chains or chords.
_BODY_TAIL = b'],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'


class BrokerUnavailable(Exception):
    """The update could not be queued; the sender must retry (the gateway answers 503)."""


@dataclass(frozen=True)
class Enqueued:
    update_id: int
    new: bool  # False: this update_id was queued before, nothing was pushed


def task_envelope(app: Celery, task_name: str, queue: str, body: bytes, *, argsrepr: str, cid: str) -> bytes:
    """The kombu Redis-transport envelope of a Celery task whose JSON body is already encoded.

    Headers come from Celery's own `as_task_v2`; `argsrepr` is what Flower shows (so never
    personal data); `cid` is the correlation id followed through every task this one causes.
    """
    task_id = str(uuid.uuid4())
    # ignore_result=None: the task's own setting decides. as_task_v2's default (False) would make
    # every worker store a STARTED and a SUCCESS result in Redis for each update, kept for a day.
    message = app.amqp.as_task_v2(task_id, task_name, argsrepr=argsrepr, kwargsrepr="{}", ignore_result=None)
    envelope = {
        "body": base64.b64encode(body).decode(),
        "content-encoding": "utf-8",
        "content-type": "application/json",
        "headers": {**message.headers, "cid": cid, PUBLISHED_AT_HEADER: time.time()},
        "properties": {
            **message.properties,
            "delivery_mode": 2,
            "delivery_info": {"exchange": "", "routing_key": queue},
            "priority": 0,
            "body_encoding": "base64",
            "delivery_tag": str(uuid.uuid4()),
        },
    }
    return orjson.dumps(envelope)


def celery_message(app: Celery, update_id: int, raw_update: bytes) -> bytes:
    """An `updates.handle_update(update)` task message.

    `raw_update` must already be known to be a JSON object: it is spliced into the body as the
    task's only argument, saving a decode and re-encode of every update.
    """
    body = b"[[" + raw_update + _BODY_TAIL
    return task_envelope(app, HANDLE_UPDATE_TASK, UPDATES_QUEUE, body, argsrepr=f"(update {update_id})",
                         cid=f"tg:{update_id}")


class UpdatePublisher:
    def __init__(self, redis_url: str, app: Celery, dedup_ttl_seconds: int, batch: bool = True) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=1.0, socket_timeout=2.0, max_connections=64,
            health_check_interval=10,
        )
        self._script = self._redis.register_script(_ENQUEUE_NEW_SCRIPT)
        self._app = app
        self._ttl = dedup_ttl_seconds
        self._batch = batch
        self._pending: list[tuple[str, bytes, asyncio.Future]] = []
        # The event loop keeps only a weak reference to a task: a flush in flight is held here until it
        # is done, or it could be garbage-collected with its requests' futures never resolved.
        self._flushing: set[asyncio.Future] = set()

    async def publish(self, update_id: int, raw_update: bytes) -> Enqueued:
        key = f"{DEDUP_KEY_PREFIX}{update_id}"
        message = celery_message(self._app, update_id, raw_update)
        if not self._batch:
            (new,) = await self._run([(key, message)])
            return Enqueued(update_id, bool(new))
        future = asyncio.get_running_loop().create_future()
        self._pending.append((key, message, future))
        if len(self._pending) == 1:
            # The first request of this tick schedules the flush; the others ride along.
            asyncio.get_running_loop().call_soon(self._flush)
        return Enqueued(update_id, bool(await future))

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        flush = asyncio.ensure_future(self._flush_batch(batch))
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush_batch(self, batch: list[tuple[str, bytes, asyncio.Future]]) -> None:
        try:
            results = await self._run([(key, message) for key, message, _ in batch])
        except BrokerUnavailable as error:
            for _, _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        for (_, _, future), result in zip(batch, results, strict=True):
            if not future.done():
                future.set_result(result)

    async def _run(self, items: list[tuple[str, bytes]]) -> list[int]:
        keys = [UPDATES_QUEUE, inbox.MESSAGES_KEY, inbox.TIMES_KEY, *(key for key, _ in items)]
        args: list[int | bytes] = [self._ttl, *(message for _, message in items)]
        try:
            return await self._script(keys=keys, args=args)
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError) as error:
            raise BrokerUnavailable(str(error)) from error
        except aioredis.ResponseError as error:  # e.g. Redis refusing writes (disk full, MISCONF)
            raise BrokerUnavailable(str(error)) from error

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (aioredis.ConnectionError, aioredis.TimeoutError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()
