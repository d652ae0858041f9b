"""A hold that `reserve()` has returned survives a Postgres crash.

`reserve()` in autocommit mode commits its statement without waiting for the disk (so the offer's
row is free for the next reservation at once) and flushes the log before it returns. Here clients
reserve flat out on one offer, Postgres is crashed under them (immediate shutdown: no checkpoint,
unwritten log discarded, recovery on restart), and every order a client was handed must still be
there afterwards, with its ledger row, and the offer's counters must equal its ledger.
"""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from domain import reservations as rsv
from localenv.services import PostgresServer, free_port
from tests.conftest import migrate
from tests.integration.test_reservations import add_customers, make_offer

pytestmark = pytest.mark.slow

CLIENTS = 6
UNITS = 10_000
PER_CLIENT = 5_000  # customers each client may use: far more than it gets through before the crash


@pytest.fixture
def crashable_postgres():
    # Under .run/: the postgres user cannot reach pytest's temporary directories.
    server = PostgresServer(Path(".run") / f"pg-durability-{free_port()}", free_port(), database="durability").start()
    migrate(server.url)
    try:
        yield server
    finally:
        server.stop(mode="immediate")
        shutil.rmtree(server.directory, ignore_errors=True)


def _reserve_until_crash(url: str, offer_id: int, first_customer: int, handed_out: list[int],
                         errors: list[BaseException]) -> None:
    engine = sa.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for customer in range(first_customer, first_customer + PER_CLIENT):
                result = rsv.reserve(conn, offer_id, customer)
                assert result.outcome is rsv.ReserveOutcome.RESERVED, result
                handed_out.append(result.order_id)
    except sa.exc.OperationalError:
        pass  # the crash: this client's current reservation may or may not have been made
    except BaseException as exc:  # noqa: BLE001 - reported to the test
        errors.append(exc)
    finally:
        engine.dispose()


def test_every_hold_handed_out_survives_a_crash(crashable_postgres):
    url = crashable_postgres.url
    engine = sa.create_engine(url, poolclass=NullPool)
    with engine.begin() as c:
        offer_id = make_offer(c, UNITS)
        add_customers(c, range(PER_CLIENT, PER_CLIENT * (CLIENTS + 1)))
    handed_out: list[int] = []
    errors: list[BaseException] = []
    clients = [threading.Thread(target=_reserve_until_crash,
                                args=(url, offer_id, PER_CLIENT * (i + 1), handed_out, errors))
               for i in range(CLIENTS)]
    for t in clients:
        t.start()
    deadline = time.monotonic() + 30
    while len(handed_out) < 500 and time.monotonic() < deadline:
        time.sleep(0.01)
    count_at_crash = len(handed_out)
    crashable_postgres.stop(mode="immediate")  # SIGQUIT to the postmaster: a crash, recovery on start
    for t in clients:
        t.join(timeout=30)
    assert not errors, errors[0]
    assert count_at_crash >= 500, "the clients never got going"

    crashable_postgres.start()
    engine.dispose()
    with engine.connect() as c:
        found = set(c.execute(sa.text(
            "SELECT o.id FROM orders o JOIN ledger_entries l ON l.order_id = o.id AND l.kind = 'hold'"
            " WHERE o.offer_id = :offer AND o.status = 'held'"), {"offer": offer_id}).scalars())
        lost = sorted(set(handed_out) - found)
        assert not lost, f"{len(lost)} of {len(handed_out)} holds handed out were lost in the crash: {lost[:10]}"
        assert rsv.ledger_problems(c, offer_id) == []
        held = c.execute(sa.text("SELECT units_held FROM offers WHERE id = :o"), {"o": offer_id}).scalar()
        assert held == len(found) >= len(handed_out)
    engine.dispose()
