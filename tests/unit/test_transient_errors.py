"""Which database errors BaseTask retries: the Postgres errors that a guard or a concurrent
transaction raises reach a task as sqlalchemy.exc.OperationalError (psycopg2 makes them subclasses of
its OperationalError), and an exhausted pool as sqlalchemy.exc.TimeoutError; both are retried."""

from __future__ import annotations

import psycopg2
import psycopg2.errors
import pytest
import sqlalchemy.exc

from tasks.base import BaseTask, transient_reason

# (class, SQLSTATE, what raises it)
POSTGRES_ERRORS = [
    (psycopg2.errors.DeadlockDetected, "40P01", "a deadlock between two transactions"),
    (psycopg2.errors.SerializationFailure, "40001", "a concurrent update under REPEATABLE READ/SERIALIZABLE"),
    (psycopg2.errors.QueryCanceled, "57014", "statement_timeout"),
    (psycopg2.errors.LockNotAvailable, "55P03", "lock_timeout"),
    (psycopg2.errors.AdminShutdown, "57P01", "Postgres shutting down"),
    (psycopg2.errors.CannotConnectNow, "57P03", "Postgres starting up"),
]


@pytest.mark.parametrize(("error_class", "sqlstate", "_cause"), POSTGRES_ERRORS)
def test_postgres_errors_a_task_meets_are_operational_errors_and_retried(error_class, sqlstate, _cause):
    assert psycopg2.errors.lookup(sqlstate) is error_class
    assert issubclass(error_class, psycopg2.OperationalError)
    wrapped = sqlalchemy.exc.DBAPIError.instance("SELECT 1", {}, error_class("boom"), psycopg2.Error)
    assert type(wrapped) is sqlalchemy.exc.OperationalError
    assert isinstance(wrapped, BaseTask.autoretry_for)


def test_an_exhausted_pool_is_retried():
    error = sqlalchemy.exc.TimeoutError("QueuePool limit of size 5 overflow 10 reached")
    assert isinstance(error, BaseTask.autoretry_for)
    assert transient_reason(error) == "db_pool_exhausted"


def test_a_programming_error_is_not_retried():
    wrapped = sqlalchemy.exc.DBAPIError.instance("SELEC 1", {}, psycopg2.errors.SyntaxError("boom"), psycopg2.Error)
    assert not isinstance(wrapped, BaseTask.autoretry_for)


def test_a_publish_the_broker_refused_is_retried():
    """A hand-over published after its commit while Redis is away (core.handover.publish): kombu
    raises its OperationalError; the retry publishes it once Redis is back."""
    import kombu.exceptions

    error = kombu.exceptions.OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")
    assert isinstance(error, BaseTask.autoretry_for)
    assert transient_reason(error) == "network"
