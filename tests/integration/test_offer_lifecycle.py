"""The offer lifecycle on real Postgres: ownership, state changes, quantity edits racing with
reservations, cancellation with held and paid orders, pickups and the CSV export."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest
from sqlalchemy import select

from core.db import session_scope
from domain import offers, reservations
from domain.offers import InvalidInput, NotOwner, WrongState
from models import Business, Offer, OfferStatus, Order, OrderStatus, PhotoStatus
from tests.factories import make_business, make_offer, make_user
from tests.integration.test_reservations import wait_until_blocked


def owner_of(business_id: int) -> int:
    with session_scope() as session:
        return session.get(Business, business_id).owner_id


def test_only_the_owner_reaches_an_offer(db):
    mine, theirs = make_business(name="Mine"), make_business(name="Theirs")
    offer_id = make_offer(mine)
    intruder = owner_of(theirs)
    with session_scope() as session:
        for action in (offers.pause, offers.resume, offers.cancel):
            with pytest.raises(NotOwner):
                action(session, offer_id, intruder)
        with pytest.raises(NotOwner):
            offers.edit_quantity(session, offer_id, intruder, 3)
        with pytest.raises(NotOwner):
            offers.confirm_pickup(session, offer_id, intruder, "ABC234", datetime.now(UTC))
        with pytest.raises(NotOwner):
            offers.owned_offer(session, 999_999, intruder)
    with session_scope() as session:
        assert session.get(Offer, offer_id).status == OfferStatus.ACTIVE


def test_pause_resume_and_states_that_refuse(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business)
    with session_scope() as session:
        version = session.get(Offer, offer_id).version
        assert offers.pause(session, offer_id, owner).status == OfferStatus.PAUSED
        with pytest.raises(WrongState):
            offers.pause(session, offer_id, owner)
        offer = offers.resume(session, offer_id, owner)
        assert offer.status == OfferStatus.ACTIVE and offer.version == version + 2
        with pytest.raises(InvalidInput):
            offers.edit_price(session, offer_id, owner, 700)  # not below the original price
        assert offers.edit_price(session, offer_id, owner, 300).price_minor == 300


def test_publish_tapped_while_the_photo_task_commits_the_card_waits_for_it(db):
    # The photo task sends the preview (with its Publish button) before it commits the card, and
    # holds the offer's row until then: a quick tap on Publish must wait, not be told "not ready".
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business, status=OfferStatus.DRAFT, photo_status=PhotoStatus.PROCESSING,
                          photo_source_file_id="photo-1")

    def tap_publish() -> OfferStatus:
        with session_scope() as session:
            return offers.publish(session, offer_id, owner, datetime.now(UTC)).status

    with ThreadPoolExecutor(1) as pool:
        with session_scope() as photo_task:
            offer = photo_task.scalars(select(Offer).where(Offer.id == offer_id).with_for_update()).one()
            tapped = pool.submit(tap_publish)
            wait_until_blocked(db.engine())
            offer.photo_card_file_id, offer.photo_status = "card-1", PhotoStatus.READY
        assert tapped.result(timeout=10) == OfferStatus.ACTIVE


def test_quantity_edits_never_go_below_what_is_taken_even_racing_reservations(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business, quantity=20)
    customers = [make_user() for _ in range(12)]
    start = threading.Barrier(len(customers) + 1)
    errors: list[BaseException] = []

    def reserve(customer: int) -> None:
        start.wait()
        try:
            with session_scope() as session:
                reservations.reserve(session, offer_id, customer, 1)
        except BaseException as error:  # noqa: BLE001
            errors.append(error)

    def shrink() -> None:
        start.wait()
        for quantity in (15, 12, 10, 8):
            try:
                with session_scope() as session:
                    offers.edit_quantity(session, offer_id, owner, quantity)
            except InvalidInput as refused:
                assert refused.code == "quantity_below_taken"

    threads = [threading.Thread(target=reserve, args=(c,)) for c in customers]
    threads.append(threading.Thread(target=shrink))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    with session_scope() as session:
        offer = session.get(Offer, offer_id)
        assert offer.units_held + offer.units_sold <= offer.quantity
        assert offer.status == (OfferStatus.SOLD_OUT if offer.units_left == 0 else OfferStatus.ACTIVE)
        reservations.assert_ledger_consistent(session, offer_id)


def test_cancel_releases_holds_restocks_paid_orders_and_keeps_the_ledger(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business, quantity=5)
    holder, payer = make_user(), make_user()
    with session_scope() as session:
        held = reservations.reserve(session, offer_id, holder, 2)
        bought = reservations.reserve(session, offer_id, payer, 1)
        reservations.confirm_sale(session, bought.order_id, 350, "EUR", "pi_lifecycle")
    with session_scope() as session:
        result = offers.cancel(session, offer_id, owner)
        assert (result.released_order_ids, result.paid_order_ids) == ([held.order_id], [bought.order_id])
    with session_scope() as session:
        offer = session.get(Offer, offer_id)
        assert (offer.status, offer.units_held, offer.units_sold) == (OfferStatus.CANCELLED, 0, 0)
        assert session.get(Order, held.order_id).status == OrderStatus.CANCELLED
        assert session.get(Order, bought.order_id).status == OrderStatus.CANCELLED
        assert reservations.orders_awaiting_refund(session) == [bought.order_id]
        reservations.assert_ledger_consistent(session, offer_id, money=False)
        with pytest.raises(WrongState):
            offers.cancel(session, offer_id, owner)
        # A cancelled offer takes no orders (the reservation engine refuses).
        assert not reservations.reserve(session, offer_id, make_user(), 1).ok


def test_pickup_codes_and_the_csv_export(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business, "=cmd|' /C calc'!A0")
    customer = make_user(name="@evil")
    with session_scope() as session:
        order = reservations.reserve(session, offer_id, customer, 2)
        code = reservations.confirm_sale(session, order.order_id, 700, "EUR", "pi_csv").pickup_code
    now = datetime.now(UTC)
    with session_scope() as session:
        assert offers.confirm_pickup(session, offer_id, owner, "nope", now).outcome == "not_found"
        assert offers.confirm_pickup(session, offer_id, owner, code.lower(), now).outcome == "collected"
        assert offers.confirm_pickup(session, offer_id, owner, code, now).outcome == "already_collected"
    with session_scope() as session:
        content, rows = offers.export_orders_csv(session, owner)
    text = content.decode("utf-8-sig")
    assert rows == 1
    assert "'=cmd" in text and "'@evil" in text  # no spreadsheet formulas
    assert ",collected,2,3.50,7.00,EUR," in text
