"""Maintenance jobs against real Postgres (and Redis for the queues): each does its work once,
also when two runs race each other, and every run leaves an audit entry."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa
from redis.backoff import NoBackoff
from redis.retry import Retry

from domain import maintenance, privacy, stats
from domain import reservations as rsv
from models import AuditEntry, Notification

OWNER_ID = 1


# --------------------------------------------------------------------------- helpers


def q(conn, sql: str, **params):
    return conn.execute(sa.text(sql), params)


def add_users(conn, *ids, **values) -> None:
    for user_id in ids:
        q(conn, "INSERT INTO users (id, first_name, username, latitude, longitude, location_updated_at)"
                " VALUES (:id, :n, :u, 52.5, 13.4, now()) ON CONFLICT DO NOTHING",
          id=user_id, n=values.get("first_name", f"User{user_id}"), u=values.get("username", f"user{user_id}"))


def business(conn, owner_id: int = OWNER_ID, timezone: str = "Europe/Berlin", name: str = "Bakery") -> int:
    add_users(conn, owner_id)
    return q(conn, "INSERT INTO businesses (owner_id, name, address, phone, status, timezone)"
                   " VALUES (:o, :n, 'Main St 1', '+49 30 123', 'verified', :tz) RETURNING id",
             o=owner_id, n=name, tz=timezone).scalar()


def offer(conn, business_id: int, *, quantity: int = 5, start: str = "-1 hour", end: str = "3 hours",
          title: str = "Bag", currency: str = "EUR") -> int:
    return q(conn, "INSERT INTO offers (business_id, title, price_minor, original_price_minor, currency, quantity,"
                   " pickup_start, pickup_end, status, published_at) VALUES (:b, :t, 300, 600, :c, :q,"
                   " now() + CAST(:s AS interval), now() + CAST(:e AS interval), 'active', now()) RETURNING id",
             b=business_id, t=title, c=currency, q=quantity, s=start, e=end).scalar()


def hold(conn, offer_id: int, customer_id: int, n: int = 1, checkout: str | None = None) -> int:
    add_users(conn, customer_id)
    result = rsv.reserve(conn, offer_id, customer_id, n)
    assert result.ok, result
    if checkout:
        q(conn, "UPDATE orders SET checkout_session_id = :c WHERE id = :id", c=checkout, id=result.order_id)
    return result.order_id


def paid(conn, offer_id: int, customer_id: int, n: int = 1) -> int:
    order_id = hold(conn, offer_id, customer_id, n)
    assert rsv.confirm_sale(conn, order_id, 300 * n, "EUR", f"pi_{order_id}").outcome == rsv.SaleOutcome.PAID
    return order_id


def end_window(conn, offer_id: int) -> None:
    q(conn, "UPDATE offers SET pickup_start = now() - interval '3 hours', pickup_end = now() - interval '1 minute'"
            " WHERE id = :id", id=offer_id)


def notes(conn, prefix: str) -> list:
    return q(conn, "SELECT * FROM notifications WHERE idempotency_key LIKE :p ORDER BY id", p=prefix + "%").all()


@pytest.fixture
def conn(db):
    with db.engine().connect() as connection:
        yield connection
        connection.rollback()


@pytest.fixture
def handed_over(monkeypatch):
    """Tasks the code hands over (core.handover), recorded instead of published, so no worker runs
    them during these tests: (outbox deliveries, every other task)."""
    from core import handover
    from core.outbox import DELIVER_TASK

    deliveries: list[list[int]] = []
    others: list[tuple[str, list, dict]] = []

    def record(name, args, countdown=None, kwargs=None, task_id=None):
        if name == DELIVER_TASK:
            deliveries.append(list(args[0]))
        else:
            others.append((name, list(args), dict(kwargs or {})))

    monkeypatch.setattr(handover, "send_task", record)
    return deliveries, others


@pytest.fixture(autouse=True)
def outbox_sends(handed_over):
    """Outbox deliveries the code enqueues."""
    return handed_over[0]


@pytest.fixture
def sent_tasks(handed_over):
    """Every other task the code sends."""
    return handed_over[1]


def run(db, function, *args, **kwargs):
    with db.session_scope() as session:
        return function(session, *args, **kwargs)


def twice_at_once(db, function, *args):
    """Two transactions running the job at the same moment; both reports."""
    barrier = threading.Barrier(2)
    reports: list = [None, None]
    errors: list[BaseException] = []

    def one(index: int) -> None:
        try:
            with db.session_scope() as session:
                barrier.wait(5)
                reports[index] = function(session, *args)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    return reports


def now() -> datetime:
    return datetime.now(UTC)


# --------------------------------------------------------------------------- expire offers


def test_expire_offers_ends_finished_offers_and_releases_their_unpaid_holds(db, conn, sent_tasks):
    b = business(conn)
    ended, running = offer(conn, b, title="Old <bread>"), offer(conn, b)
    unpaid = hold(conn, ended, 101, 2, checkout="cs_test_1")
    unpaid_no_checkout = hold(conn, ended, 102)
    bought = paid(conn, ended, 103)
    still_held = hold(conn, running, 104)
    end_window(conn, ended)
    conn.commit()

    report = run(db, maintenance.expire_offers, now())

    assert report["offers_expired"] == 1 and report["holds_released"] == 2
    statuses = dict(q(conn, "SELECT id, status FROM offers").all())
    assert statuses == {ended: "expired", running: "active"}
    orders = dict(q(conn, "SELECT id, status FROM orders").all())
    assert orders == {unpaid: "expired", unpaid_no_checkout: "expired", bought: "paid", still_held: "held"}
    assert q(conn, "SELECT units_held, units_sold FROM offers WHERE id = :id", id=ended).one() == (0, 1)
    told = notes(conn, "order:")
    assert sorted(n.chat_id for n in told) == [101, 102]
    assert "Old &lt;bread&gt;" in told[0].payload["text"]
    assert sent_tasks == [("payments.expire_checkout", [unpaid], {})]
    rsv.assert_ledger_consistent(conn)

    again = run(db, maintenance.expire_offers, now())
    assert again == {"offers_expired": 0, "offer_ids": [], "holds_released": 0}
    assert len(notes(conn, "order:")) == 2 and len(sent_tasks) == 1


def test_expire_offers_run_twice_at_once_has_one_effect(db, conn, sent_tasks):
    b = business(conn)
    offers = [offer(conn, b) for _ in range(6)]
    for index, offer_id in enumerate(offers):
        hold(conn, offer_id, 200 + index, checkout=f"cs_{index}")
        end_window(conn, offer_id)
    conn.commit()

    first, second = twice_at_once(db, maintenance.expire_offers, now())

    assert first["offers_expired"] + second["offers_expired"] == 6
    assert first["holds_released"] + second["holds_released"] == 6
    assert q(conn, "SELECT count(*) FROM ledger_entries WHERE kind = 'release'").scalar() == 6
    assert len(notes(conn, "order:")) == 6
    assert sorted(t[1][0] for t in sent_tasks) == sorted(q(conn, "SELECT id FROM orders").scalars())
    rsv.assert_ledger_consistent(conn)


# --------------------------------------------------------------------------- lapsed holds


def test_release_expired_holds_tells_customers_and_closes_checkouts_once(db, conn, sent_tasks):
    b = business(conn)
    o = offer(conn, b, quantity=20)
    lapsed = [hold(conn, o, 300 + i, checkout=f"cs_l{i}" if i % 2 else None) for i in range(8)]
    fresh = hold(conn, o, 399)
    q(conn, "UPDATE orders SET hold_expires_at = now() - interval '1 second' WHERE id = ANY(:ids)", ids=lapsed)
    # An order expired earlier (another run) must not be picked up again.
    earlier = hold(conn, o, 398, checkout="cs_earlier")
    rsv.release(conn, earlier, rsv.ReleaseReason.EXPIRED)
    conn.commit()

    first, second = twice_at_once(db, maintenance.release_expired_holds, now())

    assert first["holds_released"] + second["holds_released"] == 8
    assert first["checkouts_to_expire"] + second["checkouts_to_expire"] == 4
    assert q(conn, "SELECT status FROM orders WHERE id = :id", id=fresh).scalar() == "held"
    assert sorted(t[1][0] for t in sent_tasks) == [lapsed[i] for i in range(8) if i % 2]
    assert {t[0] for t in sent_tasks} == {"payments.expire_checkout"}
    assert sorted(n.chat_id for n in notes(conn, "order:")) == list(range(300, 308))
    assert run(db, maintenance.release_expired_holds, now()) == {"holds_released": 0, "checkouts_to_expire": 0}
    rsv.assert_ledger_consistent(conn)


# --------------------------------------------------------------------------- reminders


def test_pickup_reminder_once_per_paid_order_starting_within_the_hour(db, conn):
    b = business(conn)
    soon = offer(conn, b, start="30 minutes", end="2 hours", title="Soon")
    later = offer(conn, b, start="3 hours", end="4 hours", title="Later")
    reminded = [paid(conn, soon, 500 + i) for i in range(3)]
    unpaid = hold(conn, soon, 510)
    not_yet = paid(conn, later, 511)
    conn.commit()

    first, second = twice_at_once(db, maintenance.send_pickup_reminders, now())

    assert first["reminders_sent"] + second["reminders_sent"] == 3
    told = notes(conn, "order:")
    assert sorted(n.chat_id for n in told) == [500, 501, 502]
    codes = dict(q(conn, "SELECT customer_id, pickup_code FROM orders WHERE id = ANY(:ids)", ids=reminded).all())
    for note in told:
        assert codes[note.chat_id] in note.payload["text"] and "Soon" in note.payload["text"]
    assert q(conn, "SELECT reminder_sent_at FROM orders WHERE id = :id", id=unpaid).scalar() is None
    assert q(conn, "SELECT reminder_sent_at FROM orders WHERE id = :id", id=not_yet).scalar() is None
    assert run(db, maintenance.send_pickup_reminders, now()) == {"reminders_sent": 0}


# --------------------------------------------------------------------------- daily summary


def test_daily_summary_once_per_business_and_local_day_after_20h(db, conn):
    berlin = business(conn, owner_id=601, timezone="Europe/Berlin", name="Berlin Bakery")
    tokyo = business(conn, owner_id=602, timezone="Asia/Tokyo", name="Tokyo Cafe")
    idle = business(conn, owner_id=603, timezone="Europe/Berlin", name="Idle")
    for b in (berlin, tokyo):
        o = offer(conn, b, start="-30 minutes", end="30 minutes")
        paid(conn, o, 650 + b)
        paid(conn, o, 660 + b, n=2)
    conn.commit()
    # 19:30 UTC: 20:30 or 21:30 in Berlin, 04:30 next day in Tokyo.
    evening = datetime.now(UTC).replace(hour=19, minute=30, second=0, microsecond=0)
    if evening < datetime.now(UTC) - timedelta(hours=12):
        evening += timedelta(days=1)
    q(conn, "UPDATE orders SET paid_at = :t", t=evening - timedelta(minutes=5))
    q(conn, "UPDATE ledger_entries SET created_at = :t", t=evening - timedelta(minutes=5))
    q(conn, "UPDATE offers SET pickup_start = :s, pickup_end = :e", s=evening - timedelta(hours=1),
      e=evening + timedelta(minutes=10))
    conn.commit()

    first, second = twice_at_once(db, maintenance.send_daily_summaries, evening)

    assert first["summaries_sent"] + second["summaries_sent"] == 1
    (summary,) = notes(conn, "business:")
    assert summary.chat_id == 601 and idle
    text = summary.payload["text"]
    assert "Berlin Bakery" in text and "Paid orders: 2 (3 items)" in text and "9,00" in text.replace(".", ",")
    assert run(db, maintenance.send_daily_summaries, evening + timedelta(minutes=60)) == {"summaries_sent": 0}


# --------------------------------------------------------------------------- notifications


def test_retry_failed_notifications_requeues_failed_and_stuck_ones_only(db, conn, outbox_sends):
    queued = outbox_sends
    rows = {}
    for key, chat, status, age in [("f1", 1, "failed", 0), ("f2", 1, "failed", 1), ("s1", 2, "sent", 60),
                                   ("p_old", 3, "pending", 30), ("p_new", 3, "pending", 1), ("f3", 4, "failed", 2)]:
        rows[key] = q(conn, "INSERT INTO notifications (idempotency_key, chat_id, kind, payload, status, created_at)"
                            " VALUES (:k, :c, 'reply', '{\"text\": \"hi\"}', :s, now() - make_interval(mins => :a))"
                            " RETURNING id", k=key, c=chat, s=status, a=age).scalar()
    conn.commit()

    first, second = twice_at_once(db, maintenance.retry_failed_notifications, now())

    assert first["failed_requeued"] + second["failed_requeued"] == 3
    assert first["stuck_requeued"] + second["stuck_requeued"] == 1
    assert sorted(id_ for ids in queued for id_ in ids) == sorted(rows[k] for k in ("f1", "f2", "f3", "p_old"))
    assert [rows["f1"], rows["f2"]] in queued  # one chat's messages stay in order
    statuses = dict(q(conn, "SELECT idempotency_key, status FROM notifications").all())
    assert statuses == {"f1": "pending", "f2": "pending", "f3": "pending", "s1": "sent", "p_old": "pending",
                        "p_new": "pending"}


# --------------------------------------------------------------------------- stats


def test_stats_count_today_and_net_revenue_by_currency(db, conn, redis_url):
    b = business(conn)
    eur, chf = offer(conn, b), offer(conn, b, currency="CHF")
    paid(conn, eur, 701)
    refunded = paid(conn, eur, 702, n=2)
    rsv.record_refund(conn, refunded, 600, "EUR", "re_1")
    order = hold(conn, chf, 703)
    rsv.confirm_sale(conn, order, 300, "CHF", "pi_chf")
    hold(conn, eur, 704)
    q(conn, "INSERT INTO businesses (owner_id, name, address, phone) VALUES (:o, 'New', 'x', '1')",
      o=add_users(conn, 705) or 705)
    conn.commit()
    client = redis.Redis.from_url(redis_url)
    client.delete("test-queue-a")
    client.rpush("test-queue-a", "x", "y", "z")

    with db.session_scope() as session:
        figures = stats.collect(session, now())
    assert figures.active_offers == 2
    assert figures.orders_today == 4 and figures.paid_today == 3
    assert figures.revenue_today == {"CHF": 300, "EUR": 300}
    assert figures.pending_businesses == 1
    assert stats.queue_lengths(client, ("test-queue-a", "test-queue-b")) == {"test-queue-a": 3, "test-queue-b": 0}
    dead = redis.Redis(host="127.0.0.1", port=1, socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0))
    assert stats.queue_lengths(dead, ("x",)) == {"x": None}


# --------------------------------------------------------------------------- privacy


def test_export_then_delete_user_data(db, conn, sent_tasks):
    b = business(conn)
    o = offer(conn, b, title="Croissants")
    add_users(conn, 801, first_name="Ada", username="ada")
    q(conn, "INSERT INTO follows (user_id, business_id) VALUES (801, :b)", b=b)
    q(conn, "INSERT INTO conversation_states (chat_id, flow, step) VALUES (801, 'x', 'y')")
    done = paid(conn, o, 801)
    q(conn, "UPDATE orders SET status = 'collected', closed_at = now() WHERE id = :id", id=done)
    held = hold(conn, offer(conn, b), 801, checkout="cs_priv")
    q(conn, "INSERT INTO notifications (idempotency_key, chat_id, kind, payload, status)"
            " VALUES ('old', 801, 'reply', '{\"text\": \"Your code\"}', 'sent')")
    conn.commit()
    ledger_before = q(conn, "SELECT id, kind, amount_minor FROM ledger_entries ORDER BY id").all()

    with db.session_scope() as session:
        data = privacy.export_user_data(session, 801)
    assert data["user"]["first_name"] == "Ada" and data["user"]["location"]["latitude"] == 52.5
    assert [f["business_name"] for f in data["follows"]] == ["Bakery"]
    assert {(x["offer"], x["status"]) for x in data["orders"]} == {("Croissants", "collected"), ("Bag", "held")}
    assert privacy.export_document(data).startswith(b"{")

    result = run(db, privacy.delete_user_data, 801)
    assert result.outcome == privacy.DeleteOutcome.DELETED
    assert (result.holds_released, result.orders_anonymised, result.follows_deleted) == (1, 2, 1)
    user = q(conn, "SELECT * FROM users WHERE id = 801").one()
    assert (user.first_name, user.username, user.latitude, user.longitude) == (None, None, None, None)
    assert user.deleted_at is not None
    assert q(conn, "SELECT count(*) FROM follows WHERE user_id = 801").scalar() == 0
    assert q(conn, "SELECT count(*) FROM conversation_states WHERE chat_id = 801").scalar() == 0
    assert q(conn, "SELECT count(*) FROM notifications WHERE chat_id = 801").scalar() == 0
    assert q(conn, "SELECT count(*) FROM orders WHERE customer_id IS NULL").scalar() == 2
    ledger_after = q(conn, "SELECT id, kind, amount_minor FROM ledger_entries ORDER BY id").all()
    assert ledger_after[:len(ledger_before)] == ledger_before  # untouched; the hold's release added
    assert [row.kind for row in ledger_after[len(ledger_before):]] == ["release"]
    # The released hold's Checkout Session is closed, and the chat's own "/" menu (the language they
    # chose) is taken away.
    assert sent_tasks == [("payments.expire_checkout", [held], {}), ("notifications.set_chat_commands", [801], {})]
    rsv.assert_ledger_consistent(conn)

    again = run(db, privacy.delete_user_data, 801)
    assert again.outcome == privacy.DeleteOutcome.DELETED and again.orders_anonymised == 0
    assert run(db, privacy.delete_user_data, 999_999).outcome == privacy.DeleteOutcome.NOT_FOUND


def test_delete_is_refused_with_a_pickup_to_come_or_a_business(db, conn):
    b = business(conn)
    open_order = paid(conn, offer(conn, b), 901)
    conn.commit()
    result = run(db, privacy.delete_user_data, 901)
    assert result.outcome == privacy.DeleteOutcome.OPEN_ORDERS and result.open_orders == [open_order]
    assert run(db, privacy.delete_user_data, OWNER_ID).outcome == privacy.DeleteOutcome.BUSINESS_OWNER
    assert q(conn, "SELECT first_name FROM users WHERE id = 901").scalar() == "User901"
    forced = run(db, privacy.delete_user_data, 901, force=True)
    assert forced.outcome == privacy.DeleteOutcome.DELETED
    assert q(conn, "SELECT customer_id FROM orders WHERE id = :id", id=open_order).scalar() is None


# --------------------------------------------------------------------------- tasks and audit


def test_each_task_reports_and_writes_an_audit_entry(db, conn):
    from tasks import maintenance as jobs

    add_users(conn, 4242)
    conn.commit()
    cleaned = jobs.cleanup.apply(kwargs={"actor": "cli", "report_to": 4242}).get()
    assert set(cleaned) >= {"processed_updates_deleted", "notifications_deleted", "beat_audit_entries_deleted"}
    result = jobs.export_user_data.apply(args=[4242], kwargs={"actor": "user:4242", "request": "r1"}).get()
    assert result["exported"] and result["sent"] and "first_name" not in str(result)
    jobs.expire_offers.apply().get()
    with db.session_scope() as session:
        entries = session.scalars(sa.select(AuditEntry).order_by(AuditEntry.id)).all()
        assert [(e.actor, e.action, e.result) for e in entries] == [
            ("cli", "maintenance.cleanup", "ok"),
            ("user:4242", "maintenance.export_user_data", "ok"),
            ("beat", "maintenance.expire_offers", "ok"),
        ]
        assert entries[1].target == "user:4242" and entries[0].details == cleaned
        assert all(e.created_at is not None for e in entries)
        kinds = sorted(session.scalars(sa.select(Notification.kind).where(Notification.chat_id == 4242)))
        assert kinds == ["data_export", "task_report"]


# --------------------------------------------------------------------------- the schedule


def test_default_schedule_and_its_json_override():
    import beat_schedule
    from tasks.app import app

    app.loader.import_default_modules()
    every = {entry["task"]: entry["schedule"] for entry in beat_schedule.DEFAULT_SCHEDULE.values()}
    assert every["maintenance.expire_offers"] == timedelta(minutes=1)
    assert every["maintenance.release_expired_holds"] == timedelta(seconds=30)
    assert every["maintenance.reconcile_payments"] == timedelta(minutes=5)
    assert every["maintenance.send_pickup_reminders"] == timedelta(minutes=5)
    assert {"maintenance.send_daily_summaries", "maintenance.cleanup"} <= set(every)
    assert set(every) <= set(app.tasks)  # every scheduled name is a registered task
    for name in ("maintenance.expire_offers", "maintenance.release_expired_holds", "maintenance.reconcile_payments",
                 "maintenance.cleanup", "maintenance.retry_failed_notifications", "maintenance.export_user_data",
                 "maintenance.delete_user_data"):
        assert app.tasks[name].ignore_result is False

    custom = beat_schedule.parse_schedule(
        '{"a": {"task": "maintenance.cleanup", "every": 2, "kwargs": {"actor": "x"}},'
        ' "b": {"task": "maintenance.expire_offers", "cron": "*/5 * * * *"}}')
    assert custom["a"]["schedule"] == timedelta(seconds=2) and custom["a"]["kwargs"] == {"actor": "x"}
    assert custom["b"]["kwargs"] == {"actor": "beat"}
    for bad in ('[]', '{"a": {"every": 1}}', '{"a": {"task": "t"}}', '{"a": {"task": "t", "every": -1}}',
                '{"a": {"task": "t", "cron": "* *"}}'):
        with pytest.raises(ValueError):
            beat_schedule.parse_schedule(bad)
