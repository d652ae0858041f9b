"""Dead letters: tasks that kept failing after their retries (tasks/base.py keeps each one, with its
arguments, in `dead_letters`), for an operator to read and replay.

A replay hands the task over again, by name with its stored arguments, and marks the dead letter
replayed in the same transaction with a guarded UPDATE: replaying the same dead letter twice, or
from two places at once, hands it over once. Each attempt is an audit entry (who, what, when,
result). A replayed task that fails again comes back as a new dead letter.

Where the arguments are kept: `dead_letters.payload` holds ``{"args": [...], "kwargs": {...}}``
and, once replayed, ``"replayed": {"at", "by"}``. Dead letters kept before the arguments were
recorded have an empty payload and cannot be replayed (their error still says what failed).

An update (``updates.handle_update``) is special: its failure was recorded as processed (the
user was told), so a replay also forgets that, or the update would be skipped as a duplicate.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, select, update
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import Session
from sqlalchemy.sql.expression import bindparam

from core.handover import enqueue_after_commit
from core.queues import HANDLE_UPDATE_TASK, QUEUES
from domain import audit
from models import DeadLetter, ProcessedUpdate

UPDATE_TASK = HANDLE_UPDATE_TASK
AUDIT_ACTION = "dead_letter.replay"
REPLAY_ALL_BATCH = 200


class ReplayOutcome(enum.Enum):
    REPLAYED = "replayed"
    ALREADY_REPLAYED = "already_replayed"
    NOT_REPLAYABLE = "not_replayable"  # kept without its arguments, or for a task no queue takes
    NOT_FOUND = "not_found"


@dataclass(frozen=True)
class Replayed:
    """When and by whom a dead letter was replayed."""

    at: datetime
    by: str


@dataclass(frozen=True)
class Letter:
    """A dead letter as an operator sees it."""

    id: int
    task_name: str
    task_id: str
    reference: str | None
    error: str
    created_at: datetime
    args: list[Any] | None  # None: not recorded
    kwargs: dict[str, Any]
    replayed: Replayed | None

    @property
    def replayable(self) -> bool:
        return self.args is not None and _routed(self.task_name)


@dataclass(frozen=True)
class ReplayResult:
    outcome: ReplayOutcome
    dead_letter_id: int
    task_name: str | None = None
    replayed: Replayed | None = None  # set when replayed now or before

    def report(self) -> dict[str, Any]:
        report: dict[str, Any] = {"dead_letter_id": self.dead_letter_id, "outcome": self.outcome.value}
        if self.task_name:
            report["task_name"] = self.task_name
        if self.replayed:
            report["replayed_at"] = self.replayed.at.isoformat()
            report["replayed_by"] = self.replayed.by
        return report


@dataclass(frozen=True)
class Page:
    letters: list[Letter]
    total: int
    offset: int
    limit: int

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.letters) < self.total


def _routed(task_name: str) -> bool:
    """A task name some queue takes (routes go by the name's prefix)."""
    return task_name.partition(".")[0] in QUEUES


def _letter(row: DeadLetter) -> Letter:
    payload = row.payload or {}
    args = payload.get("args")
    replayed = payload.get("replayed")
    return Letter(
        id=row.id, task_name=row.task_name, task_id=row.task_id, reference=row.reference, error=row.error,
        created_at=row.created_at, args=list(args) if isinstance(args, list) else None,
        kwargs=dict(payload.get("kwargs") or {}),
        replayed=Replayed(datetime.fromisoformat(replayed["at"]), str(replayed["by"]))
        if isinstance(replayed, dict) else None,
    )


def page(session: Session, offset: int = 0, limit: int = 8, task_name: str | None = None) -> Page:
    """Dead letters, newest first (replayed ones too, marked so)."""
    query = select(DeadLetter)
    if task_name is not None:
        query = query.where(DeadLetter.task_name == task_name)
    total = session.scalar(select(func.count()).select_from(query.subquery())) or 0
    rows = session.scalars(query.order_by(DeadLetter.id.desc()).offset(max(offset, 0)).limit(limit))
    return Page([_letter(row) for row in rows], total, max(offset, 0), limit)


def count_waiting(session: Session) -> int:
    """Dead letters not replayed yet."""
    return session.scalar(
        select(func.count()).select_from(DeadLetter).where(~DeadLetter.payload.has_key("replayed"))
    ) or 0


def get(session: Session, dead_letter_id: int) -> Letter | None:
    row = session.get(DeadLetter, dead_letter_id, populate_existing=True)
    return _letter(row) if row is not None else None


def replay(session: Session, dead_letter_id: int, actor: str, now: datetime) -> ReplayResult:
    """Hand a dead letter's task over again, once, after this transaction commits; audited."""
    result = _replay(session, dead_letter_id, actor, now)
    audit.record(session, actor, AUDIT_ACTION, result.outcome.value, target=f"dead_letter:{dead_letter_id}",
                 details=result.report())
    return result


def _replay(session: Session, dead_letter_id: int, actor: str, now: datetime) -> ReplayResult:
    letter = get(session, dead_letter_id)
    if letter is None:
        return ReplayResult(ReplayOutcome.NOT_FOUND, dead_letter_id)
    if letter.replayed is not None:
        return ReplayResult(ReplayOutcome.ALREADY_REPLAYED, letter.id, letter.task_name, letter.replayed)
    if not letter.replayable or letter.args is None:
        return ReplayResult(ReplayOutcome.NOT_REPLAYABLE, letter.id, letter.task_name)
    mark = {"replayed": {"at": now.isoformat(), "by": actor}}
    # Guarded: of two replays at once, the second waits for the first's row lock, then finds the
    # mark and changes nothing.
    marked = session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == letter.id, ~DeadLetter.payload.has_key("replayed"))
        .values(payload=DeadLetter.payload.op("||")(bindparam("mark", mark, type_=JSONB)))
        .returning(DeadLetter.id)
    ).first()
    if marked is None:
        again = get(session, letter.id)
        return ReplayResult(ReplayOutcome.ALREADY_REPLAYED, letter.id, letter.task_name,
                            again.replayed if again else None)
    if letter.task_name == UPDATE_TASK:
        _forget_processed_update(session, letter.args)
    enqueue_after_commit(session, letter.task_name, *letter.args, kwargs=letter.kwargs or None)
    return ReplayResult(ReplayOutcome.REPLAYED, letter.id, letter.task_name, Replayed(now, actor))


def _forget_processed_update(session: Session, args: list[Any]) -> None:
    """The failed update was recorded as processed (its user got an apology); without forgetting
    that, the replayed update would be dropped as a duplicate."""
    update_id = args[0].get("update_id") if args and isinstance(args[0], dict) else None
    if isinstance(update_id, int):
        session.execute(delete(ProcessedUpdate).where(ProcessedUpdate.update_id == update_id))


def replay_all(session: Session, task_name: str, actor: str, now: datetime,
               limit: int = REPLAY_ALL_BATCH) -> list[ReplayResult]:
    """Replay up to `limit` dead letters of one task that were not replayed yet, oldest first
    (call again for the next batch; each is handed over once, as with `replay`)."""
    ids = session.scalars(
        select(DeadLetter.id)
        .where(DeadLetter.task_name == task_name, ~DeadLetter.payload.has_key("replayed"),
               DeadLetter.payload.has_key("args"))
        .order_by(DeadLetter.id)
        .limit(limit)
    ).all()
    return [replay(session, dead_letter_id, actor, now) for dead_letter_id in ids]
