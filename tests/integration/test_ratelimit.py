"""The shared Telegram rate limiter against the session's real Redis, from one and from many processes."""

from __future__ import annotations

import bisect
import multiprocessing
import os
import time
import uuid

import pytest
import redis

from core.ratelimit import RateLimitTimeout, TelegramRateLimiter


@pytest.fixture
def client() -> redis.Redis:
    connection = redis.Redis.from_url(os.environ["REDIS_URL"])
    yield connection
    connection.close()


@pytest.fixture
def prefix() -> str:
    return f"test:ratelimit:{uuid.uuid4().hex}:"


def make(client: redis.Redis, prefix: str, **config) -> TelegramRateLimiter:
    return TelegramRateLimiter(client, key_prefix=prefix, **config)


def server_now(client: redis.Redis) -> float:
    seconds, micros = client.time()
    return seconds + micros / 1_000_000


def max_in_window(stamps: list[float], window: float = 1.0) -> int:
    """The most timestamps in any closed interval [t, t + window]."""
    stamps = sorted(stamps)
    return max((bisect.bisect_right(stamps, t + window) - i for i, t in enumerate(stamps)), default=0)


# --- one process -------------------------------------------------------------------------------


def test_burst_then_throttled_with_a_sensible_wait(client, prefix):
    limiter = make(client, prefix, global_rate=100, global_burst=100, chat_rate=2, chat_burst=3)
    assert [limiter.try_acquire(7) for _ in range(3)] == [0.0, 0.0, 0.0]
    wait = limiter.try_acquire(7)
    # The burst is spent a few milliseconds after it began: the next token is almost one interval away.
    assert 0.3 < wait <= 0.5
    # A refused attempt consumes nothing: asking again right away gives (about) the same answer.
    again = limiter.try_acquire(7)
    assert 0 < again <= wait
    time.sleep(wait)
    assert limiter.try_acquire(7) == 0.0
    assert 0.3 < limiter.try_acquire(7) <= 0.5


def test_chats_have_their_own_buckets(client, prefix):
    limiter = make(client, prefix, global_rate=1000, global_burst=1000, chat_rate=1, chat_burst=2)
    for chat in range(1, 21):
        assert limiter.try_acquire(chat) == 0.0
        assert limiter.try_acquire(chat) == 0.0
        assert limiter.try_acquire(chat) > 0.9
    # Chat ids can be negative (groups, channels).
    assert limiter.try_acquire(-1001234567890) == 0.0


def test_global_limit_caps_the_total_across_chats(client, prefix):
    limiter = make(client, prefix, global_rate=10, global_burst=5, chat_rate=1, chat_burst=3)
    results = [limiter.try_acquire(chat) for chat in range(100, 110)]
    assert results[:5] == [0.0] * 5
    assert all(0.05 < wait <= 0.1 for wait in results[5:]), results
    # A refused global check does not spend the chat's tokens: chat 105 still has its whole burst.
    time.sleep(0.35)  # three global tokens back
    assert [limiter.try_acquire(105) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limiter.try_acquire(105) > 0.9  # now the chat bucket is the one that says no


def test_refused_chat_check_does_not_spend_the_global_bucket(client, prefix):
    limiter = make(client, prefix, global_rate=1, global_burst=2, chat_rate=1, chat_burst=1)
    assert limiter.try_acquire(1) == 0.0
    for _ in range(10):
        assert limiter.try_acquire(1) > 0.9  # chat says no; the global bucket must be untouched
    assert limiter.try_acquire(2) == 0.0  # the second global token is still there
    assert limiter.try_acquire(3) > 0.9


def test_acquire_sleeps_until_allowed_and_times_out_without_consuming(client, prefix):
    limiter = make(client, prefix, global_rate=1000, global_burst=1000, chat_rate=5, chat_burst=1)
    start = server_now(client)
    for _ in range(4):
        limiter.acquire(9)
    # Four sends at 5/s with burst 1: at least three intervals between the first and the last.
    assert server_now(client) - start >= 3 * 0.2 - 0.01
    with pytest.raises(RateLimitTimeout) as info:
        limiter.acquire(9, max_wait=0.05)
    assert 0.05 < info.value.wait <= 0.2
    time.sleep(0.2)
    assert limiter.try_acquire(9) == 0.0  # the timed-out call took nothing


def test_keys_expire_by_themselves(client, prefix):
    limiter = make(client, prefix, global_rate=30, global_burst=30, chat_rate=1, chat_burst=3)
    limiter.acquire(5)
    keys = sorted(key.decode() for key in client.scan_iter(match=prefix + "*"))
    assert keys == [prefix + "chat:5", prefix + "global"]
    for key in keys:
        ttl = client.pttl(key)
        assert 0 < ttl <= 5_000, (key, ttl)
    # A short-lived configuration shows the keys actually going away when idle.
    fast = make(client, prefix + "fast:", global_rate=1000, global_burst=1, chat_rate=1000, chat_burst=1)
    fast.acquire(6)
    assert client.exists(prefix + "fast:global", prefix + "fast:chat:6") == 2
    deadline = time.monotonic() + 3
    while client.exists(prefix + "fast:global", prefix + "fast:chat:6") and time.monotonic() < deadline:
        time.sleep(0.05)
    assert client.exists(prefix + "fast:global", prefix + "fast:chat:6") == 0


def test_penalize_holds_everyone_off_then_resumes_gently(client, prefix):
    limiter = make(client, prefix, global_rate=50, global_burst=10, chat_rate=1000, chat_burst=100)
    assert limiter.try_acquire(1) == 0.0
    limiter.penalize(0.5)
    wait = limiter.try_acquire(2)
    assert 0.4 < wait <= 0.5
    # A shorter penalty never shortens the hold-off in place.
    limiter.penalize(0.1)
    assert limiter.try_acquire(3) > 0.3
    time.sleep(wait)
    # After the hold-off the bucket is empty: one send, then the steady rate (no full burst).
    assert limiter.try_acquire(4) == 0.0
    assert limiter.try_acquire(5) > 0.0
    limiter.penalize(0)  # nothing to do
    assert 0 < limiter.try_acquire(5) <= 0.02


def test_constructor_rejects_nonsense(client, prefix):
    for bad in ({"global_rate": 0}, {"chat_rate": -1}, {"global_burst": 0}, {"chat_burst": 1.5}):
        with pytest.raises(ValueError):
            TelegramRateLimiter(client, key_prefix=prefix, **bad)


def test_factory_makes_one_per_process(monkeypatch):
    from core import ratelimit

    monkeypatch.setattr(ratelimit, "_limiter", None)
    first = ratelimit.rate_limiter()
    assert ratelimit.rate_limiter() is first
    assert first.redis.ping()
    monkeypatch.setattr(ratelimit, "_limiter_pid", -1)  # as seen from a forked child
    second = ratelimit.rate_limiter()
    assert second is not first and second.redis is not first.redis
    assert ratelimit.rate_limiter() is second
    first.redis.close()
    second.redis.close()


# --- many processes ------------------------------------------------------------------------------

PROCESSES = 6
RUN_SECONDS = 2.0


def _hammer(redis_url: str, config: dict, chats: list[int], ready, results) -> None:
    """A worker process: acquire over and over for RUN_SECONDS; report the server times of its grants."""
    client = redis.Redis.from_url(redis_url)
    limiter = TelegramRateLimiter(client, **config)
    client.ping()
    ready.wait(timeout=30)  # all processes start together
    stop_at = time.monotonic() + RUN_SECONDS
    granted = []
    i = 0
    while time.monotonic() < stop_at:
        granted.append(limiter._acquire(chats[i % len(chats)], max_wait=30))
        i += 1
    results.put(granted)


def run_in_processes(config: dict, chats_of, processes: int = PROCESSES, after_start=None) -> list[float]:
    """Run `_hammer` in real OS processes; return the Redis server times of every grant, sorted."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    ready = context.Barrier(processes + 1)
    redis_url = os.environ["REDIS_URL"]
    workers = [
        context.Process(target=_hammer, args=(redis_url, config, chats_of(n), ready, results), daemon=True)
        for n in range(processes)
    ]
    for worker in workers:
        worker.start()
    try:
        ready.wait(timeout=30)
        if after_start is not None:
            after_start()
        stamps = []
        for _ in workers:
            stamps.extend(results.get(timeout=30))
        for worker in workers:
            worker.join(timeout=10)
            assert worker.exitcode == 0
    finally:
        for worker in workers:
            if worker.is_alive():
                worker.kill()
    return sorted(stamps)


def check_rate(stamps: list[float], rate: float, burst: int) -> None:
    assert len(stamps) > burst
    # Never more than the rate plus the burst in any one-second window (GCRA's bound is b + W*rate).
    assert max_in_window(stamps) <= rate + burst
    # Past the initial burst the processes together keep up the configured rate: nothing starves.
    span = stamps[-1] - stamps[0]
    assert span > RUN_SECONDS * 0.9
    steady = (len(stamps) - burst) / span
    assert 0.9 * rate <= steady <= rate * 1.01, steady


def test_many_processes_together_respect_the_global_rate(prefix):
    rate, burst = 200.0, 20
    config = {"global_rate": rate, "global_burst": burst, "chat_rate": 1000.0, "chat_burst": 100, "key_prefix": prefix}
    # 6 processes x 50 chats each (disjoint): only the global bucket is binding.
    stamps = run_in_processes(config, lambda n: list(range(n * 1000, n * 1000 + 50)))
    check_rate(stamps, rate, burst)


def test_many_processes_together_respect_one_hot_chat(prefix):
    rate, burst = 50.0, 5
    config = {"global_rate": 10_000.0, "global_burst": 1000, "chat_rate": rate, "chat_burst": burst,
              "key_prefix": prefix}
    stamps = run_in_processes(config, lambda n: [777])
    check_rate(stamps, rate, burst)


def test_penalize_stops_every_process(prefix, client):
    rate, burst = 200.0, 20
    config = {"global_rate": rate, "global_burst": burst, "chat_rate": 1000.0, "chat_burst": 100, "key_prefix": prefix}
    limiter = TelegramRateLimiter(client, **config)
    penalized_between: list[float] = []

    def penalize_mid_run() -> None:
        time.sleep(0.5)  # half a second into the hammering
        penalized_between.append(server_now(client))
        limiter.penalize(1.0)
        penalized_between.append(server_now(client))

    stamps = run_in_processes(config, lambda n: list(range(n * 1000, n * 1000 + 50)), after_start=penalize_mid_run)
    t0, t1 = penalized_between  # the penalty took effect at some server time in [t0, t1]
    assert t1 - t0 < 0.2
    assert len([s for s in stamps if s < t0]) > burst  # the processes were sending when the 429 came
    # From the penalty to its end nothing got through, in any process.
    assert not [s for s in stamps if t1 < s < t0 + 1.0]
    after = [s for s in stamps if s >= t0 + 1.0]
    # Then they resume promptly, with an empty bucket: one send, then the steady rate, no burst.
    # (Every grant after the hold-off came after the penalty's TAT, so GCRA allows at most
    # 1 + W * rate of them in the first W seconds, however the processes were scheduled.)
    assert after and after[0] < t1 + 1.05
    assert len([s for s in after if s <= t0 + 1.4]) <= 1 + 0.4 * rate
    assert len(after) >= 0.9 * rate * (stamps[-1] - (t1 + 1.0))
