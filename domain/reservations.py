"""The reservation engine: the stock side of the money/stock ledger.

Every function takes a ``Session`` or a ``Connection`` and runs inside the caller's transaction
(the caller commits), except where noted. Transactions must run at READ COMMITTED, Postgres's
default: the statements below rely on its re-check of a row that changed while they waited for it.

Stock lives in three counters on the offer (``quantity``, ``units_held``, ``units_sold``; the
database refuses ``held + sold > quantity``) and every movement is also a ledger row, unique per
(order, kind), so a replayed movement fails instead of applying twice:

==========  ==================================  ==========================================
kind        counters                            order status
==========  ==================================  ==========================================
hold        held += n                           (new) -> held
release     held -= n                           held -> expired | cancelled
sale        held -= n, sold += n  (on time)     held -> paid
            sold += n             (late: the
            hold was released before)           expired | cancelled -> paid
restock     sold -= n                           paid -> cancelled (refund follows)
payment     money in (amount, currency, Stripe reference)
refund      money out                           -> refunded
==========  ==================================  ==========================================

Stock rows carry ``units`` and no amount; money rows carry ``amount_minor`` and no units. An offer
turns ``sold_out`` in the statement that takes its last unit and back to ``active`` in the
statement that returns one, if its pickup window is still open.

Lock order: the offer row first (several offers in ascending id), then its order rows. Every
change to an order is made under its offer's lock, so these functions cannot deadlock each other.
That matters beyond the explicit locks: a reservation holds the offer while its insert consults
the unique index of open holds, which waits for any transaction that is changing this customer's
open hold; were that transaction allowed to change the hold before locking the offer, the two
would wait for each other. Callers follow the same rule: to lock an order before calling in here,
use :func:`lock_order` (offer, then order), never a bare ``SELECT ... FOR UPDATE`` on orders; a
transaction touching several offers goes in ascending offer id.

The hot path is :func:`reserve`: in autocommit mode one call of the database procedure
``reserve_hold``, whose statement commits without waiting for the disk so the hot row is free at
once, and which then makes it durable by a second, lock-free commit before it returns
(``bench/bench_reservations.py`` measures it against :func:`reserve_locking` and against
committing the statement synchronously).
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError
from sqlalchemy.orm import Session

from core.db import PreparedStatement

MAX_UNITS_PER_ORDER = 10
DEFAULT_HOLD_MINUTES = 10

# Pickup codes: read aloud at a counter, so no 0/O or 1/I. 32 symbols, 6 of them: 2^30 codes.
PICKUP_CODE_ALPHABET = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"
PICKUP_CODE_LENGTH = 6
_CODE_CANDIDATES = 4  # tried in order; the first one not used on the offer wins

# The statements below are prepared on the server once per connection (core.db.PreparedStatement):
# planning a statement of several CTEs costs more than running it (measured here on the
# reservation statement: 1.2 ms per reservation unprepared, 0.5 ms prepared). (The reservation
# itself is a procedure: PL/pgSQL keeps its plan.)

# In autocommit mode, reserve() commits its statement without waiting for the disk and then waits
# for the flush outside the offer's row lock (see make_durable), in the same call. False: the
# statement's own commit waits, holding the row lock through the flush (the benchmark's comparison).
COMMIT_HOLDS_WITHOUT_WAITING = True

Executor = Session | Connection


def _conn(db: Executor) -> Connection:
    # Core execution on the session's connection: same transaction, less per-call overhead.
    return db.connection() if isinstance(db, Session) else db


def new_pickup_code() -> str:
    return "".join(secrets.choice(PICKUP_CODE_ALPHABET) for _ in range(PICKUP_CODE_LENGTH))


def _code_candidates() -> list[str]:
    return [new_pickup_code() for _ in range(_CODE_CANDIDATES)]


class OrderNotFound(LookupError):
    pass


class LedgerInconsistency(RuntimeError):
    """An order's status and its ledger rows disagree; needs an operator, never a silent fix."""


# --------------------------------------------------------------------------- reserve


class ReserveOutcome(enum.StrEnum):
    RESERVED = "reserved"
    ALREADY_HELD = "already_held"  # this customer already holds units of this offer: same order back
    SOLD_OUT = "sold_out"
    NOT_ENOUGH_LEFT = "not_enough_left"  # some left, fewer than asked: see units_left
    NOT_AVAILABLE = "not_available"  # no such offer, or not active (draft, paused, expired, cancelled)
    OVER_LIMIT = "over_limit"  # more than the per-order cap
    INVALID_QUANTITY = "invalid_quantity"  # less than one unit
    # Refused before the engine: the customer's no-shows limit them to one open order
    # (domain.payments.closing), and they have it.
    NO_SHOW_LIMIT = "no_show_limit"


@dataclass(frozen=True)
class ReserveResult:
    outcome: ReserveOutcome
    order_id: int | None = None  # the new order (RESERVED) or the open one (ALREADY_HELD)
    units_left: int | None = None  # after this reservation, as far as this transaction saw
    hold_expires_at: datetime | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (ReserveOutcome.RESERVED, ReserveOutcome.ALREADY_HELD)


# The reservation statement is the database procedure reserve_hold (migration 0003 has it and why
# it is one): guarded update of the offer, the order, its ledger row. With commit_early (autocommit
# connections only) the call commits the statement without waiting for the disk, which frees the
# offer's row for the next reservation at once, then writes the durability barrier of
# make_durable() and returns after its own synchronous commit flushed it: one round trip. Plain
# CALL, so nothing to prepare: PL/pgSQL keeps the statement's plan for the connection.
_RESERVE_CALL = ("CALL reserve_hold(%(offer_id)s, %(customer_id)s, %(n)s, %(hold_minutes)s, %(commit_early)s,"
                 " NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL)")
OPEN_HOLD_INDEX = "uq_orders_one_open_hold"


class _ReserveRow(NamedTuple):  # reserve_hold's OUT parameters, in order
    order_id: int | None
    hold_expires_at: datetime | None
    units_left_after: int | None
    existing_id: int | None
    existing_expires_at: datetime | None
    status: str | None
    units_left: int | None
    window_open: bool | None


def _call_reserve_hold(conn: Connection, params: dict) -> _ReserveRow:
    """The CALL on the connection's DBAPI cursor, errors raised as SQLAlchemy raises them.

    The hottest statement of the system, and one whose result needs nothing of SQLAlchemy's
    result machinery: going around exec_driver_sql saves about 40 µs of client CPU per
    reservation (7 % more reservations per second on one hot offer at 8 clients). A failure still
    comes out as the same ``sqlalchemy.exc`` class (IntegrityError for the open-hold race), and a
    dead database connection is invalidated so the pool replaces it."""
    dbapi_connection = conn.connection.dbapi_connection
    assert dbapi_connection is not None, "the pooled connection is open"
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(_RESERVE_CALL, params)
            row = cursor.fetchone()
            assert row is not None, "CALL reserve_hold always answers one row"
            return _ReserveRow._make(row)
        finally:
            cursor.close()
    except conn.dialect.loaded_dbapi.Error as exc:
        disconnected = conn.dialect.is_disconnect(exc, dbapi_connection, None)
        if disconnected:
            conn.invalidate(exc)
        raise DBAPIError.instance(_RESERVE_CALL, params, exc, conn.dialect.loaded_dbapi.Error,
                                  connection_invalidated=disconnected, dialect=conn.dialect) from exc


# The current state, read by a fresh statement (so, at READ COMMITTED, a fresh snapshot).
_OFFER_AND_HOLD_SQL = PreparedStatement(
    "offer_and_hold",
    """
    SELECT o.status, o.quantity - o.units_sold - o.units_held AS units_left, o.pickup_end > now() AS window_open,
           h.id AS existing_id, h.hold_expires_at AS existing_expires_at
    FROM (VALUES (1)) AS one (x)
    LEFT JOIN offers o ON o.id = :offer_id
    LEFT JOIN orders h ON h.offer_id = :offer_id AND h.customer_id = :customer_id AND h.status = 'held'
    """,
    {"offer_id": "bigint", "customer_id": "bigint"},
)


def _check_request(quantity: int, per_order_cap: int) -> ReserveResult | None:
    if quantity < 1:
        return ReserveResult(ReserveOutcome.INVALID_QUANTITY)
    if quantity > per_order_cap:
        return ReserveResult(ReserveOutcome.OVER_LIMIT)
    return None


def _refusal(status: str | None, units_left: int | None, window_open: bool | None, existing_id: int | None,
             existing_expires_at: datetime | None, *, quantity: int) -> ReserveResult | None:
    """Why a reservation of ``quantity`` cannot be made in this state; None if it could."""
    if existing_id is not None:
        return ReserveResult(ReserveOutcome.ALREADY_HELD, existing_id, units_left, existing_expires_at)
    if status is None:
        return ReserveResult(ReserveOutcome.NOT_AVAILABLE)
    if status == "sold_out" or (status == "active" and window_open and units_left == 0):
        return ReserveResult(ReserveOutcome.SOLD_OUT, units_left=0)
    if status != "active" or not window_open:
        return ReserveResult(ReserveOutcome.NOT_AVAILABLE)
    assert units_left is not None, "an active offer has a count"
    if units_left < quantity:
        return ReserveResult(ReserveOutcome.NOT_ENOUGH_LEFT, units_left=units_left)
    return None


def reserve(db: Executor, offer_id: int, customer_id: int, quantity: int = 1, *,
            hold_minutes: int = DEFAULT_HOLD_MINUTES, per_order_cap: int = MAX_UNITS_PER_ORDER) -> ReserveResult:
    """Hold ``quantity`` units of an offer for a customer for ``hold_minutes``.

    One call of the procedure ``reserve_hold``, one statement: add the units to ``units_held`` if
    they are there (turning the offer ``sold_out`` when it takes the last one), insert the order
    (at most one open hold per customer and offer) and write the ``hold`` ledger row. A refusal
    changes nothing. Only when the statement's snapshot and the row it then found disagree (a
    concurrent reservation or tap won) does a second read follow, to say why from the state as it
    is now.

    On a connection in autocommit mode (the fast path, as tasks use it) the statement is its own
    transaction and commits without waiting for the disk, which frees the offer's row for the next
    reservation at once; a returned hold has then been made durable, in the same call, by the
    barrier of :func:`make_durable`, so nobody is ever told about a hold a crash could forget.
    Inside the caller's transaction it runs under a savepoint (two more round trips), so that
    losing the race against the same customer's other tap leaves that transaction usable, and it
    is as durable as the caller's commit.
    """
    if (refused := _check_request(quantity, per_order_cap)) is not None:
        return refused
    conn = _conn(db)
    autocommit = _in_autocommit(conn)
    commit_early = autocommit and COMMIT_HOLDS_WITHOUT_WAITING
    params = {"offer_id": offer_id, "customer_id": customer_id, "n": quantity, "hold_minutes": hold_minutes,
              "commit_early": commit_early}
    result = None
    flushed = False  # by the call itself, which does so whenever it reports a hold
    for _ in range(3):
        try:
            if autocommit:
                row = _call_reserve_hold(conn, params)
            else:
                with conn.begin_nested():
                    row = _call_reserve_hold(conn, params)
        except IntegrityError as exc:
            if getattr(getattr(exc.orig, "diag", None), "constraint_name", None) != OPEN_HOLD_INDEX:
                raise
            row = None  # this customer's other tap committed a hold while we waited: see below
        if row is not None:
            if row.order_id is not None:
                result = ReserveResult(ReserveOutcome.RESERVED, row.order_id, row.units_left_after,
                                       row.hold_expires_at)
                flushed = commit_early
                break
            result = _refusal(row.status, row.units_left, row.window_open, row.existing_id,
                              row.existing_expires_at, quantity=quantity)
            if result is not None:
                flushed = commit_early
                break
        now = _OFFER_AND_HOLD_SQL(conn, params).one()
        result = _refusal(now.status, now.units_left, now.window_open, now.existing_id,
                          now.existing_expires_at, quantity=quantity)
        if result is not None:
            break
    if result is None:  # stock kept coming and going under us; the customer may simply try again
        return ReserveResult(ReserveOutcome.NOT_ENOUGH_LEFT, units_left=None)
    if commit_early and result.ok and not flushed:
        # ALREADY_HELD too: the hold may be the other tap's, whose own flush may not have happened yet.
        make_durable(conn)
    return result


def _in_autocommit(conn: Connection) -> bool:
    return bool(getattr(conn.connection.dbapi_connection, "autocommit", False))


# A transactional WAL record: its synchronous commit flushes the log up to itself, so every commit
# before it, on any connection, is on disk once this returns. A transaction that only reads, or
# only takes a transaction id (txid_current()), writes no WAL and would not wait for the flush.
_DURABILITY_BARRIER_SQL = "SELECT pg_logical_emit_message(true, 'surplus.durable', '')"


def make_durable(conn: Connection) -> None:
    """Return once everything committed so far is on disk (autocommit connections only).

    The hot row is not locked meanwhile, and Postgres flushes the log for all clients waiting
    here at once (group commit), so reservations on one offer no longer queue behind each flush.
    The log is replayed in order after a crash: any later durable commit, including this one,
    makes every earlier asynchronous commit durable with it."""
    conn.exec_driver_sql(_DURABILITY_BARRIER_SQL)


_LOCK_OFFER_SQL = PreparedStatement(
    "lock_offer",
    """
    SELECT status, quantity - units_sold - units_held AS units_left, pickup_end > now() AS window_open,
           price_minor, currency
    FROM offers WHERE id = :offer_id
    FOR NO KEY UPDATE
    """,
    {"offer_id": "bigint"},
)
_OPEN_HOLD_SQL = PreparedStatement(
    "open_hold",
    "SELECT id, hold_expires_at FROM orders WHERE offer_id = :offer_id AND customer_id = :customer_id"
    " AND status = 'held'",
    {"offer_id": "bigint", "customer_id": "bigint"},
)
_INSERT_ORDER_SQL = PreparedStatement(
    "insert_order",
    """
    INSERT INTO orders (offer_id, customer_id, quantity, unit_price_minor, amount_minor, currency,
                        status, hold_expires_at)
    VALUES (:offer_id, :customer_id, :n, :price, :price * :n, :currency,
            'held', now() + make_interval(mins => :hold_minutes))
    ON CONFLICT (offer_id, customer_id) WHERE status = 'held' DO NOTHING
    RETURNING id, hold_expires_at
    """,
    {"offer_id": "bigint", "customer_id": "bigint", "n": "int", "price": "int", "currency": "text",
     "hold_minutes": "int"},
)
_HOLD_UNITS_SQL = PreparedStatement(
    "hold_units",
    """
    UPDATE offers
    SET units_held = units_held + :n,
        status = CASE WHEN quantity - units_sold - units_held = :n THEN 'sold_out' ELSE status END,
        version = version + 1
    WHERE id = :offer_id
    RETURNING quantity - units_sold - units_held AS units_left
    """,
    {"n": "int", "offer_id": "bigint"},
)
_HOLD_ROW_SQL = PreparedStatement(
    "hold_row",
    "INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)"
    " VALUES (:order_id, :offer_id, 'hold', :n, 0)",
    {"order_id": "bigint", "offer_id": "bigint", "n": "int"},
)


def reserve_locking(db: Executor, offer_id: int, customer_id: int, quantity: int = 1, *,
                    hold_minutes: int = DEFAULT_HOLD_MINUTES,
                    per_order_cap: int = MAX_UNITS_PER_ORDER) -> ReserveResult:
    """The same as :func:`reserve`, the classic way: SELECT ... FOR UPDATE, decide in Python, then
    INSERT, UPDATE, INSERT: five round trips with the offer locked for four of them. Needs a
    transaction (in autocommit mode the lock would end with the first statement). Kept for the
    benchmark comparison."""
    if (refused := _check_request(quantity, per_order_cap)) is not None:
        return refused
    conn = _conn(db)
    params = {"offer_id": offer_id, "customer_id": customer_id, "n": quantity, "hold_minutes": hold_minutes}
    offer = _LOCK_OFFER_SQL(conn, params).first()
    if offer is None:
        return ReserveResult(ReserveOutcome.NOT_AVAILABLE)
    # Read after the lock: every earlier reservation on this offer has committed, so this sees
    # a hold made by a concurrent tap of the same customer.
    held = _OPEN_HOLD_SQL(conn, params).first()
    refused = _refusal(offer.status, offer.units_left, offer.window_open,
                       held.id if held else None, held.hold_expires_at if held else None,
                       quantity=quantity)
    if refused is not None:
        return refused
    order = _INSERT_ORDER_SQL(conn, {**params, "price": offer.price_minor, "currency": offer.currency}).first()
    if order is None:  # cannot happen while every hold is made under the offer lock; stay correct anyway
        held = _OPEN_HOLD_SQL(conn, params).one()
        return ReserveResult(ReserveOutcome.ALREADY_HELD, held.id, offer.units_left, held.hold_expires_at)
    units_left = _HOLD_UNITS_SQL(conn, params).scalar_one()
    _HOLD_ROW_SQL(conn, {**params, "order_id": order.id})
    return ReserveResult(ReserveOutcome.RESERVED, order.id, units_left, order.hold_expires_at)


# --------------------------------------------------------------------------- release


class ReleaseReason(enum.StrEnum):
    EXPIRED = "expired"  # the hold lapsed unpaid
    CANCELLED = "cancelled"  # the customer (or the business, or the system) let it go


class ReleaseOutcome(enum.StrEnum):
    RELEASED = "released"
    NOT_HELD = "not_held"  # released before, paid, or otherwise closed: nothing done
    NOT_FOUND = "not_found"  # no such order (or not this customer's)


@dataclass(frozen=True)
class ReleaseResult:
    outcome: ReleaseOutcome
    order_id: int
    order_status: str | None = None  # after the call
    offer_id: int | None = None
    units: int = 0  # units given back by this call


_RELEASE_SQL = text(
    """
    WITH target AS (
        SELECT offer_id FROM orders
        WHERE id = :order_id AND status = 'held'
          AND (CAST(:customer_id AS bigint) IS NULL OR customer_id = :customer_id)
    ),
    locked AS (  -- the offer before the order (see the module doc)
        SELECT id FROM offers WHERE id IN (SELECT offer_id FROM target) FOR NO KEY UPDATE
    ),
    gone AS (
        UPDATE orders SET status = :reason, closed_at = now()
        WHERE id = :order_id AND status = 'held' AND offer_id IN (SELECT id FROM locked)
        RETURNING id, offer_id, quantity
    ),
    moved AS (
        UPDATE offers o
        SET units_held = o.units_held - gone.quantity,
            status = CASE WHEN o.status = 'sold_out' AND o.pickup_end > now() THEN 'active' ELSE o.status END,
            version = o.version + 1
        FROM gone WHERE o.id = gone.offer_id
    ),
    release_row AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)
        SELECT id, offer_id, 'release', quantity, 0 FROM gone
    )
    SELECT (SELECT quantity FROM gone) AS released_units,
           o.status, o.offer_id, o.customer_id
    FROM (VALUES (1)) AS one (x) LEFT JOIN orders o ON o.id = :order_id
    """
)


def release(db: Executor, order_id: int, reason: ReleaseReason | str = ReleaseReason.CANCELLED, *,
            customer_id: int | None = None) -> ReleaseResult:
    """Give a held order's units back: order held -> expired/cancelled, ``units_held -= n``, a
    ``release`` ledger row, offer sold_out -> active if its window is still open. One statement.
    Idempotent: on an order that is not held it does nothing (NOT_HELD). With ``customer_id`` it
    only touches that customer's order (NOT_FOUND otherwise)."""
    reason = ReleaseReason(reason)
    row = _conn(db).execute(
        _RELEASE_SQL, {"order_id": order_id, "reason": reason.value, "customer_id": customer_id}
    ).one()
    if row.released_units is not None:
        return ReleaseResult(ReleaseOutcome.RELEASED, order_id, reason.value, row.offer_id, row.released_units)
    if row.status is None or (customer_id is not None and row.customer_id != customer_id):
        return ReleaseResult(ReleaseOutcome.NOT_FOUND, order_id)
    # The snapshot may still say 'held' if a concurrent release/payment won the row: either way
    # this call changed nothing.
    return ReleaseResult(ReleaseOutcome.NOT_HELD, order_id, row.status, row.offer_id)


# The sweeper. It picks the holds that are due, locks their offers in id order, then takes the
# holds with SKIP LOCKED (one a payment is being confirmed for is left alone) and re-checks them,
# since another sweeper may have expired them meanwhile; each offer is updated once, with the sum
# of its released units.
_SWEEP_SQL = text(
    """
    WITH candidates AS (
        SELECT id, offer_id FROM orders
        WHERE status = 'held' AND hold_expires_at <= :now
        ORDER BY hold_expires_at, id
        LIMIT :batch
    ),
    locked AS (
        SELECT id FROM offers WHERE id IN (SELECT offer_id FROM candidates) ORDER BY id FOR NO KEY UPDATE
    ),
    due AS (
        SELECT id FROM orders
        WHERE id IN (SELECT id FROM candidates) AND offer_id IN (SELECT id FROM locked)
          AND status = 'held' AND hold_expires_at <= :now
        FOR NO KEY UPDATE SKIP LOCKED
    ),
    gone AS (
        UPDATE orders o SET status = 'expired', closed_at = now()
        FROM due WHERE o.id = due.id
        RETURNING o.id, o.offer_id, o.quantity
    ),
    per_offer AS (
        SELECT offer_id, sum(quantity) AS units FROM gone GROUP BY offer_id
    ),
    moved AS (
        UPDATE offers o
        SET units_held = o.units_held - p.units,
            status = CASE WHEN o.status = 'sold_out' AND o.pickup_end > :now THEN 'active' ELSE o.status END,
            version = o.version + 1
        FROM per_offer p
        WHERE o.id = p.offer_id
    ),
    release_rows AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)
        SELECT id, offer_id, 'release', quantity, 0 FROM gone
    )
    SELECT count(*) FROM gone
    """
)


def release_expired_holds(db: Executor, now: datetime, batch: int = 500) -> int:
    """Expire up to ``batch`` holds whose ``hold_expires_at`` is at or before ``now``; returns how
    many. One statement. Several sweepers may run at once: each hold is released exactly once
    (taken with SKIP LOCKED and re-checked), sweepers meeting on an offer take turns. A hold whose
    payment is being confirmed is left to the payment. Call it again while it returns ``batch``
    to drain a backlog."""
    return _conn(db).execute(_SWEEP_SQL, {"now": now, "batch": batch}).scalar_one()


# --------------------------------------------------------------------------- payment


class SaleOutcome(enum.StrEnum):
    PAID = "paid"  # on time: the held units are sold
    PAID_LATE = "paid_late"  # the hold had lapsed, the units were still there: sold anyway
    ALREADY_DONE = "already_done"  # this order's payment was recorded before: nothing changed
    NEEDS_REFUND = "needs_refund"  # payment recorded, order not paid: refund it


class RefundReason(enum.StrEnum):
    NO_STOCK_LEFT = "no_stock_left"  # the hold lapsed and the units went to someone else
    OFFER_UNAVAILABLE = "offer_unavailable"  # the offer was cancelled, ended or paused
    AMOUNT_MISMATCH = "amount_mismatch"  # paid a different amount or currency than the order's


@dataclass(frozen=True)
class SaleResult:
    outcome: SaleOutcome
    order_id: int
    pickup_code: str | None = None  # set when the order is paid
    reason: RefundReason | None = None  # for NEEDS_REFUND
    order_status: str | None = None  # after the call

    @property
    def paid(self) -> bool:
        return self.order_status in ("paid", "collected")


# An order, locked for the rest of the transaction, after its offer (see the module doc).
_LOCK_ORDER_SQL = text(
    """
    WITH target AS (SELECT offer_id FROM orders WHERE id = :order_id),
    locked AS (SELECT id FROM offers WHERE id IN (SELECT offer_id FROM target) FOR NO KEY UPDATE)
    SELECT id, offer_id, customer_id, quantity, amount_minor, currency, status, pickup_code
    FROM orders WHERE id = :order_id AND offer_id IN (SELECT id FROM locked)
    FOR NO KEY UPDATE
    """
)


def lock_order(db: Executor, order_id: int):
    """Lock an order's offer, then the order, until the transaction ends (the engine's lock
    order); returns the order's row (id, offer_id, customer_id, quantity, amount_minor, currency,
    status, pickup_code) or None. For callers that must hold an order steady around calls into
    this module."""
    return _conn(db).execute(_LOCK_ORDER_SQL, {"order_id": order_id}).first()


_ORDER_KINDS_SQL = text("SELECT kind FROM ledger_entries WHERE order_id = :order_id")

_PAYMENT_ROW = """
    INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor, currency, reference)
    VALUES (:order_id, :offer_id, 'payment', 0, :amount, :currency, :reference)
"""

# The first candidate code not yet used on this offer. Two concurrent sales drawing the same fresh
# code (about one chance in 2^30) meet the unique constraint: that transaction fails and the
# task's retry draws new codes.
_FREE_CODE_SQL = text(
    """
    SELECT c FROM unnest(CAST(:codes AS text[])) WITH ORDINALITY AS t (c, i)
    WHERE NOT EXISTS (SELECT 1 FROM orders x WHERE x.offer_id = :offer_id AND x.pickup_code = t.c)
    ORDER BY i LIMIT 1
    """
)

_SELL_HELD_SQL = text(
    f"""
    WITH sold AS (
        UPDATE orders SET status = 'paid', paid_at = now(), pickup_code = :code
        WHERE id = :order_id AND status = 'held'
        RETURNING id, offer_id, quantity, pickup_code
    ),
    moved AS (
        UPDATE offers o
        SET units_held = o.units_held - sold.quantity, units_sold = o.units_sold + sold.quantity,
            version = o.version + 1
        FROM sold WHERE o.id = sold.offer_id
    ),
    sale_row AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)
        SELECT id, offer_id, 'sale', quantity, 0 FROM sold
    ),
    payment_row AS ({_PAYMENT_ROW})
    SELECT pickup_code FROM sold
    """
)

# A late payment: the hold was released, so the units must come from what is left now.
_SELL_LATE_SQL = text(
    f"""
    WITH moved AS (
        UPDATE offers
        SET units_sold = units_sold + :n,
            status = CASE WHEN quantity - units_sold - units_held = :n THEN 'sold_out' ELSE status END,
            version = version + 1
        WHERE id = :offer_id AND status = 'active' AND pickup_end > now()
          AND quantity - units_sold - units_held >= :n
        RETURNING id
    ),
    sold AS (
        UPDATE orders SET status = 'paid', paid_at = now(), closed_at = NULL, pickup_code = :code
        WHERE id = :order_id AND status IN ('expired', 'cancelled') AND EXISTS (SELECT 1 FROM moved)
        RETURNING id, offer_id, quantity, pickup_code
    ),
    sale_row AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)
        SELECT id, offer_id, 'sale', quantity, 0 FROM sold
    ),
    payment_row AS ({_PAYMENT_ROW})
    SELECT (SELECT id FROM sold) AS sold_id, (SELECT pickup_code FROM sold) AS pickup_code,
           o.status IN ('active', 'sold_out') AND o.pickup_end > now() AS on_sale
    FROM offers o WHERE o.id = :offer_id
    """
)
_OFFER_GONE_SQL = text(
    "SELECT status IN ('cancelled', 'expired') OR pickup_end <= now() FROM offers WHERE id = :offer_id"
)


def confirm_sale(db: Executor, order_id: int, paid_amount_minor: int, currency: str,
                 reference: str | None) -> SaleResult:
    """A payment for this order arrived (Stripe ``reference``): record it and sell the units.

    * held order: ``sale`` (held -> sold) and ``payment`` rows, order paid, pickup code issued.
    * hold lapsed (expired/cancelled): the units are taken from what is left if the offer is
      still active with enough stock (PAID_LATE); otherwise NEEDS_REFUND.
    * the offer was cancelled or has ended, or the amount/currency differs from the order's:
      NEEDS_REFUND (a hold still open is released).

    The ``payment`` row is written whenever money arrived, so NEEDS_REFUND leaves a payment for
    :func:`record_refund` to balance. Idempotent: once this order has a payment row, another call
    returns ALREADY_DONE and changes nothing. The offer and order rows stay locked until the
    transaction ends.
    """
    conn = _conn(db)
    order = lock_order(conn, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    kinds = set(conn.execute(_ORDER_KINDS_SQL, {"order_id": order_id}).scalars())
    if "payment" in kinds:
        return SaleResult(SaleOutcome.ALREADY_DONE, order_id, order.pickup_code, order_status=order.status)
    if order.status not in ("held", "expired", "cancelled"):
        raise LedgerInconsistency(f"order {order_id} is {order.status} without a payment row")
    currency = currency.upper()
    params = {
        "order_id": order_id, "offer_id": order.offer_id, "n": order.quantity, "amount": paid_amount_minor,
        "currency": currency, "reference": reference,
    }

    def needs_refund(reason: RefundReason) -> SaleResult:
        if order.status == "held":  # nobody can pay for it any more: free the units now
            release(conn, order_id, ReleaseReason.CANCELLED)
        conn.execute(text(_PAYMENT_ROW), params)
        status = "cancelled" if order.status == "held" else order.status
        return SaleResult(SaleOutcome.NEEDS_REFUND, order_id, reason=reason, order_status=status)

    if paid_amount_minor != order.amount_minor or currency != order.currency:
        return needs_refund(RefundReason.AMOUNT_MISMATCH)
    if order.status == "held":
        if conn.execute(_OFFER_GONE_SQL, params).scalar_one():
            return needs_refund(RefundReason.OFFER_UNAVAILABLE)
        code = conn.execute(_SELL_HELD_SQL, {**params, "code": _free_code(conn, order_id, order.offer_id)})
        return SaleResult(SaleOutcome.PAID, order_id, code.scalar_one(), order_status="paid")
    row = conn.execute(_SELL_LATE_SQL, {**params, "code": _free_code(conn, order_id, order.offer_id)}).one()
    if row.sold_id is not None:
        return SaleResult(SaleOutcome.PAID_LATE, order_id, row.pickup_code, order_status="paid")
    # _SELL_LATE_SQL wrote the payment row already.
    reason = RefundReason.NO_STOCK_LEFT if row.on_sale else RefundReason.OFFER_UNAVAILABLE
    return SaleResult(SaleOutcome.NEEDS_REFUND, order_id, reason=reason, order_status=order.status)


def _free_code(conn: Connection, order_id: int, offer_id: int) -> str:
    code = conn.execute(_FREE_CODE_SQL, {"codes": _code_candidates(), "offer_id": offer_id}).scalar()
    if code is None:  # every candidate taken: about (n / 2^30)^4 for n codes on the offer
        raise RuntimeError(f"could not draw a free pickup code for order {order_id}; retry")
    return code


# --------------------------------------------------------------------------- refunds


class CancelOutcome(enum.StrEnum):
    CANCELLED = "cancelled"  # paid -> cancelled, units back; refund the money next
    ALREADY_DONE = "already_done"  # cancelled after payment before: nothing changed
    NOT_CANCELLABLE = "not_cancellable"  # not paid (held: use release) or already collected


@dataclass(frozen=True)
class CancelResult:
    outcome: CancelOutcome
    order_id: int
    order_status: str | None = None
    units: int = 0


_RESTOCK_SQL = text(
    """
    WITH gone AS (
        UPDATE orders SET status = 'cancelled', closed_at = now()
        WHERE id = :order_id AND status = 'paid'
        RETURNING id, offer_id, quantity
    ),
    moved AS (
        UPDATE offers o
        SET units_sold = o.units_sold - gone.quantity,
            status = CASE WHEN o.status = 'sold_out' AND o.pickup_end > now() THEN 'active' ELSE o.status END,
            version = o.version + 1
        FROM gone WHERE o.id = gone.offer_id
    ),
    restock_row AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor)
        SELECT id, offer_id, 'restock', quantity, 0 FROM gone
    )
    SELECT quantity FROM gone
    """
)


def cancel_paid(db: Executor, order_id: int) -> CancelResult:
    """A paid order is called off (the customer cancels within the policy, or the business
    cancels the offer): paid -> cancelled, ``units_sold -= n`` with a ``restock`` row, offer
    sold_out -> active if its window is still open. The money goes back through the payments code,
    which then calls :func:`record_refund`. Idempotent."""
    conn = _conn(db)
    order = lock_order(conn, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    units = conn.execute(_RESTOCK_SQL, {"order_id": order_id}).scalar()
    if units is not None:
        return CancelResult(CancelOutcome.CANCELLED, order_id, "cancelled", units)
    kinds = set(conn.execute(_ORDER_KINDS_SQL, {"order_id": order_id}).scalars())
    outcome = CancelOutcome.ALREADY_DONE if "restock" in kinds else CancelOutcome.NOT_CANCELLABLE
    return CancelResult(outcome, order_id, order.status)


class RefundOutcome(enum.StrEnum):
    RECORDED = "recorded"
    ALREADY_DONE = "already_done"
    NO_PAYMENT = "no_payment"  # nothing was paid for this order: nothing recorded


@dataclass(frozen=True)
class RefundResult:
    outcome: RefundOutcome
    order_id: int
    order_status: str | None = None


_REFUND_ROW_SQL = text(
    """
    WITH refund_row AS (
        INSERT INTO ledger_entries (order_id, offer_id, kind, units, amount_minor, currency, reference)
        VALUES (:order_id, :offer_id, 'refund', 0, :amount, :currency, :reference)
    )
    UPDATE orders SET status = 'refunded', closed_at = coalesce(closed_at, now()) WHERE id = :order_id
    """
)
_PAYMENT_OF_SQL = text(
    "SELECT amount_minor, currency FROM ledger_entries WHERE order_id = :order_id AND kind = 'payment'"
)


def record_refund(db: Executor, order_id: int, amount_minor: int, currency: str, reference: str | None) -> RefundResult:
    """Money went back to the customer (Stripe refund ``reference``): write the ``refund`` row and
    mark the order refunded. A still-paid order is cancelled first (units back, as
    :func:`cancel_paid`); a collected one keeps its sold units (the food is gone). Idempotent:
    one refund row per order. The amount must be positive and at most what was paid."""
    conn = _conn(db)
    order = lock_order(conn, order_id)
    if order is None:
        raise OrderNotFound(order_id)
    kinds = set(conn.execute(_ORDER_KINDS_SQL, {"order_id": order_id}).scalars())
    if "refund" in kinds:
        return RefundResult(RefundOutcome.ALREADY_DONE, order_id, order.status)
    payment = conn.execute(_PAYMENT_OF_SQL, {"order_id": order_id}).first()
    if payment is None:
        return RefundResult(RefundOutcome.NO_PAYMENT, order_id, order.status)
    currency = currency.upper()
    if not 0 < amount_minor <= payment.amount_minor or currency != payment.currency:
        raise ValueError(
            f"refund of {amount_minor} {currency} does not fit the payment of {payment.amount_minor} {payment.currency}"
        )
    if order.status == "held":
        raise LedgerInconsistency(f"order {order_id} is held but has a payment row")
    if order.status == "paid":
        conn.execute(_RESTOCK_SQL, {"order_id": order_id})
    conn.execute(_REFUND_ROW_SQL, {"order_id": order_id, "offer_id": order.offer_id, "amount": amount_minor,
                                   "currency": currency, "reference": reference})
    return RefundResult(RefundOutcome.RECORDED, order_id, "refunded")


_AWAITING_REFUND_SQL = text(
    """
    SELECT o.id FROM orders o
    JOIN ledger_entries p ON p.order_id = o.id AND p.kind = 'payment'
    WHERE o.status IN ('expired', 'cancelled')
      AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.order_id = o.id AND r.kind = 'refund')
    ORDER BY o.id LIMIT :limit
    """
)


def orders_awaiting_refund(db: Executor, limit: int = 500) -> list[int]:
    """Orders whose money came in but which are not paid and not refunded yet (for
    ``maintenance.reconcile_payments``)."""
    return list(_conn(db).execute(_AWAITING_REFUND_SQL, {"limit": limit}).scalars())


# --------------------------------------------------------------------------- ledger checks

# Per order: a sale takes held units unless the hold was released before (a late payment), in
# which case it takes available units. Each order has at most one row of each kind.
_PER_ORDER_LEDGER = """
    SELECT order_id, offer_id,
           coalesce(sum(units) FILTER (WHERE kind = 'hold'), 0)
             - coalesce(sum(units) FILTER (WHERE kind = 'release'), 0)
             - CASE WHEN bool_or(kind = 'release') THEN 0
                    ELSE coalesce(sum(units) FILTER (WHERE kind = 'sale'), 0) END AS held,
           coalesce(sum(units) FILTER (WHERE kind = 'sale'), 0)
             - coalesce(sum(units) FILTER (WHERE kind = 'restock'), 0) AS sold,
           coalesce(sum(amount_minor) FILTER (WHERE kind = 'payment'), 0)
             - coalesce(sum(amount_minor) FILTER (WHERE kind = 'refund'), 0) AS net_money,
           count(*) - count(DISTINCT kind) AS duplicate_rows
    FROM ledger_entries
    {where}
    GROUP BY order_id, offer_id
"""
_ONE_OFFER = "WHERE offer_id = :offer_id"
_ONE_OR_ALL_OFFERS = "WHERE (CAST(:offer_id AS bigint) IS NULL OR offer_id = :offer_id)"
_STOCK_FROM_LEDGER_SQL = text(
    "SELECT coalesce(sum(held), 0), coalesce(sum(sold), 0)"
    f" FROM ({_PER_ORDER_LEDGER.format(where=_ONE_OFFER)}) per_order"
)


def stock_from_ledger(db: Executor, offer_id: int) -> tuple[int, int]:
    """(units held, units sold) of an offer, from its ledger rows alone."""
    held, sold = _conn(db).execute(_STOCK_FROM_LEDGER_SQL, {"offer_id": offer_id}).one()
    return int(held), int(sold)


_OFFER_CHECK_SQL = text(
    f"""
    WITH per_order AS ({_PER_ORDER_LEDGER.format(where=_ONE_OR_ALL_OFFERS)}),
    per_offer AS (SELECT offer_id, sum(held) AS held, sum(sold) AS sold FROM per_order GROUP BY offer_id)
    SELECT o.id, o.status, o.quantity, o.units_held, o.units_sold, o.pickup_end > now() AS window_open,
           coalesce(p.held, 0) AS ledger_held, coalesce(p.sold, 0) AS ledger_sold
    FROM offers o LEFT JOIN per_offer p ON p.offer_id = o.id
    WHERE CAST(:offer_id AS bigint) IS NULL OR o.id = :offer_id
    ORDER BY o.id
    """
)
_ORDER_CHECK_SQL = text(
    f"""
    WITH per_order AS ({_PER_ORDER_LEDGER.format(where=_ONE_OR_ALL_OFFERS)})
    SELECT o.id, o.status, o.quantity, o.amount_minor, o.offer_id AS order_offer_id, p.offer_id AS ledger_offer_id,
           coalesce(p.held, 0) AS held, coalesce(p.sold, 0) AS sold,
           coalesce(p.net_money, 0) AS net_money, coalesce(p.duplicate_rows, 0) AS duplicate_rows
    FROM orders o LEFT JOIN per_order p ON p.order_id = o.id
    WHERE CAST(:offer_id AS bigint) IS NULL OR o.offer_id = :offer_id
    ORDER BY o.id
    """
)


def ledger_problems(db: Executor, offer_id: int | None = None, *, money: bool = True) -> list[str]:
    """Everything on which the counters, the orders and the ledger disagree (empty: consistent),
    for one offer or all of them:

    * each offer's ``units_held``/``units_sold`` equal what its ledger rows say, within
      0..quantity, and a sold-out offer with an open window has nothing left;
    * each order's status matches its own stock rows (held: its units held; paid, collected or
      not collected: its units sold; closed: neither, except a refunded order that had been collected);
    * with ``money``: each order's payments minus refunds equal its amount if it is paid or
      collected, else zero (so an order awaiting its refund counts as a problem).
    """
    conn = _conn(db)
    problems: list[str] = []
    params = {"offer_id": offer_id}
    for o in conn.execute(_OFFER_CHECK_SQL, params):
        name = f"offer {o.id}"
        if (o.units_held, o.units_sold) != (o.ledger_held, o.ledger_sold):
            problems.append(f"{name}: counters held={o.units_held} sold={o.units_sold}, "
                            f"ledger held={o.ledger_held} sold={o.ledger_sold}")
        if o.units_held < 0 or o.units_sold < 0 or o.units_held + o.units_sold > o.quantity:
            problems.append(f"{name}: held={o.units_held} sold={o.units_sold} quantity={o.quantity}")
        left = o.quantity - o.units_held - o.units_sold
        if o.status == "sold_out" and left > 0 and o.window_open:
            problems.append(f"{name}: sold_out with {left} left")
        if o.status == "active" and left == 0 and o.quantity > 0:
            problems.append(f"{name}: active with nothing left")
    for r in conn.execute(_ORDER_CHECK_SQL, params):
        name = f"order {r.id} ({r.status})"
        if r.duplicate_rows:
            problems.append(f"{name}: {r.duplicate_rows} duplicate ledger rows")
        if r.ledger_offer_id is not None and r.ledger_offer_id != r.order_offer_id:
            problems.append(f"{name}: ledger rows on offer {r.ledger_offer_id}, order on {r.order_offer_id}")
        expected_held = r.quantity if r.status == "held" else 0
        expected_sold = r.quantity if r.status in ("paid", "collected", "not_collected") else 0
        if r.status == "refunded" and r.sold == r.quantity:
            expected_sold = r.quantity  # collected, then refunded: the food is gone
        if (r.held, r.sold) != (expected_held, expected_sold):
            problems.append(f"{name}: ledger says held={r.held} sold={r.sold} of {r.quantity}")
        if money:
            expected_money = r.amount_minor if r.status in ("paid", "collected", "not_collected") else 0
            if r.net_money != expected_money:
                problems.append(f"{name}: payments - refunds = {r.net_money}, expected {expected_money}")
    return problems


def assert_ledger_consistent(db: Executor, offer_id: int | None = None, *, money: bool = True) -> None:
    problems = ledger_problems(db, offer_id, money=money)
    if problems:
        raise AssertionError("ledger and counters disagree:\n  " + "\n  ".join(problems))
