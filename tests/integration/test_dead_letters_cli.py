"""`python -m tasks.dead_letters` against real Postgres and a Redis of its own: it lists and shows
dead letters, and a replay puts the task on its queue once, however often it is asked for, with an
audit entry naming who asked."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid

import pytest
import redis
import sqlalchemy as sa

from core import db as core_db
from localenv.services import RedisServer, free_port
from models import AuditEntry, DeadLetter
from tests.processes import ROOT


@pytest.fixture
def broker(tmp_path):
    server = RedisServer(tmp_path / "redis", free_port()).start()
    client = redis.Redis.from_url(server.url)
    yield server.url, client
    client.close()
    server.stop()


def cli(redis_url: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tasks.dead_letters", *args], check=False, cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "REDIS_URL": redis_url})


def kept(task_name: str, args: list | None, kwargs: dict | None = None, reference: str | None = None) -> int:
    payload = {} if args is None else {"args": args, "kwargs": kwargs or {}}
    with core_db.session_scope() as session:
        row = DeadLetter(task_name=task_name, task_id=f"cli-{uuid.uuid4()}", reference=reference,
                         error="Traceback (most recent call last):\nKeyError: 'order'", payload=payload)
        session.add(row)
        session.flush()
        return row.id


def queued(client: redis.Redis, queue: str) -> list[tuple[str, list, dict]]:
    """The Celery messages waiting on a queue: (task name, args, kwargs)."""
    found = []
    for raw in client.lrange(queue, 0, -1):
        message = json.loads(raw)
        args, kwargs, _embed = json.loads(base64.b64decode(message["body"]))
        found.append((message["headers"]["task"], args, kwargs))
    return found


def test_list_show_and_replay_once(db, broker):
    redis_url, client = broker
    export = kept("maintenance.export_user_data", [42], {"actor": "cli", "request": "r9"})
    old = kept("payments.refund_order", None, reference="order:5")

    listed = cli(redis_url, "list")
    assert listed.returncode == 0, listed.stderr
    assert "maintenance.export_user_data" in listed.stdout and "payments.refund_order" in listed.stdout
    assert listed.stdout.index(f"{old:>7}") < listed.stdout.index(f"{export:>7}")  # newest first
    assert "Waiting: 2 · all: 2" in listed.stdout
    only = cli(redis_url, "list", "--task", "payments.refund_order")
    assert "maintenance.export_user_data" not in only.stdout and "order:5" in only.stdout

    shown = cli(redis_url, "show", str(export))
    assert shown.returncode == 0
    assert "KeyError: 'order'" in shown.stdout and 'Arguments: [42] {"actor": "cli", "request": "r9"}' in shown.stdout
    missing = cli(redis_url, "show", "999999")
    assert missing.returncode == 1 and "There is no dead letter #999999" in missing.stderr

    first = cli(redis_url, "--actor", "cli:ops", "replay", str(export))
    assert first.returncode == 0 and f"Dead letter #{export} replayed" in first.stdout
    again = cli(redis_url, "--actor", "cli:ops", "replay", str(export))
    assert again.returncode == 0 and "was replayed already" in again.stdout and "cli:ops" in again.stdout
    assert queued(client, "maintenance") == [("maintenance.export_user_data", [42], {"actor": "cli", "request": "r9"})]

    refused = cli(redis_url, "replay", str(old))
    assert refused.returncode == 1 and "cannot be replayed" in refused.stderr
    assert client.llen("payments") == 0
    with core_db.session_scope() as session:
        entries = [(e.actor, e.target, e.result) for e in session.scalars(
            sa.select(AuditEntry).where(AuditEntry.action == "dead_letter.replay").order_by(AuditEntry.id))]
    assert entries[:2] == [("cli:ops", f"dead_letter:{export}", "replayed"),
                           ("cli:ops", f"dead_letter:{export}", "already_replayed")]
    assert entries[2][1:] == (f"dead_letter:{old}", "not_replayable") and entries[2][0].startswith("cli:")

    german = cli(redis_url, "--language", "de", "show", str(export))
    assert "Gescheiterte Aufgabe" in german.stdout and "erneut ausgeführt" in german.stdout


def test_replay_all_of_one_task(db, broker):
    redis_url, client = broker
    refunds = [kept("payments.refund_order", [n]) for n in range(3)]
    kept("payments.expire_checkout", [9])
    cli(redis_url, "replay", str(refunds[0]))

    done = cli(redis_url, "replay-all", "payments.refund_order")
    assert done.returncode == 0, done.stderr
    assert "replayed: 2, skipped: 0" in done.stdout
    assert sorted(args for _name, args, _kw in queued(client, "payments")) == [[0], [1], [2]]
    nothing = cli(redis_url, "replay-all", "payments.refund_order")
    assert "No dead letter of payments.refund_order is waiting" in nothing.stdout
    assert client.llen("payments") == 3
