"""The inbox: a copy of every acknowledged update, kept until its effects are committed.

The gateway (and the poller) acknowledge an update to Telegram once it is on the `updates` queue,
and Telegram never sends it again. The queue alone did not keep that promise: kombu's Redis
transport takes a message with BRPOP and only then, in a separate command, records it as
unacknowledged, so a worker's main process killed between the two loses the message outright (the
fault drill `worker_main` showed it). So the same Lua script that queues an update also keeps a
copy here: the message in a hash, its time in a sorted set. `sweep` (the beat job
`maintenance.requeue_lost_updates`) forgets the copies of updates that are done, and queues again
the ones not done after `requeue_after` seconds. Done is processed (`processed_updates`) with the
update's own messages sent: a worker killed between the update's commit and its sending leaves
its replies and its button's answer pending, and the delivery queued again finds the update
processed and sends them (chat.engine), where kombu would give its message back only after the
visibility timeout. A copy queued again while the first is merely slow is harmless: the update is
handled once, and the second delivery finishes what the first left undone.

Updates a worker drops on purpose (malformed, or from a flooding user) are never processed: the
worker forgets their copy (`forget`), else they would be queued again.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import cast

import orjson
import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from core.logging import get_logger

log = get_logger(__name__)

MESSAGES_KEY = "tg:inbox"  # update_id -> the queued message, as pushed
TIMES_KEY = "tg:inbox:at"  # update_id -> when it was queued (or queued again), in ms since the epoch

# By name, not through models: the bot process (which keeps the copies) imports core only.
_PROCESSED = sa.text("SELECT update_id FROM processed_updates WHERE update_id = ANY(:ids)")
# Of those, the ones with own rows still pending (recorded within `unsent_within`: older ones are
# the outbox's sweeper's, domain.maintenance.retry_failed_notifications).
_UNSENT = sa.text(
    "SELECT DISTINCT split_part(idempotency_key, ':', 2) FROM notifications"
    " WHERE status = 'pending' AND idempotency_key LIKE :pattern AND created_at > now() - :within"
    " AND split_part(idempotency_key, ':', 2) = ANY(:ids)")

# Copies younger than this are not looked at: their updates are most likely being handled now.
SETTLE_MS = 2_000
BATCH = 2_000


_OWN_ROWS = "update:"


def own_rows_key(update_id: int) -> str:
    """The start of the idempotency keys of an update's own outbox rows (its replies and its
    button's answer): chat.engine records them so, and `sweep` finds the unsent ones by it."""
    return f"{_OWN_ROWS}{update_id}:"


@dataclass(frozen=True)
class Swept:
    forgotten: int  # done: their copies removed
    requeued: list[int]  # not done after `requeue_after`: queued again


def sweep(client: redis.Redis, session: Session, queue: str, requeue_after_s: float,
          unsent_within: timedelta) -> Swept:
    """Forget the copies of done updates (processed, own rows sent); queue again those not done
    for `requeue_after_s`."""
    seconds, micros = client.time()
    now_ms = seconds * 1000 + micros // 1000
    entries = cast(list[tuple[bytes, float]], client.zrangebyscore(
        TIMES_KEY, "-inf", now_ms - SETTLE_MS, start=0, num=BATCH, withscores=True))
    if not entries:
        return Swept(0, [])
    queued_at = {int(member): score for member, score in entries}
    processed = set(session.scalars(_PROCESSED, {"ids": list(queued_at)}))
    unsent = _with_unsent_rows(session, processed, unsent_within)
    done = processed - unsent
    stale = [update_id for update_id, at in queued_at.items()
             if update_id not in done and at <= now_ms - requeue_after_s * 1000]
    with client.pipeline(transaction=False) as pipe:
        if done:
            pipe.hdel(MESSAGES_KEY, *done)
            pipe.zrem(TIMES_KEY, *done)
        for update_id in stale:
            pipe.hget(MESSAGES_KEY, update_id)
        results = pipe.execute()
    messages = results[2:] if done else results
    requeued: list[int] = []
    with client.pipeline(transaction=True) as pipe:
        for update_id, message in zip(stale, messages, strict=True):
            if message is None:  # forgotten meanwhile (a worker dropped it)
                pipe.zrem(TIMES_KEY, update_id)
                continue
            pipe.lpush(queue, _fresh_delivery(message))
            pipe.zadd(TIMES_KEY, {str(update_id): now_ms}, xx=True)
            requeued.append(update_id)
        pipe.execute()
    if requeued:
        log.warning("updates_requeued", count=len(requeued), update_ids=requeued[:20],
                    unsent=sorted(unsent.intersection(requeued))[:20],
                    why="acknowledged, not processed (or its messages not sent) after the grace: a worker lost them")
    return Swept(len(done), requeued)


def _with_unsent_rows(session: Session, update_ids: set[int], within: timedelta) -> set[int]:
    """Of these processed updates, those with own rows still pending, recorded within `within`."""
    if not update_ids:
        return set()
    found = session.scalars(_UNSENT, {"ids": [str(update_id) for update_id in update_ids], "within": within,
                                      "pattern": f"{_OWN_ROWS}%"})
    return {int(update_id) for update_id in found}


def _fresh_delivery(message: bytes) -> bytes:
    """The same task message (same task id, so it is a redelivery) with a delivery tag of its own:
    kombu keys a delivery's unacknowledged copy by its tag, and the first one may still be held."""
    envelope = orjson.loads(message)
    envelope["properties"]["delivery_tag"] = str(uuid.uuid4())
    return orjson.dumps(envelope)


def forget(client: redis.Redis, update_id: int) -> None:
    """An update dropped on purpose: nothing will process it, so its copy must not be queued again."""
    with client.pipeline(transaction=False) as pipe:
        pipe.hdel(MESSAGES_KEY, update_id)
        pipe.zrem(TIMES_KEY, update_id)
        pipe.execute()


def size(client: redis.Redis) -> int:
    return int(client.zcard(TIMES_KEY))
