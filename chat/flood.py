"""Per-user flood protection: one noisy user must not fill the updates queue for everyone else.

A sliding window in Redis (a sorted set of the user's update ids by time) counts each user's
updates of the last WINDOW_SECONDS; past the limit, updates are answered (a button press gets a
short note) but not handled, and the user is told to slow down at most once a minute. A fixed
window let a burst that straddled its boundary through, half in each window. An update delivered
again counts once. The check costs one Redis round trip (one script) and no database work.
"""

from __future__ import annotations

import time

import redis
from redis.commands.core import Script

from core import redis_client
from core.settings import get_settings

WINDOW_SECONDS = 10
NOTICE_EVERY_SECONDS = 60


def max_updates_per_window() -> int:
    """FLOOD_MAX_UPDATES_PER_WINDOW: a person tapping fast stays far below it; a script does not."""
    return get_settings().flood_max_updates_per_window


# The window's four commands as one script: one command to send and one reply to read on every
# update, where a MULTI/EXEC pipeline sent six and read six (bench/report.md). KEYS[1]: the user's
# window; ARGV: the update id, now, the window's start, the key's lifetime in seconds.
_COUNT_LUA = """
redis.call('ZADD', KEYS[1], 'NX', ARGV[2], ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
local count = redis.call('ZCARD', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return count
"""
_script: tuple[redis.Redis, Script] | None = None


def _count(client: redis.Redis) -> Script:
    """The script, registered once for the process's client (a new one after a fork)."""
    global _script
    if _script is None or _script[0] is not client:
        _script = (client, client.register_script(_COUNT_LUA))
    return _script[1]


def allowed(user_id: int, update_id: int) -> tuple[bool, bool]:
    """(handle this update?, tell the user to slow down now?)"""
    return allowed_many([(user_id, update_id)])[0]


def allowed_many(updates: list[tuple[int, int]]) -> list[tuple[bool, bool]]:
    """`allowed` for several (sender, update id) pairs at once, in order: one round trip for all
    (the updates a worker takes together)."""
    now = time.time()
    client = redis_client.client()
    count = _count(client)
    with client.pipeline(transaction=False) as pipe:
        for user_id, update_id in updates:
            count(keys=[f"flood:{user_id}"], args=[str(update_id), repr(now), repr(now - WINDOW_SECONDS),
                                                   WINDOW_SECONDS * 2], client=pipe)
        counts = pipe.execute()
    limit = max_updates_per_window()
    verdicts = []
    for (user_id, _update_id), counted in zip(updates, counts, strict=True):
        if int(counted) <= limit:
            verdicts.append((True, False))
            continue
        first_notice = bool(client.set(f"flood:noticed:{user_id}", 1, nx=True, ex=NOTICE_EVERY_SECONDS))
        verdicts.append((False, first_notice))
    return verdicts
