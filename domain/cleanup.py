"""Forgetting what is no longer needed, so tables stay small. Safe to run any number of times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.db import rows_affected
from models import Notification, NotificationStatus, ProcessedUpdate

# Telegram stops redelivering an update within a day; a week is a generous margin.
PROCESSED_UPDATES_KEPT = timedelta(days=7)
NOTIFICATIONS_KEPT = timedelta(days=30)


def cleanup(session: Session, now: datetime | None = None) -> dict[str, int]:
    now = now or datetime.now(UTC)
    updates = rows_affected(
        session, delete(ProcessedUpdate).where(ProcessedUpdate.processed_at < now - PROCESSED_UPDATES_KEPT)
    )
    notifications = rows_affected(session,
        delete(Notification).where(
            Notification.status.in_([NotificationStatus.SENT, NotificationStatus.DROPPED]),
            Notification.created_at < now - NOTIFICATIONS_KEPT,
        ),
    )
    return {"processed_updates_deleted": updates, "notifications_deleted": notifications}
