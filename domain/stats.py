"""Figures for the admin menu: live offers, today's orders and money, queue lengths."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime, time

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core.queues import QUEUES
from models import Business, BusinessStatus, LedgerEntry, LedgerKind, Offer, OfferStatus, Order, OrderStatus


@dataclass
class Stats:
    active_offers: int
    orders_today: int  # orders created today (UTC), whatever became of them
    paid_today: int  # orders paid today (UTC)
    revenue_today: dict[str, int]  # currency -> payments minus refunds today, minor units
    pending_businesses: int
    queues: dict[str, int | None] = field(default_factory=dict)  # None: Redis unreachable


def day_start(now: datetime) -> datetime:
    return datetime.combine(now.astimezone(UTC).date(), time(0), tzinfo=UTC)


def revenue_between(session: Session, start: datetime, end: datetime | None = None) -> dict[str, int]:
    """Money in minus money out, by currency, from the ledger."""
    query = (
        select(LedgerEntry.currency, LedgerEntry.kind, func.sum(LedgerEntry.amount_minor))
        .where(LedgerEntry.kind.in_([LedgerKind.PAYMENT, LedgerKind.REFUND]), LedgerEntry.created_at >= start)
        .group_by(LedgerEntry.currency, LedgerEntry.kind)
    )
    if end is not None:
        query = query.where(LedgerEntry.created_at < end)
    revenue: dict[str, int] = defaultdict(int)
    for currency, kind, amount in session.execute(query):
        revenue[currency or "?"] += int(amount) if kind == LedgerKind.PAYMENT else -int(amount)
    return dict(sorted(revenue.items()))


def queue_lengths(redis_client, queues: tuple[str, ...] | None = None) -> dict[str, int | None]:
    """LLEN of each Celery queue in the broker (messages waiting, not those being worked on)."""
    if queues is None:
        queues = QUEUES
    try:
        with redis_client.pipeline(transaction=False) as pipe:
            for name in queues:
                pipe.llen(name)
            return dict(zip(queues, (int(n) for n in pipe.execute()), strict=True))
    except Exception:  # noqa: BLE001 - the menu still shows the database figures
        return dict.fromkeys(queues)


def collect(session: Session, now: datetime, redis_client=None) -> Stats:
    start = day_start(now)
    active = session.scalar(
        select(func.count()).select_from(Offer).where(Offer.status == OfferStatus.ACTIVE, Offer.pickup_end > now)
    )
    orders_today = session.scalar(select(func.count()).select_from(Order).where(Order.created_at >= start))
    paid_today = session.scalar(
        select(func.count()).select_from(Order).where(Order.paid_at >= start, Order.status != OrderStatus.HELD)
    )
    pending = session.scalar(
        select(func.count()).select_from(Business).where(Business.status == BusinessStatus.PENDING)
    )
    return Stats(
        active_offers=active or 0,
        orders_today=orders_today or 0,
        paid_today=paid_today or 0,
        revenue_today=revenue_between(session, start),
        pending_businesses=pending or 0,
        queues=queue_lengths(redis_client) if redis_client is not None else {},
    )
