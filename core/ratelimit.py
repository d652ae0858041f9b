"""One outbound rate limit for every worker process: Telegram's global and per-chat limits.

Telegram allows a bot about 30 messages a second overall and about 1 a second per chat (short
bursts tolerated). Every process that sends calls `rate_limiter().acquire(chat_id)` just before
its Bot API call, and all of them draw from the same buckets in Redis. A paid broadcast (a message
sent with `allow_paid_broadcast`, up to 1,000 a second) draws from a global bucket of its own
instead (`acquire(chat_id, paid=True)`); the chat's bucket is the same.

Algorithm: GCRA (the "generic cell rate algorithm", a token bucket kept as one timestamp). Each
bucket stores its theoretical arrival time (TAT), in microseconds of Redis server time. With
emission interval T = 1/rate and burst b, a send at time `now` conforms if

    max(TAT, now) + T - now <= b * T

and then TAT becomes max(TAT, now) + T. So b sends can go at once, then one per T. Otherwise the
caller must wait exactly `max(TAT, now) + T - b*T - now`. In any window of length W at most
b + W/T sends conform, which is the guarantee the workers need together.

One Lua script per acquire checks the global bucket and the chat's bucket and updates both only
if both conform (one round trip, atomic: no other client runs between the check and the write).
Time is read inside the script with TIME, so the machines' own clocks never matter. A key whose
TAT has passed is the same as no key (a full bucket), so each key expires shortly after its TAT:
an idle chat's key disappears a few seconds after its last send.

`penalize(retry_after)` (after a 429) pushes the global TAT so that nothing conforms for
retry_after seconds and the bucket is then empty: sending resumes at the steady rate rather than
with a full burst that would likely draw the next 429.

With Redis Cluster, give a key_prefix with a hash tag (e.g. "ratelimit:{tg}:") so the script's
two keys share a slot.
"""

from __future__ import annotations

import math
import os
import threading
import time
from typing import NamedTuple, TypedDict

import redis

from core.settings import get_settings

__all__ = ["Attempt", "RateLimitTimeout", "TelegramRateLimiter", "rate_limiter"]

# How long a key outlives its TAT (milliseconds): only a safety margin, as a key whose TAT has
# passed carries no information.
_EXPIRY_MARGIN_MS = 1000

# KEYS[1] global bucket, KEYS[2] chat bucket.
# ARGV[1], ARGV[2]: global interval and burst span (burst * interval), integer microseconds.
# ARGV[3], ARGV[4]: the same for the chat.
# Returns {wait_us, server_seconds, server_microseconds}; wait_us == 0 means granted (consumed).
# (replicate_commands: Redis < 5 needs it to write after TIME; later versions always do this.)
_ACQUIRE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local function check(key, interval, span)
    local tat = tonumber(redis.call('GET', key) or '0') or 0
    if tat < now then tat = now end
    local new_tat = tat + interval
    return new_tat, new_tat - span - now
end

local g_tat, g_wait = check(KEYS[1], tonumber(ARGV[1]), tonumber(ARGV[2]))
local c_tat, c_wait = check(KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]))
local wait = math.max(g_wait, c_wait)
if wait > 0 then
    return {math.ceil(wait), t[1], t[2]}
end
local margin = tonumber(ARGV[5])
redis.call('SET', KEYS[1], string.format('%.0f', g_tat), 'PX', math.ceil((g_tat - now) / 1000) + margin)
redis.call('SET', KEYS[2], string.format('%.0f', c_tat), 'PX', math.ceil((c_tat - now) / 1000) + margin)
return {0, t[1], t[2]}
"""

# KEYS[1] global bucket. ARGV[1]: hold-off in microseconds; ARGV[2]: (burst - 1) * interval.
# Never shortens a hold-off already in place.
_PENALIZE_LUA = """
if redis.replicate_commands then redis.replicate_commands() end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local target = now + tonumber(ARGV[1]) + tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0') or 0
if tat < target then
    tat = target
    redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000) + tonumber(ARGV[3]))
end
return {t[1], t[2]}
"""


class RateLimitTimeout(Exception):
    """`acquire` would have had to wait longer than its max_wait."""

    def __init__(self, chat_id: int, wait: float, max_wait: float) -> None:
        super().__init__(f"sending to chat {chat_id} would wait {wait:.3f}s (more than max_wait {max_wait:.3f}s)")
        self.chat_id = chat_id
        self.wait = wait
        self.max_wait = max_wait


class Attempt(NamedTuple):
    wait: float  # 0.0: granted; otherwise seconds until a retry can succeed (nothing consumed)
    server_time: float  # Redis server time of the decision, seconds since the epoch


def _interval_us(rate: float) -> int:
    # Rounded up: the limiter may be a hair slower than configured, never faster.
    return math.ceil(1_000_000 / rate)


class TelegramRateLimiter:
    """A global and a per-chat GCRA bucket in Redis, shared by every process using the same prefix."""

    def __init__(
        self,
        redis_client: redis.Redis,
        *,
        global_rate: float = 30.0,
        global_burst: int = 30,
        chat_rate: float = 1.0,
        chat_burst: int = 3,
        paid_rate: float = 1000.0,
        paid_burst: int = 100,
        key_prefix: str = "ratelimit:tg:",
    ) -> None:
        for name, rate in (("global_rate", global_rate), ("chat_rate", chat_rate), ("paid_rate", paid_rate)):
            if not (rate > 0 and math.isfinite(rate)):
                raise ValueError(f"{name} must be a positive number, got {rate!r}")
        for name, burst in (("global_burst", global_burst), ("chat_burst", chat_burst), ("paid_burst", paid_burst)):
            if int(burst) != burst or burst < 1:
                raise ValueError(f"{name} must be an integer >= 1, got {burst!r}")
        self.redis = redis_client
        self.global_rate = float(global_rate)
        self.global_burst = int(global_burst)
        self.chat_rate = float(chat_rate)
        self.chat_burst = int(chat_burst)
        self.key_prefix = key_prefix
        self.paid_rate = float(paid_rate)
        self.paid_burst = int(paid_burst)
        self.global_key = f"{key_prefix}global"
        self.paid_key = f"{key_prefix}paid"
        self._global_interval = _interval_us(global_rate)
        self._chat_interval = _interval_us(chat_rate)
        self._acquire_args = (
            self._global_interval,
            self._global_interval * self.global_burst,
            self._chat_interval,
            self._chat_interval * self.chat_burst,
            _EXPIRY_MARGIN_MS,
        )
        paid_interval = _interval_us(paid_rate)
        self._paid_args = (paid_interval, paid_interval * self.paid_burst, *self._acquire_args[2:])
        self._acquire_script = redis_client.register_script(_ACQUIRE_LUA)
        self._penalize_script = redis_client.register_script(_PENALIZE_LUA)

    def chat_key(self, chat_id: int) -> str:
        return f"{self.key_prefix}chat:{int(chat_id)}"

    def attempt(self, chat_id: int, paid: bool = False) -> Attempt:
        """One atomic check of both buckets (the paid broadcasts' global one for `paid`); consumes
        from both only if both allow."""
        wait_us, seconds, micros = self._acquire_script(
            keys=[self.paid_key if paid else self.global_key, self.chat_key(chat_id)],
            args=self._paid_args if paid else self._acquire_args,
        )
        return Attempt(int(wait_us) / 1_000_000, int(seconds) + int(micros) / 1_000_000)

    def try_acquire(self, chat_id: int) -> float:
        """0.0 if a send is allowed now (tokens consumed), else the seconds to wait before trying again
        (nothing consumed)."""
        return self.attempt(chat_id).wait

    def acquire(self, chat_id: int, max_wait: float = 30.0, paid: bool = False) -> None:
        """Block (sleep) until allowed; raise RateLimitTimeout if it would exceed max_wait."""
        self._acquire(chat_id, max_wait, paid)

    def _acquire(self, chat_id: int, max_wait: float, paid: bool = False) -> float:
        """`acquire`, returning the Redis server time at which the send was granted."""
        deadline = time.monotonic() + max_wait
        while True:
            wait, granted_at = self.attempt(chat_id, paid)
            if wait == 0.0:
                return granted_at
            remaining = deadline - time.monotonic()
            if wait > remaining:
                raise RateLimitTimeout(chat_id, wait, max_wait)
            # Another process may take the slot first; then the next attempt says how long to wait.
            time.sleep(wait)

    def penalize(self, retry_after: float) -> None:
        """After a 429 from Telegram: make every worker hold off globally for retry_after seconds."""
        if not retry_after > 0:
            return
        hold_us = math.ceil(float(retry_after) * 1_000_000)
        self._penalize_script(
            keys=[self.global_key],
            args=[hold_us, self._global_interval * (self.global_burst - 1), _EXPIRY_MARGIN_MS],
        )


_lock = threading.Lock()
_limiter: TelegramRateLimiter | None = None
_limiter_pid: int | None = None


# A little under Telegram's limits (30/s, burst ~30; 1/s per chat, burst ~3): our grant and
# Telegram's receipt are a network hop apart, and that jitter alone drew 429s at equal limits.
class Limits(TypedDict):
    global_rate: float
    global_burst: int
    chat_rate: float
    chat_burst: int
    paid_rate: float
    paid_burst: int


# Paid broadcasts: Telegram's 1,000/s, with the same margin. The per-chat pair is a setting
# (TELEGRAM_CHAT_RATE, TELEGRAM_CHAT_BURST, with these defaults).
SAFE_LIMITS: Limits = {"global_rate": 29.0, "global_burst": 25, "chat_rate": 0.95, "chat_burst": 2,
                       "paid_rate": 970.0, "paid_burst": 50}


def rate_limiter() -> TelegramRateLimiter:
    """This process's limiter on the configured Redis (a new one after a fork)."""
    global _limiter, _limiter_pid
    pid = os.getpid()
    limiter = _limiter
    if limiter is not None and _limiter_pid == pid:
        return limiter
    with _lock:
        if _limiter is None or _limiter_pid != pid:
            settings = get_settings()
            client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
            limits: Limits = {**SAFE_LIMITS, "chat_rate": settings.telegram_chat_rate,
                              "chat_burst": settings.telegram_chat_burst}
            _limiter = TelegramRateLimiter(client, **limits)
            _limiter_pid = pid
        return _limiter
