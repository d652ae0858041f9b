"""Fault injection and optional enforcement of Telegram's flood limits."""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any

from .errors import ApiError, too_many_requests

_DEFAULT_DESCRIPTIONS = {
    400: "Bad Request: sandbox fault",
    403: "Forbidden: sandbox fault",
    409: "Conflict: sandbox fault",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass
class Fault:
    """Fail the next ``remaining`` calls of ``method`` (any method when None)."""

    method: str | None
    status: int
    remaining: int
    description: str
    retry_after: int | None = None

    def matches(self, method: str) -> bool:
        return self.remaining > 0 and (self.method is None or self.method.lower() == method.lower())

    def error(self) -> ApiError:
        if self.retry_after is not None:
            return too_many_requests(self.retry_after)
        return ApiError(self.status, self.description)


@dataclass
class RateLimitSettings:
    global_per_second: float = 30.0
    global_burst: int = 30
    per_chat_per_second: float = 1.0
    per_chat_burst: int = 3
    # Messages sent with `allow_paid_broadcast` draw from a bucket of their own (Telegram: up to
    # 1,000 a second, 0.1 Stars each) instead of the global one; the chat's limit still applies.
    paid_per_second: float = 1000.0
    paid_burst: int = 100


class TokenBucket:
    def __init__(self, rate: float, capacity: int, now: float):
        self.rate = rate
        self.capacity = capacity
        self.tokens = float(capacity)
        self.updated = now

    def refill(self, now: float) -> None:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now

    def seconds_until_token(self) -> float:
        return 0.0 if self.tokens >= 1 else (1 - self.tokens) / self.rate


class FaultInjector:
    """Not thread-safe on its own: callers hold the sandbox state lock."""

    def __init__(self) -> None:
        self.faults: list[Fault] = []
        # While set, Bot API requests wait, and those whose caller gave up meanwhile are never
        # carried out: Telegram out of reach, so a crashed client's last call had no effect.
        self.unreachable = False
        self.unreachable_methods: set[str] | None = None  # None: every method
        self.held_calls = 0  # waiting right now because of `unreachable`
        self.rate_limit: RateLimitSettings | None = None
        self._global_bucket: TokenBucket | None = None
        self._paid_bucket: TokenBucket | None = None
        self._chat_buckets: dict[tuple[int, int], TokenBucket] = {}

    def add(
        self,
        method: str | None,
        *,
        status: int | None = None,
        count: int = 1,
        description: str | None = None,
        retry_after: int | None = None,
    ) -> Fault:
        if retry_after is not None:
            status = 429
        if status is None:
            raise ValueError("a fault needs a status or retry_after")
        fault = Fault(
            method=method or None,
            status=status,
            remaining=count,
            description=description or _DEFAULT_DESCRIPTIONS.get(status, f"Error {status}"),
            retry_after=retry_after,
        )
        self.faults.append(fault)
        return fault

    def take(self, method: str) -> ApiError | None:
        """Consume the first fault armed for this method, if any."""
        for fault in self.faults:
            if fault.matches(method):
                fault.remaining -= 1
                if fault.remaining <= 0:
                    self.faults.remove(fault)
                return fault.error()
        return None

    def set_rate_limit(self, settings: RateLimitSettings | None) -> None:
        self.rate_limit = settings
        self._global_bucket = None
        self._paid_bucket = None
        self._chat_buckets.clear()

    def check_flood(self, bot_id: int, chat_id: int, paid: bool = False) -> ApiError | None:
        """Spend one message from the global (or, for a paid broadcast, the paid) and the per-chat
        budget, or say how long to wait."""
        settings = self.rate_limit
        if settings is None:
            return None
        now = time.monotonic()
        if self._global_bucket is None:
            self._global_bucket = TokenBucket(settings.global_per_second, settings.global_burst, now)
        if self._paid_bucket is None:
            self._paid_bucket = TokenBucket(settings.paid_per_second, settings.paid_burst, now)
        chat_bucket = self._chat_buckets.setdefault(
            (bot_id, chat_id), TokenBucket(settings.per_chat_per_second, settings.per_chat_burst, now)
        )
        buckets = (self._paid_bucket if paid else self._global_bucket, chat_bucket)
        for bucket in buckets:
            bucket.refill(now)
        wait = max(bucket.seconds_until_token() for bucket in buckets)
        if wait > 0:
            # Telegram reports whole seconds, at least one.
            return too_many_requests(max(1, math.ceil(wait)))
        for bucket in buckets:
            bucket.tokens -= 1
        return None

    def holds(self, method: str) -> bool:
        return self.unreachable and (self.unreachable_methods is None or method.lower() in self.unreachable_methods)

    def set_unreachable(self, unreachable: bool, methods: list[str] | None = None) -> None:
        self.unreachable = unreachable
        self.unreachable_methods = {name.lower() for name in methods} if methods else None

    def clear(self) -> None:
        self.faults.clear()
        self.set_unreachable(False)
        self.set_rate_limit(None)

    def describe(self) -> dict[str, Any]:
        return {
            "faults": [asdict(fault) for fault in self.faults],
            "rate_limit": asdict(self.rate_limit) if self.rate_limit else None,
            "unreachable": self.unreachable,
            "unreachable_methods": sorted(self.unreachable_methods) if self.unreachable_methods else None,
            "held_calls": self.held_calls,
        }
