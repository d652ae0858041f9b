"""The `updates` queue: the Telegram updates the gateway acknowledged together, one task for them
(or one update, from the poller or the inbox), each handled once."""

from __future__ import annotations

import uuid
from typing import Any

from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from sqlalchemy import Connection
from telegram import Update

from chat import engine, flood
from core import inbox, outbox, redis_client
from core.db import connected, session_scope
from core.logging import get_logger
from core.queues import HANDLE_UPDATE_TASK, HANDLE_UPDATES_TASK
from core.settings import get_settings
from tasks.app import app
from tasks.base import TRANSIENT_ERRORS, BaseTask
from tasks.notifications import send_now_by_chat

log = get_logger(__name__)


# Task events for these tasks only with UPDATE_TASK_EVENTS (core/settings.py): three event messages
# per task cost 0.9 ms of worker CPU (bench/report.md). Their metrics come from the task signals
# (core/metrics.py), Flower still shows the updates queue, and acks stay late.
@app.task(name="updates.handle_update", base=BaseTask, bind=True, send_events=get_settings().update_task_events)
def handle_update(self: BaseTask, update: dict[str, Any]) -> None:
    """One update (the poller's, or one the inbox queued again)."""
    _handle_all(self, [update])


@app.task(name=HANDLE_UPDATES_TASK, base=BaseTask, bind=True, send_events=get_settings().update_task_events)
def handle_updates(self: BaseTask, updates: list[dict[str, Any]]) -> None:
    """The updates the gateway acknowledged together (bot/publisher.py): one message on the queue,
    one transaction, their answers and replies sent together. Each keeps its own effects, once."""
    _handle_all(self, updates)


def _handle_all(task: BaseTask, updates: list[Any]) -> None:
    parsed = _readable(updates)
    if not parsed:
        return
    with connected() as connection:  # one checkout for the updates' transaction and the sending after it
        if len(parsed) > 1:
            try:
                with session_scope(connection) as session:
                    handled = engine.handle_batch(session, [update for update, _raw in parsed])
            except (SoftTimeLimitExceeded, TimeLimitExceeded):
                raise  # out of time: trying each again alone would only run further past the limit
            except Exception as error:  # noqa: BLE001 - rolled back whole; each update is tried alone below
                # A bug or bad data in one update, a deadlock, a lost connection: nothing of the batch
                # is kept, and each update on its own meets its own fate (retried, or told and kept
                # for an operator) without taking the others with it.
                log.warning("update_batch_split", count=len(parsed), error=repr(error)[:300])
            else:
                _answer_and_send(handled, connection)
                return
        for update, raw in parsed:
            _answer_and_send([_handle_one(task, update, raw, connection)], connection)


def _readable(updates: list[Any]) -> list[tuple[Update, dict[str, Any]]]:
    """The updates to handle, each once, in order: malformed ones and a flooding user's are dropped
    (their inbox copies forgotten)."""
    parsed_updates: list[tuple[Update, dict[str, Any]]] = []
    seen: set[int] = set()
    for raw in updates:
        try:
            parsed = engine.parse(raw)
        except engine.MalformedUpdate as error:
            log.warning("malformed_update_dropped", reason=str(error))
            _forget(raw)
            continue
        if parsed.update_id not in seen:
            seen.add(parsed.update_id)
            parsed_updates.append((parsed, raw))
    flooding = _flooding([parsed for parsed, _raw in parsed_updates])
    readable = []
    for parsed, raw in parsed_updates:
        if parsed.update_id in flooding:
            _forget(raw)
        else:
            readable.append((parsed, raw))
    return readable


def _handle_one(task: BaseTask, update: Update, raw: dict[str, Any], connection: Connection) -> engine.Handled:
    """One update in its own transaction. A transient failure raises (the task is retried, with the
    updates already done found done); a bug or bad data tells the user and keeps the update, alone,
    as a dead letter an operator can replay."""
    try:
        with session_scope(connection) as session:
            return engine.handle(session, update)
    except TRANSIENT_ERRORS:
        raise  # retried with backoff by the base task
    except Exception as error:
        log.exception("update_failed", update_id=update.update_id)
        task.record_dead_letter(_dead_letter_id(task, update.update_id), error,
                                reference=f"update:{update.update_id}", task_name=HANDLE_UPDATE_TASK,
                                arguments={"args": [raw], "kwargs": {}})
        with session_scope(connection) as session:
            return engine.handle_failure(session, update)


def _dead_letter_id(task: BaseTask, update_id: int) -> str:
    """The dead letter's task id: an update's own task's, or for one update of a batch an id of its
    own (a batch keeps one per failed update)."""
    if task.name == HANDLE_UPDATE_TASK and task.request.id:
        return task.request.id
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{task.request.id}/update/{update_id}"))


def _forget(update: Any) -> None:
    """An update dropped on purpose is never processed: its inbox copy must not come back."""
    update_id = update.get("update_id") if isinstance(update, dict) else None
    if isinstance(update_id, int):
        inbox.forget(redis_client.client(), update_id)


def _flooding(updates: list[Update]) -> set[int]:
    """The updates of users who send far too many, dropped (a button press is still answered, and
    the user told once a minute to slow down): their update ids."""
    counted = [(update, update.effective_user.id) for update in updates if update.effective_user is not None]
    if not counted:
        return set()
    verdicts = flood.allowed_many([(sender, update.update_id) for update, sender in counted])
    dropped: set[int] = set()
    for (update, sender), (handle, tell) in zip(counted, verdicts, strict=True):
        if handle:
            continue
        dropped.add(update.update_id)
        log.warning("update_dropped_flood", user_id=sender)
        if tell or update.callback_query is not None:
            with session_scope() as session:
                handled = engine.slow_down(session, update, tell)
            _answer_and_send([handled])
    return dropped


def _answer_and_send(handled: list[engine.Handled], connection: Connection | None = None) -> None:
    """Answer the button presses while the replies go out: every answer in flight at once, and the
    replies to different chats side by side, each chat's in the order of its updates. All are
    outbox rows of the updates' transaction: a redelivered update (this process died first) finds
    what is still pending among its `notification_ids` and sends it then."""
    answering = [outbox.start_answer(each.answer_id, each.callback_query_id, text=each.callback_text,
                                     show_alert=each.callback_alert)
                 for each in handled if each.answer_id is not None and each.callback_query_id is not None]
    by_chat: dict[int | None, list[int]] = {}
    for each in handled:
        if each.notification_ids:
            by_chat.setdefault(each.chat_id, []).extend(each.notification_ids)
    try:
        send_now_by_chat(list(by_chat.values()), connection)
    finally:
        for answer in answering:
            answer.finish()
