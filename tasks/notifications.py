"""The `notifications` queue: sending outbox messages that could not go out at once."""

from __future__ import annotations

from domain import notifications
from tasks.app import app
from tasks.base import BaseTask


def send_now(notification_ids: list[int]) -> None:
    """Send a task's own replies straight away, in order. On flood control or a network hiccup
    the rest go through this queue after the wait, so the worker moves on to its next task."""
    for position, notification_id in enumerate(notification_ids):
        try:
            notifications.deliver(notification_id)
        except notifications.RetryLater as wait:
            deliver_in_order.apply_async((notification_ids[position:],), countdown=wait.delay)
            return


@app.task(name="notifications.deliver_in_order", base=BaseTask, bind=True, max_retries=20)
def deliver_in_order(self: BaseTask, notification_ids: list[int]) -> None:
    """Send these outbox messages one after another; each is sent at most once."""
    for position, notification_id in enumerate(notification_ids):
        try:
            notifications.deliver(notification_id)
        except notifications.RetryLater as wait:
            if wait.pacing:
                # Our turn comes later: a fresh task then, so that waiting in a long fan-out never
                # uses up the retries meant for real failures (it did, and left messages unsent).
                deliver_in_order.apply_async((notification_ids[position:],), countdown=wait.delay)
                return
            raise self.retry(args=(notification_ids[position:],), countdown=wait.delay) from wait
