"""What someone did in the Mini App, told in the chat as well, so the chat stays the whole story.

The webapp process makes the change through the domain and, in the same transaction, hands over
`notifications.tell_app_action` (action, who, what, request id); this words it. The people the chat
would tell hear the same sentences as there: the customer whose pickup was confirmed
(`tell_collected`), the owner of a verified business (`tell_owner`), the followers and nearby
customers of an offer published in the app (`announcements.announce`, as the chat's Publish). The
person who acted gets a line in their chat too, and the previews of a draft published or deleted in
the app lose their buttons, as in the chat. Every message is keyed by the app's request, so a
redelivery says nothing twice.

One action is done here rather than in the webapp: cancelling an offer (`cancel_offer`, by the
`payments.cancel_offer` task), because the domain function the chat calls tells each customer in
their chat, which needs the chat's sentences (chat.messages), and the webapp has none of them.
"""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy.orm import Session

from chat.business.manage import being_told, cancelled_note, spent_previews, tell_collected
from chat.business.review import tell_owner
from chat.cards import offer_caption, user_text
from chat.menus import home_row
from chat.registry import data
from core import outbox
from core.i18n import Translator
from core.outbox import Reply, button
from domain import announcements, payments
from domain.money import format_money
from domain.offers import NotOwner, WrongState
from models import Business, Offer, OfferStatus, Order, User

ACTIONS = ("collected", "pause", "resume", "verified", "created", "published", "discarded", "edited")
OFFER_ACTIONS = ("pause", "resume", "created", "published", "discarded", "edited")


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
    if action in OFFER_ACTIONS:
        return _offer_action(session, _, action, user_id, subject_id, key)
    business = session.get(Business, subject_id)
    if business is None:
        return False
    tell_owner(session, business, "verify")
    outbox.notify(session, key, user_id, Reply(
        text=_("✅ <b>{name}</b> is verified. The owner has been told.", name=user_text(business.name)),
        keyboard=[home_row(_)]))
    return True


def _offer_action(session: Session, _: Translator, action: str, user_id: int, offer_id: int, key: str) -> bool:
    """An offer paused, resumed, made, published, deleted or changed in the app's dashboard."""
    biz_menu = [button(_("🏪 Business menu"), data("biz")), *home_row(_)]
    if action == "discarded":
        for edit in spent_previews(session, user_id, offer_id, _("🗑 The draft was deleted."), None):
            outbox.notify(session, f"{key}:preview:{edit.edit_message_id}", user_id, edit)
        outbox.notify(session, key, user_id, Reply(text=_("🗑 The draft was deleted (in the app)."),
                                                    keyboard=[biz_menu]))
        return True
    offer = session.get(Offer, offer_id)
    if offer is None:
        return False
    title = user_text(offer.title)
    manage = [button(_("⚙️ Manage this offer"), data("bizoffer", "show", offer.id))]
    if action == "pause":
        text = _("⏸ <b>{title}</b> is paused (in the app): customers can't order until you resume.", title=title)
    elif action == "resume":
        text = _("▶️ <b>{title}</b> is on sale again (in the app).", title=title)
    elif action == "created":
        text = _("➕ <b>{title}</b> was created in the app. Publish it there, or from its preview here.",
                 title=title)
    elif action == "edited":
        text = _("✏️ <b>{title}</b> was changed in the app: {price}, {left} of {quantity} left.", title=title,
                 price=format_money(offer.price_minor, offer.currency, _.language), left=max(offer.units_left, 0),
                 quantity=offer.quantity)
    else:  # published: its audience is told, as when Publish is pressed in the chat
        now = datetime.now(UTC)
        text = _("🎉 <b>{title}</b> is published (in the app): customers can order it now.", title=title)
        audience = being_told(_, announcements.announce(session, offer.id, now))
        if audience:
            text += "\n" + audience
        caption = _("🎉 <b>Published!</b> Customers can order it now.") + "\n\n" + offer_caption(
            _, offer, offer.business, now)
        for edit in spent_previews(session, user_id, offer.id, caption, [manage]):
            outbox.notify(session, f"{key}:preview:{edit.edit_message_id}", user_id, edit)
    outbox.notify(session, key, user_id, Reply(text=text, keyboard=[manage, biz_menu]))
    return True


def cancel_offer(session: Session, owner_id: int, offer_id: int, request_id: str) -> bool:
    """The dashboard's "🗑 Cancel offer", done here as the chat's is (payments.cancel_offer: each
    reservation released, each paid order called off and refunded, every customer told, in this
    transaction), with the chat's note to the owner; False when there was nothing to cancel (a
    redelivery after it was done, or the offer changed since the app asked: the owner is told)."""
    actor = session.get(User, owner_id)
    _ = Translator(actor.language if actor else "en")
    key = f"app:{owner_id}:{request_id}:cancel"
    biz_menu = [button(_("🏪 Business menu"), data("biz")), *home_row(_)]
    manage = [button(_("⚙️ Manage this offer"), data("bizoffer", "show", offer_id))]
    try:
        result = payments.cancel_offer(session, offer_id, owner_id)
    except NotOwner:
        return False
    except WrongState:
        offer = session.get(Offer, offer_id)
        if offer is not None and offer.status != OfferStatus.CANCELLED:
            outbox.notify(session, key, owner_id, Reply(text=_("This offer can't be cancelled now."),
                                                         keyboard=[manage, biz_menu]))
        return False
    text = cancelled_note(_, result) + " " + _("(in the app)")
    outbox.notify(session, key, owner_id, Reply(text=text, keyboard=[manage, biz_menu]))
    return True
