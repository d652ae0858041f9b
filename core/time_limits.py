"""Task time limits kept by the process that runs the task, not by the worker's main process.

Celery's own limits (task_soft_time_limit, task_time_limit) are timers in the worker's main
process. While Redis is away that process sits in its reconnect loop instead of its event loop, so
the results of tasks that finish meanwhile stay unread in the pool's pipes. When Redis is back, the
overdue timers fire before those results are read and signal pool processes whose tasks ended long
ago. After a 60 s outage that killed pool processes in the middle of their pipes and wedged three
workers for good (bench/chaos.py; Celery issue #4789). A timer in the process that runs the task
ends with its task and cannot fire late on another one.

The limits keep Celery's meaning: at the soft limit the task gets SoftTimeLimitExceeded (it may
clean up); at the hard limit TimeLimitExceeded, a failure that leaves a dead letter; a process
that swallowed both exits a few seconds later, and the worker replaces it (the message, not
acknowledged, is delivered again).
"""

from __future__ import annotations

import enum
import os
import signal
import threading
from types import FrameType

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from core.logging import get_logger

log = get_logger(__name__)

# Seconds between TimeLimitExceeded and the process's exit, for a task that caught it.
EXIT_GRACE_SECONDS = 5.0
EXIT_STATUS = 70  # EX_SOFTWARE


class _Stage(enum.Enum):
    IDLE = "idle"
    SOFT = "soft"  # the next alarm is the soft limit
    HARD = "hard"  # the next alarm is the hard limit
    EXIT = "exit"  # the task ignored both: the next alarm ends the process


class _Limits:
    stage = _Stage.IDLE
    soft = 0.0
    hard = 0.0


_limits = _Limits()


def arm(soft_seconds: float, hard_seconds: float) -> bool:
    """Start the limits for the task about to run in this process (0 turns a limit off).

    Only a process's main thread can receive signals; elsewhere (a thread pool) nothing is armed
    and False is returned."""
    if threading.current_thread() is not threading.main_thread():
        return False
    soft = soft_seconds if 0 < soft_seconds < hard_seconds or not hard_seconds else 0.0
    _limits.soft, _limits.hard = soft, hard_seconds
    if soft:
        _limits.stage, first = _Stage.SOFT, soft
    elif hard_seconds:
        _limits.stage, first = _Stage.HARD, hard_seconds
    else:
        disarm()
        return False
    signal.signal(signal.SIGALRM, _on_alarm)
    signal.setitimer(signal.ITIMER_REAL, first)
    return True


def disarm() -> None:
    """The task ended: no limit may fire on whatever this process does next."""
    if threading.current_thread() is not threading.main_thread():
        return
    signal.setitimer(signal.ITIMER_REAL, 0)
    _limits.stage = _Stage.IDLE


def _on_alarm(_signum: int, _frame: FrameType | None) -> None:
    stage = _limits.stage
    if stage is _Stage.SOFT:
        if _limits.hard:
            _limits.stage = _Stage.HARD
            signal.setitimer(signal.ITIMER_REAL, _limits.hard - _limits.soft)
        else:
            _limits.stage = _Stage.IDLE
        raise SoftTimeLimitExceeded(_limits.soft)
    if stage is _Stage.HARD:
        _limits.stage = _Stage.EXIT
        signal.setitimer(signal.ITIMER_REAL, EXIT_GRACE_SECONDS)
        raise TimeLimitExceeded(_limits.hard)
    if stage is _Stage.EXIT:
        log.error("task_ignored_its_time_limit", hard_limit_s=_limits.hard, grace_s=EXIT_GRACE_SECONDS)
        os._exit(EXIT_STATUS)
    # IDLE: an alarm already on its way when the task ended; nothing runs that it was meant for.
