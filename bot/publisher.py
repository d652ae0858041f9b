"""Putting Telegram updates on the `updates` queue from an asyncio process, fast and durably.

Celery's own `send_task` is synchronous (about 0.5 ms a publish, blocking the event loop), so the
gateway builds the same message Celery would (headers from Celery's `as_task_v2`, the envelope of
kombu's Redis transport) and pushes it with an asynchronous Redis client. Requests that arrive
together (in the same event-loop tick, or when the gateway is busy within UPDATE_BATCH_WINDOW_MS of
the last flush) share one round trip and one task: a Lua script that, per update, sets the dedup key
(SET NX with a TTL) and queues the update only if the key was new, atomically, so a repeated
update_id is dropped and an update is never marked seen without being queued. The new updates go on
the queue as one `updates.handle_updates` message (or one `updates.handle_update` each when some
were repeats). The same script keeps each new update's own message in the inbox (core/inbox.py)
until a worker has processed it: that is what the inbox queues again if a worker loses the batch.
And it copies each message it pushes into the broker's `undelivered` hash, as the workers'
transport copies the messages it publishes (core/broker.py), so a message Redis hands to a worker's
BRPOP and loses before the worker records it is pushed back within half a minute."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from dataclasses import dataclass
from typing import NamedTuple

import orjson
import redis.asyncio as aioredis
from celery import Celery

from core import inbox
from core.broker import KEEP_COPY_LUA, UNDELIVERED_INDEX_KEY, UNDELIVERED_KEY
from core.celery_app import PUBLISHED_AT_HEADER
from core.queues import HANDLE_UPDATE_TASK, HANDLE_UPDATES_TASK, UPDATES_QUEUE

DEDUP_KEY_PREFIX = "tg:update:"

# KEYS[1] = queue, KEYS[2] and KEYS[3] = the inbox (core.inbox), KEYS[4] and KEYS[5] = the broker's
# copies (core.broker); then per update i: KEYS[i+5] = its dedup key, ARGV[2i+3] = its own message
# (`updates.handle_update`) and ARGV[2i+4] its delivery tag. ARGV[1] = the dedup TTL, ARGV[2] = now
# (the publisher's clock, as the workers stamp their copies), ARGV[3] and ARGV[4] = one message for
# all of them (`updates.handle_updates`) and its tag, or empty. Each new update's own message is
# kept in the inbox, stamped with Redis's clock, in the same script that queues it. When every
# update is new the one message goes on the queue, else each new one's own (a repeat is never
# handed to a worker again); whatever goes on the queue is copied until a worker records it.
_ENQUEUE_NEW_SCRIPT = KEEP_COPY_LUA + """
local results = {}
local fresh = {}
local now = redis.call('TIME')
local stamp = now[1] * 1000 + math.floor(now[2] / 1000)
local function push(message, tag)
  redis.call('LPUSH', KEYS[1], message)
  keep_copy(KEYS[4], KEYS[5], KEYS[1], message, tag, ARGV[2])
end
for i = 1, #KEYS - 5 do
  if redis.call('SET', KEYS[i + 5], '1', 'NX', 'EX', ARGV[1]) then
    local update_id = string.sub(KEYS[i + 5], """ + str(len(DEDUP_KEY_PREFIX) + 1) + """)
    redis.call('HSET', KEYS[2], update_id, ARGV[2 * i + 3])
    redis.call('ZADD', KEYS[3], stamp, update_id)
    fresh[#fresh + 1] = i
    results[i] = 1
  else
    results[i] = 0
  end
end
if ARGV[3] ~= '' and #fresh == #KEYS - 5 then
  push(ARGV[3], ARGV[4])
else
  for _, i in ipairs(fresh) do
    push(ARGV[2 * i + 3], ARGV[2 * i + 4])
  end
end
return results
"""

# Celery protocol 2 "embed" part of the body: no callbacks, chains or chords.
_BODY_TAIL = b'],{},{"callbacks":null,"errbacks":null,"chain":null,"chord":null}]'


class BrokerUnavailable(Exception):
    """The update could not be queued; the sender must retry (the gateway answers 503)."""


class TaskMessage(NamedTuple):
    """A task message as it goes on its queue, and its delivery tag (which names its copy)."""

    pushed: bytes
    tag: str


@dataclass(frozen=True)
class Enqueued:
    update_id: int
    new: bool  # False: this update_id was queued before, nothing was pushed


def task_envelope(app: Celery, task_name: str, queue: str, body: bytes, *, argsrepr: str, cid: str) -> TaskMessage:
    """The kombu Redis-transport envelope of a Celery task whose JSON body is already encoded.

    Headers come from Celery's own `as_task_v2`; `argsrepr` is what Flower shows (so never
    personal data); `cid` is the correlation id followed through every task this one causes.
    """
    task_id = str(uuid.uuid4())
    # ignore_result=None: the task's own setting decides. as_task_v2's default (False) would make
    # every worker store a STARTED and a SUCCESS result in Redis for each update, kept for a day.
    message = app.amqp.as_task_v2(task_id, task_name, argsrepr=argsrepr, kwargsrepr="{}", ignore_result=None)
    tag = str(uuid.uuid4())
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
            "delivery_tag": tag,
        },
    }
    return TaskMessage(orjson.dumps(envelope), tag)


def celery_message(app: Celery, update_id: int, raw_update: bytes) -> TaskMessage:
    """An `updates.handle_update(update)` task message.

    `raw_update` must already be known to be a JSON object: it is spliced into the body as the
    task's only argument, saving a decode and re-encode of every update.
    """
    body = b"[[" + raw_update + _BODY_TAIL
    return task_envelope(app, HANDLE_UPDATE_TASK, UPDATES_QUEUE, body, argsrepr=f"(update {update_id})",
                         cid=f"tg:{update_id}")


def batch_message(app: Celery, update_ids: list[int], raw_updates: list[bytes]) -> TaskMessage:
    """An `updates.handle_updates([update, ...])` task message, the updates spliced in as they came."""
    body = b"[[[" + b",".join(raw_updates) + b"]" + _BODY_TAIL
    listed = ", ".join(str(update_id) for update_id in update_ids)
    return task_envelope(app, HANDLE_UPDATES_TASK, UPDATES_QUEUE, body, argsrepr=f"(updates {listed})",
                         cid=f"tg:{update_ids[0]}+{len(update_ids) - 1}")


@dataclass(frozen=True)
class _Publishing:
    """An update on its way to the queue, and the request waiting for it."""

    update_id: int
    raw_update: bytes
    message: TaskMessage  # its own `updates.handle_update` message
    future: asyncio.Future


class UpdatePublisher:
    """Queues updates for the gateway's requests. `batch`: the requests of one moment share a round
    trip and a task (`window_s`: a request after a flush waits at most that long for others to
    join; at most `max_batch` share one); else one round trip and one task each (the poller)."""

    def __init__(self, redis_url: str, app: Celery, dedup_ttl_seconds: int, batch: bool = True, *,
                 window_s: float = 0.0, max_batch: int = 50) -> None:
        self._redis = aioredis.Redis.from_url(
            redis_url, socket_connect_timeout=1.0, socket_timeout=2.0, max_connections=64,
            health_check_interval=10,
        )
        self._script = self._redis.register_script(_ENQUEUE_NEW_SCRIPT)
        self._app = app
        self._ttl = dedup_ttl_seconds
        self._batch = batch
        self._window_s = window_s
        self._max_batch = max_batch
        self._pending: list[_Publishing] = []
        self._flush_due: asyncio.Handle | None = None
        self._last_flush = float("-inf")
        # The event loop keeps only a weak reference to a task: a flush in flight is held here until it
        # is done, or it could be garbage-collected with its requests' futures never resolved.
        self._flushing: set[asyncio.Future] = set()

    async def publish(self, update_id: int, raw_update: bytes) -> Enqueued:
        message = celery_message(self._app, update_id, raw_update)
        future = asyncio.get_running_loop().create_future()
        item = _Publishing(update_id, raw_update, message, future)
        if not self._batch:
            (new,) = await self._run([item])
            return Enqueued(update_id, bool(new))
        self._pending.append(item)
        if len(self._pending) >= self._max_batch:
            self._flush()
        elif len(self._pending) == 1:
            # The first request schedules the flush, the others ride along: in this event-loop tick
            # after a quiet moment, else once the window since the last flush has passed.
            loop = asyncio.get_running_loop()
            wait = self._last_flush + self._window_s - loop.time()
            self._flush_due = loop.call_later(wait, self._flush) if wait > 0 else loop.call_soon(self._flush)
        return Enqueued(update_id, bool(await future))

    def _flush(self) -> None:
        if self._flush_due is not None:
            self._flush_due.cancel()
            self._flush_due = None
        self._last_flush = asyncio.get_running_loop().time()
        batch, self._pending = self._pending, []
        if not batch:
            return
        flush = asyncio.ensure_future(self._flush_batch(batch))
        self._flushing.add(flush)
        flush.add_done_callback(self._flushing.discard)

    async def _flush_batch(self, batch: list[_Publishing]) -> None:
        try:
            results = await self._run(batch)
        except BrokerUnavailable as error:
            for item in batch:
                if not item.future.done():
                    item.future.set_exception(error)
            return
        for item, result in zip(batch, results, strict=True):
            if not item.future.done():
                item.future.set_result(result)

    async def _run(self, items: list[_Publishing]) -> list[int]:
        together = batch_message(self._app, [item.update_id for item in items],
                                 [item.raw_update for item in items]) if len(items) > 1 else TaskMessage(b"", "")
        keys = [UPDATES_QUEUE, inbox.MESSAGES_KEY, inbox.TIMES_KEY, UNDELIVERED_KEY, UNDELIVERED_INDEX_KEY,
                *(f"{DEDUP_KEY_PREFIX}{item.update_id}" for item in items)]
        args: list[int | float | bytes | str] = [self._ttl, time.time(), *together]
        for item in items:
            args += item.message
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
