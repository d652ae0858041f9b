"""Every connection the application opens has Postgres's guards (statement_timeout, lock_timeout,
idle_in_transaction_session_timeout), the reservation path's autocommit connections included; a
guard that fires, and a pool that has no connection to give, raise an error that BaseTask retries,
with a reason named in its log line and metric."""

from __future__ import annotations

import time

import pytest
import sqlalchemy as sa
from prometheus_client import REGISTRY
from sqlalchemy.pool import NullPool

from core import db as core_db
from core.settings import get_settings
from domain import reservations
from tasks.base import BaseTask, transient_reason
from tests.factories import make_business, make_offer, make_user

GUARDS = ("statement_timeout", "lock_timeout", "idle_in_transaction_session_timeout")


@pytest.fixture
def guards(db, monkeypatch):
    """Set DB_* variables, then use `core.db` as a process would that started with them."""

    def configure(**variables: object):
        for name, value in variables.items():
            monkeypatch.setenv(name, str(value))
        get_settings.cache_clear()
        core_db.reset_engine()
        return core_db

    yield configure
    monkeypatch.undo()
    get_settings.cache_clear()
    core_db.reset_engine()


@pytest.fixture
def other_connection(db):
    """A connection that is not the application's: it holds the locks the application waits for."""
    engine = sa.create_engine(core_db.engine().url, poolclass=NullPool)
    with engine.connect() as connection:
        yield connection
    engine.dispose()


def shown(connection) -> tuple[str, ...]:
    return tuple(connection.exec_driver_sql(f"SHOW {guard}").scalar() for guard in GUARDS)


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_the_defaults_guard_sessions_and_the_reservation_paths_autocommit_connections(db):
    customer = make_user()
    offer = make_offer(make_business(), quantity=3)
    with core_db.session_scope() as session:
        assert shown(session.connection()) == ("30s", "10s", "1min")
        # domain.ordering.place_order reserves on one of these, outside the session's transaction.
        with core_db.autocommit_connection(session) as conn:
            assert shown(conn) == ("30s", "10s", "1min")
            result = reservations.reserve(conn, offer, customer, 1)  # CALL with its own COMMIT and flush
    assert result.outcome is reservations.ReserveOutcome.RESERVED
    with core_db.session_scope() as session:
        reservations.assert_ledger_consistent(session, offer)


def test_settings_set_the_guards_and_options_in_the_url_still_win(guards):
    db = guards(DB_STATEMENT_TIMEOUT_SECONDS=5, DB_LOCK_TIMEOUT_SECONDS=0.25, DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS=0,
                DATABASE_URL=get_settings().database_url + "?options=-c%20lock_timeout%3D2s")
    with db.engine().connect() as connection:
        assert shown(connection) == ("5s", "2s", "0")


def test_a_statement_over_its_timeout_is_a_transient_error(guards):
    db = guards(DB_STATEMENT_TIMEOUT_SECONDS=0.2)
    started = time.monotonic()
    with pytest.raises(BaseTask.autoretry_for) as caught, db.session_scope() as session:
        session.execute(sa.text("SELECT pg_sleep(5)"))
    assert time.monotonic() - started < 4  # pg_sleep(5) would take 5 s
    assert isinstance(caught.value, sa.exc.OperationalError)
    assert transient_reason(caught.value) == "statement_timeout"


def test_the_reservation_path_has_the_statement_timeout_too(guards):
    db = guards(DB_STATEMENT_TIMEOUT_SECONDS=0.2)
    with db.session_scope() as session, db.autocommit_connection(session) as conn, \
            pytest.raises(BaseTask.autoretry_for) as caught:
        conn.exec_driver_sql("SELECT pg_sleep(5)")
    assert transient_reason(caught.value) == "statement_timeout"


def test_waiting_too_long_for_a_row_lock_is_a_transient_error(guards, other_connection):
    db = guards(DB_LOCK_TIMEOUT_SECONDS=0.2)
    customer = make_user()
    other_connection.execute(sa.text("SELECT 1 FROM users WHERE id = :id FOR UPDATE"), {"id": customer})
    with pytest.raises(BaseTask.autoretry_for) as caught, db.session_scope() as session:
        session.execute(sa.text("UPDATE users SET first_name = 'x' WHERE id = :id"), {"id": customer})
    assert transient_reason(caught.value) == "lock_timeout"


def test_the_chat_lock_is_timed_and_bounded_by_the_lock_timeout(guards, other_connection):
    db = guards(DB_LOCK_TIMEOUT_SECONDS=0.3)
    waits = sample("chat_lock_wait_seconds_count")
    long_waits = waits - sample("chat_lock_wait_seconds_bucket", le="0.25")
    with db.session_scope() as session:
        db.lock_chat(session, 4242)  # free: no wait to speak of
    other_connection.execute(sa.text("SELECT pg_advisory_xact_lock(4242)"))  # another update of that chat
    with pytest.raises(BaseTask.autoretry_for) as caught, db.session_scope() as session:
        db.lock_chat(session, 4242)
    assert transient_reason(caught.value) == "lock_timeout"
    assert sample("chat_lock_wait_seconds_count") == waits + 2
    assert sample("chat_lock_wait_seconds_count") - sample("chat_lock_wait_seconds_bucket", le="0.25") \
        == long_waits + 1


def test_a_transaction_left_idle_is_ended_by_the_server_and_retried(guards):
    db = guards(DB_IDLE_IN_TRANSACTION_TIMEOUT_SECONDS=0.3)
    with pytest.raises(BaseTask.autoretry_for) as caught, db.session_scope() as session:
        session.execute(sa.text("SELECT 1"))
        time.sleep(1.0)  # e.g. a slow API call inside the transaction
        session.execute(sa.text("SELECT 1"))
    assert transient_reason(caught.value) == "db_connection_lost"


def test_an_exhausted_pool_fails_fast_is_transient_and_is_counted(guards):
    db = guards(DB_POOL_SIZE=2, DB_MAX_OVERFLOW=1, DB_POOL_TIMEOUT_SECONDS=0.3)
    before = {name: sample(name) for name in ("db_pool_waits_total", "db_pool_timeouts_total",
                                              "db_pool_checked_out_connections")}
    held = [db.engine().connect() for _ in range(3)]  # pool_size + max_overflow: every connection
    try:
        assert sample("db_pool_checked_out_connections") == before["db_pool_checked_out_connections"] + 3
        started = time.monotonic()
        with pytest.raises(BaseTask.autoretry_for) as caught, db.session_scope() as session:
            session.execute(sa.text("SELECT 1"))
        assert time.monotonic() - started < 5  # the default pool timeout would be 30 s
    finally:
        for connection in held:
            connection.close()
    assert isinstance(caught.value, sa.exc.TimeoutError)
    assert transient_reason(caught.value) == "db_pool_exhausted"
    assert sample("db_pool_waits_total") == before["db_pool_waits_total"] + 1
    assert sample("db_pool_timeouts_total") == before["db_pool_timeouts_total"] + 1
    assert sample("db_pool_checked_out_connections") == before["db_pool_checked_out_connections"]


def test_a_prepared_statement_is_planned_once_per_connection_and_outlives_its_transaction(db, request):
    add = core_db.PreparedStatement("test_add", "SELECT :a + :b, :label", {"a": "int", "b": "int", "label": "text"})
    with db.engine().connect() as connection:
        with connection.begin():
            assert add(connection, {"a": 1, "b": 2, "label": "it's"}).one() == (3, "it's")
        with connection.begin() as rolled_back:
            assert add(connection, {"a": 2, "b": 2, "label": "x"}).one() == (4, "x")
            rolled_back.rollback()  # PREPARE is not transactional: still there
        assert add(connection, {"a": 5, "b": 5, "label": None}).one() == (10, None)
        names = connection.exec_driver_sql("SELECT name FROM pg_prepared_statements").scalars().all()
        assert names == [add.name]  # prepared once on this connection
        connection.invalidate()  # a new database connection has none, and prepares it again
        connection.rollback()
        assert add(connection, {"a": 1, "b": 1, "label": "y"}).one() == (2, "y")
        connection.commit()
    request.getfixturevalue("statements_sent_whole")  # DB_PREPARE_STATEMENTS=false: behind a pooler that drops them
    whole = core_db.PreparedStatement("test_whole", "SELECT :a * 2", {"a": "int"})
    with db.engine().connect() as connection:
        assert whole(connection, {"a": 21}).scalar() == 42
        assert not connection.exec_driver_sql("SELECT count(*) FROM pg_prepared_statements WHERE name = %(name)s",
                                              {"name": whole.name}).scalar()
        connection.rollback()
