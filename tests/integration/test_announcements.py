"""Who hears about a new offer: followers, and customers who asked for alerts within their radius;
nobody twice, nobody who left, blocked the bot or owns the business."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from core import handover, outbox
from core.db import session_scope
from core.settings import get_settings
from domain import announcements
from models import Follow, Notification, Offer, User
from tests.factories import make_business, make_offer, make_user

BAKERY = (52.5200, 13.4050)


def _user(user_id: int, where: tuple[float, float] | None = None, alerts_km: float | None = None, **fields) -> int:
    make_user(user_id)
    with session_scope() as session:
        user = session.get(User, user_id)
        if where:
            user.latitude, user.longitude = where
        user.deal_alerts_km = alerts_km
        for name, value in fields.items():
            setattr(user, name, value)
    return user_id


def test_the_audience_of_a_new_offer(db, monkeypatch):
    owner = _user(1, BAKERY, 5.0)
    business = make_business(owner, latitude=BAKERY[0], longitude=BAKERY[1])
    offer_id = make_offer(business)
    near = _user(2, (52.5230, 13.4120), 5.0)  # ~600 m, alerts on
    wide = _user(3, (52.5600, 13.4050), 10.0)  # ~4.4 km, its own radius is 10 km
    too_far = _user(4, (52.5600, 13.4050), 2.0)  # ~4.4 km, but only wants 2 km
    no_alerts = _user(5, (52.5210, 13.4060))
    follower_far = _user(6, (48.1371, 11.5754))
    follower_near = _user(7, (52.5210, 13.4060), 5.0)
    _user(8, (52.5210, 13.4060), 5.0, deleted_at=datetime.now(UTC))
    _user(9, (52.5210, 13.4060), 5.0, reachable=False)
    with session_scope() as session:
        session.add_all([Follow(user_id=follower_far, business_id=business),
                         Follow(user_id=follower_near, business_id=business)])

    sent: list[list[int]] = []
    monkeypatch.setattr(handover, "send_task", lambda name, args, countdown=None, kwargs=None, task_id=None:
                        sent.append(args[0]) if name == outbox.DELIVER_TASK else None)
    with session_scope() as session:
        offer = session.get(Offer, offer_id)
        heard = {r.user_id: (r.follower, r.distance_km is not None and r.distance_km < 5)
                 for r in announcements.audience(session, offer)}
        assert heard == {near: (False, True), wide: (False, True), follower_far: (True, False),
                         follower_near: (True, True)}
        assert no_alerts not in heard and too_far not in heard
        report = announcements.announce(session, offer_id, datetime.now(UTC))
    assert report == {"followers": 2, "nearby": 2, "recorded": 4}
    recorded = _note_ids(offer_id)
    assert len(recorded) == 4 and sorted(i for group in sent for i in group) == sorted(recorded)

    # Announcing again records and sends nothing more.
    sent.clear()
    with session_scope() as session:
        assert announcements.announce(session, offer_id, datetime.now(UTC))["recorded"] == 0
    assert sent == []


def _note_ids(offer_id: int) -> list[int]:
    with session_scope() as session:
        return list(session.scalars(sa.select(Notification.id).where(
            Notification.idempotency_key.startswith(f"offer:{offer_id}:announced:"))))


def test_each_offer_tells_its_audience_in_an_order_of_its_own(db, monkeypatch):
    """Fair alerts: the same followers are told in a different order for each offer (nobody is
    always last), the same order again for the same offer; a large enough audience goes out as
    paid broadcasts when TELEGRAM_PAID_BROADCAST is on, a small one never."""
    owner = _user(1)
    business = make_business(owner)
    followers = [_user(100 + n) for n in range(40)]
    with session_scope() as session:
        session.add_all([Follow(user_id=user_id, business_id=business) for user_id in followers])
    monkeypatch.setattr(handover, "send_task", lambda *args, **kwargs: None)
    monkeypatch.setenv("TELEGRAM_PAID_BROADCAST", "true")
    monkeypatch.setenv("TELEGRAM_PAID_BROADCAST_MIN_AUDIENCE", "40")
    get_settings.cache_clear()
    try:
        orders = []
        for _ in range(3):
            offer_id = make_offer(business)
            with session_scope() as session:
                offer = session.get(Offer, offer_id)
                assert [r.user_id for r in announcements.fair_order(offer_id, announcements.audience(session, offer))] \
                    == [r.user_id for r in announcements.fair_order(offer_id, announcements.audience(session, offer))]
                announcements.announce(session, offer_id, datetime.now(UTC))
            with session_scope() as session:
                notes = session.scalars(sa.select(Notification).where(
                    Notification.idempotency_key.startswith(f"offer:{offer_id}:announced:")).order_by(Notification.id)
                ).all()
                orders.append([note.chat_id for note in notes])
                assert all(note.payload.get("paid_broadcast") is True for note in notes)
        assert all(sorted(order) == followers for order in orders)
        assert len({tuple(order) for order in orders}) == 3
        assert len({order[-1] for order in orders}) > 1  # not the same person last every time

        monkeypatch.setenv("TELEGRAM_PAID_BROADCAST_MIN_AUDIENCE", "41")
        get_settings.cache_clear()
        offer_id = make_offer(business)
        with session_scope() as session:
            announcements.announce(session, offer_id, datetime.now(UTC))
        with session_scope() as session:
            payloads = session.scalars(sa.select(Notification.payload).where(
                Notification.idempotency_key.startswith(f"offer:{offer_id}:announced:"))).all()
        assert len(payloads) == 40 and not any(p.get("paid_broadcast") for p in payloads)
    finally:
        monkeypatch.delenv("TELEGRAM_PAID_BROADCAST")
        monkeypatch.delenv("TELEGRAM_PAID_BROADCAST_MIN_AUDIENCE")
        get_settings.cache_clear()


def test_no_alerts_for_a_business_that_cannot_take_payments(db, monkeypatch, request):
    """With payouts required, a business whose account cannot take charges (restricted, disconnected)
    has its deals hidden; alerts about them would only send people to a deal they cannot buy."""
    monkeypatch.setenv("PAYOUTS_REQUIRE_CONNECT", "true")
    get_settings.cache_clear()
    request.addfinalizer(get_settings.cache_clear)
    owner = _user(11, BAKERY, 5.0)
    business = make_business(owner, latitude=BAKERY[0], longitude=BAKERY[1])
    offer_id = make_offer(business)
    near = _user(12, (52.5230, 13.4120), 5.0)
    monkeypatch.setattr(handover, "send_task", lambda *args, **kwargs: None)
    with session_scope() as session:
        assert session.get(Offer, offer_id).business.charges_enabled is False
        assert announcements.announce(session, offer_id, datetime.now(UTC)) == \
            {"followers": 0, "nearby": 0, "recorded": 0}
        session.get(Offer, offer_id).business.charges_enabled = True
    with session_scope() as session:
        assert announcements.announce(session, offer_id, datetime.now(UTC))["nearby"] == 1
    assert _note_ids(offer_id) and near
