"""The offer lifecycle, seen from its business: validate what a business types (pure functions),
create a draft, publish, pause, resume, edit price or quantity, cancel, list and collect orders,
export them as CSV.

States: draft → active → paused / sold_out / expired / cancelled. Customers can only reserve an
active offer (the reservation engine checks that in its one statement). Every function that changes
an offer takes the caller's session (the caller commits) and re-checks what it changes in the same
SQL statement, so a concurrent reservation or a second tap cannot slip between check and change.

Ownership is checked here too: every function that takes an ``owner_id`` refuses (``NotOwner``) an
offer or order of another business, whatever ids the caller was given.
"""

from __future__ import annotations

import csv
import io
import re
import unicodedata
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func, select, text, update
from sqlalchemy.orm import Session

from core.settings import get_settings
from domain import reservations, tags
from domain.money import money_parts
from models import Business, BusinessStatus, Offer, OfferStatus, Order, OrderStatus, PhotoStatus, User

# ----------------------------------------------------------------------------- limits

MAX_PRICE_MAJOR = 1000  # 1000.00 EUR: anything above is a typo, not a surplus bag
MIN_QUANTITY = 1
MAX_QUANTITY = 500
TITLE_MIN, TITLE_MAX = 3, 80
DESCRIPTION_MAX = 400  # the card caption (title + description + lines) stays under Telegram's 1024
WINDOW_MIN_AHEAD = timedelta(minutes=15)  # a window must stay open at least this long after now
WINDOW_MAX_LENGTH = timedelta(hours=12)


class InvalidInput(ValueError):
    """What a business typed cannot be used. ``code`` names the rule (the chat turns it into a
    message); ``values`` fill that message's placeholders."""

    def __init__(self, code: str, **values: object) -> None:
        super().__init__(code)
        self.code = code
        self.values = values


class NotOwner(PermissionError):
    """The offer or order belongs to another business (or does not exist)."""


class WrongState(Exception):
    """The offer is not in a state where this can be done; ``status`` is its current one."""

    def __init__(self, status: str) -> None:
        super().__init__(status)
        self.status = status


# ----------------------------------------------------------------------------- pure validation

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\u200b-\u200f\u202a-\u202e\u2066-\u2069]")


def clean_text(value: str, *, multiline: bool = False) -> str:
    """User text with control and bidi-override characters removed and whitespace collapsed."""
    value = unicodedata.normalize("NFC", value)
    value = _CONTROL.sub("", value)
    if multiline:
        lines = [" ".join(line.split()) for line in value.replace("\r", "").split("\n")]
        return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()
    return " ".join(value.split())


def bounded_text(value: str, minimum: int, maximum: int, kind: str) -> str:
    """One line of user text, cleaned, between `minimum` and `maximum` characters; the error codes
    are "<kind>_short" and "<kind>_long"."""
    text = clean_text(value)
    if len(text) < minimum:
        raise InvalidInput(f"{kind}_short", min=minimum)
    if len(text) > maximum:
        raise InvalidInput(f"{kind}_long", max=maximum)
    return text


def parse_title(value: str) -> str:
    return bounded_text(value, TITLE_MIN, TITLE_MAX, "title")


def parse_description(value: str) -> str:
    description = clean_text(value, multiline=True)
    if len(description) > DESCRIPTION_MAX:
        raise InvalidInput("description_long", max=DESCRIPTION_MAX)
    return description


def minor_digits(currency: str) -> int:
    """Decimal places of the currency's minor unit (2 for EUR, 0 for JPY, 3 for KWD)."""
    _sign, amount, _code = money_parts(1, currency)
    return len(amount.partition(".")[2])


_CURRENCY_MARKS = re.compile(r"(€|\$|£|\b(eur|euro|euros|usd|gbp|chf)\b)", re.IGNORECASE)
_MONEY = re.compile(r"(?P<sign>[-−]\s*)?(?P<units>[0-9]{1,7})(?:[.,](?P<fraction>[0-9]+))?")


def parse_money(value: str, currency: str = "EUR") -> int:
    """A price as typed ("4.50", "4,50", "4 €", "€4.5", "4") → integer minor units (450).

    Refuses what is not a plain amount, a negative or zero amount, more decimals than the
    currency has, and anything above MAX_PRICE_MAJOR.
    """
    digits = minor_digits(currency)
    cleaned = _CURRENCY_MARKS.sub(" ", clean_text(value)).strip()
    match = _MONEY.fullmatch(cleaned)
    if match is None:
        raise InvalidInput("money_format")
    if match["sign"]:
        raise InvalidInput("money_not_positive")
    fraction = match["fraction"] or ""
    if len(fraction) > digits:  # "4.505", or "1.000" that may mean a thousand: ask again
        raise InvalidInput("money_format")
    minor = int(match["units"]) * 10**digits + (int(fraction.ljust(digits, "0")) if fraction else 0)
    if minor <= 0:
        raise InvalidInput("money_not_positive")
    if minor > MAX_PRICE_MAJOR * 10**digits:
        raise InvalidInput("money_too_high", max=MAX_PRICE_MAJOR)
    return minor


def check_discount(price_minor: int, original_price_minor: int) -> None:
    """The price a customer pays must be below the original price."""
    if price_minor >= original_price_minor:
        raise InvalidInput("not_a_discount")


def parse_quantity(value: str, minimum: int = MIN_QUANTITY, maximum: int = MAX_QUANTITY) -> int:
    cleaned = clean_text(value)
    if re.fullmatch(r"[-−]\s*[0-9]+", cleaned):
        raise InvalidInput("quantity_range", min=minimum, max=maximum)
    if not re.fullmatch(r"[0-9]{1,12}", cleaned):
        raise InvalidInput("quantity_format")
    quantity = int(cleaned)
    if not minimum <= quantity <= maximum:
        raise InvalidInput("quantity_range", min=minimum, max=maximum)
    return quantity


_CLOCK = r"([0-9]{1,2})(?:[:.h]([0-9]{2}))?"
_WINDOW = re.compile(rf"^{_CLOCK}\s*(?:-|–|—|to|bis|until)\s*{_CLOCK}$", re.IGNORECASE)


def _clock(hours: str, minutes: str | None) -> time:
    h, m = int(hours), int(minutes or 0)
    if h == 24 and m == 0:
        return time(23, 59)
    if h > 23 or m > 59:
        raise InvalidInput("window_format")
    return time(h, m)


def _local(day: date, moment: time, zone: ZoneInfo) -> datetime:
    # A wall time skipped by a DST change is taken as the instant after the gap (fold=0 rules).
    return datetime.combine(day, moment, tzinfo=zone)


def parse_time_window(value: str, day: date, tz: str, now: datetime) -> tuple[datetime, datetime]:
    """"18:00-19:30" on ``day`` in the time zone ``tz`` → (start, end) as aware UTC datetimes.

    The start must be before the end (a window does not cross midnight), the window at most
    WINDOW_MAX_LENGTH long, and its end at least WINDOW_MIN_AHEAD after ``now``: a window whose
    start has passed but whose end has not is fine (the food can be collected from now on).
    """
    match = _WINDOW.match(clean_text(value))
    if match is None:
        raise InvalidInput("window_format")
    zone = ZoneInfo(tz)
    start = _local(day, _clock(match[1], match[2]), zone)
    end = _local(day, _clock(match[3], match[4]), zone)
    if end <= start:
        raise InvalidInput("window_order")
    if end - start > WINDOW_MAX_LENGTH:
        raise InvalidInput("window_long", hours=int(WINDOW_MAX_LENGTH.total_seconds() // 3600))
    if end < now + WINDOW_MIN_AHEAD:
        raise InvalidInput("window_past")
    utc = ZoneInfo("UTC")
    return start.astimezone(utc), end.astimezone(utc)


def pickup_day(choice: str, tz: str, now: datetime) -> date:
    """"today" or "tomorrow" in the business's time zone."""
    today = now.astimezone(ZoneInfo(tz)).date()
    if choice == "today":
        return today
    if choice == "tomorrow":
        return today + timedelta(days=1)
    raise InvalidInput("window_format")


def normalize_pickup_code(value: str) -> str:
    return re.sub(r"[\s\-]", "", clean_text(value)).upper()[:12]


# ----------------------------------------------------------------------------- drafts


@dataclass
class DraftFields:
    title: str
    description: str
    price_minor: int
    original_price_minor: int
    quantity: int
    pickup_start: datetime
    pickup_end: datetime
    category: str | None = None
    diet: list[str] = field(default_factory=list)
    allergens: list[str] = field(default_factory=list)


def business_of(session: Session, owner_id: int) -> Business | None:
    return session.scalar(select(Business).where(Business.owner_id == owner_id))


def owned_offer(session: Session, offer_id: int, owner_id: int, *, lock: bool = False) -> Offer:
    """The offer if it belongs to ``owner_id``'s business; NotOwner otherwise (also if missing)."""
    statement = select(Offer).join(Business).where(Offer.id == offer_id, Business.owner_id == owner_id)
    if lock:
        statement = statement.with_for_update(of=Offer)
    offer = session.scalar(statement.execution_options(populate_existing=True))
    if offer is None:
        raise NotOwner(offer_id)
    return offer


def save_draft_photo(session: Session, business: Business, fields: DraftFields | None, offer_id: int | None,
                     file_id: str) -> Offer:
    """Create the draft (at the photo step) or give an existing draft a new photo to process (and
    new fields, when given). The photo is processed from the fields saved here, so the card and
    the row always agree."""
    if offer_id is not None:
        offer = owned_offer(session, offer_id, business.owner_id, lock=True)
        if offer.status != OfferStatus.DRAFT:
            raise WrongState(offer.status.value)
    elif fields is None:
        raise ValueError("a new draft needs its fields")
    else:
        offer = Offer(business_id=business.id, currency=business.currency, status=OfferStatus.DRAFT)
        session.add(offer)
    if fields is not None:
        check_discount(fields.price_minor, fields.original_price_minor)
        offer.title = fields.title
        offer.description = fields.description
        offer.price_minor = fields.price_minor
        offer.original_price_minor = fields.original_price_minor
        offer.quantity = fields.quantity
        offer.pickup_start = fields.pickup_start
        offer.pickup_end = fields.pickup_end
        set_tags(offer, fields.category, fields.diet, fields.allergens)
    offer.photo_status = PhotoStatus.PROCESSING
    offer.photo_source_file_id = file_id
    offer.photo_card_file_id = None
    offer.photo_error = None
    session.flush()
    return offer


def set_tags(offer: Offer, category: str | None, diet: list[str], allergens: list[str]) -> None:
    """What the offer is (domain/tags.py); unknown values are left out."""
    offer.category = tags.category(category)
    offer.diet = tags.known(diet, tags.DIETS)
    offer.allergens = tags.known(allergens, tags.ALLERGENS)


TAGGABLE = (OfferStatus.DRAFT, OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT)


def edit_tags(session: Session, offer_id: int, owner_id: int, *, category: str | None, diet: list[str],
              allergens: list[str]) -> Offer:
    """Change an offer's category, diet and allergens (not once it is over); customers see it at once."""
    offer = owned_offer(session, offer_id, owner_id, lock=True)
    if offer.status not in TAGGABLE:
        raise WrongState(offer.status.value)
    set_tags(offer, category, diet, allergens)
    offer.version += 1
    session.flush()
    return offer


def discard_draft(session: Session, offer_id: int, owner_id: int) -> bool:
    """Delete a draft (nobody can have ordered from it); False if it is not a draft any more."""
    offer = owned_offer(session, offer_id, owner_id, lock=True)
    if offer.status != OfferStatus.DRAFT:
        return False
    session.delete(offer)
    session.flush()
    return True


# ----------------------------------------------------------------------------- lifecycle


class PublishRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "not_verified", "payouts_not_ready", "not_draft", "photo_not_ready", "window_passed"


def can_sell(business: Business) -> bool:
    """Whether the business may publish (and its customers pay): always when the operator does not
    require Stripe Connect (PAYOUTS_REQUIRE_CONNECT=false), else only once its Connect account can
    take charges (domain.payments.connect keeps ``charges_enabled`` from Stripe's events)."""
    return not get_settings().payouts_require_connect or business.charges_enabled


def publish(session: Session, offer_id: int, owner_id: int, now: datetime) -> Offer:
    offer = owned_offer(session, offer_id, owner_id, lock=True)
    if offer.business.status != BusinessStatus.VERIFIED:
        raise PublishRefused("not_verified")
    if not can_sell(offer.business):
        raise PublishRefused("payouts_not_ready")
    if offer.status != OfferStatus.DRAFT:
        raise PublishRefused("not_draft")
    if offer.photo_status != PhotoStatus.READY or not offer.photo_card_file_id:
        raise PublishRefused("photo_not_ready")
    if offer.pickup_end <= now:
        raise PublishRefused("window_passed")
    offer.status = OfferStatus.ACTIVE
    offer.published_at = now
    offer.version += 1
    session.flush()
    return offer


def _guarded_status_change(session: Session, offer: Offer, from_states: tuple[OfferStatus, ...],
                           to_sql: str) -> bool:
    row = session.execute(
        text(
            f"UPDATE offers SET status = {to_sql}, version = version + 1 "
            "WHERE id = :id AND status = ANY(:states) RETURNING status"
        ),
        {"id": offer.id, "states": [s.value for s in from_states]},
    ).first()
    session.refresh(offer)
    return row is not None


def pause(session: Session, offer_id: int, owner_id: int) -> Offer:
    offer = owned_offer(session, offer_id, owner_id)
    if not _guarded_status_change(session, offer, (OfferStatus.ACTIVE, OfferStatus.SOLD_OUT), "'paused'"):
        raise WrongState(offer.status.value)
    return offer


def resume(session: Session, offer_id: int, owner_id: int) -> Offer:
    offer = owned_offer(session, offer_id, owner_id)
    if offer.business.status != BusinessStatus.VERIFIED:
        raise WrongState("business_" + offer.business.status.value)
    to = ("CASE WHEN pickup_end <= now() THEN 'expired' "
          "WHEN quantity - units_sold - units_held <= 0 THEN 'sold_out' ELSE 'active' END")
    if not _guarded_status_change(session, offer, (OfferStatus.PAUSED,), to):
        raise WrongState(offer.status.value)
    return offer


_EDITABLE = (OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT)
CANCELLABLE = _EDITABLE  # what `cancel` cancels


def edit_price(session: Session, offer_id: int, owner_id: int, price_minor: int) -> Offer:
    """A new price for orders from now on (orders made keep theirs); must stay a discount."""
    offer = owned_offer(session, offer_id, owner_id, lock=True)
    if offer.status not in _EDITABLE:
        raise WrongState(offer.status.value)
    check_discount(price_minor, offer.original_price_minor)
    if price_minor != offer.price_minor:
        offer.price_minor = price_minor
        offer.version += 1
        session.flush()
    return offer


def edit_quantity(session: Session, offer_id: int, owner_id: int, quantity: int) -> Offer:
    """A new total quantity; never below what is already sold or held. One guarded statement, so a
    reservation racing with the edit either lands first (and counts) or sees the new quantity."""
    offer = owned_offer(session, offer_id, owner_id)
    if offer.status not in _EDITABLE:
        raise WrongState(offer.status.value)
    row = session.execute(
        text(
            """
            UPDATE offers SET quantity = :q, version = version + 1,
                status = CASE
                    WHEN status = 'paused' THEN status
                    WHEN units_sold + units_held >= :q THEN 'sold_out'
                    WHEN status = 'sold_out' AND pickup_end > now() THEN 'active'
                    ELSE status END
            WHERE id = :id AND status IN ('active', 'paused', 'sold_out') AND units_sold + units_held <= :q
            RETURNING id
            """
        ),
        {"id": offer.id, "q": quantity},
    ).first()
    session.refresh(offer)
    if row is None:
        if offer.status not in _EDITABLE:
            raise WrongState(offer.status.value)
        raise InvalidInput("quantity_below_taken", taken=offer.units_sold + offer.units_held)
    return offer


@dataclass
class Cancellation:
    offer: Offer
    released_order_ids: list[int]
    paid_order_ids: list[int]  # to refund (after commit)


def cancel(session: Session, offer_id: int, owner_id: int) -> Cancellation:
    """Cancel an offer: no new orders, every held order released now, every paid order cancelled
    (units restocked, as the reservation engine records it) and to be refunded by the caller after
    commit. Locks the offer before its orders, like the reservation engine, so the two cannot
    deadlock."""
    offer = owned_offer(session, offer_id, owner_id)
    if offer.status in (OfferStatus.CANCELLED, OfferStatus.EXPIRED, OfferStatus.DRAFT):
        raise WrongState(offer.status.value)
    if not _guarded_status_change(session, offer, _EDITABLE, "'cancelled'"):
        raise WrongState(offer.status.value)
    released, paid = [], []
    # The offer is locked now; its open orders (including any made by a reservation that committed
    # while we waited for the offer) are locked after it.
    for order_id, status in session.execute(
        text(
            "SELECT id, status FROM orders WHERE offer_id = :id AND status IN ('held', 'paid') "
            "ORDER BY id FOR UPDATE"
        ),
        {"id": offer.id},
    ):
        if status == "held":
            release = reservations.release(session, order_id, reservations.ReleaseReason.CANCELLED)
            if release.outcome == reservations.ReleaseOutcome.RELEASED:
                released.append(order_id)
        else:  # paid -> cancelled with its units restocked; the money goes back after commit
            cancelled = reservations.cancel_paid(session, order_id)
            if cancelled.outcome == reservations.CancelOutcome.CANCELLED:
                paid.append(order_id)
    session.refresh(offer)
    return Cancellation(offer, released, paid)


# ----------------------------------------------------------------------------- orders


def orders_of_offer(session: Session, offer_id: int, owner_id: int, limit: int = 50) -> list[Order]:
    owned_offer(session, offer_id, owner_id)
    return list(
        session.scalars(
            select(Order).where(Order.offer_id == offer_id)
            .where(Order.status.in_([OrderStatus.HELD, OrderStatus.PAID, OrderStatus.COLLECTED,
                                     OrderStatus.NOT_COLLECTED]))
            .order_by(Order.id).limit(limit)
        )
    )


def orders_to_collect(session: Session, offer_id: int) -> int:
    """How many paid orders of the offer are still to be collected: what a pickup can confirm."""
    return session.scalar(
        select(func.count()).select_from(Order).where(Order.offer_id == offer_id, Order.status == OrderStatus.PAID)
    ) or 0


@dataclass
class Pickup:
    outcome: str  # "collected", "already_collected", "not_paid", "not_found"
    order: Order | None = None


def confirm_pickup(session: Session, offer_id: int, owner_id: int, code: str, now: datetime) -> Pickup:
    """The customer showed ``code`` at the counter: their paid order becomes collected."""
    owned_offer(session, offer_id, owner_id)
    code = normalize_pickup_code(code)
    if not code:
        return Pickup("not_found")
    order = session.scalar(
        select(Order).where(Order.offer_id == offer_id, Order.pickup_code == code).with_for_update()
    )
    if order is None:
        return Pickup("not_found")
    if order.status == OrderStatus.COLLECTED:
        return Pickup("already_collected", order)
    if order.status not in (OrderStatus.PAID, OrderStatus.NOT_COLLECTED):
        return Pickup("not_paid", order)
    # A not-collected order picked up late: the customer did come, so it is no no-show.
    order.status = OrderStatus.COLLECTED
    order.closed_at = now
    order.no_show_at = None
    session.flush()
    return Pickup("collected", order)


def offer_of_pickup_code(session: Session, owner_id: int, code: str) -> int | None:
    """The offer of the owner's business that has an order with this pickup code, for a scanned
    pickup pass (it carries only the code; codes are unique per offer): the order still to collect
    if there is one, else the latest. None if no order of this business has the code."""
    code = normalize_pickup_code(code)
    if not code:
        return None
    return session.scalar(
        select(Order.offer_id).join(Offer, Order.offer_id == Offer.id).join(Business)
        .where(Business.owner_id == owner_id, Order.pickup_code == code)
        .order_by(Order.status.in_([OrderStatus.PAID, OrderStatus.NOT_COLLECTED]).desc(), Order.id.desc()).limit(1)
    )


CSV_COLUMNS = ("order_id", "offer_id", "offer_title", "status", "quantity", "unit_price", "amount", "currency",
               "customer", "created_at_utc", "paid_at_utc", "closed_at_utc")
CSV_MAX_ROWS = 10_000


def csv_safe(value: object) -> str:
    text_value = "" if value is None else str(value)
    # A cell starting with = + - @ is run as a formula by spreadsheets: neutralise it.
    return "'" + text_value if text_value[:1] in ("=", "+", "-", "@", "\t", "\r") else text_value


def export_orders_csv(session: Session, owner_id: int) -> tuple[bytes, int]:
    """All orders of the owner's business as CSV (UTF-8 with BOM, for spreadsheets); returns
    (bytes, number of rows)."""
    business = business_of(session, owner_id)
    if business is None:
        raise NotOwner(owner_id)
    rows = session.execute(
        select(Order, Offer.title, User.first_name)
        .join(Offer, Order.offer_id == Offer.id)
        .outerjoin(User, Order.customer_id == User.id)
        .where(Offer.business_id == business.id)
        .order_by(Order.id).limit(CSV_MAX_ROWS)
    ).all()
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for order, title, customer in rows:
        writer.writerow([
            order.id, order.offer_id, csv_safe(title), order.status.value, order.quantity,
            decimal_text(order.unit_price_minor, order.currency), decimal_text(order.amount_minor, order.currency),
            order.currency, csv_safe(customer or ""),
            _iso(order.created_at), _iso(order.paid_at), _iso(order.closed_at),
        ])
    return ("\ufeff" + buffer.getvalue()).encode(), len(rows)


def decimal_text(minor: int, currency: str) -> str:
    """Minor units as a plain decimal ("4.50", "-0.45"), exact (no float)."""
    digits = minor_digits(currency)
    sign = "-" if minor < 0 else ""
    units, rest = divmod(abs(minor), 10**digits)
    return f"{sign}{units}.{rest:0{digits}d}" if digits else f"{sign}{units}"


def _iso(moment: datetime | None) -> str:
    return moment.astimezone(ZoneInfo("UTC")).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def offers_of(session: Session, business: Business, limit: int = 20) -> list[Offer]:
    """The business's offers to manage: live ones first, then the most recent others."""
    live = (OfferStatus.ACTIVE, OfferStatus.PAUSED, OfferStatus.SOLD_OUT, OfferStatus.DRAFT)
    offers = list(session.scalars(
        select(Offer).where(Offer.business_id == business.id).order_by(Offer.id.desc()).limit(200)
    ))
    offers.sort(key=lambda o: (o.status not in live, -o.id))
    return offers[:limit]


def mark_photo_failed(session: Session, offer_id: int, file_id: str, reason: str) -> Offer | None:
    offer = session.get(Offer, offer_id, with_for_update=True)
    if offer is None or offer.photo_source_file_id != file_id or offer.photo_status != PhotoStatus.PROCESSING:
        return None
    offer.photo_status = PhotoStatus.FAILED
    offer.photo_error = reason
    return offer


def request_card_rerender(session: Session, offer: Offer) -> bool:
    """After a price change the card shows the old price: process the source photo again."""
    if not offer.photo_source_file_id:
        return False
    session.execute(update(Offer).where(Offer.id == offer.id).values(photo_status=PhotoStatus.PROCESSING,
                                                                      photo_error=None))
    session.refresh(offer)
    return True
