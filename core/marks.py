"""Marking rows done after the fact, in batches, off the hot path.

A published hand-over (core.handover) and an answered button press (core.outbox) are marked in
the database once done. The mark only saves a repetition: a row left unmarked (the process died,
or its batch was lost) is published or answered once more by a redelivery or a sweeper, which is
harmless (the task is idempotent; Telegram refuses a second answer). So no task waits for it:
`later` queues the ids, and one background thread per process writes each queued kind in one
statement for all its ids about every `MARKS_DELAY_SECONDS` (0.5 s; core.settings), in one
transaction that does not wait for the disk. `flush` writes the queue now (tests; and at interpreter exit).

Measured here (`python -m bench.bench_handover`): a separate statement per mark took a pooled
connection (pinged on checkout) and a round trip, 0.25–0.5 ms per mark on the update task's path.
"""

from __future__ import annotations

import atexit
import os
import threading
import time

from sqlalchemy import exc as sa_exc
from sqlalchemy import text
from sqlalchemy.sql.elements import TextClause

from core import db
from core.logging import get_logger
from core.settings import get_settings

log = get_logger(__name__)

_STATEMENTS: dict[str, TextClause] = {}


class _Queue:
    """This process's queued marks and the thread that writes them (a fresh one after a fork)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.wake = threading.Event()
        self.ids: dict[str, list[int]] = {}
        self.thread: threading.Thread | None = None


_queue = _Queue()


def register(kind: str, statement: str) -> None:
    """A kind of mark: an UPDATE with an ``:ids`` array parameter (idempotent: it runs again for ids
    already marked after a lost batch)."""
    _STATEMENTS[kind] = text(statement)


def later(kind: str, ids: list[int]) -> None:
    """Mark these rows as `kind` says, within about `MARKS_DELAY_SECONDS`."""
    if kind not in _STATEMENTS:
        raise KeyError(f"no mark registered as {kind!r}")
    queue = _queue
    with queue.lock:
        queue.ids.setdefault(kind, []).extend(ids)
        if queue.thread is None:
            queue.thread = threading.Thread(target=_run, args=(queue,), name="marks", daemon=True)
            queue.thread.start()
    queue.wake.set()


def flush() -> None:
    """Write every queued mark now."""
    _write(_queue)


def pending() -> int:
    with _queue.lock:
        return sum(len(ids) for ids in _queue.ids.values())


def _write(queue: _Queue) -> None:
    with queue.lock:
        batch, queue.ids = queue.ids, {}
    if not batch:
        return
    try:
        with db.engine().begin() as conn:
            conn.exec_driver_sql("SET LOCAL synchronous_commit = off")
            for kind, ids in batch.items():
                conn.execute(_STATEMENTS[kind], {"ids": ids})
    except sa_exc.SQLAlchemyError as error:  # done all the same: a lost mark means one repetition
        log.warning("marks_not_written", counts={k: len(v) for k, v in batch.items()}, error=repr(error)[:300])


def _run(queue: _Queue) -> None:
    while True:
        queue.wake.wait()
        time.sleep(get_settings().marks_delay_seconds)  # for others to share the statement
        queue.wake.clear()
        _write(queue)


def _after_fork_in_child() -> None:
    # Neither the parent's thread nor, possibly, the state of its lock comes along through fork.
    global _queue
    _queue = _Queue()


os.register_at_fork(after_in_child=_after_fork_in_child)
atexit.register(flush)
