"""The `maintenance` queue: jobs for beat, admins, Flower's API and `celery call`.

Each returns what it did (kept as its result, visible in Flower) and writes an audit entry.
The caller is named by the `actor` keyword (default "beat")."""

from __future__ import annotations

from typing import Any

from core.db import session_scope
from domain import audit
from domain.cleanup import cleanup as cleanup_tables
from tasks.app import app
from tasks.base import BaseTask


@app.task(name="maintenance.cleanup", base=BaseTask, ignore_result=False)
def cleanup(actor: str = "beat") -> dict[str, Any]:
    with session_scope() as session:
        report = cleanup_tables(session)
        audit.record(session, actor, "maintenance.cleanup", "ok", details=report)
    return report
