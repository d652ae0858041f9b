"""Test infrastructure: real Redis, real Postgres, real Celery workers, local Telegram fake.

Private Redis and Postgres instances are started for the session (on free ports, in .run/) unless
TEST_REDIS_URL / TEST_DATABASE_URL name existing ones. The environment is set before any project
module reads its settings, so every process the tests start (workers, gateway) uses them too.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
from pathlib import Path

import pytest

from localenv.services import PostgresServer, RedisServer, free_port
from tests.processes import prune_finished_logs

ROOT = Path(__file__).resolve().parent.parent
_RUN_DIR = ROOT / ".run" / f"test-{os.getpid()}"
_started: list[object] = []

WEBHOOK_SECRET = "test-webhook-secret-" + secrets.token_hex(8)
# The workers' per-chat limit in tests (TELEGRAM_CHAT_RATE, TELEGRAM_CHAT_BURST; see below).
CHAT_RATE_IN_TESTS = 19.0
CHAT_BURST_IN_TESTS = 8


def _interrupt(signum: int, _frame) -> None:
    raise KeyboardInterrupt(f"terminated by signal {signum}")


def pytest_configure(config: pytest.Config) -> None:
    if hasattr(config, "workerinput"):
        return
    # A terminated run (a timeout, a cancelled CI job) unwinds like Ctrl-C, so fixtures stop their
    # workers and gateways, and pytest_unconfigure stops Redis and Postgres: none outlive it.
    signal.signal(signal.SIGTERM, _interrupt)
    prune_finished_logs()  # earlier runs' worker and gateway logs
    redis_url = os.environ.get("TEST_REDIS_URL")
    if not redis_url:
        redis = RedisServer(_RUN_DIR / "redis", free_port()).start()
        _started.append(redis)
        redis_url = redis.url
    database_url = os.environ.get("TEST_DATABASE_URL")
    if not database_url:
        postgres = PostgresServer(_RUN_DIR / "postgres", free_port(), database="surplus_test").start()
        _started.append(postgres)
        database_url = postgres.url
    os.environ.update(
        {
            "REDIS_URL": redis_url,
            "DATABASE_URL": database_url,
            "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "LOG_JSON": "true",
            "LOG_LEVEL": "INFO",
            # Most tests are about something else than Connect: their businesses sell without a
            # connected account, and the platform pays them by hand. Tests of Connect turn it on.
            "PAYOUTS_REQUIRE_CONNECT": os.environ.get("PAYOUTS_REQUIRE_CONNECT", "false"),
            # The Telegram fake holds no chat to Telegram's 1 message/s unless a test turns its limits
            # on, so the workers need not either: a conversation of 30 steps would otherwise take
            # 30 s. The limiter's arithmetic at Telegram's values is tested on its own
            # (tests/integration/test_ratelimit.py); tests that turn the fake's limits on use these.
            "TELEGRAM_CHAT_RATE": str(CHAT_RATE_IN_TESTS),
            "TELEGRAM_CHAT_BURST": str(CHAT_BURST_IN_TESTS),
            # At that pace a scripted conversation sends more than a person's 30 updates in 10 s and
            # would be slowed down as a flood (chat/flood.py); tests of the flood limit read this.
            "FLOOD_MAX_UPDATES_PER_WINDOW": "100",
            # A tap is fully answered once its answer's outbox row is marked sent, which the workers
            # batch for up to MARKS_DELAY_SECONDS (core/marks.py): half a second of every tap a test
            # waits for at the default. The batching is the same at 0.05 s, only sooner.
            "MARKS_DELAY_SECONDS": os.environ.get("MARKS_DELAY_SECONDS", "0.05"),
        }
    )
    for variable in ("BOT_TOKEN", "PUBLIC_URL", "STRIPE_SECRET_KEY", "STRIPE_WEBHOOK_SECRET", "SENTRY_DSN"):
        os.environ.pop(variable, None)


def pytest_unconfigure(config: pytest.Config) -> None:
    for service in reversed(_started):
        service.stop(**({"mode": "immediate"} if isinstance(service, PostgresServer) else {}))
    shutil.rmtree(_RUN_DIR, ignore_errors=True)


@pytest.fixture(scope="session")
def database_url() -> str:
    return os.environ["DATABASE_URL"]


@pytest.fixture(scope="session")
def redis_url() -> str:
    return os.environ["REDIS_URL"]


def migrate(url: str) -> str:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logging"] = False
    config.attributes["url"] = url
    command.upgrade(config, "head")
    return url


def separate_database(database_url: str, name: str) -> str:
    """A second, migrated database on the test server, for a stack that must not share state
    (e.g. a second Telegram fake whose update ids start at 1 again)."""
    import sqlalchemy as sa

    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        connection.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return migrate(database_url.rsplit("/", 1)[0] + "/" + name)


@pytest.fixture(scope="session")
def migrated(database_url) -> str:
    """The test database at the migrations' head (built once per session)."""
    return migrate(database_url)


@pytest.fixture
def db(migrated):
    """A clean database for one test: every table emptied before it runs."""
    import sqlalchemy as sa

    from core import db as core_db
    from models import Base

    tables = ", ".join(f'"{t.name}"' for t in Base.metadata.sorted_tables)
    with core_db.engine().begin() as connection:
        connection.execute(sa.text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    return core_db


@pytest.fixture
def statements_sent_whole(monkeypatch):
    """DB_PREPARE_STATEMENTS=false, as behind a pooler that drops prepared statements."""
    from core.settings import get_settings

    monkeypatch.setenv("DB_PREPARE_STATEMENTS", "false")
    get_settings.cache_clear()
    yield
    monkeypatch.undo()
    get_settings.cache_clear()


@pytest.fixture(scope="session", autouse=True)
def notice_renderers():
    """The chat's renderers for the domain's notices, as every worker registers them (tasks.app):
    tests call domain functions directly, and what they record is read in the outbox."""
    import chat.messages  # noqa: F401
