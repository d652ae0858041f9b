"""Durable hand-overs (core.handover) against real Postgres: recorded in the transaction, published
after its commit and marked sent; what a dead process left unsent is published by the redelivered
update (with its button's answer still owed) or by the sweeper, with the same task id, once."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from chat import engine
from core import handover, marks, outbox
from core.db import session_scope
from domain import cleanup
from models import AuditEntry, Handover, Notification, NotificationStatus
from tests.factories import make_business, make_offer

_update_ids = iter(range(9_300_000_000, 9_400_000_000))
_users = iter(range(8_300_000_000, 8_400_000_000))


class Broker:
    """Stands in for core.handover.send_task: what was published, in order."""

    def __init__(self) -> None:
        self.published: list[dict] = []
        self.fail = False

    def __call__(self, name, args, countdown=None, kwargs=None, task_id=None) -> None:
        if self.fail:
            raise ConnectionError("Redis went away")
        self.published.append({"name": name, "args": args, "countdown": countdown, "kwargs": kwargs,
                               "task_id": task_id})

    def names(self) -> list[str]:
        return [p["name"] for p in self.published]


@pytest.fixture
def broker(db, monkeypatch):
    # Row ids start again at 1 in every test (db empties the tables): no mark queued before may land.
    marks.flush()
    fake = Broker()
    monkeypatch.setattr(handover, "send_task", fake)
    yield fake
    marks.flush()
    with session_scope() as session:  # no unsent row left for a later test's sweeper to publish
        session.execute(sa.delete(Handover))


def rows() -> list[Handover]:
    marks.flush()  # what the background thread would write within half a second
    with session_scope() as session:
        return list(session.scalars(sa.select(Handover).order_by(Handover.id)))


def age(seconds: float) -> None:
    """Make every hand-over older, as if recorded `seconds` ago."""
    with session_scope() as session:
        session.execute(sa.update(Handover).values(created_at=Handover.created_at - timedelta(seconds=seconds)))


# --------------------------------------------------------------------------- the hot path


def test_a_hand_over_is_a_row_published_after_the_commit_then_marked_sent(broker):
    with session_scope() as session:
        handover.set_origin(session, "update:1")
        handover.enqueue_after_commit(session, "payments.create_checkout", 42)
        handover.enqueue_after_commit(session, "payments.expire_checkout", 42, countdown=600)
        assert broker.published == []  # nothing before the commit
        (recorded,) = session.execute(sa.select(sa.func.count()).select_from(Handover)).one()
        assert recorded == 2  # in the transaction
    assert broker.names() == ["payments.create_checkout", "payments.expire_checkout"]
    assert broker.published[1]["countdown"] == 600
    first, second = rows()
    assert (first.task_name, first.args, first.kwargs, first.origin) == ("payments.create_checkout", [42], None,
                                                                         "update:1")
    assert second.eta is not None and abs((second.eta - datetime.now(UTC)).total_seconds() - 600) < 5
    assert [p["task_id"] for p in broker.published] == [first.task_id, second.task_id]
    assert first.sent_at is not None and second.sent_at is not None


def test_marks_are_written_by_the_background_thread_soon_after(broker):
    with session_scope() as session:
        for order_id in range(5):
            handover.enqueue_after_commit(session, "payments.expire_checkout", order_id)
    deadline = time.monotonic() + 10
    while marks.pending() or _unmarked():
        assert time.monotonic() < deadline, "the marks were not written"
        time.sleep(0.05)


def _unmarked() -> int:
    with session_scope() as session:
        return session.scalar(sa.select(sa.func.count()).select_from(Handover).where(Handover.sent_at.is_(None))) or 0


def test_a_rolled_back_hand_over_leaves_nothing(broker):
    with pytest.raises(RuntimeError), session_scope() as session:
        handover.enqueue_after_commit(session, "payments.refund_order", 7)
        raise RuntimeError("the transaction fails")
    assert broker.published == [] and rows() == []


def test_a_failed_publish_raises_and_stays_unsent_for_a_retry(broker):
    broker.fail = True
    with pytest.raises(ConnectionError), session_scope() as session:
        handover.enqueue_after_commit(session, "payments.refund_order", 7)
    (row,) = rows()
    assert row.sent_at is None  # committed, not published: the sweeper's (or a redelivery's) job


def test_the_same_work_from_the_same_origin_is_the_same_task(broker):
    """A redelivered task that hands the same work over again hands over the same task (same id),
    so e.g. the Pay button keyed by the checkout task's id is not sent twice."""
    for _ in range(2):
        with session_scope() as session:
            handover.set_origin(session, "task:abc")
            handover.enqueue_after_commit(session, "payments.create_checkout", 5)
            handover.enqueue_after_commit(session, "payments.create_checkout", 6)
    ids = [p["task_id"] for p in broker.published]
    assert ids[0] == ids[2] and ids[1] == ids[3] and ids[0] != ids[1]
    with session_scope() as session:  # no origin (no task, no update): a fresh id each time
        handover.enqueue_after_commit(session, "payments.create_checkout", 5)
    assert broker.published[-1]["task_id"] not in ids


# --------------------------------------------------------------------------- a redelivered update


def _press(user: int, data: str, update_id: int) -> dict:
    return {"update_id": update_id, "callback_query": {
        "id": f"q{update_id}", "chat_instance": "x", "data": data,
        "from": {"id": user, "is_bot": False, "first_name": "Kim", "language_code": "en"},
        "message": {"message_id": 1, "date": int(time.time()), "text": "…",
                    "chat": {"id": user, "type": "private", "first_name": "Kim"}}}}


def _handle(update: dict) -> engine.Handled:
    with session_scope() as session:
        return engine.handle(session, engine.parse(update))


def test_a_redelivered_tap_publishes_what_its_first_attempt_left_unsent_and_still_answers(broker):
    offer_id = make_offer(make_business(), quantity=3)
    user, update_id = next(_users), next(_update_ids)
    tap = _press(user, f"buy:{offer_id}:1:350", update_id)

    broker.fail = True  # the first attempt commits, then its process dies before publishing
    with pytest.raises(ConnectionError):
        _handle(tap)
    (unsent,) = rows()
    assert (unsent.task_name, unsent.origin, unsent.sent_at) == ("reservations.place_order", f"update:{update_id}",
                                                                 None)
    with session_scope() as session:
        answer = session.scalars(sa.select(Notification).where(
            Notification.idempotency_key == f"update:{update_id}:answer")).one()
        assert answer.kind == outbox.ANSWER_KIND and answer.status == NotificationStatus.PENDING
        assert answer.payload == {"callback_query_id": f"q{update_id}", "text": "Reserving…", "show_alert": False}

    broker.fail = False
    again = _handle(tap)
    assert again.duplicate and again.answer_id is None
    # The answer still owed comes first among what the redelivery sends, then the "Reserving" edit.
    assert again.notification_ids[0] == answer.id and len(again.notification_ids) == 2
    assert broker.published == [{"name": "reservations.place_order", "args": [offer_id, user, 1, f"tap:{update_id}"],
                                 "countdown": None, "kwargs": unsent.kwargs, "task_id": unsent.task_id}]
    assert rows()[0].sent_at is not None
    _handle(tap)  # a third delivery finds nothing left to publish
    assert len(broker.published) == 1


def test_a_tap_records_its_answer_with_the_replies(broker):
    user, update_id = next(_users), next(_update_ids)
    handled = _handle(_press(user, "menu", update_id))
    assert handled.answer_id is not None and handled.answer_id not in handled.notification_ids
    assert handled.notification_ids  # the menu itself
    with session_scope() as session:
        assert session.get_one(Notification, handled.answer_id).chat_id == user


# --------------------------------------------------------------------------- the sweeper


def _unsent(broker: Broker, names: list[str]) -> None:
    """Hand-overs committed whose publication never happened (the process died)."""
    broker.fail = True
    for name in names:
        with pytest.raises(ConnectionError), session_scope() as session:
            handover.set_origin(session, f"task:{name}")
            handover.enqueue_after_commit(session, name, 1, countdown=3600 if "expire" in name else None)
    broker.fail = False


def test_the_sweeper_publishes_old_unsent_hand_overs_once(broker):
    _unsent(broker, ["payments.refund_order", "payments.expire_checkout"])
    with session_scope() as session:
        assert handover.resend_unsent(session, datetime.now(UTC) - timedelta(seconds=20))["published"] == 0
    assert broker.published == []  # still within the grace period: its own process may publish it
    age(60)
    with session_scope() as session:
        report = handover.resend_unsent(session, datetime.now(UTC) - timedelta(seconds=20))
    assert report == {"published": 2, "tasks": {"payments.refund_order": 1, "payments.expire_checkout": 1}}
    refund, expire = broker.published
    assert refund["countdown"] is None
    assert 3400 < expire["countdown"] <= 3600  # what is left of its countdown
    assert [p["task_id"] for p in broker.published] == [r.task_id for r in rows()]
    assert all(r.sent_at is not None for r in rows())
    with session_scope() as session:
        assert handover.resend_unsent(session, datetime.now(UTC))["published"] == 0


def test_two_sweepers_at_once_publish_each_hand_over_once(broker):
    _unsent(broker, [f"payments.refund_order.{n}" for n in range(40)])
    age(60)
    barrier = threading.Barrier(2)
    reports: list[dict] = []
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            with session_scope() as session:
                barrier.wait(5)
                reports.append(handover.resend_unsent(session, datetime.now(UTC) - timedelta(seconds=20)))
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=sweep) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert sum(r["published"] for r in reports) == 40
    assert sorted(broker.names()) == sorted(f"payments.refund_order.{n}" for n in range(40))


def test_the_sweeper_task_writes_an_audit_entry(broker):
    from tasks.maintenance import ADMIN_JOBS, resend_handovers

    _unsent(broker, ["payments.refund_order"])
    report = resend_handovers.apply(kwargs={"actor": "cli", "grace_seconds": 0}).get()
    assert report["published"] == 1
    with session_scope() as session:
        entry = session.scalars(sa.select(AuditEntry).where(AuditEntry.action == "maintenance.resend_handovers")).one()
        assert (entry.actor, entry.result, entry.details) == ("cli", "ok", report)
    assert "maintenance.resend_handovers" in ADMIN_JOBS


def test_the_sweeper_is_scheduled_every_30_seconds():
    import beat_schedule
    from tasks.app import app

    app.loader.import_default_modules()
    (entry,) = [e for e in beat_schedule.DEFAULT_SCHEDULE.values() if e["task"] == "maintenance.resend_handovers"]
    assert entry["schedule"] == timedelta(seconds=30) and entry["task"] in app.tasks


def test_cleanup_forgets_sent_hand_overs_after_a_day(broker):
    with session_scope() as session:
        handover.enqueue_after_commit(session, "payments.refund_order", 1)
    _unsent(broker, ["payments.refund_order"])
    marks.flush()
    with session_scope() as session:
        session.execute(sa.update(Handover).values(created_at=Handover.created_at - timedelta(days=2)))
        session.execute(sa.update(Handover).where(Handover.sent_at.is_not(None))
                        .values(sent_at=Handover.sent_at - timedelta(days=2)))
    with session_scope() as session:
        assert cleanup.cleanup(session)["handovers_deleted"] == 1
    (left,) = rows()
    assert left.sent_at is None  # never published: kept for the sweeper
