"""`make backup` / `make restore` (localenv/backup.py): a real pg_dump → damage → pg_restore round
trip on a separate database of the test server; every table must come back row for row, at
Alembic's head, with its sequences where they were."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import Session

from localenv.backup import libpq_target
from models import (
    AuditEntry,
    Base,
    Business,
    BusinessStatus,
    ConversationState,
    DeadLetter,
    Follow,
    Handover,
    LedgerEntry,
    LedgerKind,
    Notification,
    NotificationStatus,
    Offer,
    OfferStatus,
    OfferTemplate,
    Order,
    OrderStatus,
    Payout,
    PhotoUpload,
    ProcessedUpdate,
    Rating,
    StripeEvent,
    User,
)
from tests.conftest import ROOT, separate_database

DATABASE_NAME = "surplus_backup_roundtrip"


def _run_tool(*args: str, database_url: str | None) -> subprocess.CompletedProcess:
    """The backup command as a user runs it (what `make backup` / `make restore` run)."""
    env = {key: value for key, value in os.environ.items() if key != "DATABASE_URL"}
    if database_url:
        env["DATABASE_URL"] = database_url
    return subprocess.run([sys.executable, "-m", "localenv.backup", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120, check=False)


def _fill(engine: sa.Engine) -> None:
    now = datetime.now(UTC).replace(microsecond=123456)
    with Session(engine) as session, session.begin():
        owner = User(id=7_000_000_001, first_name="Owner <b>&", username="owner", language="de",
                     latitude=52.5, longitude=13.4, location_updated_at=now)
        customer = User(id=7_000_000_002, first_name="Zoë 🥐", language="en")
        erased = User(id=7_000_000_003, first_name=None, deleted_at=now, reachable=False)
        session.add_all([owner, customer, erased])
        session.flush()
        business = Business(owner_id=owner.id, name="Bäckerei Sonne", address="Hauptstraße 1", phone="+4930123",
                            latitude=52.52, longitude=13.405, status=BusinessStatus.VERIFIED, reviewed_at=now)
        session.add(business)
        session.flush()
        offer = Offer(business_id=business.id, title="Croissant bag", description="Fresh", price_minor=350,
                      original_price_minor=700, currency="EUR", quantity=5, units_sold=2, units_held=1,
                      pickup_start=now + timedelta(hours=2), pickup_end=now + timedelta(hours=3),
                      status=OfferStatus.ACTIVE, published_at=now, version=3, photo_card_file_id="AgAD-file")
        session.add(offer)
        template = OfferTemplate(business_id=business.id, title="Croissant bag", description="Fresh", price_minor=350,
                                 original_price_minor=700, currency="EUR", quantity=5, category="bakery",
                                 diet=["vegetarian"], allergens=["gluten", "milk"], start_minute=18 * 60,
                                 end_minute=19 * 60, weekdays=0b0011111, photo_card_file_id="AgAD-file")
        session.add(template)
        session.flush()
        paid = Order(offer_id=offer.id, customer_id=customer.id, quantity=2, unit_price_minor=350, amount_minor=700,
                     currency="EUR", status=OrderStatus.PAID, pickup_code="K7Q2X9", checkout_session_id="cs_test_1",
                     checkout_url="https://checkout.example/cs_test_1", payment_intent_id="pi_1", paid_at=now)
        held = Order(offer_id=offer.id, customer_id=owner.id, quantity=1, unit_price_minor=350, amount_minor=350,
                     currency="EUR", status=OrderStatus.HELD, hold_expires_at=now + timedelta(minutes=10))
        session.add_all([paid, held])
        session.flush()
        session.add_all([
            LedgerEntry(order_id=paid.id, offer_id=offer.id, kind=LedgerKind.HOLD, units=2),
            LedgerEntry(order_id=paid.id, offer_id=offer.id, kind=LedgerKind.SALE, units=2),
            LedgerEntry(order_id=paid.id, offer_id=offer.id, kind=LedgerKind.PAYMENT, amount_minor=700,
                        currency="EUR", reference="pi_1"),
            LedgerEntry(order_id=held.id, offer_id=offer.id, kind=LedgerKind.HOLD, units=1),
            StripeEvent(id="evt_1", type="checkout.session.completed", object_id="cs_test_1"),
            ProcessedUpdate(update_id=41),
            ConversationState(chat_id=customer.id, flow="new_offer", step="price", data={"title": "Brot", "n": [1, 2]}),
            Notification(idempotency_key=f"order:{paid.id}:paid", chat_id=customer.id, kind="message",
                         payload={"text": "Paid ✅", "keyboard": [[{"text": "Menu", "callback_data": "menu"}]]},
                         status=NotificationStatus.SENT, attempts=1, telegram_message_id=99, sent_at=now),
            Follow(user_id=customer.id, business_id=business.id),
            PhotoUpload(business_id=business.id, content=b"\xff\xd8\xff\xe0 a photo from the Mini App \x00\xff"),
            AuditEntry(actor="user:1", action="business.verify", target=f"business:{business.id}", result="ok",
                       details={"reason": None}),
            DeadLetter(task_name="updates.handle", task_id="task-1", reference="update:40", error="Traceback…",
                       payload={"args": [40]}),
            Rating(order_id=paid.id, business_id=business.id, customer_id=customer.id, stars=5,
                   reasons=["quality", "amount"], comment="Sehr lecker 🥐"),
            Payout(id="po_1", business_id=business.id, amount_minor=630, currency="EUR", status="paid",
                   arrival_at=now + timedelta(days=2)),
            Handover(task_id="handover-1", task_name="payments.create_checkout", args=[paid.id],
                     origin="update:41", sent_at=now),
        ])


def _tables() -> list[str]:
    return [table.name for table in Base.metadata.sorted_tables] + ["alembic_version"]


def _snapshot(engine: sa.Engine) -> dict[str, list[tuple]]:
    """Every row of every table, in a stable order."""
    with engine.connect() as connection:
        return {name: sorted((tuple(row) for row in connection.execute(sa.text(f'SELECT * FROM "{name}"'))), key=repr)
                for name in _tables()}


def _without_casts(sql: str) -> str:
    # Postgres re-deparses a restored CHECK with its casts placed differently
    # ('a'::character varying::text vs ARRAY[...]::text[]): same constraint, other spelling.
    return re.sub(r"::[a-z]+(?: [a-z]+)*(?:\[\])?", "", sql)


def _schema(engine: sa.Engine) -> dict[str, object]:
    inspector = sa.inspect(engine)
    schema: dict[str, object] = {}
    for name in sorted(inspector.get_table_names()):
        schema[name] = (
            [(c["name"], str(c["type"]), c["nullable"], c["default"]) for c in inspector.get_columns(name)],
            inspector.get_pk_constraint(name),
            sorted(inspector.get_foreign_keys(name), key=repr),
            sorted(inspector.get_indexes(name), key=repr),
            sorted(inspector.get_unique_constraints(name), key=repr),
            sorted((c["name"], _without_casts(c["sqltext"])) for c in inspector.get_check_constraints(name)),
        )
    return schema


def _alembic_head() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    return ScriptDirectory.from_config(Config(str(ROOT / "alembic.ini"))).get_current_head()


def _damage(engine: sa.Engine) -> None:
    """What a bad deploy or a bad hand-written query might do."""
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE offers SET units_sold = 0, units_held = 0, title = 'changed'"))
        connection.execute(sa.text("UPDATE orders SET status = 'refunded' WHERE status = 'paid'"))
        connection.execute(sa.text("DELETE FROM ledger_entries WHERE kind = 'payment'"))
        connection.execute(sa.text("DELETE FROM follows"))
        connection.execute(sa.text("DELETE FROM notifications"))
        connection.execute(sa.text("UPDATE conversation_states SET data = '{}'::jsonb"))
        connection.execute(sa.text("INSERT INTO users (id, first_name) VALUES (7000000099, 'Intruder')"))
        connection.execute(sa.text("INSERT INTO audit_log (actor, action, result) VALUES ('x', 'y', 'z')"))
        connection.execute(sa.text("DROP TABLE dead_letters"))
        connection.execute(sa.text("UPDATE alembic_version SET version_num = 'not-a-revision'"))


@pytest.fixture
def roundtrip_database(migrated, database_url):
    url = separate_database(database_url, DATABASE_NAME)
    engine = sa.create_engine(url)
    yield url, engine
    engine.dispose()
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text(f'DROP DATABASE IF EXISTS "{DATABASE_NAME}" WITH (FORCE)'))
    admin.dispose()


def test_backup_then_restore_brings_every_row_back(roundtrip_database, tmp_path: Path):
    url, engine = roundtrip_database
    _fill(engine)
    before = _snapshot(engine)
    schema_before = _schema(engine)
    assert all(before[name] for name in _tables()), "every table must have rows for the comparison to mean anything"

    dumped = _run_tool("dump", "--dir", str(tmp_path), database_url=url)
    assert dumped.returncode == 0, dumped.stderr
    files = list(tmp_path.glob("surplus-*.dump"))
    assert len(files) == 1 and files[0].name in dumped.stdout
    assert not list(tmp_path.glob("*.partial"))
    assert files[0].stat().st_mode & 0o077 == 0, "a dump holds personal data: owner-only"

    _damage(engine)
    assert _snapshot_or_none(engine) != before

    restored = _run_tool("restore", str(files[0]), database_url=url)
    assert restored.returncode == 0, restored.stderr

    after = _snapshot(engine)
    for name in _tables():
        assert after[name] == before[name], f"table {name} differs after the restore"
    assert _schema(engine) == schema_before
    with engine.connect() as connection:
        assert connection.execute(sa.text("SELECT version_num FROM alembic_version")).scalar_one() == _alembic_head()
    # Sequences came back too: new rows get fresh ids instead of colliding with restored ones.
    with Session(engine) as session, session.begin():
        entry = AuditEntry(actor="cli", action="after.restore", result="ok")
        session.add(entry)
        session.flush()
        assert entry.id > max(row[0] for row in before["audit_log"])


def _snapshot_or_none(engine: sa.Engine):
    try:
        return _snapshot(engine)
    except sa.exc.ProgrammingError:  # a table is gone
        return None


def test_restore_refuses_without_a_usable_file(roundtrip_database, tmp_path: Path):
    url, engine = roundtrip_database
    _fill(engine)

    missing = _run_tool("restore", database_url=url)
    assert missing.returncode != 0 and "make restore BACKUP=" in missing.stderr

    absent = _run_tool("restore", str(tmp_path / "nope.dump"), database_url=url)
    assert absent.returncode != 0 and "backup file not found" in absent.stderr

    junk = tmp_path / "junk.dump"
    junk.write_bytes(b"DROP TABLE users;")
    wrong = _run_tool("restore", str(junk), database_url=url)
    assert wrong.returncode != 0 and "not a pg_dump custom-format archive" in wrong.stderr

    # A dump that breaks half-way is not applied at all: one transaction.
    good = _run_tool("dump", "--dir", str(tmp_path), database_url=url)
    assert good.returncode == 0, good.stderr
    truncated = tmp_path / "truncated.dump"
    data = next(tmp_path.glob("surplus-*.dump")).read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    with engine.begin() as connection:
        connection.execute(sa.text("UPDATE offers SET title = 'kept'"))
    before = _snapshot(engine)
    broken = _run_tool("restore", str(truncated), database_url=url)
    assert broken.returncode != 0
    assert _snapshot(engine) == before

    # The Makefile runs the same command.
    dry = subprocess.run(["make", "-n", "restore", "BACKUP=x.dump"], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert "localenv.backup restore \"x.dump\"" in dry.stdout


def test_sqlalchemy_urls_become_libpq_urls_without_the_password_on_the_command_line():
    libpq, env, shown = libpq_target("postgresql+psycopg2://app:s3cr%40t@db.internal:6432/surplus?sslmode=require")
    assert libpq == "postgresql://app@db.internal:6432/surplus?sslmode=require"
    assert env == {"PGPASSWORD": "s3cr@t"}
    assert "s3cr" not in shown
    assert libpq_target("postgresql://postgres@127.0.0.1:15432/surplus")[:2] == (
        "postgresql://postgres@127.0.0.1:15432/surplus", {})
