"""The reservation engine's state machine (test_reservations_stateful), extended with the money's
way to the business: Connect onboarding and its webhooks (duplicated, out of order, after a
disconnection), platform fees, transfers, reversals and fees given back, no-shows and late
pickups. After every step, for the business: charged = fee + transferred − reversed (net of
refunds), and the platform's money balances: what it holds is its fees plus what it owes the
businesses it pays by hand."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule, run_state_machine_as_test

from domain import offers, payments
from domain.payments import closing, connect, ledger
from domain.payments.events import EventOutcome
from models import Business, Order, PayoutsStatus
from tests.integration.test_reservations import OWNER_ID
from tests.integration.test_reservations_stateful import ModelOrder, ReservationMachine, index

ACCOUNT = "acct_machine"
EPOCH = datetime(2026, 12, 1, tzinfo=UTC)
CONNECT_EVENTS = {  # what Stripe's account object says after each
    "completed": {"charges_enabled": True, "payouts_enabled": True, "details_submitted": True},
    "left_unfinished": {"charges_enabled": False, "payouts_enabled": False, "details_submitted": False},
    "restricted": {"charges_enabled": False, "payouts_enabled": False, "details_submitted": True},
}


class MoneyMachine(ReservationMachine):
    def __init__(self) -> None:
        super().__init__()
        with self.db.engine().begin() as c:
            c.execute(sa.text("TRUNCATE stripe_events, notifications, audit_log, handovers RESTART IDENTITY"))
        self.onboarded = False
        self.status, self.charges, self.applied_at = PayoutsStatus.NONE, False, None
        self.clock = 0
        self.sent: list[dict] = []

    # ----------------------------------------------------------------- Connect

    @rule(age=st.integers(0, 1))
    def onboarding_completed(self, age):
        self.connect_webhook("completed", age, 0)

    @rule(kind=st.sampled_from(["completed"] * 3 + ["left_unfinished", "restricted"] * 2 + ["deauthorized"]),
          age=st.integers(-3, 2), replay=st.sampled_from([0, 0, 0, 1, 2]))
    def connect_webhook(self, kind, age, replay):
        """Stripe tells us about the business's account: a new event (sent ``age`` seconds off the
        clock, so some arrive after newer ones), or one delivered before again."""
        if not self.onboarded:  # the owner taps "Set up payouts": the account exists, pending
            with self.db.session_scope() as s:
                s.execute(sa.text("UPDATE businesses SET stripe_account_id = :a, payouts_status = 'pending'"),
                          {"a": ACCOUNT})
            self.onboarded, self.status = True, PayoutsStatus.PENDING
        if replay and self.sent:
            stripe_event = self.sent[replay % len(self.sent)]
            with self.db.session_scope() as s:
                assert payments.handle_event(s, stripe_event) is EventOutcome.DUPLICATE
            event("connect: duplicate")
            return
        self.clock += 1
        created = EPOCH + timedelta(seconds=self.clock + age)
        if kind == "deauthorized":
            obj = {"id": "ca_platform", "object": "application"}
            new, charges = PayoutsStatus.DISCONNECTED, False
        else:
            obj = {"id": ACCOUNT, "object": "account", **CONNECT_EVENTS[kind]}
            new, charges = connect.status_of(obj), obj["charges_enabled"]
        stripe_event = {"id": f"evt_{len(self.sent)}", "type": "account.updated" if kind != "deauthorized"
                        else "account.application.deauthorized", "created": int(created.timestamp()),
                        "account": ACCOUNT, "data": {"object": obj}}
        self.sent.append(stripe_event)
        with self.db.session_scope() as s:
            outcome = payments.handle_event(s, stripe_event)
        applies = self.status is not PayoutsStatus.DISCONNECTED and (
            self.applied_at is None or created >= self.applied_at)
        assert outcome is (EventOutcome.HANDLED if applies else EventOutcome.IGNORED), (kind, age, outcome)
        event(f"connect: {kind} {'applied' if applies else 'ignored'}")
        if applies:
            self.status, self.charges, self.applied_at = new, charges, created

    # ----------------------------------------------------------------- money

    def _pay(self, o: ModelOrder, wrong_amount: bool, taps: int) -> None:
        with self.db.session_scope() as s:  # as its Checkout Session is made: where the money goes
            order = s.get(Order, o.id)
            if order.fee_minor is None:
                route = connect.money_route(s.get(Business, order.offer.business_id), order.amount_minor)
                assert route is not None  # the tests' platform pays by hand when there is no account
                order.fee_minor, order.destination_account = route.fee_minor, route.destination
                event(f"route: {'connect' if route.destination else 'by hand'}")
        super()._pay(o, wrong_amount, taps)
        with self.db.session_scope() as s:
            ledger.record_sale_split(s, s.get(Order, o.id))

    def refund(self, s, o: ModelOrder, amount: int) -> None:
        order = s.get(Order, o.id, populate_existing=True)
        before = s.scalar(sa.text("SELECT status FROM orders WHERE id = :id"), {"id": o.id})
        ledger.record_sale_split(s, order)
        super().refund(s, o, amount)
        ledger.record_refund_split(s, order, fee_back=ledger.fee_goes_back(before))

    @rule(which=index, customer=st.sampled_from((101, 102, 103, 104)))
    def a_customer_reserves_and_pays(self, which, customer):
        offer = self.offers[which % len(self.offers)]
        known = set(self.orders)
        self._reserve(offer, customer, 1, False, 1)
        new = [self.orders[i] for i in set(self.orders) - known]
        held = new or [o for o in self.orders.values() if o.offer is offer and o.customer == customer
                       and o.status == "held"]
        if held:
            self._pay(held[0], False, 1)

    @precondition(lambda self: any(o.status == "paid" for o in self.orders.values()))
    @rule(which=index, twice=st.booleans())
    def business_says_they_did_not_come(self, which, twice):
        o = self.order(which, ("paid",))
        for _ in range(2 if twice else 1):
            expected = closing.NoShowOutcome.CLOSED if o.status == "paid" else closing.NoShowOutcome.NOT_OPEN
            with self.db.session_scope() as s:
                assert closing.mark_no_show(s, o.id, OWNER_ID, datetime.now(UTC)) is expected
            o.status = "not_collected"

    @rule(twice=st.booleans())
    def pickup_windows_end_and_the_sweeper_runs(self, twice):
        paid = sorted(o.id for o in self.orders.values() if o.status == "paid")
        later = datetime.now(UTC) + timedelta(hours=6)  # every offer's window (3 hours) and its grace are over
        for run in range(2 if twice else 1):
            with self.db.session_scope() as s:
                report = closing.close_uncollected_orders(s, later, timedelta(minutes=30))
            assert sorted(report["order_ids"]) == (paid if run == 0 else [])
        for order_id in paid:
            self.orders[order_id].status = "not_collected"
        event(f"sweeper closed: {min(len(paid), 2)}")

    @precondition(lambda self: any(o.status == "not_collected" for o in self.orders.values()))
    @rule(which=index, refund_instead=st.booleans())
    def late_pickup_or_refunded_no_show(self, which, refund_instead):
        o = self.order(which, ("not_collected",))
        with self.db.session_scope() as s:
            if refund_instead:  # the operator refunds no-shows: the platform keeps its fee
                self.refund(s, o, o.amount)
                return
            code, offer_id = s.execute(sa.text("SELECT pickup_code, offer_id FROM orders WHERE id = :id"),
                                       {"id": o.id}).one()
            assert offers.confirm_pickup(s, offer_id, OWNER_ID, code, datetime.now(UTC)).outcome == "collected"
            o.status = "collected"

    # ----------------------------------------------------------------- invariants

    @invariant()
    def connect_state_follows_the_newest_event(self):
        with self.db.session_scope() as s:
            business = s.scalar(sa.select(Business).where(Business.owner_id == OWNER_ID))
            if business is not None:
                assert (business.payouts_status, business.charges_enabled) == (self.status, self.charges)

    @invariant()
    def the_money_adds_up(self):
        with self.db.session_scope() as s:
            assert ledger.split_problems(s) == []
            k = dict(s.execute(sa.text(
                "SELECT l.kind || CASE WHEN o.destination_account IS NULL THEN '/hand' ELSE '/connect' END,"
                " sum(l.amount_minor) FROM ledger_entries l JOIN orders o ON o.id = l.order_id"
                " GROUP BY 1")).all())

        def total(kind: str, route: str = "") -> int:
            return sum(v for key, v in k.items() if key.startswith(kind + "/") and key.endswith(route))

        # For the business, through Connect: charged = fee + transferred − reversed, net of refunds.
        assert total("payment", "connect") - total("refund", "connect") == (
            total("fee", "connect") - total("fee_refund", "connect")
            + total("transfer", "connect") - total("reversal", "connect"))
        # The platform holds its fees, and what it owes the businesses it pays by hand.
        held = total("payment") - total("refund") - total("transfer") + total("reversal")
        owed_by_hand = (total("payment", "hand") - total("refund", "hand")
                        - total("fee", "hand") + total("fee_refund", "hand"))
        assert held == total("fee") - total("fee_refund") + owed_by_hand


def test_money_state_machine(db):
    MoneyMachine.db = db
    run_state_machine_as_test(
        MoneyMachine,
        settings=settings(max_examples=30, stateful_step_count=30, deadline=None, database=None,
                          suppress_health_check=[HealthCheck.too_slow]),
    )
