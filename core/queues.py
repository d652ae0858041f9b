"""The Celery queues, one per kind of work, each scaled and watched on its own. A task is routed
by its name's prefix ("payments.create_checkout" goes to `payments`)."""

QUEUES = ("updates", "reservations", "payments", "images", "notifications", "maintenance")
