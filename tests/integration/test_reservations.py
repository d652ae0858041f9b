"""The reservation engine against real Postgres, with real parallelism: many OS processes
hammering one offer, and transactions held open on purpose so that the second one provably waits
on the first (the races the one-statement reserve must win)."""

from __future__ import annotations

import collections
import multiprocessing
import random
import re
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from domain import reservations as rsv
from domain.reservations import (
    CancelOutcome,
    RefundOutcome,
    RefundReason,
    ReleaseOutcome,
    ReserveOutcome,
    SaleOutcome,
)

OWNER_ID = 1
PRICE = 350

STRATEGIES = {"one_statement": rsv.reserve, "locking": rsv.reserve_locking}


# --------------------------------------------------------------------------- helpers


def add_customers(conn, ids) -> None:
    conn.execute(sa.text("INSERT INTO users (id) SELECT unnest(CAST(:ids AS bigint[])) ON CONFLICT DO NOTHING"),
                 {"ids": list(ids)})


def make_offer(conn, quantity: int = 5, *, status: str = "active", price: int = PRICE,
               window_open: bool = True) -> int:
    """An offer of a verified business; pickup window open for hours, or over an hour ago."""
    business_id = conn.execute(sa.text("SELECT id FROM businesses WHERE owner_id = :o"), {"o": OWNER_ID}).scalar()
    if business_id is None:
        add_customers(conn, [OWNER_ID])
        business_id = conn.execute(sa.text(
            "INSERT INTO businesses (owner_id, name, address, phone, status)"
            " VALUES (:o, 'Bakery', 'Main St 1', '+49 30 123', 'verified') RETURNING id"), {"o": OWNER_ID}).scalar()
    start, end = ("now() - interval '1 hour'", "now() + interval '3 hours'") if window_open else (
        "now() - interval '3 hours'", "now() - interval '1 hour'")
    return conn.execute(sa.text(
        "INSERT INTO offers (business_id, title, price_minor, original_price_minor, currency, quantity,"
        f" pickup_start, pickup_end, status, published_at) VALUES (:b, 'Bag', :p, :p * 2, 'EUR', :q,"
        f" {start}, {end}, :s, now()) RETURNING id"),
        {"b": business_id, "p": price, "q": quantity, "s": status}).scalar()


def offer_row(conn, offer_id):
    return conn.execute(sa.text("SELECT * FROM offers WHERE id = :id"), {"id": offer_id}).one()


def order_row(conn, order_id):
    return conn.execute(sa.text("SELECT * FROM orders WHERE id = :id"), {"id": order_id}).one()


def ledger_kinds(conn, order_id) -> list[str]:
    return sorted(conn.execute(sa.text("SELECT kind FROM ledger_entries WHERE order_id = :id"),
                               {"id": order_id}).scalars())


def expire_now(conn, *order_ids) -> None:
    """Time passes for these holds."""
    conn.execute(sa.text("UPDATE orders SET hold_expires_at = now() - interval '1 second' WHERE id = ANY(:ids)"),
                 {"ids": list(order_ids)})


def consistent(db) -> None:
    with db.session_scope() as s:
        rsv.assert_ledger_consistent(s)


def wait_until_blocked(engine, count: int = 1, timeout: float = 10.0) -> None:
    """Until ``count`` backends of this database wait for a lock: the race is really on."""
    deadline = time.monotonic() + timeout
    with engine.connect() as c:
        while time.monotonic() < deadline:
            waiting = c.execute(sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'")).scalar()
            c.rollback()
            if waiting >= count:
                return
            time.sleep(0.01)
    raise AssertionError(f"fewer than {count} transactions got blocked")


# Processes: forked after the parent dropped its pooled connections; each child builds its own engine.

def _child(target, barrier, queue, index, args) -> None:
    try:
        from core import db

        db.reset_engine()
        barrier.wait(timeout=30)
        queue.put((index, "ok", target(*args)))
    except BaseException:  # noqa: BLE001 - reported to the parent
        queue.put((index, "error", traceback.format_exc()))


def run_processes(db, target, args_list, timeout: float = 60.0) -> list:
    db.engine().dispose()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(len(args_list))
    queue = ctx.Queue()
    procs = [ctx.Process(target=_child, args=(target, barrier, queue, i, a), daemon=True)
             for i, a in enumerate(args_list)]
    for p in procs:
        p.start()
    results: list = [None] * len(procs)
    try:
        for _ in procs:
            index, status, value = queue.get(timeout=timeout)
            if status != "ok":
                raise AssertionError(f"process {index} failed:\n{value}")
            results[index] = value
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.kill()
    return results


def _reserve_many(strategy: str, offer_id: int, customers: list[int], quantities: list[int]) -> list[tuple]:
    from core import db

    out = []
    for customer, n in zip(customers, quantities, strict=True):
        if strategy == "one_statement_autocommit":
            with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                r = rsv.reserve(c, offer_id, customer, n)
        else:
            with db.session_scope() as s:
                r = STRATEGIES[strategy](s, offer_id, customer, n)
        out.append((customer, n, r.outcome.value, r.order_id, r.units_left))
    return out


# --------------------------------------------------------------------------- many processes


@pytest.mark.parametrize("strategy", ["one_statement", "one_statement_autocommit", "locking"])
def test_hundreds_of_concurrent_reservations_never_oversell(db, strategy):
    processes, attempts, quantity = 16, 20, 50
    with db.session_scope() as s:
        offer_id = make_offer(s, quantity)
        customers = [10_000 + i for i in range(processes * attempts)]
        add_customers(s, customers)
    args = [(strategy, offer_id, customers[p * attempts:(p + 1) * attempts], [1] * attempts)
            for p in range(processes)]
    results = [r for chunk in run_processes(db, _reserve_many, args) for r in chunk]

    assert len(results) == processes * attempts  # every attempt got an answer
    outcomes = collections.Counter(r[2] for r in results)
    assert outcomes["reserved"] == quantity, outcomes
    assert set(outcomes) <= {"reserved", "sold_out", "not_enough_left"}, outcomes
    with db.session_scope() as s:
        offer = offer_row(s, offer_id)
        assert (offer.units_held, offer.units_sold, offer.status) == (quantity, 0, "sold_out")
        orders = s.execute(sa.text("SELECT customer_id, status FROM orders WHERE offer_id = :o"),
                           {"o": offer_id}).all()
        assert len(orders) == quantity and {o.status for o in orders} == {"held"}
        assert {o.customer_id for o in orders} == {r[0] for r in results if r[2] == "reserved"}
        assert rsv.stock_from_ledger(s, offer_id) == (quantity, 0)
        rsv.assert_ledger_consistent(s)


@pytest.mark.parametrize("strategy", ["one_statement", "locking"])
def test_concurrent_mixed_quantities_hold_exactly_what_was_granted(db, strategy):
    processes, attempts, quantity = 8, 15, 37
    rnd = random.Random(7)
    with db.session_scope() as s:
        offer_id = make_offer(s, quantity)
        customers = [20_000 + i for i in range(processes * attempts)]
        add_customers(s, customers)
    args = [(strategy, offer_id, customers[p * attempts:(p + 1) * attempts],
             [rnd.randint(1, 4) for _ in range(attempts)]) for p in range(processes)]
    results = [r for chunk in run_processes(db, _reserve_many, args) for r in chunk]

    granted = sum(n for _, n, outcome, _, _ in results if outcome == "reserved")
    for _, n, outcome, _, left in results:
        if outcome == "not_enough_left" and left is not None:
            assert 0 < left < n
    with db.session_scope() as s:
        offer = offer_row(s, offer_id)
        assert offer.units_held == granted <= quantity
        assert (offer.status == "sold_out") == (granted == quantity)
        rsv.assert_ledger_consistent(s)


def _tap(strategy: str, offer_id: int, customer: int, taps: int) -> list[tuple]:
    return _reserve_many(strategy, offer_id, [customer] * taps, [2] * taps)


@pytest.mark.parametrize("strategy", ["one_statement", "locking"])
def test_one_customer_tapping_ten_times_at_once_gets_one_order(db, strategy):
    with db.session_scope() as s:
        offer_id = make_offer(s, 20)
        add_customers(s, [77])
    results = [r for chunk in run_processes(db, _tap, [(strategy, offer_id, 77, 3)] * 10) for r in chunk]

    assert collections.Counter(r[2] for r in results) == {"reserved": 1, "already_held": 29}
    assert len({r[3] for r in results}) == 1  # everyone was shown the same order
    with db.session_scope() as s:
        assert offer_row(s, offer_id).units_held == 2  # no units leaked by the losing taps
        assert s.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 1
        rsv.assert_ledger_consistent(s)


def _race_for_last_unit(strategy: str, offer_ids: list[int], customer: int) -> list[str]:
    return [_reserve_many(strategy, offer_id, [customer], [1])[0][2] for offer_id in offer_ids]


@pytest.mark.parametrize("strategy", ["one_statement", "locking"])
def test_two_customers_racing_for_the_last_unit(db, strategy):
    with db.session_scope() as s:
        offers = [make_offer(s, 1) for _ in range(25)]
        add_customers(s, [501, 502])
    a, b = run_processes(db, _race_for_last_unit, [(strategy, offers, 501), (strategy, offers, 502)])
    for first, second in zip(a, b, strict=True):
        assert sorted([first, second]) == ["reserved", "sold_out"]
    consistent(db)


# --------------------------------------------------------------------------- forced interleavings


def _in_tx(db, fn, *args, **kwargs):
    with db.session_scope() as s:
        return fn(s, *args, **kwargs)


def _autocommit(db, fn, *args, **kwargs):
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        return fn(c, *args, **kwargs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_reservation_waiting_on_the_last_unit_gets_sold_out(db, strategy):
    reserve = STRATEGIES[strategy]
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1, 2])
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        first = c.begin()
        assert reserve(c, offer_id, 1).outcome is ReserveOutcome.RESERVED
        second = pool.submit(_in_tx, db, reserve, offer_id, 2)
        wait_until_blocked(db.engine())  # it saw one unit left, and waits for our lock
        first.commit()
        result = second.result(timeout=10)
    assert (result.outcome, result.units_left) == (ReserveOutcome.SOLD_OUT, 0)
    consistent(db)


@pytest.mark.parametrize("strategy, mode", [("one_statement", _in_tx), ("one_statement", _autocommit),
                                            ("locking", _in_tx)])
def test_a_second_tap_waiting_on_the_first_gets_the_same_order_and_leaks_nothing(db, strategy, mode):
    reserve = STRATEGIES[strategy]
    with db.session_scope() as s:
        offer_id = make_offer(s, 10)
        add_customers(s, [1])
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        first = c.begin()
        mine = reserve(c, offer_id, 1, 3)
        second = pool.submit(mode, db, reserve, offer_id, 1, 3)
        wait_until_blocked(db.engine())  # its snapshot shows no hold yet
        first.commit()
        result = second.result(timeout=10)
    assert (result.outcome, result.order_id) == (ReserveOutcome.ALREADY_HELD, mine.order_id)
    with db.session_scope() as s:
        assert (offer_row(s, offer_id).units_held, s.execute(sa.text("SELECT count(*) FROM orders")).scalar()) == (3, 1)
    consistent(db)


@pytest.mark.parametrize("mode", [_in_tx, _autocommit])
def test_reserve_works_without_prepared_statements(db, mode, statements_sent_whole):
    """The switch for a pooler that drops prepared statements (PgBouncer in transaction mode)."""
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2, 3])
    first = mode(db, rsv.reserve, offer_id, 1)
    assert (first.outcome, first.units_left) == (ReserveOutcome.RESERVED, 1)
    assert mode(db, rsv.reserve, offer_id, 1).order_id == first.order_id  # ALREADY_HELD
    assert mode(db, rsv.reserve, offer_id, 2).outcome is ReserveOutcome.RESERVED
    assert mode(db, rsv.reserve, offer_id, 3).outcome is ReserveOutcome.SOLD_OUT
    consistent(db)


def test_losing_the_race_to_ones_own_tap_leaves_the_callers_transaction_usable(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 10)
        other = make_offer(s, 10)
        add_customers(s, [1, 2])
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        first = c.begin()
        rsv.reserve(c, offer_id, 1)

        def second_tap_then_more_work():
            with db.session_scope() as s:
                assert rsv.reserve(s, offer_id, 1).outcome is ReserveOutcome.ALREADY_HELD
                return rsv.reserve(s, other, 1).outcome  # the same transaction goes on

        second = pool.submit(second_tap_then_more_work)
        wait_until_blocked(db.engine())
        first.commit()
        assert second.result(timeout=10) is ReserveOutcome.RESERVED
    consistent(db)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_reservation_waiting_on_one_that_rolls_back_gets_the_unit(db, strategy):
    reserve = STRATEGIES[strategy]
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1, 2])
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        first = c.begin()
        assert reserve(c, offer_id, 1).outcome is ReserveOutcome.RESERVED
        second = pool.submit(_in_tx, db, reserve, offer_id, 2)
        wait_until_blocked(db.engine())
        first.rollback()
        result = second.result(timeout=10)
    assert (result.outcome, result.units_left) == (ReserveOutcome.RESERVED, 0)
    consistent(db)


def test_a_reservation_sees_committed_stock_only(db):
    """Units released in a transaction that has not committed yet are not offered; a sold-out
    offer refuses at once, without queueing behind that transaction."""
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2, 3])
        held = rsv.reserve(s, offer_id, 1, 2).order_id
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        tx = c.begin()
        assert rsv.release(c, held).outcome is ReleaseOutcome.RELEASED
        assert rsv.reserve(c, offer_id, 2, 1).outcome is ReserveOutcome.RESERVED
        waiting = pool.submit(_in_tx, db, rsv.reserve, offer_id, 3, 1)
        time.sleep(0.2)  # it sees 'sold_out' in its snapshot: refused without waiting
        tx.commit()
        assert waiting.result(timeout=10).outcome is ReserveOutcome.SOLD_OUT
    with db.session_scope() as s:
        assert rsv.reserve(s, offer_id, 3, 1).outcome is ReserveOutcome.RESERVED
    consistent(db)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_refusals_change_nothing(db, strategy):
    reserve = STRATEGIES[strategy]
    with db.session_scope() as s:
        add_customers(s, [1])
        active = make_offer(s, 3)
        paused = make_offer(s, 3, status="paused")
        draft = make_offer(s, 3, status="draft")
        ended = make_offer(s, 3, window_open=False)
        assert reserve(s, active, 1, 0).outcome is ReserveOutcome.INVALID_QUANTITY
        assert reserve(s, active, 1, -2).outcome is ReserveOutcome.INVALID_QUANTITY
        assert reserve(s, active, 1, rsv.MAX_UNITS_PER_ORDER + 1).outcome is ReserveOutcome.OVER_LIMIT
        assert reserve(s, active, 1, 3, per_order_cap=2).outcome is ReserveOutcome.OVER_LIMIT
        assert reserve(s, active, 1, 4).outcome is ReserveOutcome.NOT_ENOUGH_LEFT
        for offer_id in (paused, draft, ended, 999_999):
            assert reserve(s, offer_id, 1).outcome is ReserveOutcome.NOT_AVAILABLE
        assert s.execute(sa.text("SELECT count(*) FROM orders")).scalar() == 0
        assert s.execute(sa.text("SELECT sum(units_held + units_sold) FROM offers")).scalar() == 0
        r = reserve(s, active, 1, 3)
        assert (r.outcome, r.units_left) == (ReserveOutcome.RESERVED, 0)
        assert offer_row(s, active).status == "sold_out"
        again = reserve(s, active, 1, 1)
        assert (again.outcome, again.order_id) == (ReserveOutcome.ALREADY_HELD, r.order_id)
        add_customers(s, [2])
        assert reserve(s, active, 2, 1).outcome is ReserveOutcome.SOLD_OUT
        order = order_row(s, r.order_id)
        assert (order.quantity, order.unit_price_minor, order.amount_minor, order.currency) == (
            3, PRICE, 3 * PRICE, "EUR")
        assert timedelta(minutes=9) < order.hold_expires_at - order.created_at <= timedelta(minutes=10, seconds=1)
        rsv.assert_ledger_consistent(s)


def test_reserve_runs_in_autocommit_mode_as_one_statement(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2])
    with db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        assert rsv.reserve(c, offer_id, 1, 2).outcome is ReserveOutcome.RESERVED
        assert rsv.reserve(c, offer_id, 2, 1).outcome is ReserveOutcome.SOLD_OUT
    consistent(db)


def test_a_reservation_for_an_unknown_customer_fails_as_sqlalchemy_reports_it(db):
    """reserve() sends its CALL on the DBAPI cursor; errors still come out as sqlalchemy.exc."""
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
    with pytest.raises(sa.exc.IntegrityError) as failure:
        _autocommit(db, rsv.reserve, offer_id, 424242)  # no such user: the order's foreign key
    assert failure.value.orig.diag.constraint_name == "fk_orders_customer_id_users"
    with db.session_scope() as s:
        assert offer_row(s, offer_id).units_held == 0
    consistent(db)


def test_a_reservation_on_a_dead_connection_invalidates_it_and_the_pool_recovers(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1])
    engine = db.engine()
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        backend = c.execute(sa.text("SELECT pg_backend_pid()")).scalar()
        with engine.connect() as killer:
            killer.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": backend})
        with pytest.raises(sa.exc.OperationalError) as failure:
            rsv.reserve(c, offer_id, 1)
        assert failure.value.connection_invalidated and c.invalidated
    assert _autocommit(db, rsv.reserve, offer_id, 1).outcome is ReserveOutcome.RESERVED
    consistent(db)


# --------------------------------------------------------------------------- release and the sweeper


def test_release_is_idempotent_and_reopens_a_sold_out_offer(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2])
        order_id = rsv.reserve(s, offer_id, 1, 2).order_id
        assert offer_row(s, offer_id).status == "sold_out"
    with db.session_scope() as s:
        assert rsv.release(s, order_id, "cancelled", customer_id=2).outcome is ReleaseOutcome.NOT_FOUND
        first = rsv.release(s, order_id, rsv.ReleaseReason.CANCELLED, customer_id=1)
        assert (first.outcome, first.units, first.order_status) == (ReleaseOutcome.RELEASED, 2, "cancelled")
    with db.session_scope() as s:
        second = rsv.release(s, order_id, "expired")
        assert (second.outcome, second.order_status, second.units) == (ReleaseOutcome.NOT_HELD, "cancelled", 0)
        assert rsv.release(s, 424242).outcome is ReleaseOutcome.NOT_FOUND
        offer = offer_row(s, offer_id)
        assert (offer.units_held, offer.status) == (0, "active")
        assert ledger_kinds(s, order_id) == ["hold", "release"]
        assert order_row(s, order_id).closed_at is not None
        # The customer may reserve again after letting go.
        assert rsv.reserve(s, offer_id, 1, 1).outcome is ReserveOutcome.RESERVED
        rsv.assert_ledger_consistent(s)


def test_release_after_the_window_closed_keeps_the_offer_sold_out(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        s.execute(sa.text("UPDATE offers SET pickup_start = now() - interval '2 hours',"
                          " pickup_end = now() - interval '1 minute' WHERE id = :id"), {"id": offer_id})
        assert rsv.release(s, order_id).outcome is ReleaseOutcome.RELEASED
        assert offer_row(s, offer_id).status == "sold_out"
        rsv.assert_ledger_consistent(s)


def _sweep_until_done(now_iso: str, batch: int) -> list[int]:
    from core import db

    counts = []
    while True:
        with db.session_scope() as s:
            n = rsv.release_expired_holds(s, datetime.fromisoformat(now_iso), batch=batch)
        counts.append(n)
        if n == 0:
            return counts


def test_two_sweepers_at_once_release_each_hold_once(db):
    with db.session_scope() as s:
        offers = [make_offer(s, 300) for _ in range(3)]
        customers = list(range(1000, 1100))
        add_customers(s, [*customers, 5000])
        due = [rsv.reserve(s, offer_id, c, 1 + c % 3).order_id for offer_id in offers for c in customers]
        keep = rsv.reserve(s, offers[0], 5000, 1).order_id  # not due yet
        assert None not in due
        expire_now(s, *due)
    now = datetime.now(UTC).isoformat()
    counts = run_processes(db, _sweep_until_done, [(now, 17), (now, 17), (now, 50)])
    assert sum(map(sum, counts)) == len(due) == 300
    with db.session_scope() as s:
        assert rsv.release_expired_holds(s, datetime.now(UTC)) == 0  # a later run finds nothing
        assert s.execute(sa.text("SELECT count(*) FROM ledger_entries WHERE kind = 'release'")).scalar() == 300
        statuses = collections.Counter(s.execute(sa.text("SELECT status FROM orders")).scalars())
        assert statuses == {"expired": 300, "held": 1}
        assert order_row(s, keep).status == "held"
        assert [offer_row(s, o).units_held for o in offers] == [1, 0, 0]
        rsv.assert_ledger_consistent(s)


def test_a_sweeper_waiting_on_a_payment_leaves_the_order_paid(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        expire_now(s, order_id)
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        tx = c.begin()
        assert rsv.confirm_sale(c, order_id, PRICE, "eur", "pi_1").outcome is SaleOutcome.PAID
        sweeper = pool.submit(_in_tx, db, rsv.release_expired_holds, datetime.now(UTC))
        wait_until_blocked(db.engine())
        tx.commit()
        assert sweeper.result(timeout=10) == 0
    with db.session_scope() as s:
        assert order_row(s, order_id).status == "paid"
        rsv.assert_ledger_consistent(s)


def test_a_reservation_while_the_customer_cancels_sees_the_hold_until_the_cancel_commits(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 3)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1, 3).order_id
    with db.engine().connect() as c:
        tx = c.begin()
        assert rsv.release(c, order_id, "cancelled", customer_id=1).outcome is ReleaseOutcome.RELEASED
        during = _in_tx(db, rsv.reserve, offer_id, 1, 2)  # answered at once, from what is committed
        tx.commit()
    assert (during.outcome, during.order_id) == (ReserveOutcome.ALREADY_HELD, order_id)
    with db.session_scope() as s:
        after = rsv.reserve(s, offer_id, 1, 2)
        assert after.outcome is ReserveOutcome.RESERVED and after.order_id != order_id
    consistent(db)


def _same_customers_churn(seed: int, offer_id: int, customers: list[int], rounds: int) -> collections.Counter:
    """Reserve (holds that lapse at once), cancel and sweep, over and over, for the same few
    customers: a hold being let go while its customer reserves again is the deadlock-prone case."""
    from core import db

    rnd = random.Random(seed)
    seen: collections.Counter = collections.Counter()
    for _ in range(rounds):
        customer = rnd.choice(customers)
        with db.session_scope() as s:
            action = rnd.choice(["reserve", "reserve", "release", "sweep"])
            if action == "reserve":
                seen[rsv.reserve(s, offer_id, customer, 1, hold_minutes=0).outcome.value] += 1
            elif action == "release":
                held = s.execute(sa.text("SELECT id FROM orders WHERE offer_id = :o AND customer_id = :c"
                                         " AND status = 'held'"), {"o": offer_id, "c": customer}).scalar()
                if held:
                    seen["release_" + rsv.release(s, held, "cancelled").outcome.value] += 1
            else:
                seen["swept"] += rsv.release_expired_holds(s, datetime.now(UTC), batch=2)
    return seen


def test_holds_let_go_while_their_customers_reserve_again_never_deadlock(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 10)
        add_customers(s, [1, 2, 3])
    seen = sum(run_processes(db, _same_customers_churn, [(seed, offer_id, [1, 2, 3], 80) for seed in range(8)]),
               collections.Counter())
    assert seen["reserved"] and seen["swept"] and seen["release_released"], seen
    consistent(db)


def test_a_release_waiting_on_a_payment_finds_the_order_paid(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        tx = c.begin()
        assert rsv.confirm_sale(c, order_id, PRICE, "EUR", "pi_1").outcome is SaleOutcome.PAID
        waiting = pool.submit(_in_tx, db, rsv.release, order_id, "expired")
        wait_until_blocked(db.engine())
        tx.commit()
        assert waiting.result(timeout=10).outcome is ReleaseOutcome.NOT_HELD
    consistent(db)


def test_lock_order_takes_the_offer_first_then_the_order(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 5)
        add_customers(s, [1, 2])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        assert rsv.lock_order(s, 424242) is None
    with db.engine().connect() as c, ThreadPoolExecutor(1) as pool:
        tx = c.begin()
        row = rsv.lock_order(c, order_id)
        assert (row.id, row.offer_id, row.status) == (order_id, offer_id, "held")
        other = pool.submit(_in_tx, db, rsv.reserve, offer_id, 2)  # needs the offer: waits
        wait_until_blocked(db.engine())
        assert rsv.release(c, order_id).outcome is ReleaseOutcome.RELEASED  # under the caller's locks
        tx.commit()
        assert other.result(timeout=10).outcome is ReserveOutcome.RESERVED
    consistent(db)


# --------------------------------------------------------------------------- payments


def test_confirm_sale_twice_makes_one_sale_and_one_payment(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 3)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1, 2).order_id
    with db.session_scope() as s:
        first = rsv.confirm_sale(s, order_id, 2 * PRICE, "eur", "pi_123")
    with db.session_scope() as s:
        second = rsv.confirm_sale(s, order_id, 2 * PRICE, "eur", "pi_123")
        assert first.outcome is SaleOutcome.PAID and first.paid
        assert re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", first.pickup_code)
        assert (second.outcome, second.pickup_code, second.order_status) == (
            SaleOutcome.ALREADY_DONE, first.pickup_code, "paid")
        assert ledger_kinds(s, order_id) == ["hold", "payment", "sale"]
        payment = s.execute(sa.text("SELECT * FROM ledger_entries WHERE kind = 'payment'")).one()
        assert (payment.amount_minor, payment.currency, payment.reference, payment.units) == (
            2 * PRICE, "EUR", "pi_123", 0)
        offer = offer_row(s, offer_id)
        assert (offer.units_held, offer.units_sold, offer.status) == (0, 2, "active")
        order = order_row(s, order_id)
        assert order.status == "paid" and order.paid_at is not None and order.pickup_code == first.pickup_code
        rsv.assert_ledger_consistent(s)


def test_concurrent_confirmations_of_one_order_sell_once(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 3)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
    barrier = threading.Barrier(6)

    def confirm():
        barrier.wait()
        return _in_tx(db, rsv.confirm_sale, order_id, PRICE, "EUR", "pi_x").outcome

    with ThreadPoolExecutor(6) as pool:
        outcomes = collections.Counter(pool.map(lambda _: confirm(), range(6)))
    assert outcomes == {SaleOutcome.PAID: 1, SaleOutcome.ALREADY_DONE: 5}
    consistent(db)


def test_late_payment_with_stock_left_is_sold(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1, 2).order_id
        expire_now(s, order_id)
    with db.session_scope() as s:
        assert rsv.release_expired_holds(s, datetime.now(UTC)) == 1
        assert offer_row(s, offer_id).status == "active"
    with db.session_scope() as s:
        late = rsv.confirm_sale(s, order_id, 2 * PRICE, "EUR", "pi_late")
        assert late.outcome is SaleOutcome.PAID_LATE and late.pickup_code
        order = order_row(s, order_id)
        assert (order.status, order.closed_at) == ("paid", None)
        offer = offer_row(s, offer_id)
        assert (offer.units_held, offer.units_sold, offer.status) == (0, 2, "sold_out")
        assert ledger_kinds(s, order_id) == ["hold", "payment", "release", "sale"]
        assert rsv.stock_from_ledger(s, offer_id) == (0, 2)
        assert rsv.confirm_sale(s, order_id, 2 * PRICE, "EUR", "pi_late").outcome is SaleOutcome.ALREADY_DONE
        rsv.assert_ledger_consistent(s)


def test_late_payment_without_stock_needs_a_refund(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2])
        order_id = rsv.reserve(s, offer_id, 1, 2).order_id
        rsv.release(s, order_id, "expired")
        assert rsv.reserve(s, offer_id, 2, 1).outcome is ReserveOutcome.RESERVED  # one left, two needed
    with db.session_scope() as s:
        late = rsv.confirm_sale(s, order_id, 2 * PRICE, "EUR", "pi_late")
        assert (late.outcome, late.reason, late.pickup_code, late.order_status) == (
            SaleOutcome.NEEDS_REFUND, RefundReason.NO_STOCK_LEFT, None, "expired")
        assert offer_row(s, offer_id).units_sold == 0
        assert ledger_kinds(s, order_id) == ["hold", "payment", "release"]  # the money is on the books
        assert rsv.orders_awaiting_refund(s) == [order_id]
        assert any("payments - refunds" in p for p in rsv.ledger_problems(s))
        rsv.assert_ledger_consistent(s, money=False)
    with db.session_scope() as s:
        assert rsv.confirm_sale(s, order_id, 2 * PRICE, "EUR", "pi_late").outcome is SaleOutcome.ALREADY_DONE
        assert rsv.record_refund(s, order_id, 2 * PRICE, "eur", "re_1").outcome is RefundOutcome.RECORDED
        assert rsv.record_refund(s, order_id, 2 * PRICE, "eur", "re_1").outcome is RefundOutcome.ALREADY_DONE
        assert order_row(s, order_id).status == "refunded"
        assert rsv.orders_awaiting_refund(s) == []
        rsv.assert_ledger_consistent(s)


def test_late_payment_for_a_paused_offer_needs_a_refund(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 5)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        rsv.release(s, order_id, "cancelled")
        s.execute(sa.text("UPDATE offers SET status = 'paused' WHERE id = :id"), {"id": offer_id})
        result = rsv.confirm_sale(s, order_id, PRICE, "EUR", "pi")
        assert (result.outcome, result.reason) == (SaleOutcome.NEEDS_REFUND, RefundReason.OFFER_UNAVAILABLE)
        rsv.record_refund(s, order_id, PRICE, "EUR", "re")
        rsv.assert_ledger_consistent(s)


def test_payment_of_the_wrong_amount_releases_the_hold_and_needs_a_refund(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 1)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        result = rsv.confirm_sale(s, order_id, PRICE - 1, "EUR", "pi")
        assert (result.outcome, result.reason, result.order_status) == (
            SaleOutcome.NEEDS_REFUND, RefundReason.AMOUNT_MISMATCH, "cancelled")
        assert (offer_row(s, offer_id).units_held, offer_row(s, offer_id).status) == (0, "active")
        assert rsv.confirm_sale(s, order_id, PRICE, "EUR", "pi").outcome is SaleOutcome.ALREADY_DONE
        with pytest.raises(ValueError):
            rsv.record_refund(s, order_id, PRICE, "EUR", "re")  # more than was paid
        rsv.record_refund(s, order_id, PRICE - 1, "EUR", "re")
        rsv.assert_ledger_consistent(s)
    with db.session_scope() as s:
        second = rsv.reserve(s, offer_id, 1)
        assert rsv.confirm_sale(s, second.order_id, PRICE, "USD", "pi2").reason is RefundReason.AMOUNT_MISMATCH


def test_payment_for_a_hold_on_a_cancelled_offer_needs_a_refund(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 3)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
        s.execute(sa.text("UPDATE offers SET status = 'cancelled' WHERE id = :id"), {"id": offer_id})
        result = rsv.confirm_sale(s, order_id, PRICE, "EUR", "pi")
        assert (result.outcome, result.reason) == (SaleOutcome.NEEDS_REFUND, RefundReason.OFFER_UNAVAILABLE)
        assert offer_row(s, offer_id).units_held == 0
        rsv.record_refund(s, order_id, PRICE, "EUR", "re")
        rsv.assert_ledger_consistent(s)


def test_confirm_sale_of_an_unknown_order(db):
    with db.session_scope() as s, pytest.raises(rsv.OrderNotFound):
        rsv.confirm_sale(s, 31337, 100, "EUR", "pi")


def test_pickup_codes_are_readable_and_unique_per_offer(db, monkeypatch):
    with db.session_scope() as s:
        offer_id = make_offer(s, 60)
        add_customers(s, range(100, 160))
        orders = [rsv.reserve(s, offer_id, c).order_id for c in range(100, 160)]
        codes = [rsv.confirm_sale(s, o, PRICE, "EUR", f"pi_{o}").pickup_code for o in orders[:-2]]
        assert len(set(codes)) == len(codes)
        assert all(re.fullmatch(r"[A-HJ-NP-Z2-9]{6}", c) for c in codes)
        # A drawn code already used on the offer is skipped for the next candidate ...
        monkeypatch.setattr(rsv, "_code_candidates", lambda: [codes[0], codes[1], "ZZZZZZ", "YYYYYY"])
        assert rsv.confirm_sale(s, orders[-2], PRICE, "EUR", "pi").pickup_code == "ZZZZZZ"
    # ... and when every candidate is taken the call fails before writing anything (the task retries).
    monkeypatch.setattr(rsv, "_code_candidates", lambda: [codes[0]] * 4)
    with pytest.raises(RuntimeError, match="pickup code"), db.session_scope() as s:
        rsv.confirm_sale(s, orders[-1], PRICE, "EUR", "pi")
    with db.session_scope() as s:
        assert ledger_kinds(s, orders[-1]) == ["hold"]
    consistent(db)


def test_cancel_paid_and_record_refund(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1, 2, 3])
        paid = rsv.reserve(s, offer_id, 1, 2).order_id
        rsv.confirm_sale(s, paid, 2 * PRICE, "EUR", "pi_1")
        assert offer_row(s, offer_id).status == "sold_out"
    with db.session_scope() as s:
        result = rsv.cancel_paid(s, paid)
        assert (result.outcome, result.units) == (CancelOutcome.CANCELLED, 2)
        assert rsv.cancel_paid(s, paid).outcome is CancelOutcome.ALREADY_DONE
        offer = offer_row(s, offer_id)
        assert (offer.units_sold, offer.status) == (0, "active")
        assert ledger_kinds(s, paid) == ["hold", "payment", "restock", "sale"]
        rsv.assert_ledger_consistent(s, money=False)
        assert rsv.record_refund(s, paid, 2 * PRICE, "EUR", "re_1").outcome is RefundOutcome.RECORDED
        assert rsv.cancel_paid(s, paid).outcome is CancelOutcome.ALREADY_DONE
        rsv.assert_ledger_consistent(s)
    with db.session_scope() as s:
        held = rsv.reserve(s, offer_id, 2, 1).order_id
        assert rsv.cancel_paid(s, held).outcome is CancelOutcome.NOT_CANCELLABLE
        assert rsv.record_refund(s, held, PRICE, "EUR", "re").outcome is RefundOutcome.NO_PAYMENT
        # A refund of a still-paid order puts its units back too.
        rsv.confirm_sale(s, held, PRICE, "EUR", "pi_2")
        assert rsv.record_refund(s, held, PRICE, "EUR", "re_2").outcome is RefundOutcome.RECORDED
        assert offer_row(s, offer_id).units_sold == 0
        # A collected order refunded as a goodwill gesture keeps its units sold: the food is gone.
        collected = rsv.reserve(s, offer_id, 3, 1).order_id
        rsv.confirm_sale(s, collected, PRICE, "EUR", "pi_3")
        s.execute(sa.text("UPDATE orders SET status = 'collected' WHERE id = :id"), {"id": collected})
        assert rsv.cancel_paid(s, collected).outcome is CancelOutcome.NOT_CANCELLABLE
        assert rsv.record_refund(s, collected, PRICE, "EUR", "re_3").outcome is RefundOutcome.RECORDED
        assert offer_row(s, offer_id).units_sold == 1
        assert (rsv.stock_from_ledger(s, offer_id)) == (0, 1)
        rsv.assert_ledger_consistent(s)


def test_a_replayed_movement_is_refused_by_the_ledger(db):
    """The unique (order, kind) key is the last line: even a hand-made second hold row fails."""
    with db.session_scope() as s:
        offer_id = make_offer(s, 2)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1).order_id
    with pytest.raises(sa.exc.IntegrityError), db.session_scope() as s:
        s.execute(sa.text("INSERT INTO ledger_entries (order_id, offer_id, kind, units) VALUES (:o, :f, 'hold', 1)"),
                  {"o": order_id, "f": offer_id})
    with pytest.raises(sa.exc.IntegrityError), db.session_scope() as s:
        s.execute(sa.text("UPDATE offers SET units_held = units_held + 2 WHERE id = :id"), {"id": offer_id})
    consistent(db)


def test_the_checker_notices_counters_that_drift(db):
    with db.session_scope() as s:
        offer_id = make_offer(s, 5)
        add_customers(s, [1])
        order_id = rsv.reserve(s, offer_id, 1, 2).order_id
        s.execute(sa.text("UPDATE offers SET units_held = 1 WHERE id = :id"), {"id": offer_id})
        s.execute(sa.text("UPDATE orders SET status = 'paid' WHERE id = :id"), {"id": order_id})
        problems = rsv.ledger_problems(s)
        assert any("counters held=1" in p for p in problems)
        assert any(f"order {order_id} (paid): ledger says held=2 sold=0" in p for p in problems)
        assert any(f"order {order_id} (paid): payments - refunds = 0" in p for p in problems)
        with pytest.raises(AssertionError):
            rsv.assert_ledger_consistent(s, offer_id)


# --------------------------------------------------------------------------- everything at once


def _chaos(seed: int, offers: list[int], customers: list[int], steps: int) -> collections.Counter:
    """Random reservations, releases, sweeps, payments (on time, late, wrong) and refunds."""
    from core import db

    rnd = random.Random(seed)
    seen: collections.Counter = collections.Counter()
    for _ in range(steps):
        offer_id = rnd.choice(offers)
        action = rnd.choice(["reserve", "reserve", "reserve_locking", "release", "sweep", "pay", "pay", "cancel"])
        with db.session_scope() as s:
            order_id = s.execute(sa.text("SELECT id FROM orders WHERE offer_id = :o ORDER BY random() LIMIT 1"),
                                 {"o": offer_id}).scalar()
            if action.startswith("reserve"):
                fn = rsv.reserve if action == "reserve" else rsv.reserve_locking
                r = fn(s, offer_id, rnd.choice(customers), rnd.randint(1, 3), hold_minutes=rnd.choice([0, 10]))
                seen[r.outcome.value] += 1
            elif action == "sweep":
                seen["swept"] += rsv.release_expired_holds(s, datetime.now(UTC), batch=rnd.randint(1, 5))
            elif order_id is None:
                continue
            elif action == "release":
                seen["release_" + rsv.release(s, order_id, rnd.choice(list(rsv.ReleaseReason))).outcome.value] += 1
            elif action == "pay":
                order = order_row(s, order_id)
                amount = order.amount_minor if rnd.random() < 0.9 else order.amount_minor + 1
                sale = rsv.confirm_sale(s, order_id, amount, "eur", f"pi_{order_id}")
                seen["sale_" + sale.outcome.value] += 1
                if sale.outcome is SaleOutcome.NEEDS_REFUND:
                    rsv.record_refund(s, order_id, amount, "EUR", f"re_{order_id}")
            else:
                outcome = rsv.cancel_paid(s, order_id).outcome
                seen["cancel_" + outcome.value] += 1
                if outcome is CancelOutcome.CANCELLED:
                    rsv.record_refund(s, order_id, order_row(s, order_id).amount_minor, "EUR", f"re_{order_id}")
    return seen


def test_everything_at_once_from_many_processes_keeps_the_books_straight(db):
    with db.session_scope() as s:
        offers = [make_offer(s, q) for q in (4, 9, 20)]
        customers = list(range(300, 330))
        add_customers(s, customers)
    seen = sum(run_processes(db, _chaos, [(seed, offers, customers, 60) for seed in range(12)]),
               collections.Counter())
    # The run exercised the interesting paths, not only the easy ones.
    for key in ("reserved", "already_held", "sale_paid", "swept", "release_released", "cancel_cancelled"):
        assert seen[key] > 0, seen
    assert seen["sold_out"] + seen["not_enough_left"] > 0, seen
    with db.session_scope() as s:
        rsv.assert_ledger_consistent(s)
        assert rsv.orders_awaiting_refund(s) == []
        rsv.release_expired_holds(s, datetime.now(UTC) + timedelta(hours=1), batch=10_000)
        for offer_id in offers:
            offer = offer_row(s, offer_id)
            assert offer.units_held == 0
            assert rsv.stock_from_ledger(s, offer_id) == (0, offer.units_sold)
        rsv.assert_ledger_consistent(s)


def test_the_benchmark_runs_and_keeps_the_books_straight(db, database_url):
    from bench import bench_reservations

    db.engine().dispose()  # the benchmark forks its clients
    result = bench_reservations.run(duration_s=0.3, clients=(2,), database_url=database_url, pgbench=False)
    assert set(result["strategies"]) == {"one_statement", "two_round_trips", "one_statement_sync", "one_statement_tx",
                                         "locking"}
    for runs in result["strategies"].values():
        assert runs[2]["reservations"] > 0 and runs[2]["oversold_units"] == 0
    assert result["ledger_rows_match"] and result["oversold_units"] == 0
