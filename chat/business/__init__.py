"""The business side of the chat: the hub, /register, the admins' review, payouts, /newoffer, /myoffers."""

from chat.business import earnings, manage, newoffer, payouts, registration, review
from chat.business.review import show_pending_businesses

__all__ = ["earnings", "manage", "newoffer", "payouts", "registration", "review", "show_pending_businesses"]
