"""Per-user flood protection: one noisy user must not fill the updates queue for everyone else.

A sliding window in Redis (a sorted set of the user's update ids by time) counts each user's
updates of the last WINDOW_SECONDS; past the limit, updates are answered (a button press gets a
short note) but not handled, and the user is told to slow down at most once a minute. A fixed
window let a burst that straddled its boundary through, half in each window. An update delivered
again counts once. The check costs one Redis round trip and no database work.
"""

from __future__ import annotations

import time

from core import redis_client
from core.settings import get_settings

WINDOW_SECONDS = 10
NOTICE_EVERY_SECONDS = 60


def max_updates_per_window() -> int:
    """FLOOD_MAX_UPDATES_PER_WINDOW: a person tapping fast stays far below it; a script does not."""
    return get_settings().flood_max_updates_per_window


def allowed(user_id: int, update_id: int) -> tuple[bool, bool]:
    """(handle this update?, tell the user to slow down now?)"""
    now = time.time()
    key = f"flood:{user_id}"
    pipe = redis_client.client().pipeline()
    pipe.zadd(key, {str(update_id): now}, nx=True)
    pipe.zremrangebyscore(key, "-inf", now - WINDOW_SECONDS)
    pipe.zcard(key)
    pipe.expire(key, WINDOW_SECONDS * 2)
    _, _, count, _ = pipe.execute()
    if count <= max_updates_per_window():
        return True, False
    first_notice = bool(redis_client.client().set(f"flood:noticed:{user_id}", 1, nx=True, ex=NOTICE_EVERY_SECONDS))
    return False, first_notice
