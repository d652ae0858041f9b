"""A business's statement: what it sold, what the platform kept, what went back, what it is owed
and what Stripe paid out; this week and this month, day by day, and every row as CSV.

Every figure is a sum of the business's own ledger rows (``domain.payments.ledger``) and of the
payouts Stripe reported (``payouts``), in the business's currency and its own time zone, so the
statement is exactly what the ledger says and the reconciliation (``domain.payments.reconcile``)
checks the ledger against Stripe. A business is found by its owner: any other id shows nothing.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from domain.offers import csv_safe, decimal_text
from models import Business, LedgerEntry, LedgerKind, Offer, Payout

MONEY_KINDS = (LedgerKind.PAYMENT, LedgerKind.REFUND, LedgerKind.FEE, LedgerKind.FEE_REFUND,
               LedgerKind.TRANSFER, LedgerKind.REVERSAL)


@dataclass(frozen=True)
class Figures:
    """One period, in minor units of ``currency``."""

    gross: int  # what customers paid
    refunds: int  # what went back to them
    fee: int  # what the platform kept (its fee, less fees given back)
    paid_out: int  # what Stripe paid to the business's bank in the period

    @property
    def net(self) -> int:
        """What the business earned: sales, less refunds, less the platform's fee."""
        return self.gross - self.refunds - self.fee


@dataclass(frozen=True)
class Day:
    day: date
    gross: int
    net: int


@dataclass(frozen=True)
class Statement:
    business: Business
    currency: str
    week: Figures
    month: Figures
    days: tuple[Day, ...]  # this month, day by day (up to today)
    connected: bool  # paid through Stripe Connect; otherwise the platform pays by hand
    week_start: date
    month_start: date


def _zone(business: Business) -> ZoneInfo:
    try:
        return ZoneInfo(business.timezone)
    except (KeyError, ValueError):
        return ZoneInfo("UTC")


def _start_of(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone).astimezone(UTC)


def _rows_query(business_id: int, currency: str):
    return (select(LedgerEntry.kind, LedgerEntry.amount_minor, LedgerEntry.created_at)
            .join(Offer, Offer.id == LedgerEntry.offer_id)
            .where(Offer.business_id == business_id, LedgerEntry.kind.in_(MONEY_KINDS),
                   func.upper(LedgerEntry.currency) == currency))


def _figures(rows: list, paid_out: int) -> Figures:
    sums = dict.fromkeys(MONEY_KINDS, 0)
    for kind, amount, _at in rows:
        sums[kind] += amount
    return Figures(gross=sums[LedgerKind.PAYMENT], refunds=sums[LedgerKind.REFUND],
                   fee=sums[LedgerKind.FEE] - sums[LedgerKind.FEE_REFUND], paid_out=paid_out)


def _paid_out(session: Session, business_id: int, currency: str, start: datetime, end: datetime) -> int:
    return session.scalar(
        select(func.coalesce(func.sum(Payout.amount_minor), 0))
        .where(Payout.business_id == business_id, Payout.currency == currency, Payout.status == "paid",
               Payout.arrival_at >= start, Payout.arrival_at < end)
    ) or 0


def statement(session: Session, owner_id: int, now: datetime) -> Statement | None:
    """The statement of ``owner_id``'s business, as of ``now`` (None: no business of theirs)."""
    business = session.scalar(select(Business).where(Business.owner_id == owner_id))
    if business is None:
        return None
    zone, currency = _zone(business), business.currency.upper()
    today = now.astimezone(zone).date()
    week_start, month_start = today - timedelta(days=today.weekday()), today.replace(day=1)
    since = min(week_start, month_start)
    end = _start_of(today + timedelta(days=1), zone)
    rows = session.execute(_rows_query(business.id, currency)
                           .where(LedgerEntry.created_at >= _start_of(since, zone), LedgerEntry.created_at < end)
                           ).all()

    def within(start: date) -> list:
        border = _start_of(start, zone)
        return [row for row in rows if row[2] >= border]

    days = []
    for offset in range((today - month_start).days + 1):
        day = month_start + timedelta(days=offset)
        lower, upper = _start_of(day, zone), _start_of(day + timedelta(days=1), zone)
        figures = _figures([row for row in rows if lower <= row[2] < upper], 0)
        days.append(Day(day, figures.gross, figures.net))
    return Statement(
        business=business, currency=currency,
        week=_figures(within(week_start), _paid_out(session, business.id, currency, _start_of(week_start, zone), end)),
        month=_figures(within(month_start),
                       _paid_out(session, business.id, currency, _start_of(month_start, zone), end)),
        days=tuple(days), connected=bool(business.charges_enabled and business.stripe_account_id),
        week_start=week_start, month_start=month_start,
    )


CSV_COLUMNS = ("date_utc", "kind", "order_id", "offer_title", "amount", "currency", "reference")
CSV_MAX_ROWS = 50_000


def statement_csv(session: Session, owner_id: int) -> tuple[bytes, int] | None:
    """Every money row of the business (sales, fees, transfers, refunds, fees back, reversals) and
    every payout, oldest first, as CSV (UTF-8 with BOM); (bytes, rows), or None: no business."""
    business = session.scalar(select(Business).where(Business.owner_id == owner_id))
    if business is None:
        return None
    rows = session.execute(
        select(LedgerEntry.created_at, LedgerEntry.kind, LedgerEntry.order_id, Offer.title, LedgerEntry.amount_minor,
               LedgerEntry.currency, LedgerEntry.reference)
        .join(Offer, Offer.id == LedgerEntry.offer_id)
        .where(Offer.business_id == business.id, LedgerEntry.kind.in_(MONEY_KINDS))
        .order_by(LedgerEntry.created_at, LedgerEntry.id).limit(CSV_MAX_ROWS)
    ).all()
    payouts = session.execute(
        select(Payout.arrival_at, Payout.id, Payout.amount_minor, Payout.currency)
        .where(Payout.business_id == business.id).order_by(Payout.arrival_at)
    ).all()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    lines: list[tuple[datetime, str, str, str, str, str, str]] = [
        (at, kind.value, str(order_id), csv_safe(title), decimal_text(amount, currency or ""), currency or "",
         reference or "")
        for at, kind, order_id, title, amount, currency, reference in rows]
    lines += [(at, "payout", "", "", decimal_text(amount, currency), currency, payout_id)
              for at, payout_id, amount, currency in payouts]
    for at, *rest in sorted(lines, key=lambda line: line[0]):
        writer.writerow([at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"), *rest])
    return ("\ufeff" + buffer.getvalue()).encode(), len(lines)
