"""The `maintenance` queue: jobs for beat, admins, Flower's API and `celery call`.

Each job opens one transaction, calls one domain function, writes an audit entry (who: the
`actor` keyword, default "beat"; what; when; result) and returns what it did as a JSON dict
(kept as its result, visible in Flower). With `report_to` (a chat id, set by the admin menu) the
report is also sent to that chat. Every job is idempotent and safe to run concurrently.

    celery -A tasks call maintenance.cleanup --kwargs '{"actor": "cli"}'
    celery -A tasks call maintenance.export_user_data --args '[12345]' --kwargs '{"actor": "cli"}'
    celery -A tasks call maintenance.replay_dead_letter --args '[42]' --kwargs '{"actor": "cli"}'
    celery -A tasks call maintenance.replay_dead_letters --args '["payments.handle_event"]'
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from chat.messages import admin as messages
from core import handover, inbox, redis_client
from core.db import session_scope
from core.logging import get_logger
from core.outbox import notify
from domain import audit, dead_letters, maintenance, payments, privacy, ratings, repeats
from domain.cleanup import cleanup as cleanup_tables
from models import User
from tasks.app import app
from tasks.base import TRANSIENT_ERRORS, BaseTask
from tasks.dead_letters import replay_every
from tasks.notifications import after_earlier_messages

log = get_logger(__name__)

# The jobs an admin can start from the chat menu, by their Celery names.
ADMIN_JOBS = (
    "maintenance.expire_offers",
    "maintenance.release_expired_holds",
    "maintenance.reconcile_payments",
    "maintenance.send_pickup_reminders",
    "maintenance.send_daily_summaries",
    "maintenance.close_uncollected_orders",
    "maintenance.retry_failed_notifications",
    "maintenance.resend_handovers",
    "maintenance.requeue_lost_updates",
    "maintenance.ask_for_ratings",
    "maintenance.repeat_offers",
    "maintenance.cleanup",
)

# A hand-over is published right after its commit, in milliseconds; one still unsent after this
# long lost its process (or is about to be published by a redelivery, which is harmless).
HANDOVER_GRACE_SECONDS = 20.0


def _jsonable(report: Any) -> dict[str, Any]:
    value = json.loads(json.dumps(report, default=str))
    return value if isinstance(value, dict) else {"result": value}


def _task_key(task: BaseTask) -> str:
    return task.request.id or f"local-{uuid.uuid4()}"


def _language(session: Session, user_id: int) -> str:
    user = session.get(User, user_id)
    return user.language if user else "en"


def _send_report(session: Session, task: BaseTask, action: str, chat_id: int, *, result: str,
                 report: dict[str, Any]) -> None:
    notify(session, f"task:{_task_key(task)}:report", chat_id,
           messages.job_report(_language(session, chat_id), action, result, report))


def run_job(task: BaseTask, action: str, actor: str, report_to: int | None,
            work: Callable[[Session, datetime], dict[str, Any]], *, target: str | None = None) -> dict[str, Any]:
    """One job run: the work, its audit entry and its report in one transaction."""
    now = datetime.now(UTC)
    try:
        with session_scope() as session:
            report = _jsonable(work(session, now))
            audit.record(session, actor, action, "ok", target=target, details=report)
            if report_to:
                _send_report(session, task, action, int(report_to), result="ok", report=report)
    except TRANSIENT_ERRORS:
        raise  # retried by the base task; the retry writes the entry
    except Exception as error:
        details = {"error": repr(error)[:500]}
        try:
            with session_scope() as session:
                audit.record(session, actor, action, "error", target=target, details=details)
                if report_to:
                    _send_report(session, task, action, int(report_to), result="error", report=details)
        except Exception as audit_error:  # noqa: BLE001 - never hide the original failure
            log.error("audit_not_recorded", error=repr(audit_error))
        raise
    log.info("maintenance_job_done", action=action, actor=actor, report=report)
    return report


# --------------------------------------------------------------------------- periodic jobs


@app.task(name="maintenance.expire_offers", base=BaseTask, bind=True, ignore_result=False)
def expire_offers(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.expire_offers", actor, report_to, maintenance.expire_offers)


@app.task(name="maintenance.release_expired_holds", base=BaseTask, bind=True, ignore_result=False)
def release_expired_holds(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.release_expired_holds", actor, report_to, maintenance.release_expired_holds)


@app.task(name="maintenance.reconcile_payments", base=BaseTask, bind=True, ignore_result=False)
def reconcile_payments(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.reconcile_payments", actor, report_to, payments.reconcile_payments)


@app.task(name="maintenance.send_pickup_reminders", base=BaseTask, bind=True, ignore_result=False)
def send_pickup_reminders(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.send_pickup_reminders", actor, report_to, maintenance.send_pickup_reminders)


@app.task(name="maintenance.ask_for_ratings", base=BaseTask, bind=True, ignore_result=False)
def ask_for_ratings(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.ask_for_ratings", actor, report_to, ratings.ask_for_ratings)


@app.task(name="maintenance.repeat_offers", base=BaseTask, bind=True, ignore_result=False)
def repeat_offers(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.repeat_offers", actor, report_to, repeats.repeat_offers)


@app.task(name="maintenance.send_daily_summaries", base=BaseTask, bind=True, ignore_result=False)
def send_daily_summaries(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.send_daily_summaries", actor, report_to, maintenance.send_daily_summaries)


@app.task(name="maintenance.close_uncollected_orders", base=BaseTask, bind=True, ignore_result=False)
def close_uncollected_orders(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    """Paid orders nobody collected, once their pickup window and its grace are over, become "not
    collected" (domain.payments.closing says what that means for the customer and the money)."""
    return run_job(self, "maintenance.close_uncollected_orders", actor, report_to,
                   payments.close_uncollected_orders)


@app.task(name="maintenance.retry_failed_notifications", base=BaseTask, bind=True, ignore_result=False)
def retry_failed_notifications(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.retry_failed_notifications", actor, report_to,
                   maintenance.retry_failed_notifications)


@app.task(name="maintenance.resend_handovers", base=BaseTask, bind=True, ignore_result=False)
def resend_handovers(self: BaseTask, actor: str = "beat", report_to: int | None = None,
                     grace_seconds: float = HANDOVER_GRACE_SECONDS) -> dict[str, Any]:
    """Publish the hand-overs whose process died between their commit and their publication and
    that no redelivery published (core.handover.resend_unsent)."""
    grace = timedelta(seconds=max(0.0, float(grace_seconds)))
    return run_job(self, "maintenance.resend_handovers", actor, report_to,
                   lambda session, now: handover.resend_unsent(session, now - grace))


def _updates_grace() -> float:
    """An update taken by a worker that died comes back by itself after the `updates` queue's
    visibility timeout (core/broker.py); the inbox queues it again only if that did not happen."""
    timeouts = app.conf.broker_transport_options.get("visibility_timeouts", {})
    return float(timeouts.get("updates", app.conf.broker_transport_options.get("visibility_timeout", 60))) + 15.0


@app.task(name="maintenance.requeue_lost_updates", base=BaseTask, bind=True, ignore_result=False)
def requeue_lost_updates(self: BaseTask, actor: str = "beat", report_to: int | None = None,
                         grace_seconds: float | None = None) -> dict[str, Any]:
    """Queue again the acknowledged updates that no worker processed (core.inbox): a worker's main
    process killed right after taking one from the queue lost it from Redis."""
    grace = _updates_grace() if grace_seconds is None else max(0.0, float(grace_seconds))

    def work(session: Session, _now: datetime) -> dict[str, Any]:
        swept = inbox.sweep(redis_client.client(), session, "updates", grace,
                            unsent_within=maintenance.STUCK_NOTIFICATION_AGE)
        return {"forgotten": swept.forgotten, "requeued": len(swept.requeued), "update_ids": swept.requeued[:50]}

    return run_job(self, "maintenance.requeue_lost_updates", actor, report_to, work)


def _cleanup(session: Session, now: datetime) -> dict[str, Any]:
    report = cleanup_tables(session, now)
    report["beat_audit_entries_deleted"] = maintenance.prune_beat_audit(session, now)
    return report


@app.task(name="maintenance.cleanup", base=BaseTask, bind=True, ignore_result=False)
def cleanup(self: BaseTask, actor: str = "beat", report_to: int | None = None) -> dict[str, Any]:
    return run_job(self, "maintenance.cleanup", actor, report_to, _cleanup)


# --------------------------------------------------------------------------- a person's data


@app.task(name="maintenance.export_user_data", base=BaseTask, bind=True, ignore_result=False)
def export_user_data(self: BaseTask, user_id: int, actor: str = "beat", report_to: int | None = None,
                     request: str | None = None) -> dict[str, Any]:
    """Send the person their data as a JSON document (in their chat). The result holds only
    counts, never the data. `request` names the request (once per request)."""
    user_id = int(user_id)
    request = request or _task_key(self)
    # "Your data export is being prepared" goes out before the file, never after it.
    after_earlier_messages(user_id, datetime.now(UTC))

    def work(session: Session, now: datetime) -> dict[str, Any]:
        data = privacy.export_user_data(session, user_id, now)
        if data is None:
            return {"user_id": user_id, "exported": False, "reason": "unknown user"}
        content = privacy.export_document(data)
        sent = False
        if data["user"]["deleted_at"] is None:
            sent = notify(session, f"privacy:{user_id}:export:{request}", user_id,
                          messages.data_export(data["user"]["language"], user_id, content)) is not None
        return {"user_id": user_id, "exported": True, "sent": sent, "bytes": len(content),
                "orders": len(data["orders"]), "follows": len(data["follows"])}

    return run_job(self, "maintenance.export_user_data", actor, report_to, work, target=f"user:{user_id}")


@app.task(name="maintenance.delete_user_data", base=BaseTask, bind=True, ignore_result=False)
def delete_user_data(self: BaseTask, user_id: int, actor: str = "beat", report_to: int | None = None,
                     request: str | None = None, *, force: bool = False) -> dict[str, Any]:
    """Erase a person's data (domain.privacy.delete_user_data) and tell them."""
    user_id = int(user_id)
    request = request or _task_key(self)

    def work(session: Session, now: datetime) -> dict[str, Any]:
        language = _language(session, user_id)  # read before the erasure (it keeps the language)
        result = privacy.delete_user_data(session, user_id, now, force=bool(force))
        told = messages.data_deletion(language, result.outcome)
        if told is not None:
            notify(session, f"privacy:{user_id}:delete:{request}", user_id, told)
        return {"user_id": user_id, **result.report()}

    return run_job(self, "maintenance.delete_user_data", actor, report_to, work, target=f"user:{user_id}")


# --------------------------------------------------------------------------- dead letters


@app.task(name="maintenance.replay_dead_letter", base=BaseTask, bind=True, ignore_result=False)
def replay_dead_letter(self: BaseTask, dead_letter_id: int, actor: str = "cli") -> dict[str, Any]:
    """Hand a dead letter's task over again (once however often this runs; audited by the domain)."""
    with session_scope() as session:
        result = dead_letters.replay(session, int(dead_letter_id), actor, datetime.now(UTC))
    log.info("dead_letter_replay", actor=actor, **result.report())
    return result.report()


@app.task(name="maintenance.replay_dead_letters", base=BaseTask, bind=True, ignore_result=False)
def replay_dead_letters(self: BaseTask, task_name: str, actor: str = "cli") -> dict[str, Any]:
    """Replay every dead letter of one task not replayed yet, a batch per transaction."""
    results = replay_every(str(task_name), actor)
    replayed = [r.dead_letter_id for r in results if r.outcome is dead_letters.ReplayOutcome.REPLAYED]
    report = {"task_name": task_name, "replayed": len(replayed), "skipped": len(results) - len(replayed),
              "dead_letter_ids": replayed[:100]}
    log.info("dead_letters_replayed", actor=actor, **report)
    return report
