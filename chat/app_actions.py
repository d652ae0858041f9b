"""What someone did in the Mini App, told in the chat as well, so the chat stays the whole story.

The webapp process makes the change through the domain and, in the same transaction, hands over
`notifications.tell_app_action` (action, who, what, request id); this words it. The people the chat
would tell hear the same sentences as there: the customer whose pickup was confirmed
(`tell_collected`), the owner of a verified business (`tell_owner`). The person who acted gets a
line in their chat too. Every message is keyed by the app's request, so a redelivery says nothing
twice.
"""

from __future__ import annotations

from sqlalchemy.orm import Session

from chat.business.manage import tell_collected
from chat.business.review import tell_owner
from chat.cards import user_text
from chat.menus import home_row
from chat.registry import data
from core import outbox
from core.i18n import Translator
from core.outbox import Reply, button
from models import Business, Offer, Order, User

ACTIONS = ("collected", "pause", "resume", "verified")


def tell(session: Session, action: str, user_id: int, subject_id: int, request_id: str) -> bool:
    """Record the chat's messages about an app action; False when its subject is gone."""
    if action not in ACTIONS:
        raise ValueError(action)
    actor = session.get(User, user_id)
    _ = Translator(actor.language if actor else "en")
    key = f"app:{user_id}:{request_id}:{action}"
    biz_menu = [button(_("🏪 Business menu"), data("biz")), *home_row(_)]
    if action == "collected":
        order = session.get(Order, subject_id)
        if order is None:
            return False
        offer = order.offer
        tell_collected(session, offer, order)
        text = _("✅ Code {code} is valid: hand over {quantity}× {title}. The order is marked collected.",
                 code=order.pickup_code or "", quantity=order.quantity, title=user_text(offer.title))
        outbox.notify(session, key, user_id, Reply(text=text, keyboard=[biz_menu]))
        return True
    if action in ("pause", "resume"):
        changed = session.get(Offer, subject_id)
        if changed is None:
            return False
        title = user_text(changed.title)
        text = (_("⏸ <b>{title}</b> is paused (in the app): customers can't order until you resume.", title=title)
                if action == "pause" else _("▶️ <b>{title}</b> is on sale again (in the app).", title=title))
        outbox.notify(session, key, user_id, Reply(text=text, keyboard=[biz_menu]))
        return True
    business = session.get(Business, subject_id)
    if business is None:
        return False
    tell_owner(session, business, "verify")
    outbox.notify(session, key, user_id, Reply(
        text=_("✅ <b>{name}</b> is verified. The owner has been told.", name=user_text(business.name)),
        keyboard=[home_row(_)]))
    return True
