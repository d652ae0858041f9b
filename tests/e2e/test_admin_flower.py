"""Maintenance jobs through Flower's HTTP API, behind basic auth (FLOWER_BASIC_AUTH, as compose
and `make run` configure it): with the credentials the job runs on the real worker and leaves an
audit entry; without them (or with wrong ones) Flower answers 401 and nothing runs."""

from __future__ import annotations

import secrets
import sys
import time

import httpx
import pytest
import sqlalchemy as sa

from core import db
from localenv.services import free_port
from models import AuditEntry
from tests.processes import ManagedProcess

JOBS = [
    ("maintenance.cleanup", []),
    ("maintenance.expire_offers", []),
    ("maintenance.release_expired_holds", []),
    ("maintenance.reconcile_payments", []),
    ("maintenance.retry_failed_notifications", []),
    ("maintenance.export_user_data", [77]),
    ("maintenance.delete_user_data", [77]),
]


@pytest.fixture(scope="module")
def flower(stack):
    port = free_port()
    user, password = "ops", secrets.token_urlsafe(8)
    process = ManagedProcess(
        "flower",
        [sys.executable, "-m", "celery", "-A", "tasks", "flower", "--address=127.0.0.1", f"--port={port}"],
        {"FLOWER_BASIC_AUTH": f"{user}:{password}"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthcheck", timeout=1).status_code == 200:
                break
        except httpx.TransportError:
            pass
        if process.process.poll() is not None:
            raise RuntimeError(process.output()[-3000:])
        time.sleep(0.1)
    else:
        raise RuntimeError(f"flower did not start:\n{process.output()[-3000:]}")
    yield url, (user, password)
    process.stop()


def audit(actor: str) -> list[tuple[str, str]]:
    with db.session_scope() as session:
        return [(e.action, e.result) for e in session.scalars(
            sa.select(AuditEntry).where(AuditEntry.actor == actor).order_by(AuditEntry.id))]


def wait_for_audit(actor: str, count: int, timeout: float = 20.0) -> list[tuple[str, str]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = audit(actor)
        if len(found) >= count:
            return found
        time.sleep(0.1)
    raise AssertionError(f"audit entries of {actor}: {audit(actor)}")


def test_flower_api_needs_auth_and_runs_every_maintenance_job(flower):
    url, auth = flower
    actor = f"flower-{secrets.token_hex(3)}"
    body = {"kwargs": {"actor": actor}}
    for credentials in (None, ("ops", "wrong"), ("nobody", auth[1])):
        answer = httpx.post(f"{url}/api/task/async-apply/maintenance.cleanup", json=body, auth=credentials, timeout=10)
        assert answer.status_code == 401, answer.text
        assert httpx.get(f"{url}/api/workers", auth=credentials, timeout=10).status_code == 401

    answer = httpx.post(f"{url}/api/task/async-apply/maintenance.cleanup", json=body, auth=auth, timeout=10)
    assert answer.status_code == 200, answer.text
    task_id = answer.json()["task-id"]
    assert wait_for_audit(actor, 1) == [("maintenance.cleanup", "ok")]
    # The job's report is its result, readable through the API.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        result = httpx.get(f"{url}/api/task/result/{task_id}", auth=auth, timeout=10).json()
        if result.get("state") == "SUCCESS":
            break
        time.sleep(0.1)
    assert "processed_updates_deleted" in result["result"]

    for name, args in JOBS[1:]:
        answer = httpx.post(f"{url}/api/task/async-apply/{name}", json={"args": args, **body}, auth=auth, timeout=10)
        assert answer.status_code == 200, (name, answer.text)
    entries = wait_for_audit(actor, len(JOBS))
    assert sorted(entries) == sorted((name, "ok") for name, _args in JOBS)
