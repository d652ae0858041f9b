"""Everything the domain tells people, as they read it: one renderer per notice type.

The domain records notices (plain dataclasses saying what happened) in the outbox; the functions
here, registered with `core.outbox.renders`, turn each into a `Reply` in the recipient's language,
with its buttons. Importing this package registers them all (`tasks.app` and the tests do).
"""

from chat.messages import admin, offers, orders, payouts, pickup, ratings, reminders  # noqa: F401 - registration
