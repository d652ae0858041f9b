"""kombu's Redis transport with one defect of kombu 5.7 worked around, so a worker survives a Redis
restart instead of exiting (the "stops consuming after Redis restart" trap), and with a visibility
timeout per queue that counts from when a task falls due (docs/redelivery.md).

What goes wrong without it: when Redis goes away while a worker holds unacknowledged messages,
Celery collects the broken connection (which detaches the transport from it) and then closes it.
Closing the channel restores the unacknowledged messages, which builds a new Redis client from the
detached connection and fails with `AttributeError: 'NoneType' object has no attribute 'hostname'`.
Celery treats that as unrecoverable and the worker process exits.

What this does instead: a closed connection raises a connection error, which kombu's close path
(and the late ack of a task that was still running) already tolerates, and the messages that could
not be put back (Redis is down) are remembered and put back as soon as this worker has a channel
again. Without that they would wait in Redis's
unacked set for the whole visibility timeout. Putting a message back twice is harmless: the second
time finds nothing under its tag.

A message Redis hands over just as it stops: kombu takes it off its queue (BRPOP) and only then, in
a second command, records it as unacknowledged. When Redis is gone in between, the record fails,
the message is in no queue and no unacked set, and the consumer drops it as it reconnects: lost for
good (the drills saw a Pay message never sent). Here it is kept in the process and put back on its
queue as soon as there is a channel again. Redis can also stop after serving the BRPOP and before
its reply leaves (a shutdown writes the pop to its append-only file and exits with the reply
unsent), or the consumer's main process can die between the two commands: then no process has the
message. So every message published to a task queue (transport option `recoverable_queues`) is
also copied, in the same transaction as its push, into the hash `undelivered`, and the consumer's
unacknowledged record removes the copy in the same transaction as it writes the record; a message
given back to its queue gets one again. A copy older than `lost_message_grace` seconds whose
message is no longer in its queue was lost between the two: the sweep pushes it back
(`_LOST_IN_HANDOVER`). The gateway pushes updates and Stripe events with scripts of its own, which
write the same copies (bot/publisher.py, bot/stripe_webhook.py).

Redelivery after a lost worker: every consumer of a Redis database shares one `unacked` set, and
each worker sweeps all of it, whatever queue it consumes. kombu's sweep gives back every message
delivered more than `visibility_timeout` seconds ago, so the shortest timeout of any worker would
apply to every queue's messages, and a task held for its countdown or ETA would be given back (and
run twice) once its countdown exceeds that timeout. Here the timeout is looked up per message by its
queue (transport option `visibility_timeouts`, `visibility_timeout` for the others) and counts
from when the message was delivered or, with an ETA, from when it falls due.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from datetime import UTC, datetime
from time import time
from typing import Any

import redis
import structlog
from kombu import transport
from kombu.transport import redis as kombu_redis
from kombu.transport import virtual
from kombu.utils.encoding import bytes_to_str
from kombu.utils.json import dumps, loads
from kombu.utils.scheduling import round_robin_cycle

logger = structlog.get_logger(__name__)

_lock = threading.Lock()
_tags_to_restore: set[str] = set()  # per worker process: the consumer lives in the main process
_messages_to_put_back: dict[str, str] = {}  # delivery tag → the message as kombu saves it (unacked)


def due_at(headers: dict[str, Any] | None) -> float | None:
    """When a task message falls due (its ETA or countdown, Celery's `eta` header), as a Unix time;
    None if it is due at once or the header cannot be read."""
    eta = (headers or {}).get("eta")
    if not isinstance(eta, str):
        return None
    try:
        moment = datetime.fromisoformat(eta)
    except ValueError:
        return None
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


class QoS(kombu_redis.QoS):
    def append(self, message, delivery_tag) -> None:
        """Remember a delivered message as unacknowledged, as kombu does, but scored with the time it
        falls due when that is later than now: a worker holds a countdown task unacknowledged until
        it runs, and its visibility timeout starts then, not when it was delivered."""
        delivery = message.delivery_info
        score = max(time(), due_at(message.headers) or 0.0)
        saved = dumps([message._raw, delivery["exchange"], delivery["routing_key"]])
        try:
            with self.pipe_or_acquire() as pipe:
                pipe.zadd(self.unacked_index_key, {delivery_tag: score}).hset(self.unacked_key, delivery_tag, saved)
                self.channel.forget_copy(pipe, delivery_tag).execute()
        except (redis.ConnectionError, redis.TimeoutError):
            # Redis went away between handing the message over (BRPOP took it off its queue) and
            # this record: only this process has it now, and the delivery fails (the consumer
            # reconnects). It goes back on its queue as soon as this process has a channel again.
            with _lock:
                _messages_to_put_back[delivery_tag] = saved
            logger.warning("broker_put_back_deferred", queue=delivery["routing_key"])
            raise
        virtual.QoS.append(self, message, delivery_tag)

    def restore_visible(self, start=0, num=10, interval=10) -> None:
        """Give back to their queues the messages whose worker is presumed dead: those still
        unacknowledged `visibility_timeouts[queue]` seconds after they were delivered or fell due.

        kombu's own sweep compares every message with this worker's single timeout. Scoring (above)
        keeps a task that is not due yet out of the candidates; its ETA is checked again here for
        messages a worker without this scoring delivered."""
        self._vrestore_count += 1
        if (self._vrestore_count - 1) % (interval or 1):
            return
        timeouts: dict[str, int] = self.channel.visibility_timeouts or {}
        default = self.visibility_timeout
        now = time()
        with self.channel.conn_or_acquire() as client:
            try:
                with kombu_redis.Mutex(client, self.unacked_mutex_key, self.unacked_mutex_expire):
                    self.channel.put_back_lost_in_handover(client, now)
                    candidates = client.zrange(
                        self.unacked_index_key, now - min([default, *timeouts.values()]), 0,
                        desc=True, byscore=True, offset=num and start, num=num, withscores=True)
                    if not candidates:
                        return
                    lookup = client.pipeline(transaction=False)
                    for tag, _score in candidates:
                        lookup.hget(self.unacked_key, tag)
                    restored: dict[str, int] = {}
                    for (tag, score), raw in zip(candidates, lookup.execute(), strict=True):
                        queue, visible_at = self._visible_again_at(raw, score, timeouts, default)
                        if now < visible_at:
                            continue
                        self.restore_by_tag(tag, client)  # or, without its message, forget the tag
                        if raw is not None:
                            restored[queue] = restored.get(queue, 0) + 1
                    if restored:
                        logger.warning("broker_redelivered_unacked", by_queue=restored)
            except kombu_redis.MutexHeld:
                pass

    @staticmethod
    def _visible_again_at(raw: bytes | None, score: float, timeouts: dict[str, int],
                          default: int) -> tuple[str, float]:
        """The message's queue, and when it is presumed lost if still unacknowledged."""
        if raw is None:
            return "?", score  # acknowledged meanwhile, or only its index entry was left
        try:
            payload, _exchange, routing_key = loads(bytes_to_str(raw))
            headers = payload.get("headers")
        except (ValueError, TypeError, AttributeError):
            return "?", score + default
        return str(routing_key), max(score, due_at(headers) or 0.0) + timeouts.get(routing_key, default)

    def restore_unacked(self, client=None):
        tags = list(self._delivered)
        try:
            return super().restore_unacked(client)
        except redis.ConnectionError:
            with _lock:
                _tags_to_restore.update(tags)
            self._delivered.clear()
            logger.warning("broker_restore_deferred", messages=len(tags))
            return None


# The copies of task messages not yet recorded by a consumer (the gateway's scripts write them too,
# bot/publisher.py and bot/stripe_webhook.py):
UNDELIVERED_KEY = "undelivered"  # delivery tag → "<queue's list key>\n<message as pushed>"
UNDELIVERED_INDEX_KEY = "undelivered_index"  # delivery tag → when published, or last seen queued

# For a script that pushes a task message itself: keep its copy as `Channel.keep_copy` does, in the
# same script as the push (the copy's format is `_copy`'s).
KEEP_COPY_LUA = """
local function keep_copy(copies, index, queue, message, tag, now)
  redis.call('HSET', copies, tag, queue .. '\\n' .. message)
  redis.call('ZADD', index, now, tag)
end
"""


class Channel(kombu_redis.Channel):
    QoS = QoS
    # Queue name (routing key) → seconds; queues not named use `visibility_timeout`.
    visibility_timeouts: dict[str, int] = {}  # noqa: RUF012 - replaced per channel, never mutated
    # (kombu's stubs type the tuple by its exact length, so adding an option needs the ignore.)
    # The queues whose messages are copied into `undelivered` until a consumer has recorded them
    # (the task queues; not the replies of remote control, which are consumed without acks).
    recoverable_queues: tuple[str, ...] = ()
    # How old a copy must be before the sweep looks for its message; a live consumer records a
    # message milliseconds after taking it.
    lost_message_grace = 30
    undelivered_key = UNDELIVERED_KEY
    undelivered_index_key = UNDELIVERED_INDEX_KEY
    from_transport_options = (*kombu_redis.Channel.from_transport_options,  # type: ignore[assignment]
                              "visibility_timeouts", "recoverable_queues", "lost_message_grace")

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)  # raises if Redis is still unreachable
        self._restore_deferred()

    _sync_client: redis.Redis | None = None

    @contextmanager
    def conn_or_acquire(self, client=None):
        """kombu builds a new Redis client for every call without one: each delivery's unacked
        record and each ack, in the worker's main process. A client is only a thread-safe handle on
        the connection pool, so one per pool serves them all; building it cost about 0.3 ms of the
        main process's CPU per task (redis-py 8 copies its response callbacks per client)."""
        if client:
            yield client
            return
        pool = self.pool  # raises once the connection is closed, as kombu's own path does
        cached = self._sync_client
        if cached is None or cached.connection_pool is not pool:
            cached = self._sync_client = self._create_client()
        yield cached

    def _connparams(self, asynchronous=False):
        if self.connection is None or self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        return super()._connparams(asynchronous=asynchronous)

    def _put(self, queue, message, **kwargs):
        """Push a message onto its queue, as kombu does, and for a task queue keep a copy in
        `undelivered`, written in the same transaction, until a consumer records it."""
        if queue not in self.recoverable_queues or (self._expires and queue in self._expires):
            return super()._put(queue, message, **kwargs)
        key = self._q_for_pri(queue, self._get_message_priority(message, reverse=False))
        tag = message["properties"]["delivery_tag"]
        pushed = dumps(message)
        batch = kwargs.pop("_publish_batch", None)
        if batch is not None:  # kombu's batches are not transactions: the copy goes first
            batch.add("hset", self.undelivered_key, tag, _copy(key, pushed))
            batch.add("zadd", self.undelivered_index_key, {tag: time()})
            batch.add("lpush", key, pushed)
            return None
        with self.conn_or_acquire() as client:
            self.keep_copy(client.pipeline(), tag, key, pushed).lpush(key, pushed).execute()
        return None

    def _do_restore_message(self, payload, exchange, routing_key, pipe, leftmost=False):
        """Put a message back on its queue, as kombu does (a dead worker's, one Redis lost while a
        worker held it, one rejected to be run again), and give it a copy like a new one, in the same
        transaction: until a consumer records it again, it can be lost in the same way."""
        super()._do_restore_message(payload, exchange, routing_key, pipe, leftmost)
        tag = payload.get("properties", {}).get("delivery_tag")
        if tag is None:
            return
        pushed = dumps(payload)  # as kombu pushed it, its redelivered flags set
        for queue in self._lookup(exchange, routing_key):
            if queue in self.recoverable_queues:
                self.keep_copy(pipe, tag, self._q_for_pri(queue, self._get_message_priority(payload, reverse=False)),
                               pushed)

    def keep_copy(self, pipe: Any, tag: str, key: str, pushed: str) -> Any:
        """Add to `pipe` the copy of a message pushed onto the list `key`, kept until it is recorded."""
        return pipe.hset(self.undelivered_key, tag, _copy(key, pushed)).zadd(self.undelivered_index_key, {tag: time()})

    def forget_copy(self, pipe: Any, tag: str) -> Any:
        """Add to `pipe` the removal of a message's copy: a consumer has recorded it."""
        return pipe.zrem(self.undelivered_index_key, tag).hdel(self.undelivered_key, tag)

    def _purge(self, queue):
        """Empty a queue, as kombu does, and forget the copies of its messages with it (the sweep
        would otherwise find them gone from their queue and push them back)."""
        if queue not in self.recoverable_queues:
            return super()._purge(queue)
        keys = [self._q_for_pri(queue, priority) for priority in self.priority_steps]
        with self.conn_or_acquire() as client:
            return int(client.eval(_PURGE, 2 + len(keys), self.undelivered_key, self.undelivered_index_key, *keys))

    def put_back_lost_in_handover(self, client: redis.Redis, now: float) -> None:
        """Push back onto its queue every message published to a task queue that no consumer has
        recorded and that is no longer in its queue: taken by a BRPOP whose reply never arrived, or
        by a consumer that died before recording it. Run by every worker's sweep (under kombu's
        sweep lock); checks at most `_SWEEP_BATCH` copies per run, oldest first."""
        if not self.recoverable_queues:
            return
        try:
            put_back = client.eval(_LOST_IN_HANDOVER, 2, self.undelivered_key, self.undelivered_index_key,
                                   now - self.lost_message_grace, now, _SWEEP_BATCH, _SEARCH_DEPTH)
        except redis.ResponseError as error:  # a Redis before 6.2 (no ZRANGE BYSCORE, no LPOS)
            # kombu's own sweep, after this in the same lock, must still run.
            logger.error("broker_lost_message_sweep_failed", error=str(error)[:300])
            return
        if put_back:
            by_queue: dict[str, int] = {}
            for key in put_back:
                queue = bytes_to_str(key).rsplit(self.sep, 1)[0]
                by_queue[queue] = by_queue.get(queue, 0) + 1
            logger.warning("broker_put_back_lost_in_handover", by_queue=by_queue)

    def _restore_deferred(self) -> None:
        with _lock:
            tags = set(_tags_to_restore)
            _tags_to_restore.clear()
            taken = dict(_messages_to_put_back)
            _messages_to_put_back.clear()
        if not tags and not taken:
            return
        saved: set[str] = set()
        restored: set[str] = set()
        try:
            # A message taken as Redis stopped is first recorded as unacknowledged, as its delivery
            # would have done (if that record did reach Redis, this writes the same again), then put
            # back like the others: restoring by tag moves it to its queue once, whoever does it.
            for tag, message in taken.items():
                recorded = self.client.pipeline().zadd(self.qos.unacked_index_key, {tag: time()}) \
                    .hset(self.qos.unacked_key, tag, message)
                self.forget_copy(recorded, tag).execute()
                saved.add(tag)
            for tag in sorted(tags | saved):
                self.qos.restore_by_tag(tag, client=self.client)
                restored.add(tag)
        except redis.ConnectionError:
            with _lock:
                _messages_to_put_back.update({tag: m for tag, m in taken.items() if tag not in saved})
                _tags_to_restore.update((tags | saved) - restored)
            raise
        logger.info("broker_restore_done", messages=len(restored))


def _copy(key: str, pushed: str) -> str:
    """A copy in `undelivered`: the list its message was pushed onto, a newline, the message (the
    scripts below, and the drills' instruments, split it at the first newline)."""
    return f"{key}\n{pushed}"


_SWEEP_BATCH = 100  # copies looked at per sweep, oldest first
_SEARCH_DEPTH = 2000  # the longest queue searched for a copy's message

# KEYS: undelivered, undelivered_index. ARGV: published before (Unix time), now, how many at most,
# the longest queue to search. A copy whose message is still in its queue (a backlog) is looked at
# again a grace period later; one whose message is gone is pushed back where BRPOP takes next, and
# kept until it is recorded. The search starts at that end, where the oldest messages wait. A
# queue longer than the limit is not searched (a few ms of Redis's time per copy); its copies are
# looked at again once it is shorter. The queue's key comes from the copy: only workers of one
# Redis (no cluster) use this.
_LOST_IN_HANDOVER = r"""
local put_back = {}
local depth = tonumber(ARGV[4])
local tags = redis.call('ZRANGE', KEYS[2], '-inf', ARGV[1], 'BYSCORE', 'LIMIT', 0, tonumber(ARGV[3]))
for _, tag in ipairs(tags) do
  local copy = redis.call('HGET', KEYS[1], tag)
  local cut = copy and string.find(copy, '\n', 1, true)
  if not cut then
    redis.call('ZREM', KEYS[2], tag)
    redis.call('HDEL', KEYS[1], tag)
  else
    local queue = string.sub(copy, 1, cut - 1)
    local message = string.sub(copy, cut + 1)
    local waiting = redis.call('LLEN', queue)
    if waiting <= depth and not (waiting > 0 and redis.call('LPOS', queue, message, 'RANK', -1)) then
      redis.call('RPUSH', queue, message)
      put_back[#put_back + 1] = queue
    end
    redis.call('ZADD', KEYS[2], ARGV[2], tag)
  end
end
return put_back
"""

# KEYS: undelivered, undelivered_index, then the queue's lists. Returns how many messages were in them.
_PURGE = r"""
local purged = 0
local emptied = {}
for i = 3, #KEYS do
  purged = purged + redis.call('LLEN', KEYS[i])
  redis.call('DEL', KEYS[i])
  emptied[KEYS[i]] = true
end
local copies = redis.call('HGETALL', KEYS[1])
for i = 1, #copies, 2 do
  local cut = string.find(copies[i + 1], '\n', 1, true)
  if cut and emptied[string.sub(copies[i + 1], 1, cut - 1)] then
    redis.call('HDEL', KEYS[1], copies[i])
    redis.call('ZREM', KEYS[2], copies[i])
  end
end
return purged
"""


# The queues that hold the next step of what a customer already started: a tap's reservation, its
# checkout and Stripe's answer. Only customers' actions put work there, so they cannot starve the rest.
FOLLOW_UP_QUEUES = ("reservations", "payments")


class FollowUpsFirstCycle(round_robin_cycle):
    """The order in which a worker that consumes several queues asks Redis for its next message
    (transport option `queue_order_strategy`): kombu's round robin, except that the follow-up
    queues are always asked first. With the updates that arrive together taken as one task, round
    robin gave a flash sale's reservations one turn per batch of taps: they fell behind, and a
    thousand taps saw units left that were already taken and queued reservations bound to fail
    (bench/report.md). A worker of one queue, as `make run` starts them, is not affected."""

    def consume(self, n: int) -> list[str]:
        queues = self.items[:n]
        return [queue for queue in FOLLOW_UP_QUEUES if queue in queues] + \
            [queue for queue in queues if queue not in FOLLOW_UP_QUEUES]


class Transport(kombu_redis.Transport):
    Channel = Channel


def install() -> None:
    """Make `redis://` broker URLs use this transport in every process that loads the Celery
    configuration (workers, beat, Flower), keeping the URLs themselves unchanged."""
    transport.TRANSPORT_ALIASES["redis"] = f"{__name__}:Transport"
    transport._transport_cache.pop("redis", None)
