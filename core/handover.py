"""The one way a piece of work hands another to a queue: by task name, recorded in the transaction,
published after the commit.

A follow-up task sent before its transaction commits could run for rows that do not exist yet
(or never will); one sent only from an after-commit callback is lost when the process dies
between the commit and the publish (the redelivered update finds itself done and does nothing).
So `enqueue_after_commit` records the hand-over as a row of ``handovers`` in the caller's
transaction, publishes it once the commit succeeded, and then marks it sent. A row left unsent is
published again:

* by the redelivery of the update that recorded it (`resend_after_commit`, by its origin
  ``update:<id>``, which `chat.engine` sets with `set_origin`), straight away;
* by the `maintenance.resend_handovers` sweeper (`resend_unsent`) once it is older than a grace
  period, for hand-overs nobody will redeliver.

Every publication of a row carries the Celery task id recorded with it, so publishing it again is a
redelivery of the same task, which every task handles as one (DESIGN invariant 4; a task keyed by
its request id, such as the Pay button's message, sends nothing twice). That id is derived from
the origin and the task's name and arguments: a redelivered task that hands the same work over
again (its first attempt died after its commit) hands over the very same task, not a second one.
Never publishing was the bug. Marking sent is therefore cheap rather than durable: queued (core.marks) and written in
batches by a background thread, in a commit that does not wait for the disk; a mark lost in a
crash only means one more publication, with the same task id.

Queues are chosen by the task name's prefix (celeryconfig's routes). Tests replace `send_task` to
watch hand-overs.
"""

from __future__ import annotations

import json
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from core import db, faults, marks
from core.celery_app import app
from core.logging import get_logger
from models import Handover

log = get_logger(__name__)

_PENDING = "handovers_to_publish"  # Session.info: this transaction's hand-overs, published after its commit
_ORIGIN = "handover_origin"  # Session.info: who hands over in this session ("update:<id>")
SWEEP_BATCH = 500
_TASK_IDS = uuid.UUID("6f1d6c1e-4be4-5a57-9b0e-5d2f0c1a7e31")  # the namespace of derived task ids


@dataclass(frozen=True)
class Pending:
    """A recorded hand-over, as it is published."""

    id: int
    task_id: str
    name: str
    args: list[Any]
    kwargs: dict[str, Any] | None
    countdown: float | None


def send_task(name: str, args: list[Any], countdown: float | None = None,
              kwargs: dict[str, Any] | None = None, task_id: str | None = None) -> None:
    """Publish a task now (outside a transaction, or from a callback that runs after one); a
    recorded hand-over passes its own task id."""
    app.send_task(name, args=args, kwargs=kwargs, countdown=countdown, task_id=task_id)


def set_origin(session: Session, origin: str) -> None:
    """Name who hands over in this session (e.g. ``update:<id>``), so its redelivery finds what it
    left unsent (`resend_after_commit`). Without it a task's hand-overs are ``task:<task id>``."""
    session.info[_ORIGIN] = origin


def enqueue_after_commit(session: Session, name: str, *args: Any, countdown: float | None = None,
                         kwargs: dict[str, Any] | None = None) -> None:
    """Hand `name(*args, **kwargs)` over: recorded in this session's transaction, published once it
    has committed (never if it rolls back), and published again by a redelivery or the sweeper if
    this process dies in between."""
    eta = datetime.now(UTC) + timedelta(seconds=countdown) if countdown else None
    origin = _origin(session)
    arguments = list(args)
    task_id = _task_id(origin, name, arguments, kwargs)
    # Straight to the driver: on the hot path (one hand-over per "Reserve" tap and per reservation),
    # building and caching an ORM insert cost three times the round trip itself.
    row_id = session.connection().exec_driver_sql(_RECORD, {
        "task_id": task_id, "task_name": name, "args": json.dumps(arguments),
        "kwargs": json.dumps(kwargs) if kwargs is not None else None, "eta": eta, "origin": origin,
    }).scalar_one()
    _publish_after_commit(session, Pending(row_id, task_id, name, arguments, kwargs, countdown))


def resend_after_commit(session: Session, origin: str) -> int:
    """For a redelivered piece of work that finds itself done: publish, after this transaction
    commits, what it handed over the first time and never got published. Returns how many."""
    rows = session.execute(
        select(Handover.id, Handover.task_id, Handover.task_name, Handover.args, Handover.kwargs, Handover.eta)
        .where(Handover.origin == origin, Handover.sent_at.is_(None))
        .order_by(Handover.id)
        .with_for_update(skip_locked=True)  # the sweeper may be publishing them right now
    ).all()
    now = datetime.now(UTC)
    for row in rows:
        _publish_after_commit(session, Pending(row.id, row.task_id, row.task_name, list(row.args), row.kwargs,
                                               _countdown(row.eta, now)))
    if rows:
        log.warning("handovers_resent", origin=origin, count=len(rows))
    return len(rows)


def resend_unsent(session: Session, before: datetime, batch: int = SWEEP_BATCH) -> dict[str, Any]:
    """The sweeper (`maintenance.resend_handovers`): publish the hand-overs recorded before `before`
    and still unsent, and mark them sent, in this transaction. Rows are claimed with FOR UPDATE
    SKIP LOCKED, so concurrent sweeps (or a redelivery) never publish one row at the same time; a
    sweep killed before its commit publishes them again next time, which is harmless."""
    rows = session.execute(
        select(Handover.id, Handover.task_id, Handover.task_name, Handover.args, Handover.kwargs, Handover.eta)
        .where(Handover.sent_at.is_(None), Handover.created_at < before)
        .order_by(Handover.created_at)
        .limit(batch)
        .with_for_update(skip_locked=True)
    ).all()
    now = datetime.now(UTC)
    published: list[int] = []
    for row in rows:
        send_task(row.task_name, list(row.args), _countdown(row.eta, now), row.kwargs, task_id=row.task_id)
        published.append(row.id)
    if published:
        session.execute(update(Handover).where(Handover.id.in_(published)).values(sent_at=now))
        log.warning("handovers_swept", count=len(published))
    return {"published": len(published), "tasks": dict(Counter(row.task_name for row in rows))}


def publish(pending: list[Pending]) -> None:
    """Publish recorded hand-overs (their transaction has committed), then mark them sent. A publish
    that fails (Redis away) raises, as it always did: the caller's task is retried, and its
    redelivery, or else the sweeper, publishes what is still unsent."""
    published: list[int] = []
    try:
        for item in pending:
            faults.kill_point(faults.AFTER_COMMIT_BEFORE_ENQUEUE, item.name)
            # `send_task` is looked up here, so a test can stand in for the broker.
            send_task(item.name, item.args, item.countdown, item.kwargs, task_id=item.task_id)
            published.append(item.id)
    finally:
        if published:
            marks.later(MARK_SENT, published)


_RECORD = ("INSERT INTO handovers (task_id, task_name, args, kwargs, eta, origin) VALUES (%(task_id)s, %(task_name)s,"
           " %(args)s::jsonb, %(kwargs)s::jsonb, %(eta)s, %(origin)s) RETURNING id")
MARK_SENT = "handovers_sent"
marks.register(MARK_SENT, "UPDATE handovers SET sent_at = now() WHERE id = ANY(:ids) AND sent_at IS NULL")


def _publish_after_commit(session: Session, pending: Pending) -> None:
    queue: list[Pending] | None = session.info.get(_PENDING)
    if queue is None:
        fresh: list[Pending] = []
        session.info[_PENDING] = queue = fresh
        db.after_commit(session, lambda: publish(fresh))
    queue.append(pending)


def task_origin(task_id: str) -> str:
    """Who hands over in a task that names no origin of its own: the task, by its id (the same for
    its retries and redeliveries, which find what it left unsent with `resend_after_commit`)."""
    return f"task:{task_id}"


def _origin(session: Session) -> str | None:
    origin: str | None = session.info.get(_ORIGIN)
    if origin is None:
        task_id = structlog.contextvars.get_contextvars().get("task_id")
        origin = task_origin(task_id) if task_id else None
    return origin


def _task_id(origin: str | None, name: str, args: list[Any], kwargs: dict[str, Any] | None) -> str:
    """The same work handed over by the same origin (a task and its redeliveries, an update) gets
    the same task id; without an origin, a fresh one."""
    if origin is None:
        return str(uuid.uuid4())
    identity = json.dumps([origin, name, args, kwargs], sort_keys=True, separators=(",", ":"), default=str)
    return str(uuid.uuid5(_TASK_IDS, identity))


def _countdown(eta: datetime | None, now: datetime) -> float | None:
    """What is left of a recorded countdown (None: due now)."""
    if eta is None:
        return None
    left = (eta - now).total_seconds()
    return left if left > 0 else None
