"""A hypothesis state machine drives the reservation engine against the real test database and a
model of what every call must answer; after every step the counters, the ledger, the orders and
the money must agree with each other and with the model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from domain import reservations as rsv
from domain.reservations import CancelOutcome, RefundOutcome, RefundReason, ReleaseOutcome, ReserveOutcome, SaleOutcome
from tests.integration.test_reservations import add_customers, expire_now, make_offer

CAP = 3
CUSTOMERS = (101, 102, 103, 104)
PRICES = (250, 400)


@dataclass
class ModelOffer:
    id: int
    quantity: int
    price: int
    held: int = 0
    sold: int = 0
    status: str = "active"

    @property
    def left(self) -> int:
        return self.quantity - self.held - self.sold

    def give_back(self, units: int, *, held: bool) -> None:
        if held:
            self.held -= units
        else:
            self.sold -= units
        if self.status == "sold_out":
            self.status = "active"


@dataclass
class ModelOrder:
    id: int
    offer: ModelOffer
    customer: int
    quantity: int
    status: str = "held"
    paid: bool = False  # has a payment row
    refunded: bool = False
    restocked: bool = False

    @property
    def amount(self) -> int:
        return self.quantity * self.offer.price


index = st.integers(min_value=0, max_value=10_000)


class ReservationMachine(RuleBasedStateMachine):
    db = None  # the core.db module, set by the test

    def __init__(self) -> None:
        super().__init__()
        with self.db.engine().begin() as c:
            c.execute(sa.text("TRUNCATE ledger_entries, orders, offers, businesses, users RESTART IDENTITY CASCADE"))
        self.offers: list[ModelOffer] = []
        self.orders: dict[int, ModelOrder] = {}

    @initialize(quantities=st.lists(st.integers(1, 8), min_size=2, max_size=2))
    def make_offers(self, quantities):
        with self.db.session_scope() as s:
            add_customers(s, CUSTOMERS)
            for quantity, price in zip(quantities, PRICES, strict=True):
                self.offers.append(ModelOffer(make_offer(s, quantity, price=price), quantity, price))

    # ----------------------------------------------------------------- helpers

    def order(self, i: int, prefer: tuple[str, ...] = ()) -> ModelOrder:
        """An order; one in one of the ``prefer`` statuses if there is one (so that the rare paths,
        such as paying for a lapsed hold, come up often)."""
        candidates = [o for o in self.orders.values() if o.status in prefer] or list(self.orders.values())
        return candidates[i % len(candidates)]

    def expected_reserve(self, offer: ModelOffer, customer: int, quantity: int) -> tuple[ReserveOutcome, int | None]:
        if quantity < 1:
            return ReserveOutcome.INVALID_QUANTITY, None
        if quantity > CAP:
            return ReserveOutcome.OVER_LIMIT, None
        for o in self.orders.values():
            if o.offer is offer and o.customer == customer and o.status == "held":
                return ReserveOutcome.ALREADY_HELD, o.id
        if offer.status == "sold_out" or (offer.status == "active" and offer.left == 0):
            return ReserveOutcome.SOLD_OUT, None
        if offer.status != "active":
            return ReserveOutcome.NOT_AVAILABLE, None
        if offer.left < quantity:
            return ReserveOutcome.NOT_ENOUGH_LEFT, None
        return ReserveOutcome.RESERVED, None

    def refund(self, s, o: ModelOrder, amount: int) -> None:
        assert rsv.record_refund(s, o.id, amount, "EUR", f"re_{o.id}").outcome is RefundOutcome.RECORDED
        assert rsv.record_refund(s, o.id, amount, "EUR", f"re_{o.id}").outcome is RefundOutcome.ALREADY_DONE
        o.refunded, o.status = True, "refunded"

    # ----------------------------------------------------------------- rules

    @rule(which=index, customer=st.sampled_from(CUSTOMERS), locking=st.booleans(), taps=st.sampled_from([1, 1, 2]),
          quantity=st.sampled_from([1, 1, 1, 2, 2, 3, 0, CAP + 1]))
    def reserve(self, which, customer, quantity, locking, taps):
        self._reserve(self.offers[which % len(self.offers)], customer, quantity, locking, taps)

    def _reserve(self, offer: ModelOffer, customer: int, quantity: int, locking: bool, taps: int) -> None:
        for tap in range(taps):
            expected, existing = self.expected_reserve(offer, customer, quantity)
            if locking:
                with self.db.session_scope() as s:
                    result = rsv.reserve_locking(s, offer.id, customer, quantity, per_order_cap=CAP)
            elif tap % 2:  # the bare statement, in autocommit mode
                with self.db.engine().connect().execution_options(isolation_level="AUTOCOMMIT") as c:
                    result = rsv.reserve(c, offer.id, customer, quantity, per_order_cap=CAP)
            else:
                with self.db.session_scope() as s:
                    result = rsv.reserve(s, offer.id, customer, quantity, per_order_cap=CAP)
            assert result.outcome is expected, (result, expected)
            event(f"reserve: {expected.value}")
            if expected is ReserveOutcome.ALREADY_HELD:
                assert result.order_id == existing
            if expected is ReserveOutcome.RESERVED:
                self.orders[result.order_id] = ModelOrder(result.order_id, offer, customer, quantity)
                offer.held += quantity
                if offer.left == 0:
                    offer.status = "sold_out"
                assert result.units_left == offer.left
            if expected is ReserveOutcome.NOT_ENOUGH_LEFT:
                assert result.units_left == offer.left

    @rule(which=index, customer=st.sampled_from(CUSTOMERS), locking=st.booleans())
    def reserve_what_is_left(self, which, customer, locking):
        offer = self.offers[which % len(self.offers)]
        self._reserve(offer, customer, min(max(offer.left, 1), CAP), locking, 1)

    @precondition(lambda self: any(o.status in ("expired", "cancelled") and not o.paid for o in self.orders.values()))
    @rule(which=index, customer=st.sampled_from(CUSTOMERS), locking=st.booleans())
    def others_take_the_rest_then_a_late_payment_arrives(self, which, customer, locking):
        lapsed = [o for o in self.orders.values() if o.status in ("expired", "cancelled") and not o.paid]
        o = lapsed[which % len(lapsed)]
        if o.offer.left:
            self._reserve(o.offer, customer, min(o.offer.left, CAP), locking, 1)
        self._pay(o, False, 1)

    @precondition(lambda self: self.orders)
    @rule(which=index, reason=st.sampled_from(rsv.ReleaseReason), taps=st.integers(1, 2))
    def release(self, which, reason, taps):
        o = self.order(which, ("held",))
        for _ in range(taps):
            with self.db.session_scope() as s:
                result = rsv.release(s, o.id, reason)
            if o.status == "held":
                assert (result.outcome, result.units) == (ReleaseOutcome.RELEASED, o.quantity)
                o.status = reason.value
                o.offer.give_back(o.quantity, held=True)
            else:
                assert (result.outcome, result.order_status) == (ReleaseOutcome.NOT_HELD, o.status)

    @precondition(lambda self: any(o.status == "held" for o in self.orders.values()))
    @rule(data=st.data(), batch=st.integers(1, 4))
    def time_passes_and_the_sweeper_runs(self, data, batch):
        held = [o for o in self.orders.values() if o.status == "held"]
        lapsed = data.draw(st.lists(st.sampled_from(held), unique_by=lambda o: o.id))
        with self.db.session_scope() as s:
            if lapsed:
                expire_now(s, *(o.id for o in lapsed))
        swept = []
        while True:
            with self.db.session_scope() as s:
                n = rsv.release_expired_holds(s, datetime.now(UTC), batch=batch)
            swept.append(n)
            if n == 0:
                break
        assert sum(swept) == len(lapsed)
        event(f"swept: {min(len(lapsed), 3)}{'+' if len(lapsed) >= 3 else ''}")
        for o in lapsed:
            o.status = "expired"
            o.offer.give_back(o.quantity, held=True)

    @precondition(lambda self: self.orders)
    @rule(which=index, prefer=st.sampled_from([("held",), ("expired", "cancelled"), ("expired", "cancelled"), ()]),
          wrong_amount=st.sampled_from([False] * 5 + [True]), taps=st.sampled_from([1, 1, 2]))
    def payment_arrives(self, which, prefer, wrong_amount, taps):
        self._pay(self.order(which, prefer), wrong_amount, taps)

    def _pay(self, o: ModelOrder, wrong_amount: bool, taps: int) -> None:
        amount = o.amount + (1 if wrong_amount else 0)
        for _ in range(taps):
            with self.db.session_scope() as s:
                result = rsv.confirm_sale(s, o.id, amount, "eur", f"pi_{o.id}")
                event(f"sale: {result.outcome.value} {result.reason.value if result.reason else ''}")
                if o.paid:
                    assert result.outcome is SaleOutcome.ALREADY_DONE
                    continue
                o.paid = True
                offer = o.offer
                if wrong_amount:
                    assert (result.outcome, result.reason) == (SaleOutcome.NEEDS_REFUND, RefundReason.AMOUNT_MISMATCH)
                    if o.status == "held":
                        o.status = "cancelled"
                        offer.give_back(o.quantity, held=True)
                    self.refund(s, o, amount)
                elif o.status == "held":
                    assert result.outcome is SaleOutcome.PAID and result.pickup_code
                    o.status = "paid"
                    offer.held -= o.quantity
                    offer.sold += o.quantity
                elif offer.status == "active" and offer.left >= o.quantity:
                    assert result.outcome is SaleOutcome.PAID_LATE and result.pickup_code
                    o.status = "paid"
                    offer.sold += o.quantity
                    if offer.left == 0:
                        offer.status = "sold_out"
                else:
                    reason = RefundReason.NO_STOCK_LEFT if offer.status in ("active", "sold_out") \
                        else RefundReason.OFFER_UNAVAILABLE
                    assert (result.outcome, result.reason) == (SaleOutcome.NEEDS_REFUND, reason)
                    self.refund(s, o, amount)

    @precondition(lambda self: self.orders)
    @rule(which=index, taps=st.integers(1, 2))
    def cancel_paid_and_refund(self, which, taps):
        o = self.order(which, ("paid",))
        for _ in range(taps):
            with self.db.session_scope() as s:
                result = rsv.cancel_paid(s, o.id)
                if o.status == "paid":
                    assert (result.outcome, result.units) == (CancelOutcome.CANCELLED, o.quantity)
                    o.status, o.restocked = "cancelled", True
                    o.offer.give_back(o.quantity, held=False)
                    self.refund(s, o, o.amount)
                elif o.restocked:
                    assert result.outcome is CancelOutcome.ALREADY_DONE
                else:
                    assert result.outcome is CancelOutcome.NOT_CANCELLABLE

    @precondition(lambda self: self.orders)
    @rule(which=index)
    def pickup_then_goodwill_refund(self, which):
        o = self.order(which, ("paid", "collected"))
        with self.db.session_scope() as s:
            if o.status == "paid":  # the business confirms the pickup code
                s.execute(sa.text("UPDATE orders SET status = 'collected' WHERE id = :id"), {"id": o.id})
                o.status = "collected"
            elif o.status == "collected":  # refunded later: no units come back, the food is gone
                self.refund(s, o, o.amount)
            elif not o.paid:
                assert rsv.record_refund(s, o.id, 100, "EUR", "re").outcome is RefundOutcome.NO_PAYMENT

    @rule(which=index)
    def business_pauses_or_resumes(self, which):
        offer = self.offers[which % len(self.offers)]
        new = "paused" if offer.status in ("active", "sold_out") else ("sold_out" if offer.left == 0 else "active")
        with self.db.session_scope() as s:
            s.execute(sa.text("UPDATE offers SET status = :s WHERE id = :id"), {"s": new, "id": offer.id})
        offer.status = new

    # ----------------------------------------------------------------- invariants

    @invariant()
    def books_agree(self):
        with self.db.session_scope() as s:
            assert rsv.ledger_problems(s) == []
            for offer in self.offers:
                row = s.execute(sa.text("SELECT units_held, units_sold, status, quantity FROM offers WHERE id = :id"),
                                {"id": offer.id}).one()
                assert row.units_held >= 0 and row.units_sold >= 0
                assert row.units_held + row.units_sold <= row.quantity
                assert (row.units_held, row.units_sold, row.status) == (offer.held, offer.sold, offer.status)
                assert rsv.stock_from_ledger(s, offer.id) == (offer.held, offer.sold)
            statuses = dict(s.execute(sa.text("SELECT id, status FROM orders")).all())
            assert statuses == {o.id: o.status for o in self.orders.values()}
            money_in, money_out, rows, distinct_rows = s.execute(sa.text(
                "SELECT coalesce(sum(amount_minor) FILTER (WHERE kind = 'payment'), 0),"
                " coalesce(sum(amount_minor) FILTER (WHERE kind = 'refund'), 0),"
                " count(*), count(DISTINCT (order_id, kind)) FROM ledger_entries")).one()
            assert rows == distinct_rows
            owed = s.execute(sa.text("SELECT coalesce(sum(amount_minor), 0) FROM orders"
                                     " WHERE status IN ('paid', 'collected', 'not_collected')")).scalar()
            assert money_in - money_out == owed


def test_reservation_engine_state_machine(db):
    ReservationMachine.db = db
    run_state_machine_as_test(
        ReservationMachine,
        settings=settings(max_examples=50, stateful_step_count=30, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
