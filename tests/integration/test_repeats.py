"""Repeating offers: a template from a published offer; beat makes the next chosen day's offer with
the same card, once however many beats run at once; paused or stopped templates make nothing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa

from core.db import session_scope
from domain import repeats
from domain.offers import NotOwner, WrongState
from models import Follow, Notification, Offer, OfferStatus, OfferTemplate, TemplateStatus
from tests.factories import make_business, make_offer, make_user
from tests.integration.test_maintenance import handed_over, outbox_sends, twice_at_once  # noqa: F401 - fixtures

ZONE = ZoneInfo("Europe/Berlin")


def _evening() -> datetime:
    """Today 19:00 in Berlin, as UTC: after REPEAT_HOUR, so tomorrow's offer is due."""
    local = datetime.now(ZONE).replace(hour=19, minute=0, second=0, microsecond=0)
    return local.astimezone(UTC)


def _template(owner: int, offer_id: int, weekdays: int = repeats.EVERY_DAY) -> int:
    with session_scope() as session:
        return repeats.create_template(session, offer_id, owner, weekdays).id


def _offers_of(template_id: int) -> list[Offer]:
    with session_scope() as session:
        rows = list(session.scalars(sa.select(Offer).where(Offer.template_id == template_id)
                                    .order_by(Offer.template_day)))
        session.expunge_all()
        return rows


def test_beat_makes_tomorrows_offer_once_even_with_two_beats_at_once(db):
    owner, follower = make_user(), make_user()
    business = make_business(owner)
    offer = make_offer(business, "Soup of the day", photo_card_file_id="card-file-1", photo_source_file_id="src-1",
                       category="meals", allergens=["celery"], starts_in=_evening() - datetime.now(UTC))
    with session_scope() as session:
        session.add(Follow(user_id=follower, business_id=business))
    template = _template(owner, offer)

    evening = _evening()
    first, second = twice_at_once(db, repeats.repeat_offers, evening)
    assert first["offers_created"] + second["offers_created"] == 1
    today, tomorrow = _offers_of(template)
    assert today.id == offer and tomorrow.template_day == today.template_day + timedelta(days=1)
    assert (tomorrow.title, tomorrow.photo_card_file_id, tomorrow.category, tomorrow.allergens) == (
        "Soup of the day", "card-file-1", "meals", ["celery"])
    assert tomorrow.status == OfferStatus.ACTIVE and tomorrow.units_left == tomorrow.quantity
    with session_scope() as session:  # announced to followers as usual
        keys = set(session.scalars(sa.select(Notification.idempotency_key)))
    assert f"offer:{tomorrow.id}:announced:{follower}" in keys

    # Again later the same evening: nothing new.
    with session_scope() as session:
        assert repeats.repeat_offers(session, evening + timedelta(hours=2)) == {"offers_created": 0}


def test_chosen_weekdays_pause_stop_and_only_the_owner(db):
    owner, stranger = make_user(), make_user()
    offer = make_offer(make_business(owner), "Bread", photo_card_file_id="card-2",
                       starts_in=_evening() - datetime.now(UTC))  # today, whatever the hour now
    evening = _evening()
    tomorrow = evening.astimezone(ZONE).date() + timedelta(days=1)
    not_tomorrow = repeats.EVERY_DAY & ~(1 << tomorrow.weekday())
    template = _template(owner, offer, not_tomorrow)
    with session_scope() as session:
        assert repeats.repeat_offers(session, evening) == {"offers_created": 0}  # not a chosen day

    with session_scope() as session:
        repeats.create_template(session, offer, owner, repeats.EVERY_DAY)  # the same template, other days
        repeats.set_status(session, template, owner, TemplateStatus.PAUSED)
    with session_scope() as session:
        assert session.get(OfferTemplate, template).weekdays == repeats.EVERY_DAY
        assert repeats.repeat_offers(session, evening) == {"offers_created": 0}  # paused
    with pytest.raises(NotOwner), session_scope() as session:
        repeats.set_status(session, template, stranger, TemplateStatus.ACTIVE)
    with session_scope() as session:
        repeats.set_status(session, template, owner, TemplateStatus.ACTIVE)
    with session_scope() as session:
        assert repeats.repeat_offers(session, evening) == {"offers_created": 1}
        repeats.set_status(session, template, owner, TemplateStatus.STOPPED)
    with pytest.raises(WrongState), session_scope() as session:  # stopped is for good
        repeats.set_status(session, template, owner, TemplateStatus.ACTIVE)
    with session_scope() as session:
        assert repeats.repeat_offers(session, evening + timedelta(days=1)) == {"offers_created": 0}

    draft = make_offer(make_business(stranger), "Draft", status=OfferStatus.DRAFT)
    with pytest.raises(WrongState), session_scope() as session:  # a draft has no card to repeat
        repeats.create_template(session, draft, stranger, repeats.EVERY_DAY)
