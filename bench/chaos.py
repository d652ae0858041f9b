"""`make chaos`: fault drills under mixed traffic, with figures per fault.

    python -m bench.chaos                      # Redis down 60 s, the full drill
    python -m bench.chaos --short              # Redis down 10 s, small traffic (about 2 minutes)
    python -m bench.chaos --redis-down 30 --faults redis,gateway

The whole system runs as `make run` runs it (bench/stack.py: gateway, a worker per queue, beat,
the metrics exporter, under make run's supervisor), on a private Redis and Postgres, against the
Telegram and Stripe fakes. People (bench/traffic.py) browse, race for offers, pay on Stripe's
hosted checkout page, cancel (refunds), and businesses publish offers with photos, which sends
deal alerts. Telegram delivers every update to the webhook and retries until it is acknowledged.

The drill is a series of phases: first one without a fault (the baseline: what the instruments
say when nothing goes wrong), then one per fault. In each phase the traffic runs, the fault
happens while it runs, the traffic stops (each person finishes the step they are in) once the
fault has ended, and the drill measures how long the system takes until nothing is pending
(bench/invariants.py: `Pending`; what nothing can move any more counts as lost, not pending),
then audits what became of the phase's updates, the stock and the money.

Where a fault hurts most at one line, a probe (a customer the drill moves itself) is held at that
line when the fault strikes, so the drill finds the same thing every run:

* ``redis``: Redis stopped for ``--redis-down`` seconds, then started again (its append-only file
  keeps what it had); the probe's "Reserve and pay" is held at its chat's advisory lock and let go
  once Redis is stopping, so its transaction commits while Redis is down;
* ``postgres``: Postgres stopped (fast shutdown: every connection dropped) and started again
  after ``--postgres-down`` seconds;
* ``worker_child``: a pool process of ``--kill-worker`` SIGKILLed: the one handling the probe's
  tap, after its commit, while Telegram holds its answer to the button press;
* ``worker_main``: that worker's main process SIGKILLed, stopped (SIGSTOP) first so that its
  waiting BRPOP takes the probe's update and cannot read it, and killed once its pool has finished
  the tasks it was running (a process killed while Telegram takes a message is ``mid_send``'s, in
  docs/reliability.md). The supervisor kills its pool and starts it again; what it held properly
  comes back after the visibility timeout, ``--visibility-timeout``, and kombu's restore sweep;
* ``beat``: beat SIGKILLed (it waits for its own lock, up to 90 s, once restarted);
* ``gateway``: the gateway SIGKILLed and restarted by the supervisor.

Writes bench/chaos.json and the chaos section of bench/report.md (between its markers).
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self

import celeryconfig
from beat_schedule import DEFAULT_SCHEDULE
from bench import report_md
from bench.invariants import CallLog, Pending, audit, broker_whereabouts, stripe_idle, undelivered_updates
from bench.stack import Stack, wait_until
from bench.traffic import Probe, Profile, Sent, Traffic, next_probe, text_of
from core.inbox import SETTLE_MS
from core.outbox import MAX_INLINE_WAIT_SECONDS

HERE = Path(__file__).resolve().parent
# Redis last: stopped for 60 s it wedged three of the six workers for good (README, "Fault drills"),
# which would void every phase after it.
FAULTS = ("postgres", "worker_child", "worker_main", "beat", "gateway", "redis")
DONE_TARGET_S = 30.0  # after Redis or Postgres is back, everything pending is done within this
KILLS = ("worker_child", "worker_main", "beat", "gateway")
# A pool this long without CPU has finished its tasks: twice as long as a reply waits for its turn
# under Telegram's limits before it is handed over.
POOL_STILL_S = 2 * MAX_INLINE_WAIT_SECONDS
# kombu's Redis transport looks for messages whose worker died every unacked_restore_interval (10 s)
# times unacked_restore_throttle (10) per worker process: up to 100 s after the visibility timeout.
RESTORE_SWEEP_S = 100.0
# beat's maintenance.requeue_lost_updates: on its schedule (beat_schedule.py), for updates unprocessed
# for the updates queue's visibility timeout plus 15 s (tasks/maintenance.py: _updates_grace).
INBOX_SWEEP_EVERY_S = DEFAULT_SCHEDULE["requeue-lost-updates"]["schedule"].total_seconds()
INBOX_GRACE_EXTRA_S = 15.0
# A beat started after its predecessor was killed sends nothing until the dead one's lock expires
# (core/beat.py): up to the lock's timeout after the kill, then its next tick.
BEAT_LOCK_FREE_S = celeryconfig.redbeat_lock_timeout + celeryconfig.beat_max_loop_interval
# With operator_sweep, what an operator does when updates are still unanswered this long after Redis is back.
OPERATOR_SWEEP_AFTER_S = 10.0

# operator_sweep: after the worker's main process is killed, the drill does what an operator would
# (`maintenance.requeue_lost_updates` with grace 0) instead of waiting for beat's sweep, which
# queues an update again once it is unprocessed for the updates queue's visibility timeout + 15 s.
FULL = {"redis_down": 60.0, "postgres_down": 5.0, "traffic": 20.0, "settle": 120.0, "visibility_timeout": 60,
        "operator_sweep": False, "profile": Profile(customers=24, businesses=5, subscribers=30)}
SHORT = {"redis_down": 10.0, "postgres_down": 2.0, "traffic": 6.0, "settle": 60.0, "visibility_timeout": 15,
         "operator_sweep": True, "profile": Profile(customers=12, businesses=2, subscribers=10, think_s=(0.3, 0.8))}


class Drill:
    def __init__(self, stack: Stack, traffic: Traffic, *, redis_down: float, postgres_down: float, traffic_s: float,
                 settle: float, kill_worker: str, kill_settle: float | None = None, operator_sweep: bool = False,
                 log=print) -> None:
        self.stack = stack
        self.traffic = traffic
        self.redis_down = redis_down
        self.postgres_down = postgres_down
        self.traffic_s = traffic_s
        self.settle = settle
        self.kill_settle = kill_settle if kill_settle is not None else settle
        self.kill_worker = kill_worker
        self.operator_sweep = operator_sweep
        self.log = log
        self.calls = CallLog(stack.telegram).start()
        self.carried: dict[str, int] = {}  # what the previous phase left pending (lost for good, or late)
        self.beat_killed_at: float | None = None
        self.seen: collections.Counter[str] = collections.Counter()
        self.known: set[str] = set()  # what earlier phases reported lost or doubled

    # ------------------------------------------------------------------ one phase

    def phase(self, fault: str | None) -> dict[str, Any]:
        name = fault or "baseline"
        self.seen[name] += 1
        if self.seen[name] > 1:
            name = f"{name} #{self.seen[name]}"  # the same fault again: a phase of its own
        self.log(f"-- {name}: traffic for {self.traffic_s:.0f} s, then the fault")
        began = time.monotonic()
        self.traffic.start(name)
        time.sleep(self.traffic_s)
        restart: dict[str, Any] = {}
        watcher = None
        fault_info: dict[str, Any] = {}
        if fault is not None:
            fault_info = getattr(self, f"_{fault}")(restart)
            watcher = restart.pop("watcher", None)
        ended = time.monotonic()
        self.traffic.stop()
        settle = self.settle
        if fault in KILLS:
            settle = self.kill_settle
            if fault == "worker_main":  # what the killed worker held comes back after the visibility timeout
                settle += (self.stack.visibility_timeout + RESTORE_SWEEP_S) if self.kill_settle >= self.settle else 0
        nudge = None
        if fault == "redis":
            # An update a worker's BRPOP took as Redis stopped, before kombu recorded it as unacknowledged,
            # is gone from the broker: beat's sweep of the inbox queues it again (core/inbox.py). Wait for
            # that sweep when something is still pending (a beat killed in an earlier phase sweeps only
            # once the dead one's lock expired); a phase with nothing lost ends when it is done. With
            # operator_sweep, the drill sweeps as an operator would, if anything is still pending. Any
            # other task message taken so (a reservation, a Pay message) comes back from its copy in
            # `undelivered` by the workers' own sweep, 30 s after it was published (core/broker.py).
            beat_free_in = 0.0 if self.beat_killed_at is None else self.beat_killed_at + BEAT_LOCK_FREE_S - time.time()
            settle = max(settle, self.stack.visibility_timeout + INBOX_GRACE_EXTRA_S + INBOX_SWEEP_EVERY_S + 10,
                         beat_free_in + INBOX_SWEEP_EVERY_S + 10)
            fault_info["requeued_by"] = "beat's maintenance.requeue_lost_updates, if anything was lost"
            if self.operator_sweep:
                def operator() -> None:
                    self.log(f"   operator: updates still unanswered {OPERATOR_SWEEP_AFTER_S:.0f} s after Redis is "
                             "back: maintenance.requeue_lost_updates sent (grace 0), as an admin would")
                    sweep_lost_updates(self.stack)
                    fault_info["requeued_by"] = (f"the drill, as an operator, {OPERATOR_SWEEP_AFTER_S:.0f} s after "
                                                 "Redis was back: maintenance.requeue_lost_updates with grace 0")
                nudge = (OPERATOR_SWEEP_AFTER_S, operator)
        pending = Pending(self.stack, self.traffic, name, self.carried)
        done_s, settled_s, counts = self._wait_done(pending, ended, settle, nudge)
        self.carried = pending.leftovers(counts)
        # Whoever still waits now waits for something that is not coming (or late): stop waiting.
        self.traffic.abort()
        self.traffic.join(30)
        if watcher is not None:
            watcher.join(60)
        if "probe_update_id" in fault_info:
            fault_info["probe_handled"] = handled(fault_info["probe_update_id"])
            fault_info.update(probe_outcome(self.stack, fault_info))
        if fault == "worker_main":
            fault_info["sweeps"] = sweeps_since(began)
            # What the workers' sweep pushed back from the copies in `undelivered` (core/broker.py):
            # the message the stopped BRPOP took, 30 s after it was published, unless the inbox's
            # sweep brought its updates back first.
            fault_info["put_back_from_copies"] = self.stack.log_since(fault_info.get("log_from", 0)).count(
                "broker_put_back_lost_in_handover")
        audited = time.monotonic()
        result = audit(self.stack, self.traffic, self.calls, phase=name)
        result["audit_s"] = round(time.monotonic() - audited, 1)
        result["phase_s"] = round(time.monotonic() - began, 1)
        # Stock, money and hand-overs are audited for the whole system: a phase reports what is new.
        earlier = {item["what"] for item in result["lost"] + result["doubled"]} & self.known
        result["lost"] = [item for item in result["lost"] if item["what"] not in self.known]
        result["doubled"] = [item for item in result["doubled"] if item["what"] not in self.known]
        self.known |= {item["what"] for item in result["lost"] + result["doubled"]}
        result.update({
            "lost_by_kind": dict(collections.Counter(item["kind"] for item in result["lost"])),
            "doubled_by_kind": dict(collections.Counter(item["kind"] for item in result["doubled"])),
            "still_lost_from_earlier_phases": len(earlier),
            "fault": fault or "baseline",
            "phase": name,
            "fault_details": fault_info,
            "traffic_s": round(ended - began, 1),
            "restart_s": restart.get("seconds"),
            "waited_up_to_s": settle,
            "done_s": done_s,
            "settled_s": settled_s,
            "pending_at_end": {k: v for k, v in counts.items() if v},
            "queues_at_end": self._queues(),
            "lost_for_good_while_waiting": {k: v for k, v in pending.lost_for_good.items() if v},
            "errors": self._take_errors(),
            "outcomes": dict(self.traffic.record.outcomes.get(name, {})),
            "steps": dict(collections.Counter(s.step for s in self.traffic.record.sent if s.phase == name)),
        })
        self.log(f"   done after {done_s} s, settled after {settled_s} s; lost {len(result['lost'])}, "
                 f"doubled {len(result['doubled'])}; phase {result['phase_s']} s (audit {result['audit_s']} s); "
                 f"{result['updates']['sent']} updates, {_outcomes(result['outcomes'])}")
        return result

    def _wait_done(self, pending: Pending, ended: float,
                   settle: float, nudge: tuple[float, Callable[[], None]] | None = None,
                   ) -> tuple[float | None, float | None, dict[str, int]]:
        """Seconds from the end of the fault until nothing is pending (done), and until Stripe has
        delivered everything and the ledger shows every payment (settled); None: not within `settle`.
        `nudge`: (seconds, action) done once if the system is not done that long after the fault."""
        done_s = settled_s = None
        counts: dict[str, int] = {}
        while time.monotonic() < ended + settle:
            # Read before the counts: a request that was still out when they were taken may cause
            # what they could not see yet (a payment posted to Stripe, an update sent to Telegram).
            quiet = self.traffic.in_flight == 0
            try:
                counts = pending.count()
            except Exception:  # noqa: BLE001 - Redis or Postgres still coming back
                time.sleep(0.5)
                continue
            now = round(time.monotonic() - ended, 1)
            if nudge is not None and now >= nudge[0]:
                if not pending.system_done(counts):
                    nudge[1]()
                nudge = None
            if done_s is None and quiet and pending.system_done(counts):
                done_s = now
            if done_s is not None and quiet and pending.payments_done(counts) and stripe_idle(self.stack):
                settled_s = now
                break
            if done_s is not None and not pending.system_done(counts):
                done_s = None  # something new came up (a late Stripe event's work): not done yet
            time.sleep(0.5)
        return done_s, settled_s, counts

    def _queues(self) -> dict[str, int]:
        """Messages waiting per queue (a worker that stopped consuming leaves its queue growing)."""
        with contextlib.suppress(Exception):
            return {queue: n for queue, n in self.stack.queue_lengths().items() if n}
        return {}

    def _take_errors(self) -> list[str]:
        errors, self.traffic.errors[:] = list(self.traffic.errors), []
        return errors[:20]

    # ------------------------------------------------------------------ the faults

    def _watch(self, restart: dict, name: str, old_pid: int, since: int) -> None:
        def watch() -> None:
            restart["seconds"] = self.stack.restarted(name, old_pid, since, timeout=120)

        restart["watcher"] = threading.Thread(target=watch, daemon=True)
        restart["watcher"].start()

    # A probe is a customer the drill moves itself (bench/traffic.py: Probe), so that for some
    # faults one reservation is exactly where the fault hurts most: its update's task is held at
    # the chat's advisory lock (the first thing a handled update takes in Postgres) by a
    # connection of the drill's, and let go at the chosen moment.

    def _probe(self) -> Probe | None:
        probe = next_probe(self.traffic)
        try:
            probe.ready()
        except Exception as error:  # noqa: BLE001 - reported; the fault still happens
            self.log(f"   probe not ready: {error!r}")
            probe.close()
            return None
        return probe

    def _redis(self, restart: dict) -> dict[str, Any]:
        """Redis stopped while a customer's "Reserve and pay" is being handled: its transaction
        commits after Redis went away (the probe), as any task running at that moment does."""
        details: dict[str, Any] = {"down_s": self.redis_down}
        probe = self._probe()
        with ChatLock(probe.user_id if probe else 0) as lock:
            if probe is not None:
                details.update(probe_details(probe, probe.buy()))
                details["probe_held_before_commit"] = bool(wait_until(lock.waiter, 10, 0.02))
            self.log(f"   Redis stopped for {self.redis_down:.0f} s")
            self.stack.redis.stop()
        time.sleep(self.redis_down)
        began = time.monotonic()
        self.stack.redis.start()
        restart["seconds"] = round(time.monotonic() - began, 2)
        if probe is not None:
            probe.close()
        return details

    def _postgres(self, restart: dict) -> dict[str, Any]:
        self.log(f"   Postgres stopped (fast) for {self.postgres_down:.0f} s")
        self.stack.postgres.stop("fast")
        time.sleep(self.postgres_down)
        began = time.monotonic()
        self.stack.postgres.start()
        restart["seconds"] = round(time.monotonic() - began, 2)
        return {"down_s": self.postgres_down}

    def _worker_child(self, restart: dict) -> dict[str, Any]:
        """A pool process SIGKILLed after its update's commit, before the button press was
        answered: the probe's task is let go while Telegram holds answerCallbackQuery calls (as a
        slow network does), and killed once it has committed, sent its replies, and its answer is on
        its way."""
        children = self.stack.children(self.kill_worker)
        if not children:
            return {"error": f"{self.kill_worker} has no pool processes"}
        details: dict[str, Any] = {"worker": self.kill_worker}
        probe = self._probe()
        victim = None
        with ChatLock(probe.user_id if probe else 0) as lock, self.stack.telegram.client() as telegram:
            if probe is not None:
                sent = probe.buy()
                details.update(probe_details(probe, sent))
                backend = wait_until(lock.waiter, 10, 0.02)
                victim = process_of_backend(backend, children) if backend else None
            if victim is None:
                victim = busy(children)
                details["moment"] = "mid-task (the probe was not caught)"
                os.kill(victim.pid, signal.SIGKILL)
            else:
                telegram.set_unreachable(True, methods=["answerCallbackQuery"])
                try:
                    lock.release()
                    answering = wait_until(lambda: handled(sent.update_id)
                                           and telegram._get("/faults")["held_calls"] >= 1, 10, 0.02)
                    details["moment"] = ("after its commit, while Telegram was answering its button press"
                                         if answering else "at an unknown point (not seen answering within 10 s)")
                    # The answers go out first, the batch's replies beside them: once the process is still,
                    # the replies are sent and it waits for the held answer. Killed while a reply is taken by
                    # Telegram, that reply goes out twice (docs/reliability.md, `mid_send`, tested on its own
                    # in tests/e2e/test_fault_handover.py); left to chance here, it would decide this phase.
                    details["pool_quiet_after_s"] = quiet([victim], POOL_STILL_S, 10.0)
                    os.kill(victim.pid, signal.SIGKILL)
                finally:
                    telegram.set_unreachable(False)
        details["pid"] = victim.pid
        self.log(f"   SIGKILL to {self.kill_worker}'s pool process {victim.pid}: {details['moment']}")
        began = time.monotonic()
        count = len(children)

        def watch() -> None:
            back = wait_until(lambda: len([c for c in self.stack.children(self.kill_worker) if c.pid != victim.pid])
                              >= count, 60, 0.1)
            restart["seconds"] = round(time.monotonic() - began, 2) if back else None

        restart["watcher"] = threading.Thread(target=watch, daemon=True)
        restart["watcher"].start()
        if probe is not None:
            probe.close()
        return details

    def _kill_main(self, name: str, restart: dict) -> dict[str, Any]:
        pid = self.stack.pid(name)
        since = self.stack.log_size()
        self.log(f"   SIGKILL to {name} (pid {pid})")
        os.kill(pid, signal.SIGKILL)
        self._watch(restart, name, pid, since)
        return {"process": name, "pid": pid}

    def _unacked(self) -> int | None:
        with contextlib.suppress(Exception):
            return self.stack.unacked()
        return None

    def _worker_main(self, restart: dict) -> dict[str, Any]:
        """The worker's main process SIGKILLed while its next message is on its way to it: it is
        stopped (SIGSTOP) with its BRPOP waiting, the probe taps, Redis hands the update to that
        BRPOP, its pool finishes the tasks it runs, and the kill comes before the worker could read
        the update."""
        name = self.kill_worker
        pid = self.stack.pid(name)
        since = self.stack.log_size()
        probe = self._probe()
        details: dict[str, Any] = {"process": name, "pid": pid, "unacked_messages_before": self._unacked(),
                                   "log_from": since}
        os.kill(pid, signal.SIGSTOP)
        if probe is not None:
            sent = probe.buy()
            update_id = sent.update_id
            details.update(probe_details(probe, sent))
            # Acknowledged by the gateway, then taken from the queue (by the stopped BRPOP).
            details["probe_taken_from_queue"] = bool(wait_until(
                lambda: update_id not in undelivered_updates(self.stack.telegram)
                and not broker_whereabouts(self.stack, [update_id]), 3, 0.05))
            probe.close()
        # A stopped main process gives its pool nothing more: once the pool has finished what it ran,
        # the kill strikes what the main process held. A process killed while Telegram takes a new
        # message sends it twice, as documented (docs/reliability.md, `mid_send`, tested on its own
        # in tests/e2e/test_fault_handover.py); left to chance here, it would decide this phase.
        details["pool_quiet_after_s"] = quiet(self.stack.children(name), POOL_STILL_S, 10.0)
        self.log(f"   SIGKILL to {name} (pid {pid}), stopped with its BRPOP waiting")
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        self._watch(restart, name, pid, since)
        time.sleep(0.5)  # the supervisor has killed the pool: what the worker held stays unacknowledged
        details["unacked_messages_after_kill"] = self._unacked()
        details["inbox_copies_after_kill"] = self._inbox_size()
        if self.operator_sweep:
            # The inbox looks only at copies older than a few seconds (core.inbox.SETTLE_MS).
            time.sleep(max(0.0, killed + SETTLE_MS / 1000 + 1.0 - time.monotonic()))
            self.log("   operator: maintenance.requeue_lost_updates sent (grace 0), as an admin would, instead of "
                     "waiting for beat's sweep")
            sweep_lost_updates(self.stack)
            details["requeued_by"] = "the drill, as an operator: maintenance.requeue_lost_updates with grace 0"
        else:
            details["requeued_by"] = ("beat's maintenance.requeue_lost_updates (every 30 s, for updates unprocessed "
                                      f"{self.stack.visibility_timeout + 15} s)")
        return details

    def _inbox_size(self) -> int | None:
        from core.inbox import TIMES_KEY

        with contextlib.suppress(Exception):
            client = self.stack.redis_client()
            try:
                return int(client.zcard(TIMES_KEY))
            finally:
                client.close()
        return None

    def _beat(self, restart: dict) -> dict[str, Any]:
        self.beat_killed_at = time.time()
        return self._kill_main("beat", restart)

    def _gateway(self, restart: dict) -> dict[str, Any]:
        return self._kill_main("gateway", restart)

    def beat_back_after(self, wait: float) -> float | None:
        """Seconds from beat's kill until it sent a job again (a maintenance run audited as beat's)."""
        if self.beat_killed_at is None:
            return None
        from bench.invariants import _db_rows

        killed = datetime.fromtimestamp(self.beat_killed_at, UTC)

        def first_run():
            rows = _db_rows("SELECT min(created_at) FROM audit_log WHERE actor = 'beat' AND created_at > :t",
                            t=killed)
            return rows[0][0]

        when = wait_until(first_run, wait, 1.0)
        return round((when - killed).total_seconds(), 1) if when else None


class ChatLock:
    """Holds a chat's advisory lock (`chat.engine.handle` takes it first) on a connection of its
    own, so the next update of that chat waits there, in its transaction, until `release()`."""

    def __init__(self, chat_id: int) -> None:
        self.chat_id = chat_id
        self.connection: Any = None

    def __enter__(self) -> Self:
        if self.chat_id:
            from core import db

            self.connection = db.engine().connect().execution_options(isolation_level="AUTOCOMMIT")
            self.connection.execute(sa_text("SELECT pg_advisory_lock(:key)"), {"key": self.chat_id})
        return self

    def waiter(self) -> int | None:
        """The Postgres backend waiting for the lock (an update's task), if any."""
        if self.connection is None:
            return None
        return self.connection.execute(sa_text(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1 "
            "AND classid::text::bigint = :high AND objid::text::bigint = :low"),
            {"high": self.chat_id >> 32, "low": self.chat_id & 0xFFFFFFFF}).scalar()

    def release(self) -> None:
        if self.connection is not None:
            self.connection.execute(sa_text("SELECT pg_advisory_unlock(:key)"), {"key": self.chat_id})
            self.connection.close()
            self.connection = None

    def __exit__(self, *_exc: object) -> None:
        with contextlib.suppress(Exception):
            self.release()


def sa_text(sql: str):
    import sqlalchemy as sa

    return sa.text(sql)


def sweep_lost_updates(stack: Stack) -> None:
    """What an operator does after a worker was lost: queue again, now, the acknowledged updates
    nobody processed (`maintenance.requeue_lost_updates`, grace 0; README "Dead letters and lost
    updates"). Published by a Celery app of its own, pointed at this system's Redis."""
    from celery import Celery

    app = Celery("drill", broker=stack.redis.url, set_as_current=False)
    app.conf.update(task_serializer="json", accept_content=["json"])
    try:
        app.send_task("maintenance.requeue_lost_updates", kwargs={"actor": "drill", "grace_seconds": 0},
                      queue="maintenance")
    finally:
        app.close()


def probe_details(probe: Probe, sent: Sent) -> dict[str, Any]:
    """Where the probe's "Reserve and pay" is: its update, its chat, the message it was pressed on."""
    return {"probe_update_id": sent.update_id, "probe_chat_id": sent.chat_id,
            "probe_message_id": probe.confirm.get("message_id"), "probe_callback_query_id": sent.callback_query_id}


def probe_outcome(stack: Stack, details: dict[str, Any]) -> dict[str, Any]:
    """What the probe's customer sees in the end: the message the button was pressed on (the Pay
    message, the refusal, or still "⏳ Reserving…"), and whether the press was answered."""
    fake = stack.telegram
    bot = fake.state.default_bot
    with fake.state.lock:
        chat = bot.chats.get(details["probe_chat_id"])
        message = chat.live_message(details["probe_message_id"]) if chat is not None else None
        text = chat.transcript_entry(message) if message is not None else {}
        query = bot.callback_queries.get(str(details["probe_callback_query_id"]))
        answered = query is not None and query.answer is not None
    shown = text_of(text) if text else ""
    if "Please pay by" in shown:
        outcome = "pay"
    elif "Reserving" in shown:
        outcome = "still reserving"
    elif any(words in shown for words in ("sold out", "left of", "can't be ordered", "at most")):
        outcome = "refused"
    elif shown:
        outcome = "unchanged"  # the confirmation still: the tap was never handled, or its answer never sent
    else:
        outcome = "message gone"
    result: dict[str, Any] = {"probe_sees": outcome, "probe_tap_answered": answered}
    if outcome not in ("pay", "refused"):  # what its chat's outbox holds says why
        from bench.invariants import stuck_details

        (result["probe_chat"],) = stuck_details(stack, [{"chat_id": details["probe_chat_id"], "step": "probe"}])
    return result


def sweeps_since(began_monotonic: float) -> list[dict[str, Any]]:
    """The runs of `maintenance.requeue_lost_updates` since then (its audit entries): who ran it, and
    which updates it queued again."""
    from bench.invariants import _db_rows

    since = datetime.now(UTC).timestamp() - (time.monotonic() - began_monotonic)
    rows = _db_rows("SELECT actor, details FROM audit_log WHERE action = 'maintenance.requeue_lost_updates' "
                    "AND created_at >= to_timestamp(:since) ORDER BY created_at", since=since)
    return [{"actor": actor, "requeued": (details or {}).get("update_ids", [])} for actor, details in rows
            if (details or {}).get("requeued")]


def handled(update_id: int) -> bool:
    from bench.invariants import _db_rows

    return bool(_db_rows("SELECT 1 FROM processed_updates WHERE update_id = :id", id=update_id))


def process_of_backend(backend_pid: int, processes: list) -> Any:
    """Which of these processes is the client of this Postgres backend (by its TCP port)."""
    import psutil

    from bench.invariants import _db_rows

    rows = _db_rows("SELECT client_port FROM pg_stat_activity WHERE pid = :pid", pid=backend_pid)
    if not rows or rows[0][0] is None:
        return None
    port = int(rows[0][0])
    for process in processes:
        with contextlib.suppress(psutil.Error):
            if any(c.laddr and c.laddr.port == port for c in process.net_connections(kind="tcp")):
                return process
    return None


def _cpu(process) -> float:
    import psutil

    with contextlib.suppress(psutil.Error):
        times = process.cpu_times()
        return times.user + times.system
    return 0.0


def busy(processes: list, timeout: float = 5.0) -> Any:
    """One of these processes caught running (it used CPU in the last few tens of milliseconds, so
    it is most likely in the middle of a task); the busiest one if none is within `timeout`."""
    first = before = {p.pid: _cpu(p) for p in processes}
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.03)
        now = {p.pid: _cpu(p) for p in processes}
        running = [p for p in processes if now[p.pid] > before[p.pid]]
        if running:
            return running[0]
        before = now
    return max(processes, key=lambda p: _cpu(p) - first[p.pid])


def quiet(processes: list, still_s: float, timeout: float) -> float | None:
    """Seconds until none of these processes has used CPU for `still_s` (None: not within `timeout`)."""
    began = time.monotonic()
    before = {p.pid: _cpu(p) for p in processes}
    still_since = began
    while time.monotonic() - began < timeout:
        time.sleep(0.05)
        now = {p.pid: _cpu(p) for p in processes}
        if now != before:
            before, still_since = now, time.monotonic()
        elif time.monotonic() - still_since >= still_s:
            return round(still_since - began, 2)
    return None


def settings_for(*, short: bool = False, faults: tuple[str, ...] = FAULTS, redis_down: float | None = None,
                 postgres_down: float | None = None, traffic_s: float | None = None, settle: float | None = None,
                 visibility_timeout: int | None = None, profile: Profile | None = None,
                 kill_worker: str = "worker-updates", baseline: bool = True, beat_wait: float | None = None,
                 kill_settle: float | None = None, operator_sweep: bool | None = None) -> dict[str, Any]:
    """The drill's settings: the full or the short preset, with these changes."""
    preset = SHORT if short else FULL

    def pick(value, key):
        return value if value is not None else preset[key]

    return {
        "redis_down_s": pick(redis_down, "redis_down"),
        "postgres_down_s": pick(postgres_down, "postgres_down"),
        "traffic_s": pick(traffic_s, "traffic"),
        "settle_s": pick(settle, "settle"),
        # After a kill: as long, and for the worker's main process the visibility timeout and
        # kombu's restore sweep on top; shorter when given (then no more than that).
        "kill_settle_s": kill_settle if kill_settle is not None else pick(settle, "settle"),
        "visibility_timeout_s": pick(visibility_timeout, "visibility_timeout"),
        "operator_sweep": pick(operator_sweep, "operator_sweep"),
        "kill_worker": kill_worker,
        "faults": list(faults),
        "baseline": baseline,
        "beat_wait_s": beat_wait if beat_wait is not None else (5.0 if short else 150.0),
        "profile": asdict(profile or preset["profile"]),
    }


def drill(stack: Stack, traffic: Traffic, settings: dict[str, Any], log=print) -> dict[str, Any]:
    """The phases on a running system whose people are seeded (`run` sets both up; the tests share
    them with a soak)."""
    started = time.monotonic()
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    runner = Drill(stack, traffic, redis_down=settings["redis_down_s"], postgres_down=settings["postgres_down_s"],
                   traffic_s=settings["traffic_s"], settle=settings["settle_s"], kill_worker=settings["kill_worker"],
                   kill_settle=settings["kill_settle_s"], operator_sweep=settings["operator_sweep"], log=log)
    faults = ((None,) if settings["baseline"] else ()) + tuple(settings["faults"])
    phases = [runner.phase(fault) for fault in faults]
    beat_back = runner.beat_back_after(settings["beat_wait_s"])
    runner.calls.stop()
    final = audit(stack, traffic, runner.calls)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "settings": settings,
        "phases": phases,
        "beat_sending_again_after_s": beat_back,
        "restarts": {name: stack.log_text().count(f"| {name} restarted") for name in stack.commands},
        "final": final,
        "elapsed_s": round(time.monotonic() - started, 1),
        "supervisor_log_tail": stack.log_tail(2000),
    }


def run(*, keep: bool = False, log=print, **changes: Any) -> dict[str, Any]:
    """The drill on a system of its own (`settings_for` takes the changes)."""
    settings = settings_for(**changes)
    started = time.monotonic()
    with Stack("chaos", visibility_timeout=settings["visibility_timeout_s"], keep=keep) as stack:
        log(f"system up in {time.monotonic() - started:.0f} s ({len(stack.commands)} processes supervised)")
        traffic = Traffic(stack, Profile(**settings["profile"]))
        traffic.seed()
        result = drill(stack, traffic, settings, log)
    result["elapsed_s"] = round(time.monotonic() - started, 1)
    return result


# --------------------------------------------------------------------------- the report

FAULT_TITLES = {
    "baseline": "none (baseline)",
    "redis": "Redis stopped {redis_down_s:.0f} s",
    "postgres": "Postgres restarted (down {postgres_down_s:.0f} s)",
    "worker_child": "{kill_worker} pool process SIGKILLed",
    "worker_main": "{kill_worker} main process SIGKILLed",
    "beat": "beat SIGKILLed",
    "gateway": "gateway SIGKILLed, restarted",
}


def _money_cell(money: dict) -> str:
    cell = (f"{money['charges']} charges / {money['refunds']} refund(s) at Stripe; ledger {money['ledger_payments']} / "
            f"{money['ledger_refunds']}; net €{(money['charged_minor'] - money['refunded_minor']) / 100:.2f} "
            f"vs paid orders €{money['paid_orders_minor'] / 100:.2f}")
    if money.get("refunds_owed"):
        cell += (f" + €{money['refunds_owed_minor'] / 100:.2f} owed back ({money['refunds_owed']} refund(s) "
                 "never made ❌)")
    return cell


def _fault_line(phase: dict, settings: dict) -> str:
    """How the fault struck, from its details."""
    d = phase["fault_details"]
    parts = []
    if "probe_update_id" in d:
        parts.append(f"the probe's tap was update {d['probe_update_id']}")
    if d.get("moment"):
        parts.append(f"killed {d['moment']}")
    if "probe_held_before_commit" in d:
        parts.append("its transaction committed after Redis had stopped" if d["probe_held_before_commit"]
                     else "the probe was not caught before its commit")
    if "probe_taken_from_queue" in d:
        parts.append("the stopped worker's BRPOP had taken it from the queue" if d["probe_taken_from_queue"]
                     else "it was still in the queue at the kill")
    if "pool_quiet_after_s" in d:
        quiet_s = d["pool_quiet_after_s"]
        parts.append("its pool still busy at the kill (not quiet within 10 s)" if quiet_s is None
                     else f"its pool had finished its tasks {quiet_s} s after the stop")
    if d.get("requeued_by"):
        requeued = [u for sweep in d.get("sweeps", []) for u in sweep["requeued"]]
        parts.append(f"lost updates queued again by {d['requeued_by']} ({len(requeued)} update(s)"
                     + (", the probe's among them" if d.get("probe_update_id") in requeued else "") + ")")
    if "put_back_from_copies" in d:
        parts.append(f"the workers' sweep pushed lost task messages back from their copies {d['put_back_from_copies']} "
                     "time(s)")
    if "probe_sees" in d:
        parts.append(f"in the end the probe's customer sees {SEES.get(d['probe_sees'], d['probe_sees'])}, "
                     f"the button press {'answered' if d.get('probe_tap_answered') else 'NOT answered'}")
    return "; ".join(parts) or FAULT_TITLES.get(phase["fault"], phase["fault"]).format(**settings)


SEES = {"pay": "the Pay button", "refused": "why not (sold out)", "still reserving": "“⏳ Reserving…” still ❌",
        "unchanged": "the confirmation, unanswered ❌", "message gone": "no message ❌"}


def _outcomes(outcomes: dict[str, int]) -> str:
    return ", ".join(f"{n} {what.replace('_', ' ')}" for what, n in sorted(outcomes.items())) or "nobody got far"


def _mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def section(result: dict) -> list[str]:
    s = result["settings"]
    lines = [
        "## Fault drills (`make chaos`)",
        "",
        (f"Measured {result['date']}; {s['profile']['customers']} customers, {s['profile']['businesses']} businesses "
         f"publishing offers with photos, {s['profile']['subscribers']} more alert subscribers; the system as "
         f"`make run` runs it (a worker per queue, beat, gateway, under its supervisor) on a private Redis and "
         f"Postgres, against the Telegram and Stripe fakes. Each phase: {s['traffic_s']:.0f} s of traffic, the "
         "fault, then the traffic stops and the drill waits until nothing is pending. Visibility timeout "
         f"{s['visibility_timeout_s']} s (production: 3,600 s). Reproduce with `{s.get('command', 'make chaos')}` "
         f"({result['elapsed_s'] / 60:.0f} minutes); figures in `bench/chaos.json`. "
         + report_md.load_line(result.get("machine", {}))),
        "",
        ("| fault | updates sent / received / answered / answered twice | units: quantity, sold, held (stock exact) "
         "| money: Stripe vs ledger (exact) | lost | doubled | told it failed | back after s | all done after s "
         f"(target ≤ {DONE_TARGET_S:.0f} after Redis/Postgres) | Stripe settled after s |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for phase in result["phases"]:
        u, stock, money = phase["updates"], phase["stock"], phase["money"]
        title = FAULT_TITLES.get(phase["fault"], phase["fault"]).format(**s)
        target = phase["fault"] in ("redis", "postgres")
        done = phase["done_s"]
        done_ok = done is not None and (not target or done <= DONE_TARGET_S)
        lines.append(
            f"| {title} | {u['sent']} / {u['received']} / {u['answered']} / {u['answered_more_than_once']} "
            f"| {stock['units']}, {stock['sold']}, {stock['held']} {_mark(stock['exact'])} "
            f"| {_money_cell(money)} {_mark(money['exact'])} "
            f"| {_mark(not phase['lost'])} {len(phase['lost'])} "
            f"| {_mark(not phase['doubled'])} {len(phase['doubled'])} "
            f"| {_mark(not phase.get('failed'))} {len(phase.get('failed', []))} "
            f"| {phase['restart_s'] if phase['restart_s'] is not None else '–'} "
            f"| {_mark(done_ok)} {done if done is not None else 'not within ' + str(round(phase['waited_up_to_s']))} "
            f"| {phase['settled_s'] if phase['settled_s'] is not None else '–'} |")
    beat = result["beat_sending_again_after_s"]
    if beat is not None:
        beat_line = (f"Beat sent jobs again {beat} s after it was killed (a restarted beat waits for its own lock, "
                     "`redbeat_lock_timeout` 90 s).")
    elif s["beat_wait_s"] < 90:
        beat_line = ("A short drill does not wait for beat to send again after its kill (a restarted beat waits up to "
                     "90 s for its own lock).")
    else:
        beat_line = f"Beat had not sent a job again {s['beat_wait_s']:.0f} s after it was killed."
    if "beat" in (phase["fault"] for phase in result["phases"]):
        lines += ["", beat_line]
    lines += ["", ("How each fault struck, what the people got done in its phase, and what it lost or doubled "
                   "(new in that phase; first 12 of each):"), ""]
    for phase in result["phases"]:
        people = _outcomes(phase.get("outcomes", {}))
        lines.append(f"* **{phase['phase']}**: {_fault_line(phase, s)}. People: {people}.")
        for which in ("lost", "doubled"):
            for item in phase[which][:12]:
                lines.append(f"  * {which} ({item['kind']}): {item['what']}")
            if len(phase[which]) > 12:
                lines.append(f"  * {which}: … {len(phase[which]) - 12} more")
        for what in phase.get("failed", [])[:12]:
            lines.append(f"  * told it failed: {what}")
        if phase.get("queues_at_end"):
            waiting = ", ".join(f"{queue} {n}" for queue, n in sorted(phase["queues_at_end"].items()))
            lines.append(f"  * still waiting in their queues when the drill stopped waiting: {waiting}")
    final = result["final"]
    lines += ["", (f"At the end of the drill: {len(final['lost'])} lost and {len(final['doubled'])} doubled in all; "
                   f"stock exact {_mark(final['stock']['exact'])}, money exact {_mark(final['money']['exact'])}; "
                   "dead letters (tasks that gave up) "
                   + (", ".join(f"{n} `{task}`" for task, n in sorted(final["dead_letters"].items())) or "none")
                   + ".")]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--short", action="store_true", help="small traffic, short faults (Redis down 10 s)")
    parser.add_argument("--faults", default=",".join(FAULTS), help=f"comma-separated, of: {', '.join(FAULTS)}")
    parser.add_argument("--redis-down", type=float, help="seconds Redis stays stopped (60; --short 10)")
    parser.add_argument("--postgres-down", type=float, help="seconds Postgres stays stopped (5; --short 2)")
    parser.add_argument("--traffic", type=float, help="seconds of traffic before each fault (20; --short 6)")
    parser.add_argument("--settle", type=float, help="seconds to wait for everything pending (120; --short 60)")
    parser.add_argument("--visibility-timeout", type=int, help="BROKER_VISIBILITY_TIMEOUT (60; --short 15)")
    parser.add_argument("--kill-worker", default="worker-updates", help="the worker whose processes are killed")
    parser.add_argument("--no-baseline", action="store_true", help="skip the phase without a fault")
    parser.add_argument("--keep", action="store_true", help="keep the run's directory (.run/chaos-*: logs)")
    parser.add_argument("--output", type=Path, default=HERE, help="where chaos.json and report.md go")
    args = parser.parse_args(argv)
    faults = tuple(f for f in args.faults.split(",") if f)
    unknown = set(faults) - set(FAULTS)  # a fault may be named twice: it then happens twice
    if unknown:
        parser.error(f"unknown faults: {', '.join(sorted(unknown))}")
    command = "make chaos CHAOS_ARGS=--short" if args.short else "make chaos"
    if args.redis_down is not None:
        command += f" REDIS_DOWN={args.redis_down:g}"
    result = run(short=args.short, faults=faults, redis_down=args.redis_down, postgres_down=args.postgres_down,
                 traffic_s=args.traffic, settle=args.settle, visibility_timeout=args.visibility_timeout,
                 kill_worker=args.kill_worker, baseline=not args.no_baseline, keep=args.keep)
    result["settings"]["command"] = command
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "chaos.json").write_text(json.dumps(result, indent=2, default=str))
    lines = section(result)
    report_md.write_section(args.output / "report.md", "chaos", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
