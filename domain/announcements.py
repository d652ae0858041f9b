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
from datetime import UTC, datetime, timedelta

from sqlalchemy import Float, Select, func, literal, literal_column, or_, select, union_all
from sqlalchemy.orm import Session

from core import outbox
from core.settings import get_settings
from domain import catalog
from models import Business, Follow, Offer, OfferStatus, User
from models.entities import ALERT_AREA

ALERT_RADIUS_KM = 5.0  # what "near me" means for alerts: a walk or a short ride
MAX_ALERT_RADIUS_KM = 25.0  # the widest alert radius a customer can have
DELIVERY_GROUP = 25  # messages per notifications task: about a second at Telegram's pace


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


def audience(session: Session, offer: Offer, now: datetime | None = None) -> list[Recipient]:
    """Everyone to tell about this offer: followers who want its alerts, and alert subscribers
    close enough; nobody who muted alerts until after ``now``."""
    rows = session.execute(audience_query(offer.business, now or datetime.now(UTC))).all()
    return [Recipient(user_id, language, bool(follows), None if far is None else float(far))
            for user_id, language, follows, far in rows]


def audience_query(business: Business, now: datetime) -> Select:
    """The query behind `audience`: (user id, language, follows, distance in km) of each recipient.

    Subscribers are found through the GiST index on the box each one's radius reaches
    (``ix_users_alert_area``): the boxes that hold the business, then ``ST_DWithin`` on geography
    with each one's own radius, reading each user row once. Followers are a second, separate
    lookup (an "or" between the two would make Postgres read every user); the two are merged
    per user."""
    reachable = (User.deleted_at.is_(None), User.reachable.is_(True), User.id != business.owner_id,
                 or_(User.alerts_muted_until.is_(None), User.alerts_muted_until <= now))
    parts = [
        select(User.id.label("id"), User.language.label("language"), literal(True).label("follows"),
               literal(None, Float).label("km"))
        .join(Follow, Follow.user_id == User.id)
        .where(Follow.business_id == business.id, Follow.alerts.is_(True), *reachable)
    ]
    if business.latitude is not None and business.longitude is not None:
        here = catalog.point(business.latitude, business.longitude)
        spot = func.ST_SetSRID(func.ST_MakePoint(literal(business.longitude, Float), literal(business.latitude, Float)),
                               4326)
        # On the sphere (use_spheroid false): a tenth of the cost for thousands of subscribers, and
        # within 0.5 % of the spheroid, far less than anyone's idea of "5 km".
        parts.append(
            select(User.id.label("id"), User.language.label("language"), literal(False).label("follows"),
                   (func.ST_Distance(User.location, here, False) / 1000.0).label("km"))
            .where(User.deal_alerts_km.is_not(None), literal_column(ALERT_AREA).op("&&")(spot),
                   func.ST_DWithin(User.location, here, User.deal_alerts_km * 1000.0, False), *reachable)
        )
    both = union_all(*parts).subquery()
    return (
        select(both.c.id, both.c.language, func.bool_or(both.c.follows), func.min(both.c.km))
        .group_by(both.c.id, both.c.language)
        .order_by(both.c.id)
    )


def announce(session: Session, offer_id: int, now: datetime) -> dict[str, int]:
    """Record the announcement of a published offer for its audience and send it after commit.
    Idempotent: a second run finds every message recorded and sends nothing new."""
    offer = session.get(Offer, offer_id)
    if offer is None or offer.status not in (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT):
        return {"followers": 0, "nearby": 0, "recorded": 0}
    business: Business = offer.business
    if get_settings().payouts_require_connect and not business.charges_enabled:
        # Its deals are not listed, as nobody could pay for them (restricted, disconnected): nobody is
        # told about them either. An offer published while the account was active is not told again.
        return {"followers": 0, "nearby": 0, "recorded": 0}
    recipients = fair_order(offer.id, audience(session, offer, now))
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
    """Alerts within ``radius_km`` of the customer's location (at most MAX_ALERT_RADIUS_KM), or off."""
    user = session.get(User, user_id)
    if user is not None:
        user.deal_alerts_km = None if radius_km is None else min(max(radius_km, 0.1), MAX_ALERT_RADIUS_KM)


MUTE_FOR = {"day": timedelta(days=1), "week": timedelta(weeks=1)}


def mute_alerts(session: Session, user_id: int, period: str | None, now: datetime) -> datetime | None:
    """No new-deal alerts for a day or a week (``period`` None: alerts again); returns until when."""
    user = session.get(User, user_id)
    if user is None:
        return None
    user.alerts_muted_until = now + MUTE_FOR[period] if period is not None else None
    return user.alerts_muted_until


def set_business_alerts(session: Session, user_id: int, business_id: int, on: bool) -> bool:
    """Alerts from one followed business on or off; False if the customer does not follow it."""
    follow = session.get(Follow, (user_id, business_id))
    if follow is None:
        return False
    follow.alerts = on
    return True
