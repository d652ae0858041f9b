"""What became of the traffic (bench/traffic.py), read from the Telegram and Stripe fakes, Redis
and Postgres: the drills' measuring instruments.

* `Pending.count()`: what the system still has to do (Telegram updates not delivered, messages
  queued, outbox rows unsent, updates not handled, taps not answered, reservations not decided,
  checkouts not created, photos not processed, refunds not made; and, separately, payments Stripe
  took that the ledger does not show yet). All zero: everything pending is done.
* `audit()`: the invariants, each item named so a lost or doubled thing can be looked up:
  updates received / handled / answered / answered more than once (a reply the chat got twice:
  a bot message that no outbox row accounts for, next to its twin that one does), stock (offer
  counters against the ledger and the orders, never oversold), money (Stripe's sessions, charges
  and refunds against the ledger: nothing charged twice, nothing unaccounted), and hand-overs
  that never happened (a reservation, a checkout, a photo, a refund).
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import threading
from typing import Any

from bench.traffic import Sent, Traffic, text_of


class CallLog:
    """Reads the Telegram fake's Bot API call log as it goes (it keeps the last 20,000 calls):
    answers Telegram took per callback query, and calls by method and status."""

    def __init__(self, fake) -> None:
        self.fake = fake
        self.answers: collections.Counter[str] = collections.Counter()
        self.by_method: collections.Counter[str] = collections.Counter()
        self.last_id = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="call-log", daemon=True)

    def start(self) -> CallLog:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.drain()

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            self.drain()

    def drain(self) -> None:
        for call in self.fake.state.recorded_calls(since=self.last_id):
            self.last_id = call["id"]
            self.by_method[f"{call['method']} {call['status']}"] += 1
            # Answers Telegram took: a second one is refused ("query is too old"), which the person
            # never sees (a redelivered update answering again, harmlessly).
            if call["method"].lower() == "answercallbackquery" and call.get("ok"):
                self.answers[str(call["params"].get("callback_query_id"))] += 1


def broker_whereabouts(stack, update_ids: list[int]) -> dict[int, str]:
    """Where the task of each of these updates is in Redis: waiting in a queue, or delivered to a
    worker and not acknowledged (a killed worker's messages wait there for the visibility timeout,
    then kombu's restore sweep puts them back); absent from the result when it is nowhere."""
    import base64
    import re

    from core.queues import QUEUES

    if not update_ids:
        return {}
    wanted = set(update_ids)
    pattern = re.compile(rb'"update_id":\s*(\d+)')
    found: dict[int, str] = {}

    def look(raw: bytes, where: str) -> None:
        try:
            envelope = json.loads(raw)
            body = base64.b64decode(envelope.get("body", ""))
        except (ValueError, TypeError):
            return
        for match in pattern.finditer(body):
            if int(match[1]) in wanted:
                found[int(match[1])] = where

    client = stack.redis_client()
    try:
        for queue in QUEUES:
            for raw in client.lrange(queue, 0, -1):
                look(raw, f"waiting in the {queue} queue")
        for raw in client.hvals("unacked"):
            with contextlib.suppress(ValueError, TypeError, IndexError):
                message = json.loads(raw)[0]
                look(json.dumps(message).encode(), "held by a worker, unacknowledged (back after the visibility "
                                                   "timeout and kombu's next restore sweep)")
    finally:
        client.close()
    return found


def broker_tasks(stack) -> list[tuple[str, str]]:
    """Every task message in Redis now (waiting in a queue; held by a worker: running, or
    counting down to a retry or an ETA; or taken and lost before a worker recorded it, which the
    workers' sweep pushes back from its copy in `undelivered`): its task name and its body, decoded."""
    import base64

    from core.queues import QUEUES

    tasks: list[tuple[str, str]] = []

    def add(envelope: dict) -> None:
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            tasks.append((str(envelope.get("headers", {}).get("task", "")),
                          base64.b64decode(envelope.get("body", "")).decode(errors="replace")))

    client = stack.redis_client()
    try:
        for queue in QUEUES:
            for raw in client.lrange(queue, 0, -1):
                with contextlib.suppress(ValueError):
                    add(json.loads(raw))
        for raw in client.hvals("unacked"):
            with contextlib.suppress(ValueError, IndexError, TypeError):
                add(json.loads(raw)[0])
        for copy in client.hvals("undelivered"):  # "<queue>\n<message>" (core/broker.py)
            with contextlib.suppress(ValueError, IndexError):
                add(json.loads(copy.split(b"\n", 1)[1]))
    finally:
        client.close()
    return tasks


def retrying_tasks(stack) -> int:
    """Task messages a worker holds to run again after a countdown (Celery's retry after a
    transient error, such as Postgres being away): work still to come, though no queue shows it."""
    client = stack.redis_client()
    try:
        held = client.hvals("unacked")
    finally:
        client.close()
    retrying = 0
    for raw in held:
        with contextlib.suppress(ValueError, IndexError, TypeError, AttributeError):
            retrying += bool(json.loads(raw)[0].get("headers", {}).get("retries"))
    return retrying


def broker_text(stack, tasks: list[tuple[str, str]] | None = None) -> str:
    """The bodies of every task message in Redis, as one text to search."""
    return "\n".join(body for _name, body in (tasks if tasks is not None else broker_tasks(stack)))


def queued_deliveries(tasks: list[tuple[str, str]]) -> set[int]:
    """Outbox rows a notifications.deliver_in_order task will still send: in Redis, or recorded as a
    hand-over not published yet (a retry or redelivery of its task, or the sweeper, publishes it)."""
    ids: set[int] = set()
    for name, body in tasks:
        if name == "notifications.deliver_in_order":
            with contextlib.suppress(ValueError, IndexError, TypeError):
                ids.update(int(i) for i in json.loads(body)[0][0])
    for _origin, name, args in unsent_handovers():
        if name == "notifications.deliver_in_order" and args:
            with contextlib.suppress(ValueError, TypeError):
                ids.update(int(i) for i in args[0])
    return ids


def _db_rows(sql: str, **params: Any) -> list[Any]:
    import sqlalchemy as sa

    from core import db

    with db.engine().connect() as connection:
        return list(connection.execute(sa.text(sql), params))


def _bot(fake):
    return fake.state.default_bot


def undelivered_updates(fake) -> set[int]:
    bot = _bot(fake)
    with fake.state.lock:
        return {u["update_id"] for u in bot.pending_updates} | set(bot.in_flight)


def in_inbox(stack, update_ids: list[int]) -> set[int]:
    """Of these updates, those whose copy the inbox keeps (core.inbox): acknowledged to Telegram and
    not done yet (not processed, or its own messages unsent); `maintenance.requeue_lost_updates`
    queues them again if a worker lost them."""
    from core.inbox import MESSAGES_KEY

    if not update_ids:
        return set()
    client = stack.redis_client()
    try:
        found = client.hmget(MESSAGES_KEY, [str(u) for u in update_ids])
    finally:
        client.close()
    return {update_id for update_id, copy in zip(update_ids, found, strict=True) if copy is not None}


def unsent_handovers() -> list[tuple[str, str, list[Any]]]:
    """Hand-overs recorded and not published yet (core.handover): their origin, task and arguments.
    The origin's redelivery or the `maintenance.resend_handovers` sweeper publishes them."""
    return [(str(origin or ""), str(name), list(args or [])) for origin, name, args in _db_rows(
        "SELECT origin, task_name, args FROM handovers WHERE sent_at IS NULL")]


def checkouts_on_their_way(tasks: list[tuple[str, str]]) -> set[int]:
    """Orders whose payments.create_checkout is in Redis or recorded as an unsent hand-over."""
    orders: set[int] = set()
    for name, body in tasks:
        if name == "payments.create_checkout":
            with contextlib.suppress(ValueError, IndexError, TypeError):
                orders.add(int(json.loads(body)[0][0]))
    for _origin, name, args in unsent_handovers():
        if name == "payments.create_checkout" and args:
            with contextlib.suppress(ValueError, TypeError):
                orders.add(int(args[0]))
    return orders


def answers_unmarked(fake) -> list[int]:
    """Answers to button presses recorded as pending whose press Telegram shows answered: sent, and
    their "sent" mark was never written (core.marks: a batch lost while Postgres was away). Nothing
    is owed; a redelivery or the ten-minute sweeper would find Telegram refusing a second answer."""
    rows = _db_rows("SELECT id, payload->>'callback_query_id' FROM notifications "
                    "WHERE status = 'pending' AND kind = 'callback_answer'")
    queries = _bot(fake).callback_queries
    with fake.state.lock:
        return [row_id for row_id, query_id in rows
                if (record := queries.get(str(query_id))) is not None and record.answer is not None]


def unanswered_taps(fake, taps: list[Sent]) -> list[Sent]:
    queries = _bot(fake).callback_queries
    with fake.state.lock:
        return [t for t in taps if (record := queries.get(str(t.callback_query_id))) is None or record.answer is None]


def stripe_idle(stack) -> bool:
    return bool(stack.stripe.state.wait_deliveries_idle(0))


STRIKES = 6  # looks in a row, half a second apart, before something pending counts as lost for good


class Pending:
    """What is left to do, counted cheaply enough to ask every half second. Sets of updates and
    taps only shrink, so each question is asked about what was not done at the last look."""

    GLOBAL = ("telegram_undelivered", "queued", "retrying", "outbox_unsent", "checkouts_missing",
              "photos_processing", "refunds_awaiting", "payments_unrecorded")

    def __init__(self, stack, traffic: Traffic, phase: str | None = None,
                 carried: dict[str, int] | None = None) -> None:
        """Updates and taps of `phase` only (all when None); the whole system's counters are
        compared with what an earlier phase left (`carried`), so one thing lost for good does
        not keep every later phase from being done."""
        self.stack = stack
        self.traffic = traffic
        self.phase = phase
        self.carried = carried or {}
        self.unprocessed: dict[int, Sent] = {}
        self.unanswered: dict[str, Sent] = {}
        self.undecided: dict[int, Sent] = {}  # buy taps whose reservation is not decided yet
        self.lost_for_good: dict[str, list[int]] = {"updates_unhandled": [], "taps_unanswered": [],
                                                    "reservations_undecided": [], "outbox_unsent": []}
        self.unsent: list[int] = []
        self._strikes: collections.Counter[tuple[str, int]] = collections.Counter()
        self._seen = 0

    def _take_new(self) -> None:
        with self.traffic.record.lock:
            new = self.traffic.record.sent[self._seen:]
            self._seen += len(new)
        for sent in new:
            if self.phase is not None and sent.phase != self.phase:
                continue
            self.unprocessed[sent.update_id] = sent
            if sent.kind == "callback" and sent.callback_query_id:
                self.unanswered[sent.callback_query_id] = sent
            if sent.step == "buy":
                self.undecided[sent.update_id] = sent

    def count(self) -> dict[str, int]:
        """Raises while Redis or Postgres is unreachable (nothing can be said then)."""
        self._take_new()
        stack, fake = self.stack, self.stack.telegram
        # First: a payment is recorded in the same transaction as the customer's messages about it,
        # so once it is seen recorded here, the questions below see those messages. Asked last, a
        # payment committed between the questions would read as done with its messages unseen.
        unrecorded_payments = len(payments_unrecorded(stack))
        counts = {"telegram_undelivered": len(undelivered_updates(fake))}
        counts["queued"] = sum(stack.queue_lengths().values())
        # A buy's Pay button can hang on such a retry with nothing else pending: the order is held
        # already (the customer tapped again), so only the retrying checkout task still has to send it.
        counts["retrying"] = retrying_tasks(stack)
        unmarked = set(answers_unmarked(fake))
        self.unsent = [row[0] for row in _db_rows("SELECT id FROM notifications WHERE status = 'pending'")
                       if row[0] not in unmarked]
        counts["outbox_unsent"] = len(self.unsent)
        if self.unprocessed:
            done = {row[0] for row in _db_rows("SELECT update_id FROM processed_updates WHERE update_id = ANY(:ids)",
                                               ids=list(self.unprocessed))}
            for update_id in done:
                self.unprocessed.pop(update_id, None)
        counts["updates_unhandled"] = len(self.unprocessed)
        for tap in list(self.unanswered.values()):
            if not unanswered_taps(fake, [tap]):
                self.unanswered.pop(str(tap.callback_query_id), None)
        counts["taps_unanswered"] = len(self.unanswered)
        if self.undecided:
            decided = reservations_decided(list(self.undecided.values()))
            for update_id in decided:
                self.undecided.pop(update_id, None)
        counts["reservations_undecided"] = len(self.undecided)
        (row,) = _db_rows("""
            SELECT (SELECT count(*) FROM orders WHERE status = 'held' AND checkout_session_id IS NULL),
                   (SELECT count(*) FROM offers WHERE photo_status = 'processing'),
                   (SELECT count(*) FROM orders o
                     JOIN ledger_entries p ON p.order_id = o.id AND p.kind = 'payment'
                     WHERE o.status IN ('expired', 'cancelled')
                       AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.order_id = o.id AND r.kind = 'refund'))
        """)
        counts["checkouts_missing"], counts["photos_processing"], counts["refunds_awaiting"] = map(int, row)
        counts["payments_unrecorded"] = unrecorded_payments
        self._give_up_on_the_stuck(counts)
        return counts

    def _give_up_on_the_stuck(self, counts: dict[str, int]) -> None:
        """An update, tap or reservation that nothing can move any more is lost for good, not
        pending: Telegram has handed the update over, and no task that could still act on it is
        anywhere in Redis (waiting in a queue, or held by a worker, running or counting down).
        Seen so at six looks in a row (three seconds: a worker that lost Redis keeps what it held
        and puts it back once Redis answers), it no longer keeps the phase from being done."""
        delivered = [u for u in self.unprocessed if u not in undelivered_updates(self.stack.telegram)]
        handled_taps = [t.update_id for t in self.unanswered.values() if t.update_id not in self.unprocessed]
        handled_buys = [u for u in self.undecided if u not in self.unprocessed]
        if not (delivered or handled_taps or handled_buys or self.unsent):
            return
        tasks = broker_tasks(self.stack)
        text = broker_text(self.stack, tasks)
        queued = queued_deliveries(tasks)
        kept = in_inbox(self.stack, delivered)  # the inbox queues them again (a sweep): late, not lost
        origins = {origin for origin, _name, _args in unsent_handovers()}

        def nowhere(update_id: int, *keys: str) -> bool:
            return (not re.search(rf'"update_id":\s*{update_id}\b', text) and not any(k in text for k in keys)
                    and update_id not in kept and f"update:{update_id}" not in origins)

        for name, ids, keys in (("updates_unhandled", delivered, ()), ("taps_unanswered", handled_taps, ()),
                                ("reservations_undecided", handled_buys, ("tap:{}",))):
            for update_id in ids:
                strike = (name, update_id)
                self._strikes[strike] = self._strikes[strike] + 1 if nowhere(
                    update_id, *(k.format(update_id) for k in keys)) else 0
                if self._strikes[strike] >= STRIKES and update_id not in self.lost_for_good[name]:
                    self.lost_for_good[name].append(update_id)
        # An unsent outbox row that no delivery task in Redis will send (and no update being handled,
        # six looks in a row) waits for the ten-minute sweeper, maintenance.retry_failed_notifications.
        for row_id in self.unsent:
            strike = ("outbox_unsent", row_id)
            self._strikes[strike] = self._strikes[strike] + 1 if row_id not in queued else 0
            if self._strikes[strike] >= STRIKES and row_id not in self.lost_for_good["outbox_unsent"]:
                self.lost_for_good["outbox_unsent"].append(row_id)
        gone = self.lost_for_good["updates_unhandled"]  # a lost update's tap and reservation go with it
        for name, lost in self.lost_for_good.items():
            ids = set(lost) | (set(gone) if name in ("taps_unanswered", "reservations_undecided") else set())
            counts[name] -= len([u for u in ids if self._still_counted(name, u)])

    def _still_counted(self, name: str, update_id: int) -> bool:
        if name == "outbox_unsent":
            return update_id in self.unsent
        if name == "updates_unhandled":
            return update_id in self.unprocessed
        if name == "reservations_undecided":
            return update_id in self.undecided
        return any(t.update_id == update_id for t in self.unanswered.values())

    def system_done(self, counts: dict[str, int]) -> bool:
        """Nothing left that the system knows of (payments Stripe has not told it about aside)."""
        return all(value <= (self.carried.get(key, 0) if key in self.GLOBAL else 0)
                   for key, value in counts.items() if key != "payments_unrecorded")

    def payments_done(self, counts: dict[str, int]) -> bool:
        return counts["payments_unrecorded"] <= self.carried.get("payments_unrecorded", 0)

    def leftovers(self, counts: dict[str, int]) -> dict[str, int]:
        """What the next phase starts with: the whole system's counters now."""
        return {key: counts.get(key, 0) for key in self.GLOBAL}


def reservations_decided(buys: list[Sent]) -> set[int]:
    """Buy taps whose outcome is known: handled without handing a reservation over (refused at
    sight, price changed), or handed over and then an order placed or a refusal recorded."""
    ids = [b.update_id for b in buys]
    handled = {row[0] for row in _db_rows("SELECT update_id FROM processed_updates WHERE update_id = ANY(:ids)",
                                          ids=ids)}
    handed_over = handed_over_reservations(list(handled))
    decided = handled - handed_over
    pending = [b for b in buys if b.update_id in handed_over]
    if pending:
        refused = {int(row[0].split(":")[-1]) for row in _db_rows(
            "SELECT idempotency_key FROM notifications WHERE idempotency_key = ANY(:keys)",
            keys=[f"reserve:tap:{b.update_id}" for b in pending])}
        decided |= refused
        placed = {(row[0], row[1]) for row in _db_rows(
            "SELECT customer_id, offer_id FROM orders WHERE customer_id = ANY(:customers)",
            customers=list({b.chat_id for b in pending}))}
        decided |= {b.update_id for b in pending if (b.chat_id, b.offer_id) in placed}
    return decided


def handed_over_reservations(update_ids: list[int]) -> set[int]:
    """Of these buy taps, those whose handler handed a reservation over (it answered "⏳ Reserving…")."""
    if not update_ids:
        return set()
    rows = _db_rows("""
        SELECT idempotency_key FROM notifications
        WHERE idempotency_key LIKE 'update:%' AND split_part(idempotency_key, ':', 2)::bigint = ANY(:ids)
          AND payload->>'text' LIKE '%Reserving%'
    """, ids=update_ids)
    return {int(row[0].split(":")[1]) for row in rows}


def stuck_details(stack, stuck: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """For each wait that ended without its answer: what the person's chat shows last, and the
    chat's outbox rows of the last minutes (an edit dropped, superseded or never sent tells which
    it was), so an intermittent finding can be explained from the report alone."""
    fake = stack.telegram
    details = []
    for wait in stuck[:5]:
        chat_id = wait["chat_id"]
        with fake.state.lock:
            chat = _bot(fake).chats.get(chat_id)
            shown = [] if chat is None else [
                {"message_id": m["message_id"], "text": text_of(m)[:70]}
                for m in (chat.transcript_entry(m) for m in chat.messages.values() if m.sender == "bot")][-3:]
        rows = [{"id": r[0], "key": r[1], "kind": r[2], "status": str(r[3]), "error": r[4], "edits": r[5],
                 "text": (r[6] or "")[:50]}
                for r in _db_rows("""
                    SELECT id, idempotency_key, kind, status, last_error, payload->>'edit_message_id',
                           payload->>'text'
                    FROM notifications WHERE chat_id = :chat AND created_at > now() - interval '3 minutes'
                    ORDER BY id DESC LIMIT 8""", chat=chat_id)]
        details.append({**wait, "chat_shows": shown, "outbox": rows})
    return details


def payments_unrecorded(stack) -> list[str]:
    """Checkout Sessions Stripe has taken the money for, whose order has no payment row yet."""
    paid = {s["metadata"].get("order_id"): s["id"] for s in stack.stripe.state.all_objects("checkout.session")
            if s.get("payment_status") == "paid"}
    if not paid:
        return []
    recorded = {str(row[0]) for row in _db_rows(
        "SELECT order_id FROM ledger_entries WHERE kind = 'payment' AND order_id = ANY(:ids)",
        ids=[int(order) for order in paid if order])}
    return sorted(session for order, session in paid.items() if str(order) not in recorded)


# --------------------------------------------------------------------------- the audit

# Kinds of findings. Lost: "update" (acknowledged to Telegram, never handled), "reply" (an update's
# own answer never sent), "tap" (a button press never answered: the spinner stays), "handover"
# (work decided in a committed transaction that never happened: a reservation, a checkout, a
# photo, a message, a refund), "stock", "money". Doubled: "reply", "message", "tap", "money".
LOST_KINDS = ("update", "reply", "tap", "handover", "stock", "money")
DOUBLED_KINDS = ("reply", "message", "tap", "money")


class Findings:
    def __init__(self) -> None:
        self.lost: list[dict[str, str]] = []
        self.doubled: list[dict[str, str]] = []
        self.delayed: list[str] = []  # not lost: still on its way
        self.failed: list[str] = []  # handled, and the user told it failed (not lost, not right either)

    def lose(self, kind: str, what: str) -> None:
        assert kind in LOST_KINDS, kind
        self.lost.append({"kind": kind, "what": what})

    def late(self, what: str) -> None:
        self.delayed.append(what)

    def fail(self, what: str) -> None:
        self.failed.append(what)

    def double(self, kind: str, what: str) -> None:
        assert kind in DOUBLED_KINDS, kind
        self.doubled.append({"kind": kind, "what": what})


def _unique(items: list[dict[str, str]]) -> list[dict[str, str]]:
    seen: dict[str, dict[str, str]] = {}
    for item in items:
        seen.setdefault(item["what"], item)
    return sorted(seen.values(), key=lambda item: (item["kind"], item["what"]))


def audit(stack, traffic: Traffic, calls: CallLog, phase: str | None = None) -> dict[str, Any]:
    """The invariants now. Updates are those sent in `phase` (all when None); stock, money and
    hand-overs are the whole system's. Each lost or doubled thing is named (with its kind), so a
    phase can report what is new, and runs can be compared."""
    calls.drain()
    with traffic.record.lock:
        sent = [s for s in traffic.record.sent if phase is None or s.phase == phase]
        payments = [p for p in traffic.record.payments if phase is None or p.phase == phase]
        stuck = [s for s in traffic.record.stuck if phase is None or s["phase"] == phase]
    found = Findings()
    twins = doubled_messages(stack)
    updates = _updates(stack, sent, twins, calls, found=found)
    for twin in twins:
        if twin["key"] and not twin["key"].startswith("update:"):
            found.double("message", f"message {twin['key']} to chat {twin['chat_id']} sent twice: "
                                    f"{twin['text'][:60]!r}")
    _handovers(sent, found, broker_tasks(stack))
    stock = _stock(found)
    money = _money(stack, found)
    return {
        "updates": updates,
        "payments_made": len(payments),
        "stock": stock,
        "money": money,
        "lost": _unique(found.lost),
        "doubled": _unique(found.doubled),
        "late": sorted(found.delayed),
        "failed": sorted(found.failed),
        "answers_sent_unmarked": len(answers_unmarked(stack.telegram)),
        "sent_unrecorded": [t for t in twins if not t["key"]],
        "waits_without_answer": dict(collections.Counter(s["step"] for s in stuck)),
        "waits_without_answer_details": stuck_details(stack, stuck),
        "dead_letters": _dead_letters(),
    }


def _replies_by_update(update_ids: list[int]) -> dict[int, list[tuple[int, str, str]]]:
    """An update's own outbox rows (id, status, key), its button's answer aside (checked at Telegram:
    a tap is answered or not)."""
    replies: dict[int, list[tuple[int, str, str]]] = collections.defaultdict(list)
    if not update_ids:
        return replies
    for row_id, key, status in _db_rows("""
        SELECT id, idempotency_key, status FROM notifications
        WHERE idempotency_key LIKE 'update:%' AND split_part(idempotency_key, ':', 2)::bigint = ANY(:ids)
          AND kind <> 'callback_answer'
    """, ids=update_ids):
        replies[int(key.split(":")[1])].append((row_id, str(status), str(key)))
    return replies


def _updates(stack, sent: list[Sent], twins, calls: CallLog, *, found: Findings) -> dict[str, Any]:
    fake = stack.telegram
    undelivered = undelivered_updates(fake)
    ids = [s.update_id for s in sent]
    # Read in the order things happen (handled, then its replies, then their tasks), so an update
    # committed while the audit reads is not taken for one handled without a reply.
    handled = {row[0] for row in _db_rows("SELECT update_id FROM processed_updates WHERE update_id = ANY(:ids)",
                                          ids=ids)} if ids else set()
    replies = _replies_by_update(ids)
    unanswered_tap_ids = {t.update_id for t in unanswered_taps(fake, [s for s in sent if s.kind == "callback"])}
    queued = queued_deliveries(broker_tasks(stack))
    twice = collections.Counter(int(t["key"].split(":")[1]) for t in twins if t["key"].startswith("update:"))
    counts: collections.Counter[str] = collections.Counter()
    unhandled: list[tuple[int, str]] = []
    unsent_unqueued: list[tuple[int, str, str, str]] = []  # handled, a message unsent and no task to send it
    for s in sent:
        counts["sent"] += 1
        counts[f"sent_{s.kind}"] += 1
        name = f"update {s.update_id} ({s.step}, chat {s.chat_id})"
        if s.update_id in undelivered:
            found.lose("update", f"{name}: never delivered to the webhook")
            continue
        counts["received"] += 1
        if s.update_id not in handled:
            unhandled.append((s.update_id, name))
            continue
        counts["handled"] += 1
        own = replies.get(s.update_id, [])
        if any(key.endswith(":error") for _row, _status, key in own):
            counts["failed"] += 1
            found.fail(f"{name}: told “something went wrong, not completed” (engine.handle_failure)")
        unsent = [row_id for row_id, status, _ in own if status not in ("sent", "dropped")]
        if [row_id for row_id in unsent if row_id not in queued]:
            unsent_unqueued.append((s.update_id, "reply", name, f"{len(unsent)} of its {len(own)} replies never sent"))
        elif unsent:
            found.late(f"{name}: {len(unsent)} of its replies still queued (Telegram's pace for one chat)")
        if s.update_id in unanswered_tap_ids:
            unsent_unqueued.append((s.update_id, "tap", name, "tap never answered (the spinner stays)"))
        if not unsent and s.update_id not in unanswered_tap_ids and (own or s.kind == "callback"):
            counts["answered"] += 1
        if not own and s.kind == "message":
            found.lose("reply", f"{name}: handled without a reply")
        answers = calls.answers.get(str(s.callback_query_id), 0) if s.kind == "callback" else 0
        if twice.get(s.update_id):
            counts["answered_more_than_once"] += 1
            found.double("reply", f"{name}: its reply sent {1 + twice[s.update_id]} times")
        if answers > 1:
            found.double("tap", f"{name}: tap answered {answers} times")
    # Its worker died between the update's commit and the sending: the inbox queues it again.
    kept_unsent = in_inbox(stack, sorted({update_id for update_id, *_ in unsent_unqueued}))
    for update_id, kind, name, what in unsent_unqueued:
        if update_id in kept_unsent:
            found.late(f"{name}: handled, its {kind} not sent yet; its copy is in the inbox "
                       "(maintenance.requeue_lost_updates queues it again)")
        else:
            found.lose(kind, f"{name}: {what}")
    whereabouts = broker_whereabouts(stack, [update_id for update_id, _name in unhandled])
    kept = in_inbox(stack, [update_id for update_id, _name in unhandled])
    for update_id, name in unhandled:
        if update_id in kept:
            found.late(f"{name}: acknowledged, not handled yet; its copy is in the inbox "
                       "(maintenance.requeue_lost_updates queues it again)")
            continue
        found.lose("update", f"{name}: acknowledged, never handled; its task is "
                             + whereabouts.get(update_id, "nowhere in Redis"))
    return {k: counts.get(k, 0) for k in ("sent", "sent_message", "sent_callback", "received", "handled",
                                          "answered", "answered_more_than_once", "failed")}


def doubled_messages(stack) -> list[dict[str, Any]]:
    """Bot messages in the chats that no outbox row accounts for (every message is sent through
    the outbox, which records the message id it got): each is a second send of a message. Its
    twin (same text and buttons) names the outbox row; without a twin, key ''."""
    referenced: dict[tuple[int, int], str] = {}
    for chat_id, message_id, key in _db_rows(
            "SELECT chat_id, telegram_message_id, idempotency_key FROM notifications "
            "WHERE telegram_message_id IS NOT NULL"):
        referenced[(int(chat_id), int(message_id))] = key
    fake = stack.telegram
    found = []
    with fake.state.lock:
        for chat_id, chat in _bot(fake).chats.items():
            by_content: dict[str, str] = {}
            orphans = []
            for message in chat.messages.values():
                if message.sender != "bot":
                    continue
                entry = chat.transcript_entry(message)
                content = text_of(entry) + json.dumps(message.reply_markup, sort_keys=True, default=str)
                key = referenced.get((chat_id, message.message_id))
                if key is None:
                    orphans.append((content, entry))
                else:
                    by_content.setdefault(content, key)
            found.extend({"chat_id": chat_id, "message_id": entry["message_id"], "text": text_of(entry),
                          "key": by_content.get(content, "")} for content, entry in orphans)
    return found


def _handovers(sent: list[Sent], found: Findings, tasks: list[tuple[str, str]]) -> None:
    buys = [s for s in sent if s.step == "buy"]
    text = "\n".join(body for _name, body in tasks)
    origins = {origin for origin, _name, _args in unsent_handovers()}
    if buys:
        undecided = {b.update_id for b in buys} - reservations_decided(buys)
        handled = {row[0] for row in _db_rows("SELECT update_id FROM processed_updates WHERE update_id = ANY(:ids)",
                                              ids=list(undecided))} if undecided else set()
        for b in buys:
            if b.update_id in undecided and b.update_id in handled:
                what = (f"update {b.update_id} (buy, chat {b.chat_id}): answered “Reserving…”, reservation "
                        f"not placed (offer {b.offer_id})")
                if f"tap:{b.update_id}" in text or f"update:{b.update_id}" in origins:
                    found.late(f"{what} yet: its task is in Redis or its hand-over is recorded unsent")
                else:
                    found.lose("handover", f"{what}, nor on its way")
    on_their_way = checkouts_on_their_way(tasks)
    for order_id, customer in _db_rows(
            "SELECT id, customer_id FROM orders WHERE status = 'held' AND checkout_session_id IS NULL"):
        if order_id in on_their_way:
            found.late(f"order {order_id} (chat {customer}): held, its Checkout Session on its way")
        else:
            found.lose("handover", f"order {order_id} (chat {customer}): held, Checkout Session never created "
                                   "(no Pay button)")
    for offer_id, business in _db_rows("SELECT id, business_id FROM offers WHERE photo_status = 'processing'"):
        found.lose("handover", f"offer {offer_id} (business {business}): photo never processed (no preview)")
    queued = queued_deliveries(tasks)
    for row_id, key, chat_id, kind in _db_rows(
            "SELECT id, idempotency_key, chat_id, kind FROM notifications WHERE status IN ('pending', 'failed') "
            "AND idempotency_key NOT LIKE 'update:%'"):
        if row_id in queued:
            found.late(f"message {key} ({kind}) to chat {chat_id}: still queued (Telegram's pace for one chat), "
                       "or its hand-over not published yet")
        else:
            found.lose("handover", f"message {key} ({kind}) to chat {chat_id}: recorded, no task will send it "
                                   "(only the ten-minute sweeper)")
    for order_id, status, amount in _db_rows("""
        SELECT o.id, o.status, p.amount_minor FROM orders o
        JOIN ledger_entries p ON p.order_id = o.id AND p.kind = 'payment'
        WHERE o.status IN ('expired', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.order_id = o.id AND r.kind = 'refund')
    """):
        found.lose("handover", f"order {order_id} ({status} after payment): refund of {amount} never made")


def _stock(found: Findings) -> dict[str, Any]:
    from core import db
    from domain.reservations import ledger_problems

    (row,) = _db_rows("""
        SELECT count(*), coalesce(sum(quantity), 0), coalesce(sum(units_sold), 0), coalesce(sum(units_held), 0),
               count(*) FILTER (WHERE units_sold + units_held > quantity),
               (SELECT coalesce(sum(quantity), 0) FROM orders WHERE status IN ('paid', 'collected')),
               (SELECT coalesce(sum(quantity), 0) FROM orders WHERE status = 'held'),
               (SELECT count(*) FROM orders)
        FROM offers WHERE status <> 'draft'
    """)
    offers, units, sold, held, oversold, paid_units, held_units, orders = map(int, row)
    with db.session_scope() as session:
        problems = ledger_problems(session, money=False)
    for problem in problems:
        found.lose("stock", problem)
    exact = not problems and oversold == 0 and (sold, held) == (paid_units, held_units)
    return {"offers": offers, "units": units, "sold": sold, "held": held, "orders": orders,
            "orders_paid_units": paid_units, "orders_held_units": held_units, "oversold_offers": oversold,
            "problems": problems, "exact": exact}


def _money(stack, found: Findings) -> dict[str, Any]:
    from core import db
    from domain.reservations import ledger_problems

    state = stack.stripe.state
    sessions = state.all_objects("checkout.session")
    intents = {i["id"]: i for i in state.all_objects("payment_intent")}
    refunds = [r for r in state.all_objects("refund") if r.get("status") in ("succeeded", "pending")]
    order_of_intent: dict[str, int] = {}
    sessions_per_order: collections.Counter[int] = collections.Counter()
    for session in sessions:
        order = session.get("metadata", {}).get("order_id")
        if not order:
            continue
        sessions_per_order[int(order)] += 1
        if session.get("payment_intent"):
            order_of_intent[session["payment_intent"]] = int(order)
    charged: dict[int, list[int]] = collections.defaultdict(list)
    for intent_id, intent in intents.items():
        if intent.get("status") == "succeeded" and intent_id in order_of_intent:
            charged[order_of_intent[intent_id]].append(int(intent["amount"]))
    refunded: dict[int, list[int]] = collections.defaultdict(list)
    for refund in refunds:
        if refund.get("payment_intent") in order_of_intent:
            refunded[order_of_intent[refund["payment_intent"]]].append(int(refund["amount"]))
    ledger_paid: dict[int, int] = {}
    ledger_refunded: dict[int, int] = {}
    for order_id, kind, amount in _db_rows(
            "SELECT order_id, kind, amount_minor FROM ledger_entries WHERE kind IN ('payment', 'refund')"):
        (ledger_paid if kind == "payment" else ledger_refunded)[int(order_id)] = int(amount)
    for order, count in sessions_per_order.items():
        if count > 1:
            found.double("money", f"order {order}: {count} Checkout Sessions")
    _compare(found, "charged", charged, ledger_paid)
    _compare(found, "refunded", refunded, ledger_refunded)
    with db.session_scope() as session:
        problems = [p for p in ledger_problems(session, money=True) if "payments - refunds" in p]
    for problem in problems:
        if "(paid)" in problem or "(collected)" in problem:
            found.lose("money", problem)  # cancelled/expired ones are refunds not made: a lost hand-over
    charged_total = sum(sum(a) for a in charged.values())
    refunded_total = sum(sum(a) for a in refunded.values())
    (row,) = _db_rows("SELECT coalesce(sum(amount_minor), 0) FROM orders WHERE status IN ('paid', 'collected')")
    # Money taken for orders that were then called off, not given back yet: a refund whose hand-over
    # was lost (reported as such), or one on its way.
    (owed,) = _db_rows("""
        SELECT count(*), coalesce(sum(p.amount_minor), 0) FROM orders o
        JOIN ledger_entries p ON p.order_id = o.id AND p.kind = 'payment'
        WHERE o.status IN ('expired', 'cancelled')
          AND NOT EXISTS (SELECT 1 FROM ledger_entries r WHERE r.order_id = o.id AND r.kind = 'refund')
    """)
    money_problems = [p for p in problems if "(paid)" in p or "(collected)" in p]
    return {
        "checkout_sessions": len(sessions),
        "charges": sum(len(a) for a in charged.values()),
        "charged_minor": charged_total,
        "refunds": sum(len(a) for a in refunded.values()),
        "refunded_minor": refunded_total,
        "ledger_payments": len(ledger_paid),
        "ledger_payments_minor": sum(ledger_paid.values()),
        "ledger_refunds": len(ledger_refunded),
        "ledger_refunds_minor": sum(ledger_refunded.values()),
        "paid_orders_minor": int(row[0]),
        "refunds_owed": int(owed[0]),
        "refunds_owed_minor": int(owed[1]),
        "problems": problems,
        # Stripe and the ledger agree, order by order, and what was kept is what paid orders cost
        # (plus what is owed back, counted apart).
        "exact": (charged_total == sum(ledger_paid.values()) and refunded_total == sum(ledger_refunded.values())
                  and charged_total - refunded_total == int(row[0]) + int(owed[1]) and not money_problems),
    }


def _compare(found: Findings, what: str, at_stripe: dict[int, list[int]], ledger: dict[int, int]) -> None:
    """Money moved at Stripe against the ledger rows, per order: once each, the same amounts."""
    for order, amounts in at_stripe.items():
        if len(amounts) > 1:
            found.double("money", f"order {order}: {what} {len(amounts)} times at Stripe")
        if order not in ledger:
            found.lose("money", f"order {order}: {what} {sum(amounts)} at Stripe, not in the ledger")
        elif ledger[order] != sum(amounts):
            found.lose("money", f"order {order}: {what} {sum(amounts)} at Stripe, ledger says {ledger[order]}")
    for order in ledger:
        if order not in at_stripe:
            found.lose("money", f"order {order}: {what} in the ledger, not at Stripe")


def _dead_letters() -> dict[str, int]:
    return {str(name): int(count) for name, count in _db_rows(
        "SELECT task_name, count(*) FROM dead_letters GROUP BY task_name")}
