"""Forgetting what is no longer needed, so tables stay small. Safe to run any number of times."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import delete
from sqlalchemy.orm import Session

from core.db import rows_affected
from core.outbox import ANSWER_KINDS
from domain.photos import forget_unused_uploads
from models import Handover, Notification, NotificationStatus, ProcessedUpdate

# Telegram stops redelivering an update within a day; a week is a generous margin.
PROCESSED_UPDATES_KEPT = timedelta(days=7)
NOTIFICATIONS_KEPT = timedelta(days=30)
# A sent hand-over is only kept for looking into what happened; a day is plenty.
HANDOVERS_KEPT = timedelta(days=1)
# Telegram refuses the answer to a button press after a few minutes: answers past a day are noise.
CALLBACK_ANSWERS_KEPT = timedelta(days=1)


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
    answers = rows_affected(session, delete(Notification).where(
        Notification.kind.in_(ANSWER_KINDS), Notification.created_at < now - CALLBACK_ANSWERS_KEPT))
    handovers = rows_affected(session, delete(Handover).where(Handover.sent_at < now - HANDOVERS_KEPT))
    return {"processed_updates_deleted": updates, "notifications_deleted": notifications + answers,
            "handovers_deleted": handovers, "photo_uploads_deleted": forget_unused_uploads(session, now)}
