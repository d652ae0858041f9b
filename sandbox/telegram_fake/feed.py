"""Change notification shared by the server's event loop and other threads.

Every state change bumps a version counter.  Waiters re-evaluate a predicate whenever the
version moves, so long polls, webhook workers, SSE streams and in-process test helpers are all
woken by events instead of polling with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def _settle(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


class ChangeFeed:
    def __init__(self) -> None:
        self._condition = threading.Condition()
        self._version = 0
        self._async_waiters: list[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = []

    @property
    def version(self) -> int:
        with self._condition:
            return self._version

    def bump(self) -> int:
        """Record a change and wake every waiter; returns the new version (used as event seq)."""
        with self._condition:
            self._version += 1
            version = self._version
            waiters, self._async_waiters = self._async_waiters, []
            self._condition.notify_all()
        for loop, future in waiters:
            # The waiter's loop may already be gone (e.g. a finished test loop); nothing to wake then.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(_settle, future)
        return version

    # The timeout is part of the answer (the last falsy result), not a cancellation, so it is a parameter
    # rather than the caller's asyncio.timeout().
    async def wait_for(self, predicate: Callable[[], T], timeout: float | None) -> T:  # noqa: ASYNC109
        """Return the first truthy ``predicate()`` result, or the last falsy one after ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while True:
            seen = self.version
            result = predicate()
            if result:
                return result
            remaining = None if deadline is None else deadline - loop.time()
            if remaining is not None and remaining <= 0:
                return result
            future: asyncio.Future[None] = loop.create_future()
            with self._condition:
                if self._version != seen:
                    continue
                entry = (loop, future)
                self._async_waiters.append(entry)
            try:
                await asyncio.wait_for(future, remaining)
            except TimeoutError:
                pass
            finally:
                with self._condition, contextlib.suppress(ValueError):
                    self._async_waiters.remove(entry)

    def wait_for_sync(self, predicate: Callable[[], T], timeout: float | None) -> T:
        """Blocking twin of :meth:`wait_for` for plain threads."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            seen = self.version
            # The predicate takes the state lock; never call it while holding the condition,
            # because bump() is called with the state lock held (lock order: state -> condition).
            result = predicate()
            if result:
                return result
            with self._condition:
                while self._version == seen:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0:
                        break
                    self._condition.wait(remaining)
                else:
                    continue
            return predicate()
