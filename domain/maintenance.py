"""The periodic jobs' business rules: expiring offers, sweeping lapsed holds, pickup reminders,
the businesses' daily summary, and re-sending stuck notifications.

Each function runs inside the caller's transaction and may run any number of times, also
concurrently with itself: rows are claimed with ``FOR UPDATE SKIP LOCKED`` or by a guarded
``UPDATE``, and every message carries an idempotency key, so a second run finds nothing left to
do. Each returns a JSON-friendly report of what it did. Follow-up tasks are enqueued after commit.

What people are told is said with notices (what happened, with the recipient's language), recorded
in the outbox in the same transaction; `chat.messages.reminders` says how each one reads.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.orm import Session

from core import outbox
from core.db import rows_affected
from domain import reservations
from domain.payments import PayButtonGone, close_checkouts_after_commit, spend_pay_buttons
from models import (
    AuditEntry,
    Business,
    BusinessStatus,
    LedgerEntry,
    LedgerKind,
    Notification,
    NotificationStatus,
    Offer,
    OfferStatus,
    Order,
    OrderStatus,
    User,
)

REMINDER_LEAD = timedelta(minutes=60)
STUCK_NOTIFICATION_AGE = timedelta(minutes=10)
SUMMARY_LOCAL_HOUR = 20  # a business gets its summary at (or after) 20:00 its own time
AUDIT_KEPT_FOR_BEAT = timedelta(days=30)  # routine beat entries; people's actions are kept
BATCH = 500
RETRY_NOTIFICATIONS_LOCK = 0x5E7A110001  # advisory lock key of retry_failed_notifications


# --------------------------------------------------------------------------- what people are told


@dataclass(frozen=True)
class OfferExpired:
    """A customer's unpaid hold was released because the offer's pickup time is over."""

    language: str
    title: str


@dataclass(frozen=True)
class HoldExpired:
    """A customer's hold lapsed before it was paid; the units went back on sale."""

    language: str
    title: str


@dataclass(frozen=True)
class PickupReminder:
    """A paid order's pickup starts soon."""

    language: str
    title: str
    business_name: str
    address: str
    pickup_start: datetime
    pickup_end: datetime
    timezone: str  # the business's, for showing the window
    pickup_code: str | None
    now: datetime


@dataclass(frozen=True)
class DailySummary:
    """A business's day in figures (its own local day)."""

    language: str
    business_name: str
    day: str  # the local date, ISO
    offers: int
    orders: int
    units: int
    collected: int
    revenue: tuple[tuple[str, int], ...]  # (currency, net minor units), by currency
    # Paid orders that closed today (in the business's day) otherwise: nobody came, cancelled, refunded.
    not_collected: int = 0
    cancelled: int = 0
    refunded: int = 0


def _language(session: Session, user_id: int | None) -> str:
    user = session.get(User, user_id) if user_id is not None else None
    return user.language if user else "en"


# --------------------------------------------------------------------------- offers


def expire_offers(session: Session, now: datetime) -> dict[str, Any]:
    """Offers whose pickup window ended become ``expired``; unpaid holds on them are released
    and their customers told."""
    # No locks here: `release` takes them in the engine's order (offer, then order) and is
    # idempotent, so a concurrent run or a payment simply finds the order no longer held.
    held = session.execute(
        select(Order.id, Order.customer_id, Order.checkout_session_id, Offer.title)
        .join(Offer, Offer.id == Order.offer_id)
        .where(Order.status == OrderStatus.HELD, Offer.pickup_end <= now)
        .order_by(Order.offer_id, Order.id)
        .limit(BATCH)
    ).all()
    released, with_checkout = [], []
    for order_id, customer_id, checkout_session_id, title in held:
        result = reservations.release(session, order_id, reservations.ReleaseReason.EXPIRED)
        if result.outcome != reservations.ReleaseOutcome.RELEASED:
            continue
        released.append(order_id)
        if checkout_session_id:
            with_checkout.append(order_id)
        if customer_id is not None:
            spend_pay_buttons(session, order_id, customer_id, PayButtonGone.LAPSED)
            outbox.notify(session, f"order:{order_id}:expired", customer_id,
                          OfferExpired(_language(session, customer_id), title))
    close_checkouts_after_commit(session, with_checkout)
    expired = session.scalars(
        update(Offer)
        .where(Offer.status.in_([OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT]),
               Offer.pickup_end <= now)
        .values(status=OfferStatus.EXPIRED, version=Offer.version + 1)
        .returning(Offer.id)
    ).all()
    return {"offers_expired": len(expired), "offer_ids": sorted(expired)[:100], "holds_released": len(released)}


# --------------------------------------------------------------------------- holds


def release_expired_holds(session: Session, now: datetime) -> dict[str, Any]:
    """Sweep lapsed holds (``reservations.release_expired_holds``), tell their customers, and
    close the Checkout Sessions of the released orders."""
    count = 0
    for _round in range(20):  # drain a backlog, bounded
        swept = reservations.release_expired_holds(session, now, batch=BATCH)
        count += swept
        if swept < BATCH:
            break
    if not count:
        return {"holds_released": 0, "checkouts_to_expire": 0}
    # The sweep stamps closed_at with the transaction's time, so this finds exactly its orders.
    rows = session.execute(
        select(Order.id, Order.customer_id, Order.checkout_session_id, Offer.title)
        .join(Offer, Offer.id == Order.offer_id)
        .where(Order.status == OrderStatus.EXPIRED, Order.closed_at == func.now())
        .order_by(Order.id)
    ).all()
    with_checkout = []
    for order_id, customer_id, checkout_session_id, title in rows:
        if checkout_session_id:
            with_checkout.append(order_id)
        if customer_id is not None:
            spend_pay_buttons(session, order_id, customer_id, PayButtonGone.LAPSED)
            outbox.notify(session, f"order:{order_id}:expired", customer_id,
                          HoldExpired(_language(session, customer_id), title))
    close_checkouts_after_commit(session, with_checkout)
    return {"holds_released": count, "checkouts_to_expire": len(with_checkout)}


# --------------------------------------------------------------------------- reminders


def send_pickup_reminders(session: Session, now: datetime, lead: timedelta = REMINDER_LEAD) -> dict[str, Any]:
    """Remind customers of paid orders whose pickup starts within ``lead`` (once per order:
    ``orders.reminder_sent_at`` is set in the same statement that claims the order)."""
    due = (
        select(Order.id)
        .join(Offer, Offer.id == Order.offer_id)
        .where(Order.status == OrderStatus.PAID, Order.reminder_sent_at.is_(None), Order.customer_id.is_not(None),
               Offer.pickup_start <= now + lead, Offer.pickup_end > now)
        .order_by(Order.id)
        .limit(BATCH)
        .with_for_update(of=Order, skip_locked=True)
        .scalar_subquery()
    )
    claimed = session.execute(
        update(Order).where(Order.id.in_(due), Order.reminder_sent_at.is_(None))
        .values(reminder_sent_at=now).returning(Order.id)
    ).scalars().all()
    for order in session.scalars(select(Order).where(Order.id.in_(claimed)).order_by(Order.id)):
        offer = order.offer
        business = offer.business
        customer_id = order.customer_id
        # Claimed above only with a customer, and locked since, so erasure cannot have cleared it.
        assert customer_id is not None, "a claimed order has a customer"
        outbox.notify(session, f"order:{order.id}:reminder", customer_id, PickupReminder(
            language=_language(session, customer_id), title=offer.title, business_name=business.name,
            address=business.address, pickup_start=offer.pickup_start, pickup_end=offer.pickup_end,
            timezone=business.timezone, pickup_code=order.pickup_code, now=now,
        ))
    return {"reminders_sent": len(claimed)}


# --------------------------------------------------------------------------- daily summary


def _local_day(now: datetime, timezone: str) -> tuple[datetime, datetime, str]:
    zone = ZoneInfo(timezone)
    local = now.astimezone(zone)
    start = datetime.combine(local.date(), time(0), tzinfo=zone)
    return start.astimezone(UTC), (start + timedelta(days=1)).astimezone(UTC), local.date().isoformat()


def business_day_figures(session: Session, business_id: int, start: datetime, end: datetime) -> dict[str, Any]:
    """One business's orders and money between ``start`` and ``end`` (UTC)."""
    offers = select(Offer.id).where(Offer.business_id == business_id)
    paid = session.execute(
        select(Order.status, Order.quantity)
        .where(Order.offer_id.in_(offers), Order.paid_at >= start, Order.paid_at < end)
    ).all()
    money: dict[str, int] = defaultdict(int)
    for kind, amount, currency in session.execute(
        select(LedgerEntry.kind, LedgerEntry.amount_minor, LedgerEntry.currency)
        .where(LedgerEntry.offer_id.in_(offers), LedgerEntry.created_at >= start, LedgerEntry.created_at < end,
               LedgerEntry.kind.in_([LedgerKind.PAYMENT, LedgerKind.REFUND]))
    ):
        money[currency or "?"] += amount if kind == LedgerKind.PAYMENT else -amount
    closed: dict[OrderStatus, int] = dict(session.execute(
        select(Order.status, func.count())
        .where(Order.offer_id.in_(offers), Order.paid_at.is_not(None), Order.closed_at >= start,
               Order.closed_at < end)
        .group_by(Order.status)
    ).all())
    offers_today = session.execute(
        select(Offer.id).where(Offer.business_id == business_id, Offer.status != OfferStatus.DRAFT,
                               Offer.pickup_end > start, Offer.pickup_start < end)
    ).all()
    return {
        "orders": len(paid),
        "units": sum(quantity for _status, quantity in paid),
        "collected": sum(1 for status, _q in paid if status == OrderStatus.COLLECTED),
        "not_collected": closed.get(OrderStatus.NOT_COLLECTED, 0),
        "cancelled": closed.get(OrderStatus.CANCELLED, 0),
        "refunded": closed.get(OrderStatus.REFUNDED, 0),
        "revenue": dict(money),
        "offers": len(offers_today),
    }


def send_daily_summaries(session: Session, now: datetime, local_hour: int = SUMMARY_LOCAL_HOUR) -> dict[str, Any]:
    """Each verified business gets a summary of its day once, at or after ``local_hour`` its own
    time (beat runs this hourly; the key holds the local date, so it is once a day)."""
    sent = 0
    businesses = select(Business).where(Business.status == BusinessStatus.VERIFIED).order_by(Business.id)
    for business in session.scalars(businesses):
        try:
            zone = ZoneInfo(business.timezone)
        except (KeyError, ValueError):
            zone = ZoneInfo("UTC")
        if now.astimezone(zone).hour < local_hour:
            continue
        start, end, day = _local_day(now, str(zone))
        figures = business_day_figures(session, business.id, start, end)
        if not any(figures[k] for k in ("orders", "offers", "not_collected", "cancelled", "refunded")):
            continue  # a quiet day is not worth a message
        summary = DailySummary(
            language=_language(session, business.owner_id), business_name=business.name, day=day,
            offers=figures["offers"], orders=figures["orders"], units=figures["units"],
            collected=figures["collected"], revenue=tuple(sorted(figures["revenue"].items())),
            not_collected=figures["not_collected"], cancelled=figures["cancelled"], refunded=figures["refunded"],
        )
        if outbox.notify(session, f"business:{business.id}:summary:{day}", business.owner_id, summary) is not None:
            sent += 1
    return {"summaries_sent": sent}


# --------------------------------------------------------------------------- notifications


def retry_failed_notifications(session: Session, now: datetime) -> dict[str, Any]:
    """Put failed outbox rows (and pending ones stuck for more than ten minutes) back on the
    notifications queue, per chat in their original order. Sending stays at-most-once: a row is
    sent only while pending, under a row lock. One run at a time (a second one skips), so one
    chat's messages are never split between two runs and reordered."""
    if not session.scalar(select(func.pg_try_advisory_xact_lock(RETRY_NOTIFICATIONS_LOCK))):
        return {"failed_requeued": 0, "stuck_requeued": 0, "chats": 0, "skipped": "another run is in progress"}
    rows = session.execute(
        select(Notification.id, Notification.chat_id, Notification.status)
        .where(
            or_(Notification.status == NotificationStatus.FAILED,
                and_(Notification.status == NotificationStatus.PENDING,
                     Notification.created_at < now - STUCK_NOTIFICATION_AGE)),
        )
        .order_by(Notification.chat_id, Notification.id)
        .limit(BATCH)
        .with_for_update(skip_locked=True)
    ).all()
    failed = [row.id for row in rows if row.status == NotificationStatus.FAILED]
    if failed:
        session.execute(update(Notification).where(Notification.id.in_(failed))
                        .values(status=NotificationStatus.PENDING))
    by_chat: dict[int, list[int]] = defaultdict(list)
    for row in rows:
        by_chat[row.chat_id].append(row.id)

    for ids in by_chat.values():
        outbox.deliver_after_commit(session, ids)
    return {"failed_requeued": len(failed), "stuck_requeued": len(rows) - len(failed), "chats": len(by_chat)}


# --------------------------------------------------------------------------- audit


def prune_beat_audit(session: Session, now: datetime) -> int:
    """Forget routine audit entries written by beat after a while; people's actions stay."""
    return rows_affected(
        session,
        delete(AuditEntry).where(AuditEntry.actor == "beat", AuditEntry.created_at < now - AUDIT_KEPT_FOR_BEAT),
    )
