"""The `notifications` queue: sending outbox messages that could not go out at once."""

from __future__ import annotations

import concurrent.futures
import contextvars
import os
import time
from datetime import datetime

from sqlalchemy import Connection

from chat import app_actions
from core import handover, outbox
from core import telegram as tg
from core.db import connected, session_scope, transaction
from core.logging import get_logger
from core.settings import get_settings
from models import User
from tasks.app import app
from tasks.base import BaseTask

log = get_logger(__name__)


def send_now(notification_ids: list[int], connection: Connection | None = None) -> None:
    """Send a task's own replies straight away, in order (on `connection`, when the task holds one).
    On flood control or a network hiccup the rest go through this queue after the wait, so the
    worker moves on to its next task."""
    for position, notification_id in enumerate(notification_ids):
        try:
            outbox.deliver(notification_id, connection)
        except outbox.RetryLater as wait:
            handover.send_task(outbox.DELIVER_TASK, [notification_ids[position:]], countdown=wait.delay)
            return


# How many chats' replies a process sends side by side (`send_now_by_chat`), besides its own thread.
REPLY_SENDER_THREADS = 3
_reply_senders: tuple[int, concurrent.futures.ThreadPoolExecutor] | None = None


def send_now_by_chat(chats: list[list[int]], connection: Connection | None = None) -> None:
    """`send_now` for the replies of several chats (each list one chat's, in order): different chats'
    side by side, so that the updates a task handled together wait for Telegram once, not once per
    chat. Each chat's go out in order, each row in its own transaction as `send_now` sends it. The
    chats are dealt to this thread (on `connection`) and up to REPLY_SENDER_THREADS more, each with
    one connection for all of its chats: a checkout (with its liveness ping) per thread, not per chat."""
    if len(chats) <= 1:
        for notification_ids in chats:
            send_now(notification_ids, connection)
        return
    lanes = [chats[start::REPLY_SENDER_THREADS + 1] for start in range(min(len(chats), REPLY_SENDER_THREADS + 1))]
    senders = _senders()
    others = [senders.submit(contextvars.copy_context().run, _send_lane, lane) for lane in lanes[1:]]
    try:
        _send_lane(lanes[0], connection)
    finally:
        concurrent.futures.wait(others)
    for sent in others:
        sent.result()  # a failure (Postgres away) fails the task, whose redelivery sends what is left


def _send_lane(chats: list[list[int]], connection: Connection | None = None) -> None:
    """Several chats' replies, one chat after the other, on one connection."""
    if connection is not None:
        for notification_ids in chats:
            send_now(notification_ids, connection)
        return
    with connected() as own:
        for notification_ids in chats:
            send_now(notification_ids, own)


def _senders() -> concurrent.futures.ThreadPoolExecutor:
    """This process's reply-sending threads (a forked process makes its own)."""
    global _reply_senders
    if _reply_senders is None or _reply_senders[0] != os.getpid():
        _reply_senders = (os.getpid(), concurrent.futures.ThreadPoolExecutor(
            REPLY_SENDER_THREADS, thread_name_prefix="reply-sender"))
    return _reply_senders[1]


@app.task(name="notifications.deliver_in_order", base=BaseTask, bind=True, max_retries=60)
def deliver_in_order(self: BaseTask, notification_ids: list[int]) -> None:
    """Send these outbox messages one after another; each is sent at most once."""
    for position, notification_id in enumerate(notification_ids):
        try:
            outbox.deliver(notification_id)
        except outbox.RetryLater as wait:
            if wait.pacing:
                # Our turn comes later: a fresh task then, so that waiting in a long fan-out never
                # uses up the retries meant for real failures (it did, and left messages unsent).
                handover.send_task(outbox.DELIVER_TASK, [notification_ids[position:]], countdown=wait.delay)
                return
            raise self.retry(args=(notification_ids[position:],), countdown=wait.delay) from wait


def after_earlier_messages(chat_id: int, before: datetime, timeout: float = 3.0) -> None:
    """For a task whose message answers an earlier one (a photo's preview after "⏳ Processing your
    photo…", a data export after "being prepared"): let the chat's messages recorded before
    `before` go out first, so the answer never arrives above them. Bounded: a stuck outbox delays
    the answer by `timeout` at most."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with transaction() as conn:
            waiting = conn.exec_driver_sql(_EARLIER_UNSENT, {
                "chat_id": chat_id, "before": before, "answer": outbox.ANSWER_KIND}).scalar()
        if not waiting:
            return
        time.sleep(0.1)


# Straight to the driver: every Pay button waits here once, and the ORM's query cost more than the wait.
# Answers to button presses are no messages of the chat (and one whose "sent" mark was lost stays
# pending for good: core.marks).
_EARLIER_UNSENT = (
    "SELECT EXISTS (SELECT 1 FROM notifications WHERE chat_id = %(chat_id)s AND status = 'pending'"
    " AND created_at <= %(before)s AND kind <> %(answer)s)")


@app.task(name="notifications.set_chat_commands", base=BaseTask, bind=True, max_retries=30)
def set_chat_commands(self: BaseTask, chat_id: int) -> str:
    """Give a chat the "/" menu and the menu button ("🗺 Map", when the Mini App has an address) in its
    person's language (handed over after /language, and at first contact in a language other than
    the default's), or take the chat's own away once we no longer know them (erased), so their
    app's language decides the "/" menu again and the bot's default menu button shows. The language
    is read when the task runs, so quick switches end in the last choice, and running it twice
    does no harm."""
    chat_id = int(chat_id)
    with session_scope() as session:
        user = session.get(User, chat_id)
        language = user.language if user is not None and user.deleted_at is None else None
    api = tg.telegram_api()
    webapp_url = get_settings().webapp_url
    try:
        if language is None:
            api.delete_chat_commands(chat_id)
            if webapp_url:
                api.reset_chat_menu_button(chat_id)
            return "cleared"
        api.set_chat_commands(chat_id, language)
        if webapp_url:
            api.set_chat_menu_button(chat_id, language, webapp_url)
        return language
    except tg.RetryAfter as error:
        raise self.retry(countdown=tg.retry_after_seconds(error) + 1, exc=error) from error
    except (tg.Forbidden, tg.BadRequest) as error:  # blocked, or a chat Telegram doesn't know: nothing to show
        log.info("chat_commands_not_set", chat_id=chat_id, error=str(error))
        return "refused"
    except (tg.TimedOut, tg.NetworkError) as error:
        raise self.retry(countdown=min(60, 2 ** self.request.retries), exc=error) from error


@app.task(name="notifications.tell_app_action", base=BaseTask)
def tell_app_action(action: str, user_id: int, subject_id: int, request_id: str) -> bool:
    """What was done in the Mini App (webapp/), told in the chat too (chat/app_actions.py); its
    messages are keyed by the app's request, so a redelivery sends nothing twice."""
    with session_scope() as session:
        return app_actions.tell(session, action, int(user_id), int(subject_id), str(request_id))
