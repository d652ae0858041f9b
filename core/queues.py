"""The Celery queues, one per kind of work, each scaled and watched on its own. A task is routed
by its name's prefix ("payments.create_checkout" goes to `payments`)."""

QUEUES = ("updates", "reservations", "payments", "images", "notifications", "maintenance")

UPDATES_QUEUE = "updates"
# One Telegram update (the poller's, or one the inbox queues again) ...
HANDLE_UPDATE_TASK = "updates.handle_update"
# ... and the updates the gateway acknowledged together, in one message (bot/publisher.py).
HANDLE_UPDATES_TASK = "updates.handle_updates"
