"""Mixed traffic through the real system, played by people in the Telegram fake (bench/stack.py).

* **Customers** (each a thread) open /deals, tap one of the newest offers (so they race for the
  same few units), choose one unit, tap "✅ Reserve and pay", and wait for the Pay button or the
  refusal. Then most pay on the Stripe fake's hosted checkout page (the form a browser posts),
  some of those cancel the paid order afterwards (a refund), some let the reservation go, the
  rest leave it held. Every customer has asked for deal alerts near the bakeries.
* **Businesses** post offers through the chat, step by step (/newoffer, title, description,
  price, original price, quantity, pickup day and window, category, diets and allergens, a
  photo), wait for the deal card preview (the images queue) and publish it, which sends a deal
  alert to every customer and subscriber nearby (the notifications queue).
* **Subscribers** only receive deal alerts (a larger audience for each publication).

Each person acts one step at a time and waits for the bot's answer before the next, as a person
does; a wait ends when the answer comes, or when the run is aborted (the answer is then counted
missing by bench/invariants.py, not here). Every update sent is recorded (`Traffic.sent`) with
the phase it was sent in, so the checks can say what became of it.
"""

from __future__ import annotations

import collections
import contextlib
import io
import itertools
import random
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

BAKERY = (52.5200, 13.4050)  # Berlin Mitte; every business and customer is within a few hundred metres
USER_BASE = 7_100_000_000  # Telegram-sized ids of the people of a drill
PROBES = 12  # customers kept for the drill's own moves, one per fault
PRICE_MINOR = 350
MAX_WAIT_S = 900.0  # a wait that long is a hang; aborting the run ends waits sooner


@dataclass
class Sent:
    """One update a person sent (through the Telegram fake, which delivers it to the webhook)."""

    update_id: int
    chat_id: int
    kind: str  # "message" or "callback"
    step: str  # what the person did: "deals", "buy", "title", "photo", ...
    at: float  # time.time()
    phase: str
    callback_query_id: str | None = None
    offer_id: int | None = None


@dataclass
class Payment:
    """A customer paid a Checkout Session on the hosted page."""

    session_id: str
    chat_id: int
    at: float
    phase: str


@dataclass
class Profile:
    """How many people, and how they behave."""

    customers: int = 24
    businesses: int = 3
    subscribers: int = 30  # alert recipients who do nothing else
    think_s: tuple[float, float] = (0.4, 1.2)  # pause between a customer's steps
    business_pause_s: tuple[float, float] = (3.0, 8.0)  # pause between two offers of a business
    units: tuple[int, int] = (3, 8)  # per offer: few, so customers race
    offers_at_start: int = 2  # per business, on sale before anyone acts
    pay: float = 0.75  # share of reservations paid
    cancel_paid: float = 0.25  # share of paid orders cancelled afterwards (refund)
    release: float = 0.6  # share of unpaid reservations let go (the rest stay held)
    photo_size: tuple[int, int] = (640, 480)


@dataclass
class Record:
    """Everything the people did, for the checks."""

    sent: list[Sent] = field(default_factory=list)
    payments: list[Payment] = field(default_factory=list)
    stuck: list[dict[str, Any]] = field(default_factory=list)  # waits that ended by an abort
    # How far people got, per phase: "reserved", "paid", "released", "cancelled_paid", "published".
    outcomes: dict[str, collections.Counter[str]] = field(
        default_factory=lambda: collections.defaultdict(collections.Counter))
    phase: str = "setup"
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, outcome: str) -> None:
        with self.lock:
            self.outcomes[self.phase][outcome] += 1

    def add(self, item: Sent) -> None:
        with self.lock:
            self.sent.append(item)

    def paid(self, item: Payment) -> None:
        with self.lock:
            self.payments.append(item)


def jpeg(width: int, height: int, seed: int) -> bytes:
    from PIL import Image

    rng = random.Random(seed)
    image = Image.new("RGB", (width, height), (rng.randrange(150, 255), rng.randrange(80, 200), 60))
    pixels = image.load()
    for x in range(0, width, 8):
        for y in range(0, height, 8):
            pixels[x, y] = (x * 255 // width, y * 255 // height, rng.randrange(256))
    out = io.BytesIO()
    image.save(out, "JPEG", quality=85)
    return out.getvalue()


def datas(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["callback_data"] for row in markup.get("inline_keyboard", []) for b in row if "callback_data" in b]


def urls(message: dict) -> list[str]:
    markup = message.get("reply_markup") or {}
    return [b["url"] for row in markup.get("inline_keyboard", []) for b in row if "url" in b]


ISOLATES = str.maketrans("", "", "\u2066\u2067\u2068\u2069")  # around user text (chat.cards.isolate)


def text_of(message: dict) -> str:
    """What a message reads (its caption for a photo), without the direction isolates around titles."""
    return (message.get("text") or message.get("caption") or "").translate(ISOLATES)


def starting(message: dict, prefix: str) -> str | None:
    """The first button of a message whose data starts with `prefix`."""
    return next((d for d in datas(message) if d.startswith(prefix)), None)


class Traffic:
    """The people of one drill, seeded once; `start(phase)` sets them going, `stop()` lets each
    finish the step it is in, `abort()` ends their waits too."""

    def __init__(self, stack, profile: Profile, seed: int = 1) -> None:
        self.stack = stack
        self.profile = profile
        self.record = Record()
        self.random = random.Random(seed)
        self.phase = "setup"
        self._stop = threading.Event()
        self._abort = threading.Event()
        self._acting = 0  # people in the middle of a request (an update sent, a payment posted)
        self._acting_lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._titles = itertools.count(1)
        self.customers: list[int] = []
        self.owners: list[int] = []
        self.subscribers: list[int] = []
        self.businesses: dict[int, int] = {}  # owner -> business id
        self.people: list[Person] = []
        self.probes: list[int] = []  # customers the drill moves itself (bench/chaos.py)
        self.probe_offer = 0
        self.errors: list[str] = []

    # ------------------------------------------------------------------ people and their shops

    def seed(self) -> None:
        """Businesses (verified, each with one offer on sale), customers and subscribers, known to
        the bot and to Telegram, every customer with deal alerts on."""
        from sqlalchemy.dialects.postgresql import insert

        from core import db
        from models import Business, BusinessStatus, Follow, Offer, OfferStatus, User

        p = self.profile
        ids = itertools.count(USER_BASE + self.random.randrange(10**6) * 1000)
        self.owners = [next(ids) for _ in range(p.businesses)]
        self.customers = [next(ids) for _ in range(p.customers)]
        self.subscribers = [next(ids) for _ in range(p.subscribers)]
        self.probes = [next(ids) for _ in range(PROBES)]
        probe_owner = next(ids)  # the probes' bakery is nobody's to run: its chat only gets order news
        users = []
        for user_id in (*self.owners, probe_owner, *self.customers, *self.subscribers, *self.probes):
            near = user_id not in self.owners and user_id != probe_owner
            lat, lon = BAKERY
            users.append({"id": user_id, "first_name": f"Person {user_id % 10000}", "language": "en",
                          "latitude": lat + self.random.uniform(-0.004, 0.004) if near else None,
                          "longitude": lon + self.random.uniform(-0.006, 0.006) if near else None,
                          "deal_alerts_km": 5.0 if near else None})
        from datetime import UTC, datetime, timedelta

        now = datetime.now(UTC)
        with db.session_scope() as session:
            session.execute(insert(User).values(users).on_conflict_do_nothing())
            for number, owner in enumerate(self.owners, start=1):
                business = Business(owner_id=owner, name=f"Bäckerei Chaos {number}", address=f"Hauptstraße {number}",
                                    phone="+49301234567", latitude=BAKERY[0] + number * 0.001, longitude=BAKERY[1],
                                    status=BusinessStatus.VERIFIED)
                session.add(business)
                session.flush()
                self.businesses[owner] = business.id
                for _offer in range(p.offers_at_start):
                    session.add(Offer(business_id=business.id, title=self.title(), description="Bread and buns",
                                      price_minor=PRICE_MINOR, original_price_minor=900, currency="EUR",
                                      quantity=self.random.randint(*p.units), pickup_start=now + timedelta(hours=8),
                                      pickup_end=now + timedelta(hours=9), status=OfferStatus.ACTIVE,
                                      published_at=now))
            probe_bakery = Business(owner_id=probe_owner, name="Bäckerei Probe", address="Hauptstraße 99",
                                    phone="+49301234567", latitude=BAKERY[0], longitude=BAKERY[1] + 0.002,
                                    status=BusinessStatus.VERIFIED)
            session.add(probe_bakery)
            session.flush()
            probe_offer = Offer(business_id=probe_bakery.id, title="Bag 0 of the day",
                                description="Kept for the drill's probes", price_minor=PRICE_MINOR,
                                original_price_minor=900, currency="EUR", quantity=100,
                                pickup_start=now + timedelta(hours=8), pickup_end=now + timedelta(hours=9),
                                status=OfferStatus.ACTIVE, published_at=now - timedelta(days=1))
            session.add(probe_offer)
            session.flush()
            self.probe_offer = probe_offer.id
            for customer in self.customers:
                session.add(Follow(user_id=customer, business_id=self.businesses[self.random.choice(self.owners)]))
        with self.stack.telegram.client() as telegram:
            for user in users:
                telegram.create_user(user["id"], user["first_name"], language_code="en")

    def title(self) -> str:
        # "Bag 1 of the day" is no prefix of "Bag 12 of the day": a title found in a text is that offer's.
        return f"Bag {next(self._titles)} of the day"

    # ------------------------------------------------------------------ running

    def start(self, phase: str) -> None:
        """Everyone goes on from where they were (a business in the middle of an offer carries on)."""
        self.phase = self.record.phase = phase
        self._stop.clear()
        self._abort.clear()
        if not self.people:
            self.people = [*(Customer(self, c) for c in self.customers), *(Business(self, o) for o in self.owners)]
        self._threads = [threading.Thread(target=person.run, name=f"{type(person).__name__}-{person.user_id}",
                                          daemon=True) for person in self.people]
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """No new step from now on; each person finishes waiting for the answer to their last one."""
        self._stop.set()

    def abort(self) -> None:
        """End every wait now (the answers still missing are counted by the checks)."""
        self._stop.set()
        self._abort.set()

    def busy(self) -> int:
        return sum(thread.is_alive() for thread in self._threads)

    def join(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    @contextlib.contextmanager
    def acting(self) -> Iterator[None]:
        """Around a request a person makes: until it returns, what it causes may not show yet."""
        with self._acting_lock:
            self._acting += 1
        try:
            yield
        finally:
            with self._acting_lock:
                self._acting -= 1

    @property
    def in_flight(self) -> int:
        """Requests made and not yet answered: a phase is not done while one is (its payment may not
        have reached Stripe yet)."""
        with self._acting_lock:
            return self._acting

    @property
    def aborted(self) -> bool:
        return self._abort.is_set()


class Person:
    """One person in a chat: sends updates and waits for the bot's answers in the fake's state."""

    def __init__(self, traffic: Traffic, user_id: int) -> None:
        self.traffic = traffic
        self.user_id = user_id
        self.random = random.Random(user_id ^ traffic.random.randrange(1 << 30))
        self.fake = traffic.stack.telegram
        self.client: Any = None
        self.last: Sent | None = None  # the last update sent

    def run(self) -> None:
        import httpx

        self.client = self.fake.client(timeout=30.0)
        try:
            while not self.traffic.stopping:
                try:
                    self.cycle()
                except Stuck:
                    self.lost_track()
                    return
                except (httpx.HTTPError, RuntimeError, KeyError, ValueError) as error:
                    self.traffic.errors.append(f"{type(self).__name__} {self.user_id}: {error!r}")
                    self.pause(1.0, 2.0)
        finally:
            self.client.close()

    def cycle(self) -> None:
        raise NotImplementedError

    def lost_track(self) -> None:
        """A wait ended without its answer: start afresh next time."""

    def pause(self, low: float, high: float) -> None:
        self.traffic._stop.wait(self.random.uniform(low, high))

    def go_on(self) -> bool:
        return not self.traffic.stopping

    # -- acting

    def say(self, text: str, step: str) -> int:
        with self.traffic.acting():
            sent = self.client.send_text(self.user_id, text)
            self.traffic.record.add(Sent(sent["update_id"], self.user_id, "message", step, time.time(),
                                         self.traffic.phase))
        return sent["seq"]

    def tap(self, message: dict, data: str, step: str, offer_id: int | None = None) -> int:
        with self.traffic.acting():
            pressed = self.client.press_button(self.user_id, message["message_id"], data)
            self.last = Sent(pressed["update_id"], self.user_id, "callback", step, time.time(), self.traffic.phase,
                             callback_query_id=pressed["callback_query_id"], offer_id=offer_id)
            self.traffic.record.add(self.last)
        return pressed["seq"]

    def photo(self, image: bytes, step: str) -> int:
        with self.traffic.acting():
            sent = self.client.send_photo(self.user_id, image)
            self.traffic.record.add(Sent(sent["update_id"], self.user_id, "message", step, time.time(),
                                         self.traffic.phase))
        return sent["seq"]

    # -- waiting

    def changes(self, after_seq: int) -> list[dict]:
        state = self.fake.state
        with state.lock:
            chat = state.default_bot.chats.get(self.user_id)
            if chat is None:
                return []
            return [chat.transcript_entry(m) for m in chat.messages.values()
                    if m.sender == "bot" and m.seq > after_seq and not m.deleted]

    def expect(self, after_seq: int, found: Callable[[dict], bool], step: str) -> dict:
        """The bot's first message (new or edited after `after_seq`) that `found` accepts."""
        began = time.monotonic()
        while time.monotonic() - began < MAX_WAIT_S:
            for message in self.changes(after_seq):
                if found(message):
                    return message
            if self.traffic.aborted:
                break
            time.sleep(0.1)
        with self.traffic.record.lock:
            self.traffic.record.stuck.append({"chat_id": self.user_id, "step": step, "phase": self.traffic.phase,
                                              "waited_s": round(time.monotonic() - began, 1)})
        raise Stuck(step)


class Stuck(Exception):
    """A person's wait ended without the answer (the run was aborted)."""


def _has(needle: str) -> Callable[[dict], bool]:
    return lambda message: needle in text_of(message)


class GiveUp(Exception):
    """The customer leaves this attempt (nothing left, or the traffic is stopping)."""


class Customer(Person):
    def cycle(self) -> None:
        try:
            deals, offer_id = self.choose_offer()
            confirm = self.choose_one(deals, offer_id)
            result, title = self.reserve(confirm, offer_id)
            self.pay_or_not(result, title)
        except GiveUp:
            return

    def think(self) -> None:
        self.pause(*self.traffic.profile.think_s)
        if not self.go_on():
            raise GiveUp

    def choose_offer(self) -> tuple[dict, int]:
        seq = self.say("/deals", "deals")
        deals = self.expect(seq, _has("Newest deals"), "deals")
        offers = [d for d in datas(deals) if d.startswith("offer:")]
        if not offers:
            self.pause(1.0, 2.0)
            raise GiveUp
        self.think()
        data = self.random.choice(offers[:3])  # the newest few: customers race for them
        return deals, int(data.split(":")[1])

    def choose_one(self, deals: dict, offer_id: int) -> dict:
        seq = self.tap(deals, f"offer:{offer_id}", "offer", offer_id)
        # The card (with "Order 1", "2", … while any are left), or the deals when the offer is gone.
        card = self.expect(seq, lambda m: starting(m, "follow:") is not None or "Newest deals" in text_of(m), "offer")
        one = starting(card, f"qty:{offer_id}:1:")
        if one is None:
            raise GiveUp  # sold out (or gone) meanwhile
        self.think()
        seq = self.tap(card, one, "quantity", offer_id)
        # The confirmation; or, sold out or fewer left meanwhile, the refusal, the quantities again,
        # the offer's card, or the deals.
        return self.expect(seq, lambda m: starting(m, f"buy:{offer_id}:1:") is not None or _refused(m)
                           or starting(m, f"qty:{offer_id}:") is not None or starting(m, "follow:") is not None
                           or "Newest deals" in text_of(m), "quantity")

    def reserve(self, confirm: dict, offer_id: int) -> tuple[dict, str]:
        buy = starting(confirm, f"buy:{offer_id}:1:")
        if buy is None:
            raise GiveUp
        text = text_of(confirm)
        title = text.split(" × ", 1)[1].split(" for ", 1)[0] if " × " in text else "?"
        self.think()
        seq = self.tap(confirm, buy, "buy", offer_id)
        # "⏳ Reserving…" takes the confirmation's place, and then the Pay message or the refusal
        # takes its place; refused at sight, the refusal comes at once. Card payment unavailable is
        # a message of its own; an offer gone meanwhile shows its card again.
        here = confirm["message_id"]
        result = self.expect(seq, lambda m: (m["message_id"] == here and "Reserving" not in text_of(m))
                             or "card payment is not available" in text_of(m)
                             or starting(m, "follow:") is not None, "buy")
        return result, title

    def pay_or_not(self, result: dict, title: str) -> None:
        p = self.traffic.profile
        pay_url = next((u for u in urls(result) if "/checkout/" in u), None)
        cancel = starting(result, "ocancel:")
        if pay_url is None or cancel is None:
            raise GiveUp  # refused
        order_id = int(cancel.split(":")[1])
        self.traffic.record.count("reserved")
        self.think()
        roll = self.random.random()
        if roll < p.pay:
            seq = self.pay(pay_url)
            self.expect(seq, lambda m: "Your pickup code" in text_of(m) and title in text_of(m), "paid")
            self.traffic.record.count("paid")
            if self.random.random() < p.cancel_paid:
                self.think()
                self.cancel(order_id, "cancelled_paid")
        elif self.random.random() < p.release:
            self.cancel(order_id, "released")

    def pay(self, url: str) -> int:
        """Pay on the hosted checkout page, as a browser posts its form; the feed's position before."""
        import httpx

        seq = self.fake.state.feed.version
        session_id = url.rstrip("/").rsplit("/", 1)[1]
        with self.traffic.acting():
            response = httpx.post(f"{url}/pay", data={"method": "card"}, follow_redirects=False, timeout=30,
                                  trust_env=False)
            if response.status_code not in (200, 303):
                raise RuntimeError(f"checkout page answered {response.status_code}")
            self.traffic.record.paid(Payment(session_id, self.user_id, time.time(), self.traffic.phase))
        return seq

    def cancel(self, order_id: int, outcome: str) -> None:
        """Through "My orders", as a customer would once the Pay message has moved up the chat (paid,
        it no longer offers to cancel)."""
        seq = self.say("/orders", "orders")
        orders = self.expect(seq, lambda m: "My orders" in text_of(m), "orders")
        if f"ocancel:{order_id}" not in datas(orders):
            return  # paid orders past the cut-off, or lapsed meanwhile
        self.think()
        seq = self.tap(orders, f"ocancel:{order_id}", "cancel")
        confirm = self.expect(seq, lambda m: f"ocancelok:{order_id}" in datas(m) or "My orders" in text_of(m),
                              "cancel")
        if f"ocancelok:{order_id}" not in datas(confirm):
            return
        self.think()
        seq = self.tap(confirm, f"ocancelok:{order_id}", "cancel_confirmed")
        self.expect(seq, lambda m: "My orders" in text_of(m), "cancel_confirmed")
        self.traffic.record.count(outcome)


def _refused(message: dict) -> bool:
    text = text_of(message)
    return any(words in text for words in ("sold out", "left of", "can't be ordered any more", "at most"))


class Business(Person):
    """Posts one offer after another through the chat. Each step is one update and its answer; a
    business stopped between two steps carries on from there when the traffic starts again."""

    def __init__(self, traffic: Traffic, user_id: int) -> None:
        super().__init__(traffic, user_id)
        self.fresh = True  # whatever flow an earlier run left open is cancelled first
        self.steps: list[Callable[[], None]] = []
        self.message: dict = {}
        self.title = ""

    def lost_track(self) -> None:
        self.fresh = True
        self.steps = []

    def cycle(self) -> None:
        if not self.steps:
            self.steps = self.plan()
        step = self.steps.pop(0)
        step()

    def plan(self) -> list[Callable[[], None]]:
        p = self.traffic.profile
        self.title = self.traffic.title()
        steps: list[Callable[[], None]] = []
        if self.fresh:
            steps.append(lambda: self.answer("/cancel", "cancel_flow", ""))
        texts = [
            ("/newoffer", "newoffer", "Give it a short title"),
            (self.title, "title", "Describe it"),
            ("Croissants, buns and a loaf", "description", "What do customers pay"),
            ("3,50", "price", "original price"),
            ("9", "original", "How many units"),
            (str(self.random.randint(*p.units)), "quantity", "When can customers pick it up"),
        ]
        steps += [lambda t=t: self.answer(*t) for t in texts]
        steps += [self.day, self.window, self.what_it_is, self.photo_step, self.publish]
        return steps

    def window(self) -> None:
        seq = self.say("18:00-19:30", "window")
        self.message = self.expect(seq, lambda m: "flow:pick:category:bakery" in datas(m), "window")
        self.pause(0.2, 0.5)

    def what_it_is(self) -> None:
        """The optional questions: a category, then diets and allergens left unticked."""
        for tapped, then in (("flow:pick:category:bakery", "flow:pick:diet:done"),
                             ("flow:pick:diet:done", "flow:pick:allergens:done")):
            seq = self.tap(self.message, tapped, "what_it_is")
            self.message = self.expect(seq, lambda m, then=then: then in datas(m), "what_it_is")
        seq = self.tap(self.message, "flow:pick:allergens:done", "what_it_is")
        self.message = self.expect(seq, _has("send a photo"), "what_it_is")

    def answer(self, text: str, step: str, needle: str) -> None:
        seq = self.say(text, step)
        self.message = self.expect(seq, _has(needle), step)
        self.fresh = False
        self.pause(0.2, 0.5)

    def day(self) -> None:
        seq = self.tap(self.message, "flow:pick:day:tomorrow", "day")
        self.expect(seq, _has("Pickup window"), "day")

    def photo_step(self) -> None:
        width, height = self.traffic.profile.photo_size
        seq = self.photo(jpeg(width, height, self.random.randrange(1 << 30)), "photo")
        self.expect(seq, _has("Processing your photo"), "photo")
        title = self.title
        self.message = self.expect(seq, lambda m: "Preview" in text_of(m) and title in text_of(m)
                                   and any(d.startswith("bizoffer:publish:") for d in datas(m)), "preview")

    def publish(self) -> None:
        publish = next(d for d in datas(self.message) if d.startswith("bizoffer:publish:"))
        seq = self.tap(self.message, publish, "publish")
        self.expect(seq, _has("Published!"), "publish")
        self.traffic.record.count("published")
        self.pause(*self.traffic.profile.business_pause_s)


class Probe(Person):
    """A customer the drill moves itself, so that one reservation is in a known place when a
    fault strikes: it opens the probe offer (a deep link, as a shared offer is opened), chooses
    one unit, and then the drill taps "✅ Reserve and pay" at the moment it wants."""

    def __init__(self, traffic: Traffic, user_id: int) -> None:
        super().__init__(traffic, user_id)
        self.client = self.fake.client(timeout=30.0)
        self.confirm: dict = {}

    def ready(self) -> None:
        offer_id = self.traffic.probe_offer
        seq = self.say(f"/start offer_{offer_id}", "probe_open")
        card = self.expect(seq, lambda m: starting(m, f"qty:{offer_id}:1:") is not None, "probe_open")
        seq = self.tap(card, str(starting(card, f"qty:{offer_id}:1:")), "quantity", offer_id)
        self.confirm = self.expect(seq, lambda m: starting(m, f"buy:{offer_id}:1:") is not None, "quantity")

    def buy(self) -> Sent:
        offer_id = self.traffic.probe_offer
        self.tap(self.confirm, str(starting(self.confirm, f"buy:{offer_id}:1:")), "buy", offer_id)
        assert self.last is not None
        return self.last

    def close(self) -> None:
        self.client.close()

    def cycle(self) -> None:
        raise NotImplementedError("the drill moves a probe itself")


def next_probe(traffic: Traffic) -> Probe:
    user_id = traffic.probes.pop(0)
    return Probe(traffic, user_id)
