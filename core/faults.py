"""Fault points: SIGKILL this process at a named line, as the OOM killer would, for crash drills.

    FAULT_KILL_AT=after_commit_before_enqueue          # arm one point (a comma-separated list arms several)
    FAULT_KILL_AT=after_commit_before_enqueue:payments.create_checkout   # only for that task
    FAULT_KILL_ONCE_FILE=/tmp/armed                    # fire once in all: the process that deletes it

The environment is read once, at import (a prefork child inherits it). Unset, nothing is armed
and a point costs one set lookup. With ``FAULT_KILL_ONCE_FILE``, a point fires only while that
file exists, and only in the process whose ``unlink`` succeeds, so a drill kills exactly one
process however many workers run armed; without it, an armed point fires every time it is reached.

The points (docs/reliability.md says what each one shows):

* ``after_commit_before_enqueue`` (core/handover.py): a transaction that handed work over has
  committed, the task is not published yet.
* ``after_enqueue_before_ack`` (a ``task_postrun`` handler, connected only when armed): a task's
  body returned and published what it handed over; the broker has not been told it is done.
* ``mid_send`` (core/outbox.py): Telegram accepted a message (or a button's answer), the outbox
  row does not say so yet.
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

AFTER_COMMIT_BEFORE_ENQUEUE = "after_commit_before_enqueue"
AFTER_ENQUEUE_BEFORE_ACK = "after_enqueue_before_ack"
MID_SEND = "mid_send"
POINTS = (AFTER_COMMIT_BEFORE_ENQUEUE, AFTER_ENQUEUE_BEFORE_ACK, MID_SEND)


def _armed(raw: str) -> dict[str, str | None]:
    """{point: detail it is limited to, or None for any}."""
    armed: dict[str, str | None] = {}
    for item in filter(None, (part.strip() for part in raw.split(","))):
        point, _, detail = item.partition(":")
        if point not in POINTS:
            raise ValueError(f"FAULT_KILL_AT: unknown fault point {point!r} (known: {', '.join(POINTS)})")
        armed[point] = detail or None
    return armed


ARMED = _armed(os.environ.get("FAULT_KILL_AT", ""))
ONCE_FILE = os.environ.get("FAULT_KILL_ONCE_FILE") or None


def kill_point(point: str, detail: str | None = None) -> None:
    """Die here (SIGKILL, no clean-up of any kind) if `point` is armed (for `detail`, when the
    arming names one)."""
    if point in ARMED:
        _maybe_fire(point, detail)


def _maybe_fire(point: str, detail: str | None) -> None:
    wanted = ARMED[point]
    if wanted is not None and wanted != detail:
        return
    if ONCE_FILE is not None:
        try:
            os.unlink(ONCE_FILE)
        except FileNotFoundError:
            return  # fired already (here or in another process)
    # Straight to the file descriptor: the log line must be out before the process is gone.
    os.write(sys.stderr.fileno(),
             f'{{"event": "fault_point_fired", "point": "{point}", "detail": "{detail or ""}", '
             f'"pid": {os.getpid()}}}\n'.encode())
    os.kill(os.getpid(), signal.SIGKILL)


def _after_task(task: Any = None, **_kwargs: Any) -> None:
    kill_point(AFTER_ENQUEUE_BEFORE_ACK, getattr(task, "name", None))


if AFTER_ENQUEUE_BEFORE_ACK in ARMED:
    # task_postrun runs in the process that ran the task, after its body returned and before the
    # result goes back to the worker's main process, which only then acknowledges the message
    # (acks_late). Connected only when armed, so unarmed workers run no handler at all.
    from celery.signals import task_postrun

    task_postrun.connect(_after_task, weak=False)
