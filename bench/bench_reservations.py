"""Benchmark the reservation engine on one hot offer: how many reservations per second, with their
order and ledger rows, as concurrent clients all want the same deal.

    python -m bench.bench_reservations [--url URL] [--duration 3] [--clients 1,8,32] [--json out.json]

Each client is its own OS process with its own connection, reserving one unit for a new customer
per call, as fast as it can, one transaction per reservation:

* ``one_statement``: ``domain.reservations.reserve`` in autocommit mode, as the reservation task
  runs it: one call of the procedure ``reserve_hold``, whose statement commits without waiting for
  the disk (the hot row is free at once), then a second, lock-free commit in the same call flushes
  the log before the hold is returned (group commit);
* ``two_round_trips``: the same two commits, the flush sent as a second statement from the client
  (how ``reserve`` worked before the procedure);
* ``one_statement_sync``: the same statement committed synchronously: the hot row stays locked
  until its commit is on disk, so one offer takes one flush per reservation;
* ``one_statement_tx``: the statement inside BEGIN ... COMMIT, as code holding a session runs it
  (under a savepoint, the row locked through two more round trips and the commit);
* ``locking``: ``reserve_locking``: SELECT ... FOR UPDATE, then INSERT, UPDATE, INSERT, COMMIT.

The database first gets some history, as a marketplace has: past offers and their orders, and
live offers of other businesses. On empty tables Postgres plans the hot statement with scans no
production database would use (all offers for the one wanted, all orders for the customer's
hold), and the figures would measure that instead.

An offer holds at most 10,000 units (a CHECK constraint), so the hot offer is a chain: when one
sells out, every client moves on to the next. After each run the books are checked: no offer
oversold, one ``hold`` ledger row and one order per successful reservation, counters equal to
the ledger. When ``pgbench`` is installed, the same client counts run a bare guarded single-row
update plus an insert in one statement, the ceiling for this kind of work on this machine.

The database comes from ``--url``, else ``DATABASE_URL``, else a fresh private Postgres is started
in ``.run/`` (and removed afterwards). The schema is brought to the migrations' head; the rows
made here are deleted again.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import multiprocessing
import os
import re
import shutil
import subprocess
import tempfile
import time
import traceback
import uuid
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from domain import reservations as rsv

ROOT = Path(__file__).resolve().parent.parent
STRATEGIES = ("one_statement", "two_round_trips", "one_statement_sync", "one_statement_tx", "locking")
HISTORY_OFFERS, LIVE_OFFERS, HISTORY_ORDERS = 3_000, 400, 20_000
HISTORY_TITLE = "Bench history"
UNITS_PER_OFFER = 10_000  # the schema's upper bound for one offer
CUSTOMER_BASE = 7_000_000_000  # Telegram-sized ids, well away from anything else in the database
PGBENCH_SCRIPTS = {
    # The ceiling: a guarded update of the hot row and one insert, one statement.
    "guarded_update_insert": """
        WITH moved AS (
            UPDATE bench_ceiling_stock SET held = held + 1
            WHERE id = 1 AND quantity - held >= 1 RETURNING id
        )
        INSERT INTO bench_ceiling_log (stock_id, units) SELECT id, 1 FROM moved;
    """,
    # The shape of reserve(): lock the row first, then update it and insert, one statement.
    "lock_update_insert": """
        WITH locked AS (
            SELECT id FROM bench_ceiling_stock WHERE id = 1 AND quantity - held >= 1 FOR NO KEY UPDATE
        ), moved AS (
            UPDATE bench_ceiling_stock s SET held = held + 1 FROM locked WHERE s.id = locked.id RETURNING s.id
        )
        INSERT INTO bench_ceiling_log (stock_id, units) SELECT id, 1 FROM moved;
    """,
}


# --------------------------------------------------------------------------- setup


def _migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logging"] = False
    config.attributes["url"] = url
    command.upgrade(config, "head")


def _prepare(engine: sa.Engine, customers: int) -> int:
    """A verified business and ``customers`` users; returns the business id."""
    with engine.begin() as c:
        c.execute(sa.text("INSERT INTO users (id, first_name) SELECT g, 'bench' FROM generate_series(:a, :b) g"
                          " ON CONFLICT DO NOTHING"), {"a": CUSTOMER_BASE, "b": CUSTOMER_BASE + customers})
        business = c.execute(sa.text("SELECT id FROM businesses WHERE owner_id = :o"), {"o": CUSTOMER_BASE}).scalar()
        if business is None:
            business = c.execute(sa.text(
                "INSERT INTO businesses (owner_id, name, address, phone, status)"
                " VALUES (:o, 'Bench bakery', 'Nowhere 1', '+0', 'verified') RETURNING id"),
                {"o": CUSTOMER_BASE}).scalar()
    return business


def _add_history(engine: sa.Engine, business: int) -> None:
    """Past offers with their collected orders, and live offers; then fresh statistics, as
    autovacuum would keep them. Removed again by _drop_history."""
    _drop_history(engine, business)
    with engine.begin() as c:
        past = list(c.execute(sa.text(
            "INSERT INTO offers (business_id, title, price_minor, original_price_minor, currency, quantity,"
            " pickup_start, pickup_end, status, published_at)"
            " SELECT :b, :title, 300, 600, 'EUR', 10, now() - interval '2 days', now() - interval '1 day',"
            " 'expired', now() - interval '2 days' FROM generate_series(1, :n) RETURNING id"),
            {"b": business, "title": HISTORY_TITLE, "n": HISTORY_OFFERS}).scalars())
        c.execute(sa.text(
            "INSERT INTO orders (offer_id, customer_id, quantity, unit_price_minor, amount_minor, currency,"
            " status, pickup_code, paid_at, closed_at)"
            " SELECT (:offers)[1 + g % cardinality(:offers)], :c + g % 1000, 1, 300, 300, 'EUR', 'collected',"
            " 'H' || g, now() - interval '1 day', now() - interval '1 day' FROM generate_series(1, :n) g"),
            {"offers": past, "c": CUSTOMER_BASE + 1, "n": HISTORY_ORDERS})
        c.execute(sa.text(
            "UPDATE offers SET units_sold = (SELECT count(*) FROM orders WHERE orders.offer_id = offers.id)"
            " WHERE id = ANY(:offers)"), {"offers": past})
        c.execute(sa.text(
            "INSERT INTO offers (business_id, title, price_minor, original_price_minor, currency, quantity,"
            " pickup_start, pickup_end, status, published_at)"
            " SELECT :b, :title, 300, 600, 'EUR', 10, now(), now() + interval '1 day', 'active', now()"
            " FROM generate_series(1, :n)"), {"b": business, "title": HISTORY_TITLE, "n": LIVE_OFFERS})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE offers, orders, ledger_entries"))


def _drop_history(engine: sa.Engine, business: int) -> None:
    with engine.begin() as c:
        c.execute(sa.text("DELETE FROM orders WHERE offer_id IN"
                          " (SELECT id FROM offers WHERE business_id = :b AND title = :title)"),
                  {"b": business, "title": HISTORY_TITLE})
        c.execute(sa.text("DELETE FROM offers WHERE business_id = :b AND title = :title"),
                  {"b": business, "title": HISTORY_TITLE})


def _make_offers(engine: sa.Engine, business: int, count: int) -> list[int]:
    with engine.begin() as c:
        return list(c.execute(sa.text(
            "INSERT INTO offers (business_id, title, price_minor, original_price_minor, currency, quantity,"
            " pickup_start, pickup_end, status, published_at)"
            " SELECT :b, 'Hot deal', 300, 600, 'EUR', :q, now(), now() + interval '1 day', 'active', now()"
            " FROM generate_series(1, :n) RETURNING id"), {"b": business, "q": UNITS_PER_OFFER, "n": count}).scalars())


def _drop_offers(engine: sa.Engine, offers: list[int]) -> None:
    with engine.begin() as c:
        for table, column in (("ledger_entries", "offer_id"), ("orders", "offer_id"), ("offers", "id")):
            c.execute(sa.text(f"DELETE FROM {table} WHERE {column} = ANY(:ids)"), {"ids": offers})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(sa.text("VACUUM ANALYZE offers, orders, ledger_entries"))


# --------------------------------------------------------------------------- clients


def _reserve_two_round_trips(conn: sa.Connection, offer_id: int, customer_id: int) -> rsv.ReserveResult:
    """The statement committed without waiting (SET LOCAL in the same implicit transaction), then
    the durability barrier as a second statement: the shipped call's work in two round trips.
    Enough of reserve() for this benchmark, where every customer is new to the offer."""
    row = conn.exec_driver_sql("SET LOCAL synchronous_commit = off; " + rsv._RESERVE_CALL, {
        "offer_id": offer_id, "customer_id": customer_id, "n": 1, "hold_minutes": rsv.DEFAULT_HOLD_MINUTES,
        "commit_early": False}).one()
    if row.order_id is None:
        refused = rsv._refusal(row.status, row.units_left, row.window_open, row.existing_id,
                               row.existing_expires_at, quantity=1)
        return refused or rsv.ReserveResult(rsv.ReserveOutcome.NOT_ENOUGH_LEFT)
    rsv.make_durable(conn)
    return rsv.ReserveResult(rsv.ReserveOutcome.RESERVED, row.order_id, row.units_left_after, row.hold_expires_at)


def _client(*, url, strategy, offers, current, block, barrier, duration_s, results, index) -> None:
    """One client: reserve one unit per call on the current hot offer until the time is up."""
    try:
        engine = sa.create_engine(url, poolclass=NullPool)
        conn = engine.connect()
        autocommit = strategy in ("one_statement", "two_round_trips", "one_statement_sync")
        if autocommit:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        rsv.COMMIT_HOLDS_WITHOUT_WAITING = strategy != "one_statement_sync"  # this process only
        alternatives = {"locking": rsv.reserve_locking, "two_round_trips": _reserve_two_round_trips}
        reserve = alternatives.get(strategy, rsv.reserve)
        first_customer = CUSTOMER_BASE + 1 + index * block
        outcomes: collections.Counter = collections.Counter()
        latencies: list[float] = []
        offer_index, used = current.value, 0
        barrier.wait(timeout=60)  # all connected: go
        stop_at = time.monotonic() + duration_s
        while (now := time.monotonic()) < stop_at:
            if offer_index >= len(offers):
                outcomes["out_of_offers"] += 1
                break
            customer = first_customer + used % block
            used += 1
            if autocommit:
                result = reserve(conn, offers[offer_index], customer)
            else:
                with conn.begin():
                    result = reserve(conn, offers[offer_index], customer)
            latencies.append(time.monotonic() - now)
            outcome = result.outcome
            outcomes[outcome.value] += 1
            if outcome in (rsv.ReserveOutcome.SOLD_OUT, rsv.ReserveOutcome.NOT_ENOUGH_LEFT):
                with current.get_lock():  # move everyone to the next offer of the chain
                    if current.value == offer_index:
                        current.value += 1
                    offer_index, used = current.value, 0
            elif current.value != offer_index:
                offer_index, used = current.value, 0
        conn.close()
        engine.dispose()
        latencies.sort()
        results.put((index, "ok", dict(outcomes), latencies[len(latencies) // 2] if latencies else None,
                     latencies[int(len(latencies) * 0.99)] if latencies else None))
    except BaseException:  # noqa: BLE001 - reported to the parent
        results.put((index, "error", traceback.format_exc(), None, None))


def _run_strategy(url: str, engine: sa.Engine, business: int, strategy: str, clients: int, *,
                  duration_s: float, expected_rate: float) -> dict:
    chain = math.ceil(duration_s * expected_rate / UNITS_PER_OFFER) + 2
    offers = _make_offers(engine, business, chain)
    block = _block(clients)
    ctx = multiprocessing.get_context("fork")
    current = ctx.Value("i", 0)
    barrier = ctx.Barrier(clients)
    queue = ctx.Queue()
    procs = [ctx.Process(target=_client, daemon=True, kwargs={
        "url": url, "strategy": strategy, "offers": offers, "current": current, "block": block, "barrier": barrier,
        "duration_s": duration_s, "results": queue, "index": i,
    }) for i in range(clients)]
    for p in procs:
        p.start()
    reports = [queue.get(timeout=duration_s + 120) for _ in procs]
    for p in procs:
        p.join(timeout=30)
    errors = [r[2] for r in reports if r[1] != "ok"]
    if errors:
        raise RuntimeError(f"{strategy} with {clients} clients failed:\n{errors[0]}")
    outcomes = sum((collections.Counter(r[2]) for r in reports), collections.Counter())
    reserved = outcomes["reserved"]

    with engine.begin() as c:
        books = c.execute(sa.text(
            "SELECT coalesce(sum(GREATEST(units_held + units_sold - quantity, 0)), 0) AS oversold,"
            " coalesce(sum(units_held), 0) AS held,"
            " (SELECT count(*) FROM ledger_entries WHERE offer_id = ANY(:ids) AND kind = 'hold') AS hold_rows,"
            " (SELECT count(*) FROM orders WHERE offer_id = ANY(:ids)) AS orders"
            " FROM offers WHERE id = ANY(:ids)"), {"ids": offers}).one()
        problems = [p for o in offers for p in rsv.ledger_problems(c, o)]
    _drop_offers(engine, offers)
    return {
        "clients": clients,
        "reservations": reserved,
        "reservations_per_s": round(reserved / duration_s, 1),
        "p50_ms": round(1000 * _median([r[3] for r in reports if r[3] is not None]), 3),
        "p99_ms": round(1000 * max((r[4] for r in reports if r[4] is not None), default=0), 3),
        "outcomes": dict(outcomes),
        "offers_used": min(len(offers), current.value + 1),
        "oversold_units": int(books.oversold),
        "ledger_rows_match": int(books.hold_rows) == int(books.orders) == int(books.held) == reserved,
        "ledger_problems": problems[:5],
    }


def _block(clients: int) -> int:
    """Customer ids per client: enough that a client never reuses one on the same offer, unless it
    made 2.5 times its fair share of an offer's reservations (it would then see ALREADY_HELD)."""
    return max(200, math.ceil(2.5 * UNITS_PER_OFFER / clients))


def _median(values: list[float]) -> float:
    values = sorted(values)
    return values[len(values) // 2] if values else 0.0


# --------------------------------------------------------------------------- pgbench


def _pgbench_binary() -> str | None:
    for candidate in (shutil.which("pgbench"), *sorted(map(str, Path("/usr/lib/postgresql").glob("*/bin/pgbench")),
                                                        reverse=True)):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


def _pgbench(url: str, engine: sa.Engine, clients: tuple[int, ...], duration_s: float) -> dict | None:
    binary = _pgbench_binary()
    if binary is None:
        return None
    u = make_url(url)
    env = {**os.environ, "PGHOST": u.host or "127.0.0.1", "PGPORT": str(u.port or 5432),
           "PGUSER": u.username or "postgres", "PGDATABASE": u.database or "postgres"}
    if u.password:
        env["PGPASSWORD"] = u.password
    with engine.begin() as c:
        c.execute(sa.text("DROP TABLE IF EXISTS bench_ceiling_log, bench_ceiling_stock"))
        c.execute(sa.text("CREATE TABLE bench_ceiling_stock (id int PRIMARY KEY, quantity int NOT NULL,"
                          " held int NOT NULL, CHECK (held <= quantity))"))
        c.execute(sa.text("CREATE TABLE bench_ceiling_log (id bigserial PRIMARY KEY, stock_id int NOT NULL,"
                          " units int NOT NULL)"))
    out: dict = {"binary": binary, "protocol": "simple", "scripts": {}}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for name, script in PGBENCH_SCRIPTS.items():
                path = Path(tmp) / f"{name}.sql"
                path.write_text(" ".join(script.split()) + "\n")
                out["scripts"][name] = {}
                for n in clients:
                    with engine.begin() as c:
                        c.execute(sa.text("TRUNCATE bench_ceiling_log"))
                        c.execute(sa.text("DELETE FROM bench_ceiling_stock"))
                        c.execute(sa.text("INSERT INTO bench_ceiling_stock VALUES (1, 2000000000, 0)"))
                    run = subprocess.run(
                        [binary, "-n", "-f", str(path), "-c", str(n), "-j", str(min(n, 4)),
                         "-T", str(max(1, round(duration_s)))],
                        env=env, capture_output=True, text=True, timeout=duration_s + 120, check=False)
                    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", run.stdout)
                    if run.returncode != 0 or not match:
                        out["scripts"][name][n] = {"error": (run.stderr or run.stdout)[-500:]}
                    else:
                        out["scripts"][name][n] = {"tps": round(float(match.group(1)), 1)}
    finally:
        with engine.begin() as c:
            c.execute(sa.text("DROP TABLE IF EXISTS bench_ceiling_log, bench_ceiling_stock"))
    return out


# --------------------------------------------------------------------------- entry points


def _server_settings(engine: sa.Engine) -> dict:
    with engine.connect() as c:
        return {name: c.execute(sa.text(f"SHOW {name}")).scalar()
                for name in ("server_version", "fsync", "synchronous_commit", "shared_buffers", "max_connections")}


def run(duration_s: float = 3.0, clients: tuple[int, ...] = (1, 8, 32), database_url: str | None = None,
        strategies: tuple[str, ...] = STRATEGIES, pgbench: bool = True) -> dict:
    """Measure every strategy at every client count (and pgbench's ceiling); see the module doc."""
    server = None
    url = database_url or os.environ.get("DATABASE_URL")
    if not url:
        from localenv.services import PostgresServer, free_port

        # A fresh cluster per run, as every run must start alike: one reused across runs kept the
        # dead space of earlier runs' rows, and measured about 2 % lower than a fresh one.
        directory = ROOT / ".run" / f"bench-reservations-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        server = PostgresServer(directory, free_port(), database="bench").start()
        url = server.url
    try:
        _migrate(url)
        engine = sa.create_engine(url, poolclass=NullPool)
        business = _prepare(engine, max(n * _block(n) for n in clients) + 1)
        _add_history(engine, business)
        result: dict = {
            "duration_s": duration_s,
            "clients": list(clients),
            "units_per_offer": UNITS_PER_OFFER,
            "cores": os.cpu_count(),
            "postgres": _server_settings(engine),
            "strategies": {},
        }
        for n in clients:  # interleaved: each client count measures every strategy back to back
            for strategy in strategies:
                result["strategies"].setdefault(strategy, {})[n] = _run_strategy(
                    url, engine, business, strategy, n, duration_s=duration_s, expected_rate=8_000)
        result["oversold_units"] = sum(r["oversold_units"] for s in result["strategies"].values() for r in s.values())
        result["ledger_rows_match"] = all(r["ledger_rows_match"] and not r["ledger_problems"]
                                          for s in result["strategies"].values() for r in s.values())
        result["pgbench"] = _pgbench(url, engine, clients, duration_s) if pgbench else None
        _drop_history(engine, business)
        engine.dispose()
        return result
    finally:
        if server is not None:
            server.stop(mode="immediate")
            shutil.rmtree(server.directory, ignore_errors=True)


def _print(result: dict) -> None:
    clients = result["clients"]
    print(f"Reservations per second on one hot offer, {result['duration_s']:g} s per run, "
          f"{result['cores']} cores, PostgreSQL {result['postgres']['server_version']} "
          f"(fsync={result['postgres']['fsync']}, synchronous_commit={result['postgres']['synchronous_commit']})")
    header = f"{'strategy':<28}" + "".join(f"{f'{n} clients':>14}" for n in clients)
    print(header)
    for strategy, runs in result["strategies"].items():
        print(f"{strategy:<28}" + "".join(f"{runs[n]['reservations_per_s']:>14,.0f}" for n in clients))
    if result.get("pgbench"):
        for name, runs in result["pgbench"]["scripts"].items():
            cells = [f"{runs[n]['tps']:>14,.0f}" if "tps" in runs[n] else f"{'error':>14}" for n in clients]
            print(f"{'pgbench ' + name:<28}" + "".join(cells))
    print(f"oversold units: {result['oversold_units']}; ledger rows match reservations: {result['ledger_rows_match']}")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", help="database URL (default: DATABASE_URL, else a private Postgres)")
    parser.add_argument("--duration", type=float, default=3.0, help="seconds per run")
    parser.add_argument("--clients", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--strategies", default=",".join(STRATEGIES))
    parser.add_argument("--no-pgbench", action="store_true")
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.duration, tuple(int(n) for n in args.clients.split(",")), args.url,
                 tuple(args.strategies.split(",")), pgbench=not args.no_pgbench)
    _print(result)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
