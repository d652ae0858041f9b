"""The one way a piece of work hands another to a queue: by task name, after the commit.

A follow-up task sent before its transaction commits could run for rows that do not exist yet
(or never will); so everything that decides on a follow-up inside a transaction calls
`enqueue_after_commit`, and the task is published once the commit succeeded. Queues are chosen
by the task name's prefix (celeryconfig's routes). Tests replace `send_task` to watch hand-overs.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from core import faults
from core.celery_app import app
from core.db import after_commit


def send_task(name: str, args: list[Any], countdown: float | None = None,
              kwargs: dict[str, Any] | None = None) -> None:
    """Publish a task now (outside a transaction, or from a callback that runs after one)."""
    app.send_task(name, args=args, kwargs=kwargs, countdown=countdown)


def enqueue_after_commit(session: Session, name: str, *args: Any, countdown: float | None = None,
                         kwargs: dict[str, Any] | None = None) -> None:
    """Publish `name(*args, **kwargs)` once this session's transaction has committed; never if it
    rolls back."""
    after_commit(session, lambda: _publish(name, list(args), countdown, kwargs))


def _publish(name: str, args: list[Any], countdown: float | None, kwargs: dict[str, Any] | None) -> None:
    faults.kill_point(faults.AFTER_COMMIT_BEFORE_ENQUEUE, name)
    # `send_task` is looked up when the callback runs, so a test can stand in for the broker.
    send_task(name, args, countdown, kwargs)
