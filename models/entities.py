"""Tables. Money is integer minor units plus an ISO currency; times are UTC (timestamptz);
Telegram ids are 64-bit. State columns are strings checked against their enum."""

from __future__ import annotations

import enum
from datetime import date, datetime
from typing import Any

from geoalchemy2 import Geography
from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    Computed,
    Date,
    DateTime,
    Enum,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, utc_now_column

# A point on the earth (PostGIS geography, WGS 84) computed by Postgres from latitude and longitude,
# so every writer keeps setting those two and the point follows; NULL while either is unknown.
_POINT = "ST_SetSRID(ST_MakePoint(longitude, latitude), 4326)::geography"


# The box around a deal-alert subscriber's point that their alert radius reaches (degrees, a little
# generous: 110.5 km a degree), GiST-indexed: the audience of a new offer is the subscribers whose
# box holds the business (the index), then whose exact radius reaches it (ST_DWithin).
ALERT_AREA = ("ST_Expand(location::geometry, deal_alerts_km / (110.5 * greatest(cos(radians(latitude)), 0.01)), "
              "deal_alerts_km / 110.5)")


def _location() -> Mapped[Any]:
    return mapped_column(Geography("POINT", srid=4326, spatial_index=False), Computed(_POINT, persisted=True))


def _state(enum_cls: type[enum.Enum], name: str):
    # VARCHAR + CHECK instead of a Postgres ENUM type: adding a state is a one-line migration.
    return Enum(
        enum_cls,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=24,
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


class BusinessStatus(enum.StrEnum):
    PENDING = "pending"
    VERIFIED = "verified"
    REJECTED = "rejected"
    SUSPENDED = "suspended"


class OfferStatus(enum.StrEnum):
    DRAFT = "draft"
    ACTIVE = "active"
    PAUSED = "paused"
    SOLD_OUT = "sold_out"
    EXPIRED = "expired"
    CANCELLED = "cancelled"


class PayoutsStatus(enum.StrEnum):
    """A business's Stripe Connect account, as its ``account.updated`` events say."""

    NONE = "none"  # no account yet
    PENDING = "pending"  # an account, onboarding not finished (or Stripe is still checking)
    ACTIVE = "active"  # it can take charges
    RESTRICTED = "restricted"  # Stripe disabled charges (requirements past due, or a review)
    DISCONNECTED = "disconnected"  # the business removed our access (account.application.deauthorized)


class PhotoStatus(enum.StrEnum):
    NONE = "none"
    PROCESSING = "processing"
    READY = "ready"
    FAILED = "failed"


class OrderStatus(enum.StrEnum):
    HELD = "held"  # stock held, waiting for payment until hold_expires_at
    PAID = "paid"  # confirmed; pickup code issued
    COLLECTED = "collected"
    CANCELLED = "cancelled"  # by the customer or because the offer was cancelled
    EXPIRED = "expired"  # the hold lapsed unpaid
    REFUNDED = "refunded"
    # Paid, but nobody came: the pickup window (plus its grace) passed, or the business said so.
    # A late pickup still turns it into collected; the food stays sold.
    NOT_COLLECTED = "not_collected"


class LedgerKind(enum.StrEnum):
    HOLD = "hold"  # stock: units moved to held
    RELEASE = "release"  # stock: held units back to available
    SALE = "sale"  # stock: held (or available, for a late payment) units to sold
    RESTOCK = "restock"  # stock: sold units back to available (refund of a paid order)
    PAYMENT = "payment"  # money in
    REFUND = "refund"  # money out
    # The money's way to the business (Connect). Per order: payment = fee + transfer at the sale;
    # refund = fee_refund + reversal when it goes back. "transfer" is what the business got net
    # (Stripe's transfer minus the application fee it paid back), "reversal" what it gave back net.
    FEE = "fee"  # the platform's application fee
    TRANSFER = "transfer"  # to the business's connected account
    REVERSAL = "reversal"  # the transfer reversed by a refund
    FEE_REFUND = "fee_refund"  # the application fee given back to the business


class NotificationStatus(enum.StrEnum):
    PENDING = "pending"
    SENT = "sent"
    FAILED = "failed"  # retries exhausted; maintenance.retry_failed_notifications picks these up
    DROPPED = "dropped"  # the recipient blocked the bot or Telegram refused the content


class User(Base):
    __tablename__ = "users"
    __table_args__ = (
        # The deal-alert audience (domain/announcements.py): only subscribers are in it.
        Index("ix_users_alert_area", text(ALERT_AREA), postgresql_using="gist",
              postgresql_where=text("deal_alerts_km IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)  # Telegram user id
    first_name: Mapped[str | None] = mapped_column(String(128))
    username: Mapped[str | None] = mapped_column(String(64))
    language: Mapped[str] = mapped_column(String(8), nullable=False, server_default="en")
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location_updated_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Tell this customer about new deals within this many km of their location (None: don't).
    deal_alerts_km: Mapped[float | None] = mapped_column(Float)
    location: Mapped[Any] = _location()
    # No new-deal alerts at all until then (muted for a day or a week).
    alerts_muted_until: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # The /deals filters this customer chose last (domain/filters.py reads and writes them).
    deal_filters: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    reachable: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    deleted_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    created_at: Mapped[datetime] = utc_now_column()
    last_seen_at: Mapped[datetime] = utc_now_column()


class Business(Base):
    __tablename__ = "businesses"
    __table_args__ = (
        CheckConstraint("latitude BETWEEN -90 AND 90", name="latitude_range"),
        CheckConstraint("longitude BETWEEN -180 AND 180", name="longitude_range"),
        Index("ix_businesses_location", "location", postgresql_using="gist"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(120), nullable=False)
    address: Mapped[str] = mapped_column(String(300), nullable=False)
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    location: Mapped[Any] = _location()
    phone: Mapped[str] = mapped_column(String(32), nullable=False)
    timezone: Mapped[str] = mapped_column(String(64), nullable=False, server_default="Europe/Berlin")
    currency: Mapped[str] = mapped_column(String(3), nullable=False, server_default="EUR")
    status: Mapped[BusinessStatus] = mapped_column(
        _state(BusinessStatus, "business_status"), nullable=False, server_default=BusinessStatus.PENDING.value
    )
    status_reason: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = utc_now_column()
    reviewed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Stripe Connect (domain.payments.connect): the Express account and what its events said last.
    stripe_account_id: Mapped[str | None] = mapped_column(String(255), unique=True)
    payouts_status: Mapped[PayoutsStatus] = mapped_column(
        _state(PayoutsStatus, "payouts_status"), nullable=False, server_default=PayoutsStatus.NONE.value
    )
    charges_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    payouts_enabled: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("false"))
    # The `created` time of the newest account event applied: an older one arriving late changes nothing.
    payouts_event_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    offers: Mapped[list[Offer]] = relationship(back_populates="business")


class OfferContent:
    """What an offer says, shared by an offer and the template that repeats it."""

    title: Mapped[str] = mapped_column(String(120), nullable=False)
    description: Mapped[str] = mapped_column(String(1000), nullable=False, server_default="")
    price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    original_price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    # What it is (domain/tags.py): one category, dietary tags, and which of the EU's 14 allergens it contains.
    category: Mapped[str | None] = mapped_column(String(24))
    diet: Mapped[list[str]] = mapped_column(ARRAY(String(24)), nullable=False, server_default=text("'{}'"))
    allergens: Mapped[list[str]] = mapped_column(ARRAY(String(24)), nullable=False, server_default=text("'{}'"))


class Offer(OfferContent, Base):
    __tablename__ = "offers"
    __table_args__ = (
        # Invariant 1 held by the database itself: never oversell, whatever the code does.
        CheckConstraint("units_sold >= 0 AND units_held >= 0", name="units_non_negative"),
        CheckConstraint("units_sold + units_held <= quantity", name="never_oversell"),
        CheckConstraint("quantity >= 0 AND quantity <= 10000", name="quantity_range"),
        CheckConstraint("price_minor > 0 AND price_minor <= original_price_minor", name="price_is_a_discount"),
        CheckConstraint("pickup_end > pickup_start", name="pickup_window_order"),
        Index("ix_offers_status_published", "status", "published_at"),
        Index("ix_offers_active_business", "business_id", "pickup_end",
              postgresql_where=text("status = 'active'")),
        Index("uq_offers_template_day", "template_id", "template_day", unique=True,
              postgresql_where=text("template_id IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), nullable=False, index=True)
    units_sold: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    units_held: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    pickup_start: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    pickup_end: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    status: Mapped[OfferStatus] = mapped_column(
        _state(OfferStatus, "offer_status"), nullable=False, server_default=OfferStatus.DRAFT.value
    )
    photo_status: Mapped[PhotoStatus] = mapped_column(
        _state(PhotoStatus, "photo_status"), nullable=False, server_default=PhotoStatus.NONE.value
    )
    photo_source_file_id: Mapped[str | None] = mapped_column(String(256))
    photo_card_file_id: Mapped[str | None] = mapped_column(String(256))  # uploaded once, reused
    photo_error: Mapped[str | None] = mapped_column(String(64))
    # Made from a repeating template (domain/repeats.py) for this local pickup day: one per day.
    template_id: Mapped[int | None] = mapped_column(ForeignKey("offer_templates.id"))
    template_day: Mapped[date | None] = mapped_column(Date)
    # Bumped on every change a customer can see, so a stale button can tell it is stale.
    version: Mapped[int] = mapped_column(Integer, nullable=False, server_default="1")
    created_at: Mapped[datetime] = utc_now_column()
    published_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    business: Mapped[Business] = relationship(back_populates="offers")

    @property
    def units_left(self) -> int:
        return self.quantity - self.units_sold - self.units_held


# A photo uploaded from the Mini App is at most what a bot may download from Telegram (domain/images.py).
MAX_UPLOAD_BYTES = 20 * 1024 * 1024


class PhotoUpload(Base):
    """A photo a business uploaded from the Mini App (webapp/), kept for the images task, which
    makes the offer's deal card from it as from a photo sent in the chat: the offer names it
    ``upload:<id>`` in ``photo_source_file_id`` where a chat photo has Telegram's file_id. Kept while
    an offer or a repeating offer names it (a price change makes the card again from it);
    ``maintenance.cleanup`` forgets the others after a day (domain/photos.py)."""

    __tablename__ = "photo_uploads"
    __table_args__ = (
        CheckConstraint(f"octet_length(content) BETWEEN 1 AND {MAX_UPLOAD_BYTES}", name="content_size"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"), nullable=False,
                                             index=True)
    content: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    created_at: Mapped[datetime] = utc_now_column()


class TemplateStatus(enum.StrEnum):
    ACTIVE = "active"
    PAUSED = "paused"
    STOPPED = "stopped"


class OfferTemplate(OfferContent, Base):
    """A repeating offer: beat makes each chosen day's offer from it, with the same card."""

    __tablename__ = "offer_templates"
    __table_args__ = (
        CheckConstraint("weekdays BETWEEN 1 AND 127", name="weekdays_range"),
        CheckConstraint("end_minute > start_minute AND start_minute >= 0 AND end_minute <= 1440",
                        name="window_in_a_day"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), nullable=False, index=True)
    start_minute: Mapped[int] = mapped_column(Integer, nullable=False)  # local time of day, in minutes
    end_minute: Mapped[int] = mapped_column(Integer, nullable=False)
    weekdays: Mapped[int] = mapped_column(Integer, nullable=False)  # bit 0 Monday … bit 6 Sunday
    photo_source_file_id: Mapped[str | None] = mapped_column(String(256))
    photo_card_file_id: Mapped[str] = mapped_column(String(256), nullable=False)
    status: Mapped[TemplateStatus] = mapped_column(
        _state(TemplateStatus, "template_status"), nullable=False, server_default=TemplateStatus.ACTIVE.value
    )
    created_at: Mapped[datetime] = utc_now_column()


class Order(Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        CheckConstraint("amount_minor >= 0", name="amount_non_negative"),
        # A customer's repeated taps make one order: at most one open hold per customer and offer.
        Index(
            "uq_orders_one_open_hold",
            "offer_id",
            "customer_id",
            unique=True,
            postgresql_where=text("status = 'held'"),
        ),
        Index("ix_orders_hold_expiry", "hold_expires_at", postgresql_where=text("status = 'held'")),
        # Also the index for an offer's orders (offer_id leads), so offer_id has none of its own.
        UniqueConstraint("offer_id", "pickup_code", name="uq_orders_offer_pickup_code"),
        # Partial: a reservation inserts the order before Stripe knows it, so skipping the NULLs
        # spares the hot path two index insertions (equality lookups still use these indexes).
        Index("uq_orders_checkout_session_id", "checkout_session_id", unique=True,
              postgresql_where=text("checkout_session_id IS NOT NULL")),
        Index("ix_orders_payment_intent_id", "payment_intent_id",
              postgresql_where=text("payment_intent_id IS NOT NULL")),
        # A customer's recent no-shows (domain.payments.closing counts them over 30 days).
        Index("ix_orders_customer_no_show", "customer_id", "no_show_at",
              postgresql_where=text("no_show_at IS NOT NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"), nullable=False)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)  # null once erased
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    unit_price_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[OrderStatus] = mapped_column(
        _state(OrderStatus, "order_status"), nullable=False, server_default=OrderStatus.HELD.value
    )
    hold_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    pickup_code: Mapped[str | None] = mapped_column(String(12))
    checkout_session_id: Mapped[str | None] = mapped_column(String(255))
    checkout_url: Mapped[str | None] = mapped_column(Text)
    payment_intent_id: Mapped[str | None] = mapped_column(String(255))
    reminder_sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    rating_asked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # domain/ratings.py
    created_at: Mapped[datetime] = utc_now_column()
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    closed_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    # Decided when its Checkout Session is made: the platform fee, and the connected account the
    # payment goes to (None: the platform collects it and pays the business by hand).
    fee_minor: Mapped[int | None] = mapped_column(Integer)
    destination_account: Mapped[str | None] = mapped_column(String(255))
    # When the order was closed as not collected (kept if it is refunded later; cleared by a late
    # pickup, since the customer did come).
    no_show_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))

    offer: Mapped[Offer] = relationship()


class Rating(Base):
    """A customer's rating of a collected order: one per order (changed within 24 hours, not added)."""

    __tablename__ = "ratings"
    __table_args__ = (CheckConstraint("stars BETWEEN 1 AND 5", name="stars_range"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False, unique=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), nullable=False, index=True)
    customer_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))  # null once erased
    stars: Mapped[int] = mapped_column(Integer, nullable=False)
    reasons: Mapped[list[str]] = mapped_column(ARRAY(String(24)), nullable=False, server_default=text("'{}'"))
    comment: Mapped[str | None] = mapped_column(String(500))
    created_at: Mapped[datetime] = utc_now_column()
    updated_at: Mapped[datetime] = utc_now_column()


class LedgerEntry(Base):
    """Every stock or money movement, once: (order, kind) is unique, so a replay cannot apply it twice."""

    __tablename__ = "ledger_entries"
    __table_args__ = (UniqueConstraint("order_id", "kind", name="uq_ledger_order_kind"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), nullable=False)
    offer_id: Mapped[int] = mapped_column(ForeignKey("offers.id"), nullable=False, index=True)
    kind: Mapped[LedgerKind] = mapped_column(_state(LedgerKind, "ledger_kind"), nullable=False)
    units: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    currency: Mapped[str | None] = mapped_column(String(3))
    reference: Mapped[str | None] = mapped_column(String(255))  # Stripe object id, when money moved
    created_at: Mapped[datetime] = utc_now_column()


class Payout(Base):
    """Money Stripe paid out of a business's connected account to its bank (``payout.paid``)."""

    __tablename__ = "payouts"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)  # Stripe's po_ id
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id"), nullable=False, index=True)
    amount_minor: Mapped[int] = mapped_column(Integer, nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    status: Mapped[str] = mapped_column(String(24), nullable=False)
    arrival_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), nullable=False)
    created_at: Mapped[datetime] = utc_now_column()


class StripeEvent(Base):
    """Stripe events already handled, by event id (they arrive at least once and in any order)."""

    __tablename__ = "stripe_events"

    id: Mapped[str] = mapped_column(String(255), primary_key=True)
    type: Mapped[str] = mapped_column(String(100), nullable=False)
    object_id: Mapped[str | None] = mapped_column(String(255))
    received_at: Mapped[datetime] = utc_now_column()


class ProcessedUpdate(Base):
    """Telegram update ids whose effects are committed; a redelivered update is skipped."""

    __tablename__ = "processed_updates"

    update_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    processed_at: Mapped[datetime] = utc_now_column(index=True)


class ConversationState(Base):
    """Where a chat is in a multi-step flow (e.g. step 3 of creating an offer)."""

    __tablename__ = "conversation_states"

    chat_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    flow: Mapped[str | None] = mapped_column(String(32))
    step: Mapped[str | None] = mapped_column(String(32))
    data: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    updated_at: Mapped[datetime] = utc_now_column()


class Notification(Base):
    """An outbound message. The idempotency key is recorded before sending, so a redelivered
    task does not send the same message twice."""

    __tablename__ = "notifications"
    __table_args__ = (Index("ix_notifications_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(200), nullable=False, unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, nullable=False, index=True)
    kind: Mapped[str] = mapped_column(String(40), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    status: Mapped[NotificationStatus] = mapped_column(
        _state(NotificationStatus, "notification_status"),
        nullable=False,
        server_default=NotificationStatus.PENDING.value,
    )
    attempts: Mapped[int] = mapped_column(Integer, nullable=False, server_default="0")
    last_error: Mapped[str | None] = mapped_column(String(500))
    telegram_message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = utc_now_column()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Follow(Base):
    __tablename__ = "follows"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    business_id: Mapped[int] = mapped_column(ForeignKey("businesses.id", ondelete="CASCADE"), primary_key=True)
    # New-deal alerts from this business (a follower may keep it as a favourite without them).
    alerts: Mapped[bool] = mapped_column(Boolean, nullable=False, server_default=text("true"))
    created_at: Mapped[datetime] = utc_now_column()


class AuditEntry(Base):
    """Who did what, when, with what result (admin actions and maintenance tasks)."""

    __tablename__ = "audit_log"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    actor: Mapped[str] = mapped_column(String(64), nullable=False)  # "user:<id>", "beat", "flower", "cli"
    action: Mapped[str] = mapped_column(String(100), nullable=False)
    target: Mapped[str | None] = mapped_column(String(100))
    result: Mapped[str] = mapped_column(String(20), nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = utc_now_column(index=True)


class DeadLetter(Base):
    """A task that kept failing after its retries, kept for an operator to inspect or replay."""

    __tablename__ = "dead_letters"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    task_name: Mapped[str] = mapped_column(String(100), nullable=False)
    task_id: Mapped[str] = mapped_column(String(64), nullable=False, unique=True)
    reference: Mapped[str | None] = mapped_column(String(100))  # e.g. "update:123"
    error: Mapped[str] = mapped_column(Text, nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False, server_default=text("'{}'::jsonb"))
    created_at: Mapped[datetime] = utc_now_column()


class Handover(Base):
    """A task handed over by a transaction (core.handover): recorded in that transaction, published
    after its commit, then marked sent. A row left unsent (its process died in between) is
    published by its origin's redelivery or by the `maintenance.resend_handovers` sweeper; tasks
    are idempotent, so a second publication has one effect."""

    __tablename__ = "handovers"
    __table_args__ = (
        # Both partial: a row leaves them once sent, so they hold only the few rows in flight.
        Index("ix_handovers_unsent_created", "created_at", postgresql_where=text("sent_at IS NULL")),
        Index("ix_handovers_unsent_origin", "origin", postgresql_where=text("sent_at IS NULL")),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    # The Celery task id every publication of this row carries: published again, it is a redelivery
    # of the same task (a task keyed by its request id, such as the Pay button's, does nothing twice).
    task_id: Mapped[str] = mapped_column(String(64), nullable=False)
    task_name: Mapped[str] = mapped_column(String(100), nullable=False)
    args: Mapped[list[Any]] = mapped_column(JSONB, nullable=False, server_default=text("'[]'::jsonb"))
    kwargs: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    eta: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))  # from the countdown, if any
    origin: Mapped[str | None] = mapped_column(String(100))  # who handed it over: "update:<id>", "task:<id>"
    created_at: Mapped[datetime] = utc_now_column()
    sent_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
