"""Beat's scheduler: celery-redbeat's, made to outlive a Redis outage.

redbeat keeps the schedule and a lock in Redis, so only one beat acts at a time. As shipped it takes
the lock once at start-up, blocking, and extends it at the top of every tick; a Redis connection
error there, or finding the lock taken, ends the beat process. This scheduler instead:

* makes sure, at the top of every tick, that it holds the lock: it extends the lock it has, or tries
  once, without blocking, to take it. A beat that does not hold it sends nothing and tries again at
  its next tick. That is how a second beat waits, and how a beat whose lock expired during a long
  outage (and was taken by another beat meanwhile) steps back until it holds it again;
* treats a Redis connection error anywhere in a tick (the lock, the schedule) as an outage: logged
  once, the tick retried every `max_interval`, the lock kept (it is still ours when Redis comes back
  within `redbeat_lock_timeout`, else the first point applies);
* sends a due job only while the lock, as last extended, is valid for `lock_margin` seconds more, so
  a tick slowed down by a failing broker cannot send after another beat could have taken over;
* installs its schedule once Redis answers when it starts during an outage, instead of exiting.

A job that fell due while Redis was down is sent once when Redis is back (not once per missed
period); one whose sending failed halfway is skipped until it is due again. Jobs are idempotent.
"""

from __future__ import annotations

import time

import redis.exceptions
from celery.signals import beat_init
from redbeat.schedulers import LUA_EXTEND_TO_SCRIPT, RedBeatScheduler, acquire_distributed_beat_lock, get_redis

from core.logging import get_logger
from core.metrics import record_beat_tick

log = get_logger(__name__)

# Redis gone or not answering (BusyLoadingError, while it reloads its data, is a ConnectionError).
REDIS_DOWN = (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError)

# redbeat takes the lock in a beat_init handler that blocks until it gets it; Celery swallows a Redis
# error there and the first tick then fails on the missing lock. This scheduler takes it in tick().
beat_init.disconnect(acquire_distributed_beat_lock)


class Scheduler(RedBeatScheduler):
    #: No job is sent when the lock, as last extended, expires in less than this many seconds.
    lock_margin = 5.0

    def __init__(self, app, **kwargs) -> None:
        self._schedule_installed = False
        self._lock_valid_until = 0.0  # time.monotonic() at which the lock, as last extended, expires
        self._waiting_for_lock = False
        self._redis_down_since: float | None = None
        # lazy: the schedule goes into Redis at the first tick that reaches it, not now (Redis may be down).
        super().__init__(app, **{**kwargs, "lazy": True})

    def tick(self, *args, **kwargs) -> float:
        try:
            interval = self._tick()
        except REDIS_DOWN as error:
            self._redis_unreachable(error)
            return self.max_interval
        self._redis_reachable()
        return interval

    def _tick(self) -> float:
        if not self._schedule_installed:
            self.setup_schedule()
            self._schedule_installed = True
        if self.lock_key and not self._hold_lock():
            return self.max_interval
        record_beat_tick(get_redis(self.app))  # for the "beat not ticking" alert (tasks/metrics_exporter.py)
        return self._send_due_jobs()

    def close(self) -> None:
        try:
            super().close()  # releases the lock if it is still ours
        except REDIS_DOWN as error:
            log.warning("beat_lock_not_released", lock=self.lock_key, error=str(error),
                        detail=f"Redis is unreachable; the lock expires by itself within {self.lock_timeout}s")
            self.lock = None

    def _hold_lock(self) -> bool:
        """Whether this beat holds the lock: extends the one it has, or tries once to take it."""
        asked_at = time.monotonic()
        if self.lock is not None:
            try:
                self.lock.extend(int(self.lock_timeout))  # redbeat's script: the time to live becomes lock_timeout
            except redis.exceptions.LockNotOwnedError:
                log.error("beat_lock_lost", lock=self.lock_key,
                          detail="the lock expired (Redis was unreachable for longer than its timeout?) and another "
                                 "beat took it; sending nothing until this beat holds it again")
                self.lock = None
        if self.lock is None:
            lock = self._new_lock()
            if not lock.acquire(blocking=False):
                if not self._waiting_for_lock:
                    log.info("beat_lock_waiting", lock=self.lock_key, retry_every=self.max_interval,
                             detail="another beat holds the lock; this one sends nothing until it is free")
                    self._waiting_for_lock = True
                return False
            self.lock, self._waiting_for_lock = lock, False
            log.info("beat_lock_acquired", lock=self.lock_key, timeout=self.lock_timeout)
        self._lock_valid_until = asked_at + self.lock_timeout
        return True

    def _new_lock(self):
        client = get_redis(self.app)
        lock = client.lock(self.lock_key, timeout=self.lock_timeout, sleep=self.max_interval)
        # As redbeat does: extending sets the time to live to the timeout instead of adding to it.
        lock.lua_extend = client.register_script(LUA_EXTEND_TO_SCRIPT)
        return lock

    def _send_due_jobs(self) -> float:
        """redbeat's tick without the lock: send what is due, return the seconds until the next tick."""
        remaining_times = []
        try:
            for entry in self.schedule.values():
                if self.lock_key and time.monotonic() > self._lock_valid_until - self.lock_margin:
                    log.warning("beat_lock_too_old", lock=self.lock_key,
                                detail="this tick took too long to trust the lock; sending the rest next tick")
                    break
                next_time_to_run = self.maybe_due(entry, **self._maybe_due_kwargs)
                if next_time_to_run:
                    remaining_times.append(next_time_to_run)
        except RuntimeError:
            log.debug("beat_tick_runtime_error", exc_info=True)  # as redbeat: the schedule changed meanwhile
        return min([*remaining_times, self.max_interval])

    def _redis_unreachable(self, error: Exception) -> None:
        if self._redis_down_since is None:
            self._redis_down_since = time.monotonic()
            log.warning("beat_redis_unreachable", error=str(error), retry_every=self.max_interval,
                        holds_lock=self.lock is not None,
                        detail="sending nothing until Redis answers; retrying")

    def _redis_reachable(self) -> None:
        if self._redis_down_since is not None:
            log.warning("beat_redis_reachable_again", down_for=round(time.monotonic() - self._redis_down_since, 1))
            self._redis_down_since = None
