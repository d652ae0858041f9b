"""Repeating offers: a business turns a published offer into a template ("every day", or chosen
weekdays, the same pickup window), and beat makes each chosen day's offer from it — the same
card (no new upload), published and announced to followers and nearby subscribers as usual.

Beat runs ``repeat_offers`` every few minutes. From REPEAT_HOUR (local time) it makes tomorrow's
offer, and any time before the window ends it makes today's if it is missing (a beat that was
down). ``offers (template_id, template_day)`` is unique, so two beats at once make one offer per
day: the second insert finds the first and does nothing.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Session

from domain import announcements
from domain.offers import NotOwner, WrongState, owned_offer
from models import (
    Business,
    BusinessStatus,
    Offer,
    OfferStatus,
    OfferTemplate,
    PhotoStatus,
    TemplateStatus,
)

REPEAT_HOUR = 18  # local time from which tomorrow's offer is made and announced
EVERY_DAY = 0b1111111
WEEKDAYS = 0b0011111  # Monday to Friday
REPEATABLE = (OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT, OfferStatus.EXPIRED)


def days_of(mask: int) -> list[int]:
    """The weekdays (0 Monday … 6 Sunday) in a mask."""
    return [day for day in range(7) if mask & (1 << day)]


def _minutes(moment: datetime) -> int:
    return moment.hour * 60 + moment.minute


def template_of(session: Session, offer: Offer) -> OfferTemplate | None:
    return session.get(OfferTemplate, offer.template_id) if offer.template_id is not None else None


def create_template(session: Session, offer_id: int, owner_id: int, weekdays: int) -> OfferTemplate:
    """Repeat this published offer on ``weekdays`` (a mask, 1..127), with its window and card."""
    if not 1 <= weekdays <= EVERY_DAY:
        raise ValueError("choose at least one weekday")
    offer = owned_offer(session, offer_id, owner_id, lock=True)
    if offer.status not in REPEATABLE or not offer.photo_card_file_id:
        raise WrongState(offer.status.value)
    existing = template_of(session, offer)
    if existing is not None and existing.status != TemplateStatus.STOPPED:
        existing.weekdays = weekdays
        return existing
    zone = ZoneInfo(offer.business.timezone)
    start, end = offer.pickup_start.astimezone(zone), offer.pickup_end.astimezone(zone)
    end_minute = _minutes(end) if end.date() == start.date() else 24 * 60
    template = OfferTemplate(
        business_id=offer.business_id, title=offer.title, description=offer.description,
        price_minor=offer.price_minor, original_price_minor=offer.original_price_minor, currency=offer.currency,
        quantity=offer.quantity, start_minute=_minutes(start), end_minute=max(end_minute, _minutes(start) + 1),
        weekdays=weekdays, photo_source_file_id=offer.photo_source_file_id,
        photo_card_file_id=offer.photo_card_file_id, category=offer.category, diet=list(offer.diet),
        allergens=list(offer.allergens), status=TemplateStatus.ACTIVE,
    )
    session.add(template)
    session.flush()
    offer.template_id = template.id
    offer.template_day = start.date()  # this day's offer exists: beat won't make another
    session.flush()
    return template


def set_status(session: Session, template_id: int, owner_id: int, status: TemplateStatus) -> OfferTemplate:
    """Pause, resume or stop a template of the owner's business (stopped is for good)."""
    template = session.scalar(
        select(OfferTemplate).join(Business, Business.id == OfferTemplate.business_id)
        .where(OfferTemplate.id == template_id, Business.owner_id == owner_id).with_for_update(of=OfferTemplate)
    )
    if template is None:
        raise NotOwner(template_id)
    if template.status == TemplateStatus.STOPPED:
        raise WrongState(template.status.value)
    template.status = status
    return template


def _window(template: OfferTemplate, day: date, zone: ZoneInfo) -> tuple[datetime, datetime]:
    midnight = datetime.combine(day, time(0), tzinfo=zone)
    return (midnight + timedelta(minutes=template.start_minute), midnight + timedelta(minutes=template.end_minute))


def _due_days(template: OfferTemplate, business: Business, now: datetime) -> list[date]:
    """Tomorrow from REPEAT_HOUR on; today only to catch up (a beat that was down), never on the
    day the template was made (its offer then is the one it was made from, or none on purpose)."""
    zone = ZoneInfo(business.timezone)
    local = now.astimezone(zone)
    today = local.date()
    days = []
    if template.created_at.astimezone(zone).date() < today and _window(template, today, zone)[1] > now:
        days.append(today)
    if local.hour >= REPEAT_HOUR:
        days.append(today + timedelta(days=1))
    return [day for day in days if template.weekdays & (1 << day.weekday())]


def repeat_offers(session: Session, now: datetime) -> dict[str, int]:
    """Beat: make (and announce) each due day's offer of every active template, once."""
    created = 0
    rows = session.execute(
        select(OfferTemplate, Business).join(Business, Business.id == OfferTemplate.business_id)
        .where(OfferTemplate.status == TemplateStatus.ACTIVE, Business.status == BusinessStatus.VERIFIED)
        .order_by(OfferTemplate.id)
    ).all()
    for template, business in rows:
        zone = ZoneInfo(business.timezone)
        for day in _due_days(template, business, now):
            start, end = _window(template, day, zone)
            offer_id = session.scalar(
                insert(Offer).values(
                    business_id=business.id, title=template.title, description=template.description,
                    price_minor=template.price_minor, original_price_minor=template.original_price_minor,
                    currency=template.currency, quantity=template.quantity, pickup_start=start, pickup_end=end,
                    status=OfferStatus.ACTIVE, photo_status=PhotoStatus.READY,
                    photo_source_file_id=template.photo_source_file_id,
                    photo_card_file_id=template.photo_card_file_id, category=template.category,
                    diet=list(template.diet), allergens=list(template.allergens), published_at=now,
                    template_id=template.id, template_day=day,
                )
                .on_conflict_do_nothing(index_elements=["template_id", "template_day"],
                                        index_where=Offer.template_id.is_not(None))
                .returning(Offer.id)
            )
            if offer_id is not None:
                created += 1
                announcements.announce(session, offer_id, now)
    return {"offers_created": created}
