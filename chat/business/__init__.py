"""The business side of the chat: the hub, /register, the admins' review, /newoffer, /myoffers."""

from chat.business import manage, newoffer, registration, review
from chat.business.review import show_pending_businesses

__all__ = ["manage", "newoffer", "registration", "review", "show_pending_businesses"]
