"""The audit log: who did what, when, with what result."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from models import AuditEntry


def record(session: Session, actor: str, action: str, result: str, *, target: str | None = None,
           details: dict[str, Any] | None = None) -> None:
    session.add(AuditEntry(actor=actor[:64], action=action, target=target, result=result, details=details or {}))
