"""Dead letters against real Postgres (domain/dead_letters.py): listed newest first, replayed by name
with their stored arguments after the commit, once however often and from however many places at
once, each attempt audited; an update's replay forgets that it was processed."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from core import db as core_db
from domain import dead_letters
from domain.dead_letters import ReplayOutcome
from models import AuditEntry, DeadLetter, ProcessedUpdate

NOW = datetime(2030, 5, 6, 7, 8, tzinfo=UTC)


@pytest.fixture
def handed_over(db, monkeypatch):
    """Tasks handed over (core.handover's seam), recorded instead of published."""
    from core import handover

    sent: list[tuple[str, list, dict | None]] = []
    def record(name, args, countdown=None, kwargs=None, task_id=None):
        sent.append((name, list(args), kwargs))

    monkeypatch.setattr(handover, "send_task", record)
    return sent


def letter(task_name: str = "payments.refund_order", args: list | None = None, kwargs: dict | None = None, *,
           reference: str | None = None, stored: bool = True) -> int:
    payload = {"args": args if args is not None else [7], "kwargs": kwargs or {}} if stored else {}
    with core_db.session_scope() as session:
        row = DeadLetter(task_name=task_name, task_id=f"task-{uuid.uuid4()}",
                         reference=reference, error="Traceback (most recent call last):\nValueError: boom",
                         payload=payload)
        session.add(row)
        session.flush()
        return row.id


def replay(dead_letter_id: int, actor: str = "test") -> dead_letters.ReplayResult:
    with core_db.session_scope() as session:
        return dead_letters.replay(session, dead_letter_id, actor, NOW)


def audits() -> list[tuple[str, str, str | None, str]]:
    with core_db.session_scope() as session:
        return [(e.actor, e.action, e.target, e.result)
                for e in session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id))]


def test_a_replay_hands_the_task_over_once_with_its_arguments_and_is_audited(handed_over):
    number = letter("maintenance.export_user_data", [42], {"actor": "cli", "request": "r1"})

    first = replay(number, "user:4242")
    assert first.outcome is ReplayOutcome.REPLAYED
    assert handed_over == [("maintenance.export_user_data", [42], {"actor": "cli", "request": "r1"})]
    again = replay(number, "cli:ops")
    assert again.outcome is ReplayOutcome.ALREADY_REPLAYED
    assert again.replayed is not None and again.replayed.by == "user:4242" and again.replayed.at == NOW
    assert len(handed_over) == 1

    assert audits() == [("user:4242", "dead_letter.replay", f"dead_letter:{number}", "replayed"),
                        ("cli:ops", "dead_letter.replay", f"dead_letter:{number}", "already_replayed")]
    with core_db.session_scope() as session:
        shown = dead_letters.get(session, number)
        assert shown is not None and shown.replayed == first.replayed
        assert shown.args == [42]  # the arguments stay for the record


def test_nothing_is_handed_over_when_the_transaction_rolls_back(handed_over):
    number = letter()
    with pytest.raises(RuntimeError), core_db.session_scope() as session:
        assert dead_letters.replay(session, number, "test", NOW).outcome is ReplayOutcome.REPLAYED
        raise RuntimeError("the caller failed after the replay")
    assert handed_over == []
    assert replay(number).outcome is ReplayOutcome.REPLAYED  # still waiting, so it can be replayed
    assert len(handed_over) == 1


def test_replays_racing_each_other_hand_over_once(handed_over):
    number = letter()
    barrier = threading.Barrier(6)
    outcomes: list[ReplayOutcome] = []

    def attempt(index: int) -> None:
        barrier.wait()
        outcomes.append(replay(number, f"racer:{index}").outcome)

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(o.value for o in outcomes) == ["already_replayed"] * 5 + ["replayed"]
    assert len(handed_over) == 1
    assert [a[3] for a in audits()].count("replayed") == 1


def test_an_update_is_replayed_with_its_processed_mark_forgotten(handed_over):
    update = {"update_id": 777001, "message": {"message_id": 1, "text": "/help"}}
    with core_db.session_scope() as session:
        session.add(ProcessedUpdate(update_id=777001))  # the failure was recorded as handled
        session.add(ProcessedUpdate(update_id=777002))
    number = letter("updates.handle_update", [update], reference="update:777001")

    assert replay(number).outcome is ReplayOutcome.REPLAYED
    assert handed_over == [("updates.handle_update", [update], None)]
    with core_db.session_scope() as session:
        assert session.get(ProcessedUpdate, 777001) is None
        assert session.get(ProcessedUpdate, 777002) is not None


def test_what_cannot_be_replayed_says_so_and_changes_nothing(handed_over):
    without_arguments = letter(stored=False)
    unrouted = letter("celery.chord_unlock", [1])
    assert replay(without_arguments).outcome is ReplayOutcome.NOT_REPLAYABLE
    assert replay(unrouted).outcome is ReplayOutcome.NOT_REPLAYABLE
    assert replay(999_999).outcome is ReplayOutcome.NOT_FOUND
    assert handed_over == []
    assert [a[3] for a in audits()] == ["not_replayable", "not_replayable", "not_found"]
    with core_db.session_scope() as session:
        assert dead_letters.count_waiting(session) == 2
        shown = dead_letters.get(session, without_arguments)
        assert shown is not None and shown.args is None and not shown.replayable


def test_replay_all_replays_one_tasks_waiting_letters_in_batches(handed_over):
    refunds = [letter("payments.refund_order", [n]) for n in range(5)]
    other = letter("payments.expire_checkout", [1])
    replay(refunds[0])
    handed_over.clear()

    with core_db.session_scope() as session:
        first = dead_letters.replay_all(session, "payments.refund_order", "cli", NOW, limit=3)
    with core_db.session_scope() as session:
        second = dead_letters.replay_all(session, "payments.refund_order", "cli", NOW, limit=3)
    with core_db.session_scope() as session:
        third = dead_letters.replay_all(session, "payments.refund_order", "cli", NOW, limit=3)
    assert [r.dead_letter_id for r in first] == refunds[1:4]
    assert [r.dead_letter_id for r in second] == refunds[4:]
    assert third == []
    assert sorted(args[0] for _name, args, _kw in handed_over) == [1, 2, 3, 4]
    with core_db.session_scope() as session:
        assert dead_letters.count_waiting(session) == 1
        assert dead_letters.get(session, other).replayed is None


def test_pages_list_newest_first(handed_over):
    numbers = [letter("payments.refund_order", [n]) for n in range(7)]
    letter("payments.expire_checkout", [1])
    with core_db.session_scope() as session:
        first = dead_letters.page(session, offset=0, limit=3, task_name="payments.refund_order")
        last = dead_letters.page(session, offset=6, limit=3, task_name="payments.refund_order")
        everything = dead_letters.page(session, offset=0, limit=50)
    assert [x.id for x in first.letters] == numbers[::-1][:3] and first.total == 7 and first.has_more
    assert [x.id for x in last.letters] == [numbers[0]] and not last.has_more
    assert everything.total == 8
