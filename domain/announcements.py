"""Telling customers about a newly published offer: the business's followers, and customers who
asked for alerts about new deals near them (within their radius of the business).

Each customer hears about an offer once, whichever list they are on (one outbox key per offer and
customer). The messages are recorded in the transaction that publishes the offer (published means
announced), and go out after commit through the notifications queue in groups, each paced by the
shared Telegram limiter, so a big audience takes its time instead of tripping flood control.
What each customer reads is a `DealAlert` notice, worded by `chat.messages.offers`.

Fair: at Telegram's 30 messages/s the last of 3,000 people hears of a deal 100 s after the first,
and a bag that sells out in seconds goes to whoever hears first. So each offer's audience is told
in an order of its own (a shuffle seeded by the offer: the same on a second run), and nobody is
always last. With TELEGRAM_PAID_BROADCAST a large audience is told by paid broadcast instead (up
to 1,000 messages/s), which shortens the wait for everyone.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import ColumnElement, and_, literal, or_, select
from sqlalchemy.orm import Session

from core import outbox
from core.settings import get_settings
from domain.catalog import distance_km
from models import Business, Follow, Offer, OfferStatus, User

ALERT_RADIUS_KM = 5.0  # what "near me" means for alerts: a walk or a short ride
DELIVERY_GROUP = 25  # messages per notifications task: about a second at Telegram's pace
DEGREE_KM = 111.0  # one degree of latitude; the bounding box below is a cheap first cut


@dataclass(frozen=True)
class DealAlert:
    """A published offer, told to one customer: a follower of its business, or someone nearby
    (with how far away it is) who asked for alerts. Rendered at once, in the same session."""

    language: str
    offer: Offer
    business: Business
    now: datetime
    follower: bool
    distance_km: float | None
    paid_broadcast: bool = False  # sent as a Telegram paid broadcast (a large audience)


@dataclass(frozen=True)
class Recipient:
    user_id: int
    language: str
    follower: bool
    distance_km: float | None


def audience(session: Session, offer: Offer) -> list[Recipient]:
    """Everyone to tell about this offer: followers, and alert subscribers close enough."""
    business = offer.business
    follower = select(Follow.user_id).where(Follow.business_id == business.id, Follow.user_id == User.id)
    nearby: ColumnElement[bool] = literal(False)
    distance = literal(None)
    if business.latitude is not None and business.longitude is not None:
        distance = distance_km(User.latitude, User.longitude, literal(business.latitude), literal(business.longitude))
        box = User.deal_alerts_km / DEGREE_KM
        nearby = and_(
            User.deal_alerts_km.is_not(None), User.latitude.is_not(None),
            User.latitude.between(business.latitude - box, business.latitude + box),
            distance <= User.deal_alerts_km,
        )
    rows = session.execute(
        select(User.id, User.language, follower.exists(), distance)
        .where(User.deleted_at.is_(None), User.reachable.is_(True), User.id != business.owner_id,
               or_(follower.exists(), nearby))
        .order_by(User.id)
    ).all()
    return [Recipient(user_id, language, bool(follows), None if far is None else float(far))
            for user_id, language, follows, far in rows]


def announce(session: Session, offer_id: int, now: datetime) -> dict[str, int]:
    """Record the announcement of a published offer for its audience and send it after commit.
    Idempotent: a second run finds every message recorded and sends nothing new."""
    offer = session.get(Offer, offer_id)
    if offer is None or offer.status not in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT):
        return {"followers": 0, "nearby": 0, "recorded": 0}
    business: Business = offer.business
    recipients = fair_order(offer.id, audience(session, offer))
    paid = paid_broadcast(len(recipients))
    recorded: list[int] = []
    for recipient in recipients:
        alert = DealAlert(recipient.language, offer, business, now, recipient.follower, recipient.distance_km,
                          paid_broadcast=paid)
        note = outbox.record(session, f"offer:{offer.id}:announced:{recipient.user_id}", recipient.user_id, alert)
        if note is not None:
            recorded.append(note)
    for start in range(0, len(recorded), DELIVERY_GROUP):
        outbox.deliver_after_commit(session, recorded[start:start + DELIVERY_GROUP])
    return {"followers": sum(r.follower for r in recipients),
            "nearby": sum(not r.follower for r in recipients), "recorded": len(recorded)}


def fair_order(offer_id: int, recipients: list[Recipient]) -> list[Recipient]:
    """The order in which this offer's audience is told: a shuffle of its own, seeded by the offer
    (a second run of `announce` finds the same order), so that over many offers each customer's
    place in the queue averages out instead of being the same every time."""
    ordered = sorted(recipients, key=lambda r: r.user_id)
    random.Random(f"deal-alerts:{offer_id}").shuffle(ordered)
    return ordered


def paid_broadcast(audience_size: int) -> bool:
    """Whether an audience this large is told by paid broadcast (TELEGRAM_PAID_BROADCAST)."""
    settings = get_settings()
    return settings.telegram_paid_broadcast and audience_size >= settings.telegram_paid_broadcast_min_audience


def set_deal_alerts(session: Session, user_id: int, radius_km: float | None) -> None:
    user = session.get(User, user_id)
    if user is not None:
        user.deal_alerts_km = radius_km
