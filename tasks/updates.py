"""The `updates` queue: one task per Telegram update, as enqueued by the gateway or the poller."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection
from telegram import Update

from chat import engine, flood
from core import inbox, outbox, redis_client
from core.db import connected, session_scope
from core.logging import get_logger
from core.settings import get_settings
from tasks.app import app
from tasks.base import TRANSIENT_ERRORS, BaseTask
from tasks.notifications import send_now

log = get_logger(__name__)


# Task events for this one task only with UPDATE_TASK_EVENTS (core/settings.py): three event messages
# per update cost 0.9 ms of worker CPU (bench/report.md). Its metrics come from the task signals
# (core/metrics.py), Flower still shows the updates queue, and acks stay late.
@app.task(name="updates.handle_update", base=BaseTask, bind=True, send_events=get_settings().update_task_events)
def handle_update(self: BaseTask, update: dict[str, Any]) -> None:
    try:
        parsed = engine.parse(update)
    except engine.MalformedUpdate as error:
        log.warning("malformed_update_dropped", reason=str(error))
        _forget(update)
        return
    if _flooding(parsed):
        _forget(update)
        return
    with connected() as connection:  # one checkout for the update's transaction and the sending after it
        try:
            with session_scope(connection) as session:
                handled = engine.handle(session, parsed)
        except TRANSIENT_ERRORS:
            raise  # retried with backoff by the base task
        except Exception as error:  # a bug or bad data: tell the user, keep the update for an operator
            log.exception("update_failed", update_id=parsed.update_id)
            self.record_dead_letter(self.request.id, error, reference=f"update:{parsed.update_id}")
            with session_scope(connection) as session:
                handled = engine.handle_failure(session, parsed)
        _answer_and_send(handled, connection)


def _forget(update: Any) -> None:
    """An update dropped on purpose is never processed: its inbox copy must not come back."""
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if isinstance(update_id, int):
        inbox.forget(redis_client.client(), update_id)


def _flooding(update: Update) -> bool:
    """Drop the update of a user who sends far too many (answering a button press, and telling
    them once a minute to slow down)."""
    sender = update.effective_user
    if sender is None:
        return False
    handle, tell = flood.allowed(sender.id, update.update_id)
    if handle:
        return False
    log.warning("update_dropped_flood", user_id=sender.id)
    if tell or update.callback_query is not None:
        with session_scope() as session:
            handled = engine.slow_down(session, update, tell)
        _answer_and_send(handled)
    return True


def _answer_and_send(handled: engine.Handled, connection: Connection | None = None) -> None:
    """Answer the button press while the replies go out: two Bot API calls in flight at once. Both
    are outbox rows of the update's transaction: a redelivered update (this process died first)
    finds what is still pending among its `notification_ids` and sends it then."""
    answering = None
    if handled.answer_id is not None and handled.callback_query_id is not None:
        answering = outbox.start_answer(handled.answer_id, handled.callback_query_id, text=handled.callback_text,
                                        show_alert=handled.callback_alert)
    try:
        send_now(handled.notification_ids, connection)
    finally:
        if answering is not None:
            answering.finish()
