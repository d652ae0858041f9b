"""Orders that close, against real Postgres: a paid order nobody collected becomes "not collected"
once, whoever closes it and however they race; a late pickup still counts; no-shows warn and
then limit a customer."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from core import handover
from core.db import session_scope
from domain import maintenance, offers, ordering
from domain import reservations as rsv
from domain.payments import closing
from domain.payments.closing import NoShowOutcome, Standing
from models import Business, Notification, Order, OrderStatus
from tests.factories import make_business, make_offer, make_user

GRACE = timedelta(minutes=30)


@pytest.fixture
def handed_over(monkeypatch):
    sent: list[tuple[str, list]] = []
    monkeypatch.setattr(handover, "send_task", lambda name, args, *a, **k: sent.append((name, args)))
    return sent


def paid_order(offer_id: int, customer: int | None = None, quantity: int = 1) -> tuple[int, str]:
    customer = customer or make_user()
    with session_scope() as session:
        order_id = rsv.reserve(session, offer_id, customer, quantity).order_id
        code = rsv.confirm_sale(session, order_id, 350 * quantity, "EUR", f"pi_{order_id}").pickup_code
    return order_id, code


def open_offer(business_id: int) -> int:
    """An offer in its pickup window (orders are paid while it is open; `end_window` ends it)."""
    return make_offer(business_id, starts_in=-timedelta(hours=1), lasts=timedelta(hours=3))


def end_window(offer_id: int, ended_ago: timedelta) -> None:
    with session_scope() as session:
        session.execute(sa.text("UPDATE offers SET pickup_start = now() - interval '3 hours' - :ago, "
                                "pickup_end = now() - :ago WHERE id = :id"), {"ago": ended_ago, "id": offer_id})


def status(order_id: int) -> OrderStatus:
    with session_scope() as session:
        return session.get(Order, order_id).status


def notes(key: str) -> list[Notification]:
    with session_scope() as session:
        return list(session.scalars(sa.select(Notification).where(Notification.idempotency_key == key)))


def owner_of(business_id: int) -> int:
    with session_scope() as session:
        return session.get(Business, business_id).owner_id


def sweep(now: datetime | None = None) -> dict:
    with session_scope() as session:
        return closing.close_uncollected_orders(session, now or datetime.now(UTC), GRACE)


def consistent() -> None:
    with session_scope() as session:
        rsv.assert_ledger_consistent(session)


def test_the_sweeper_closes_after_the_grace_once_even_run_twice_at_once(db):
    business = make_business()
    offer_id = open_offer(business)
    late, _ = paid_order(offer_id)
    collected, code = paid_order(offer_id)
    with session_scope() as session:
        assert offers.confirm_pickup(session, offer_id, owner_of(business), code, datetime.now(UTC)).outcome \
            == "collected"
    end_window(offer_id, timedelta(minutes=10))
    assert sweep() == {"orders_not_collected": 0, "order_ids": []}  # still within the grace
    end_window(offer_id, GRACE + timedelta(minutes=1))

    reports: list[dict] = []
    at_once(*[lambda s: reports.append(closing.close_uncollected_orders(s, datetime.now(UTC), GRACE))] * 2)
    assert sorted(r["orders_not_collected"] for r in reports) == [0, 1]
    assert (status(late), status(collected)) == (OrderStatus.NOT_COLLECTED, OrderStatus.COLLECTED)
    (told,) = notes(f"order:{late}:not-collected")
    assert "Nobody picked up" in told.payload["text"] and "not refunded" in told.payload["text"]
    assert sweep()["orders_not_collected"] == 0
    consistent()


def at_once(*works) -> None:
    """Run each work in its own transaction, all starting at the same moment."""
    barrier = threading.Barrier(len(works))
    errors: list[BaseException] = []

    def one(work) -> None:
        try:
            with session_scope() as session:
                barrier.wait(5)
                work(session)
        except BaseException as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=one, args=(work,)) for work in works]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors


def test_a_late_pickup_racing_the_sweeper_ends_collected(db):
    business = make_business()
    owner = owner_of(business)
    for _round in range(3):
        offer_id = open_offer(business)
        order_id, code = paid_order(offer_id)
        end_window(offer_id, GRACE + timedelta(minutes=1))
        pickups: list[str] = []
        at_once(
            lambda s, o=offer_id, c=code, p=pickups: p.append(
                offers.confirm_pickup(s, o, owner, c, datetime.now(UTC)).outcome),
            lambda s: closing.close_uncollected_orders(s, datetime.now(UTC), GRACE),
        )
        assert pickups == ["collected"]
        with session_scope() as session:
            order = session.get(Order, order_id)
            assert (order.status, order.no_show_at) == (OrderStatus.COLLECTED, None)
    consistent()


def test_the_business_marks_didnt_come_once_the_window_started_and_only_its_own(db):
    business = make_business()
    owner = owner_of(business)
    other = owner_of(make_business(name="Other"))
    upcoming = make_offer(business)  # starts in two hours
    early, _ = paid_order(upcoming)
    now = datetime.now(UTC)
    with session_scope() as session:
        assert closing.mark_no_show(session, early, owner, now) is NoShowOutcome.TOO_EARLY
        with pytest.raises(closing.NotYours):
            closing.mark_no_show(session, early, other, now + timedelta(hours=3))
        with pytest.raises(closing.NotYours):
            closing.mark_no_show(session, 10**12, owner, now)
        assert closing.mark_no_show(session, early, owner, now + timedelta(hours=2)) is NoShowOutcome.CLOSED
        assert closing.mark_no_show(session, early, owner, now + timedelta(hours=2)) is NoShowOutcome.NOT_OPEN
    assert status(early) == OrderStatus.NOT_COLLECTED
    consistent()


def no_shows_thrice(business: int, customer: int, now: datetime) -> list[str]:
    """Three paid orders of `customer` marked "didn't come": what they were told each time."""
    owner = owner_of(business)
    standings = []
    for _n in range(3):
        offer_id = open_offer(business)
        order_id, _ = paid_order(offer_id, customer)
        with session_scope() as session:
            closing.mark_no_show(session, order_id, owner, now)
        (told,) = notes(f"order:{order_id}:not-collected")
        standings.append(told.payload["text"])
    return standings


def test_no_shows_warn_then_limit_the_customer_to_one_open_order(db, handed_over):
    business = make_business()
    customer = make_user()
    now = datetime.now(UTC)
    standings = no_shows_thrice(business, customer, now)
    assert "⚠️" not in standings[0]
    assert "2 orders not collected in 30 days. One more" in standings[1]
    assert "3 orders not collected in 30 days, so for now you can have only one open order" in standings[2]

    first = make_offer(business)
    second = make_offer(business)
    with session_scope() as session:
        assert closing.standing(closing.no_shows(session, customer, now)) is Standing.LIMITED
        placed = ordering.place_order(session, first, customer, 1, "tap:1")
    assert placed.result.outcome is rsv.ReserveOutcome.RESERVED
    with session_scope() as session:  # the same tap again: the same hold, not refused
        assert ordering.place_order(session, first, customer, 1, "tap:2").result.outcome \
            is rsv.ReserveOutcome.ALREADY_HELD
    with session_scope() as session:
        refused = ordering.place_order(session, second, customer, 1, "tap:3")
    assert refused.result.outcome is rsv.ReserveOutcome.NO_SHOW_LIMIT
    (said,) = notes("reserve:tap:3")
    assert "only one open order" in said.payload["text"]
    # A no-show older than 30 days no longer counts.
    with session_scope() as session:
        session.execute(sa.text("UPDATE orders SET no_show_at = now() - interval '31 days' "
                                "WHERE id = (SELECT min(id) FROM orders WHERE no_show_at IS NOT NULL)"))
    with session_scope() as session:
        assert ordering.place_order(session, second, customer, 1, "tap:4").result.outcome \
            is rsv.ReserveOutcome.RESERVED


def test_the_daily_summary_counts_orders_by_how_they_closed(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = open_offer(business)
    gone, _ = paid_order(offer_id)
    _collected, code = paid_order(offer_id, quantity=2)
    now = datetime.now(UTC)
    with session_scope() as session:
        offers.confirm_pickup(session, offer_id, owner, code, now)
        closing.mark_no_show(session, gone, owner, now)
    with session_scope() as session:
        start, end, _day = maintenance._local_day(now, "Europe/Berlin")
        figures = maintenance.business_day_figures(session, business, start, end)
    assert (figures["collected"], figures["not_collected"], figures["cancelled"], figures["refunded"]) == (1, 1, 0, 0)


def test_a_limited_customer_tapping_two_offers_at_once_gets_one(db, handed_over):
    """The limit is counted and the hold made in one go per customer: two taps at once on two
    offers (real threads, several rounds) never both reserve."""
    business = make_business()
    customer = make_user()
    no_shows_thrice(business, customer, datetime.now(UTC))
    for round_ in range(5):
        offer_ids = [make_offer(business), make_offer(business)]
        start = threading.Barrier(2)
        outcomes: list[rsv.ReserveOutcome] = []

        threads = [threading.Thread(target=_tap_at_once,
                                    args=(start, outcomes, offer_id, customer, f"round:{round_}:{n}"))
                   for n, offer_id in enumerate(offer_ids)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        assert sorted(outcomes) == sorted([rsv.ReserveOutcome.RESERVED, rsv.ReserveOutcome.NO_SHOW_LIMIT]), round_
        with session_scope() as session:  # let the hold go, so the next round starts without one
            (held,) = session.scalars(sa.select(Order.id).where(Order.customer_id == customer,
                                                                Order.status == OrderStatus.HELD))
            assert ordering.cancel_hold(session, held, customer)
    consistent()


def _tap_at_once(start: threading.Barrier, outcomes: list, offer_id: int, customer: int, key: str) -> None:
    start.wait()
    with session_scope() as session:
        outcomes.append(ordering.place_order(session, offer_id, customer, 1, key).result.outcome)


def test_a_tap_after_the_customers_hold_lapsed_reserves_anew_before_the_sweep_runs(db, handed_over):
    """A hold lapses, and the once-a-minute sweep has not released it yet, when its customer taps
    "Reserve and pay" again. That hold is over: it is released as the sweep would and the tap gets a
    new one (and so its Pay message), instead of being handed the lapsed order, which nobody may pay,
    and leaving the customer at "⏳ Reserving…"."""
    business = make_business()
    customer = make_user()
    offer_id = make_offer(business, quantity=3)
    with session_scope() as session:
        first = ordering.place_order(session, offer_id, customer, 2, "tap:1").result
    assert first.outcome is rsv.ReserveOutcome.RESERVED
    with session_scope() as session:
        session.execute(sa.text("UPDATE orders SET hold_expires_at = now() - interval '5 seconds' WHERE id = :id"),
                        {"id": first.order_id})
    with session_scope() as session:
        again = ordering.place_order(session, offer_id, customer, 1, "tap:2").result
    assert again.outcome is rsv.ReserveOutcome.RESERVED and again.order_id != first.order_id
    assert status(first.order_id) is OrderStatus.EXPIRED
    with session_scope() as session:
        held = session.execute(sa.text("SELECT units_held FROM offers WHERE id = :id"), {"id": offer_id}).scalar()
    assert held == 1  # the lapsed hold's two units went back; the new hold took one
    assert ("payments.create_checkout", [again.order_id]) in handed_over
    with session_scope() as session:  # the sweep finds nothing of it left to release
        assert maintenance.release_expired_holds(session, datetime.now(UTC))["holds_released"] == 0
