"""A business's statement against real Postgres: it is the sum of its own ledger rows (and the
payouts Stripe reported), in its own week and month; another business's rows and a forged owner
show nothing; the CSV lists every row; the chart is a real image."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from PIL import Image

from chat.business.earnings import earnings_chart, earnings_text
from core.db import session_scope
from core.i18n import Translator
from domain import reservations as rsv
from domain.payments import connect, earnings, ledger
from models import Business, Order
from tests.factories import make_business, make_offer, make_user


def sell(offer_id: int, quantity: int, *, fee: int, destination: str | None = None, refund: bool = False,
         fee_back: bool = True, at: datetime | None = None) -> int:
    """A paid order of the offer (price 350 a unit) with its fee and transfer rows; refunded if asked."""
    with session_scope() as session:
        order_id = rsv.reserve(session, offer_id, make_user(), quantity).order_id
        session.execute(sa.text("UPDATE orders SET fee_minor = :f, destination_account = :d WHERE id = :id"),
                        {"f": fee, "d": destination, "id": order_id})
        assert rsv.confirm_sale(session, order_id, 350 * quantity, "EUR", f"pi_{order_id}").paid
        order = session.get(Order, order_id)
        ledger.record_sale_split(session, order)
        if refund:
            rsv.record_refund(session, order_id, 350 * quantity, "EUR", f"re_{order_id}")
            ledger.record_refund_split(session, order, fee_back=fee_back)
        if at is not None:
            session.execute(sa.text("UPDATE ledger_entries SET created_at = :at WHERE order_id = :id"),
                            {"at": at, "id": order_id})
    return order_id


def owner_of(business_id: int) -> int:
    with session_scope() as session:
        return session.get(Business, business_id).owner_id


def test_the_statement_is_the_sum_of_the_business_ledger_rows(db):
    business = make_business()
    owner = owner_of(business)
    offer_id = make_offer(business, quantity=50, starts_in=timedelta(hours=1))
    other_offer = make_offer(make_business(name="Other"), quantity=50)
    now = datetime.now(UTC)
    sell(offer_id, 2, fee=70, destination="acct_x")  # 700: 70 fee, 630 transferred
    sell(offer_id, 1, fee=35, destination="acct_x", refund=True)  # all back, fee too
    sell(offer_id, 1, fee=35, destination="acct_x", refund=True, fee_back=False)  # a refunded no-show
    sell(other_offer, 3, fee=105)  # someone else's
    sell(offer_id, 4, fee=140, at=now - timedelta(days=40))  # long ago
    with session_scope() as session:
        connect.record_payout(session, business, {"id": "po_1", "amount": 500, "currency": "eur",
                                                  "status": "paid", "arrival_date": int(now.timestamp())})
        statement = earnings.statement(session, owner, now)
        assert earnings.statement(session, make_user(), now) is None  # a forged owner sees nothing
        assert ledger.split_problems(session) == []
        sums = dict(session.execute(sa.text(  # the same rows, summed by SQL on their own
            "SELECT l.kind, sum(l.amount_minor) FROM ledger_entries l JOIN offers o ON o.id = l.offer_id "
            "WHERE o.business_id = :b AND l.created_at >= :since GROUP BY l.kind"),
            {"b": business, "since": now - timedelta(days=7)}).all())
    assert statement is not None
    for figures in (statement.week, statement.month):  # everything above happened today, but the old sale
        assert figures.gross == sums["payment"] == 1400
        assert figures.refunds == sums["refund"] == 700
        assert figures.fee == sums["fee"] - sums["fee_refund"] == 105
        assert figures.net == 1400 - 700 - 105
        assert figures.paid_out == 500
    assert sum(day.gross for day in statement.days) == statement.month.gross

    text = earnings_text(Translator("en"), statement)
    assert "€14.00" in text and "€5.95" in text and "€5.00" in text
    image = Image.open(io.BytesIO(earnings_chart(Translator("de"), statement)))
    assert image.size == (960, 540) and image.format == "PNG"

    with session_scope() as session:
        content, count = earnings.statement_csv(session, owner)
        assert earnings.statement_csv(session, make_user()) is None
    rows = list(csv.DictReader(io.StringIO(content.decode("utf-8-sig"))))
    # 4 payments, 4 fees, 3 transfers (not the old one), 2 refunds, 1 fee back, 2 reversals, 1 payout
    assert count == len(rows) == 4 + 4 + 3 + 2 + 1 + 2 + 1
    assert {row["kind"] for row in rows} == {"payment", "fee", "transfer", "refund", "fee_refund", "reversal",
                                             "payout"}
    assert sum(float(row["amount"]) for row in rows if row["kind"] == "payment") == 28.0
