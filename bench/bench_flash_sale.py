"""Flash sale through the real path: many customers tap "Reserve and pay" on one offer at once.

    python -m bench.bench_flash_sale [--customers 2000] [--units 100] [--concurrency 1,2] [--repeat 3]

Everything is private to the run and real: a Redis and a Postgres (migrated) in ``.run/``, the
Telegram fake and the Stripe fake (in this process), the gateway (``python -m bot.gateway``) and
one Celery worker consuming every queue with ``--concurrency`` prefork processes, running the
project's app (``bench.worker``: tasks/app.py plus a no-op task).

Per run: one verified business, one offer with ``units`` units, ``customers`` customers who each
have the order's confirmation screen in their chat (the bot's "Reserve 1 × … ? [✅ Reserve and
pay]" message, as a tap on "Order 1" leaves it; placed through the fake's Bot API to save the
set-up time). Each customer taps "✅ Reserve and pay" once: the fake records the callback query,
and bench/loadgen.py posts the updates to the gateway's webhook, spread evenly over one second.
A customer has an answer when the bot sent them the Pay link ("🛒 Reserved for you", which needs
the Stripe Checkout Session) or said it is sold out. Measured:

* the time from the first tap to the last answer, and p50 / p99 from each tap to its answer;
* units reserved (must equal ``units``) and customers left without an answer (must be 0);
* Celery tasks executed (``celery inspect stats``) per tap, by task name;
* then, with the same worker: how long it takes to drain the same number of bare no-op tasks
  (queued while the worker is not consuming that queue, then let go), and the ratio.

Telegram's free tier allows 30 messages a second, so 2,000 answers would take over a minute
whatever the workers do. The workers' limiter is raised to 1,000/s (``BENCH_TELEGRAM_RATE``, as
paid broadcasts allow) and the fake enforces the same (429 beyond it), so the run measures the
workers; the report says what Telegram's free tier would make of it.
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Self
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-flash-secret"
CUSTOMER_BASE = 6_000_000_000  # Telegram-sized ids, away from anything else
TELEGRAM_RATE = 1000  # messages/s, Telegram's ceiling with paid broadcasts
PRICE_MINOR = 350
TITLE = "Surprise bag"


def _migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logging"] = False
    config.attributes["url"] = url
    command.upgrade(config, "head")


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


def _answer_kind(text: str) -> str | None:
    if "Reserved for you" in text:
        return "pay_link"
    if "sold out" in text or "left of" in text or "can't be ordered" in text:
        return "refused"
    return None



def _thread_client(local: threading.local):
    """One HTTP client per thread of a pool (httpx clients are not shared across threads here)."""
    import httpx

    if getattr(local, "client", None) is None:
        local.client = httpx.Client(timeout=30)
    return local.client

class CpuMeter:
    """CPU seconds used by a few process trees (psutil), between start() and stop(). The worker
    and the gateway are the benchmark's children: a process counts under its nearest root only."""

    def __init__(self, roots: dict[str, int]) -> None:
        self.roots = roots
        self.before: dict[str, dict[int, float]] = {}
        self.after: dict[str, dict[int, float]] = {}

    def _sample(self) -> dict[str, dict[int, float]]:
        import psutil

        trees: dict[str, list] = {}
        for name, pid in self.roots.items():
            try:
                root = psutil.Process(pid)
                trees[name] = [root, *root.children(recursive=True)]
            except psutil.Error:
                trees[name] = []
        # Trees nest, so the smallest tree holding a process is its nearest root's: it owns it.
        owner: dict[int, str] = {}
        for name, processes in sorted(trees.items(), key=lambda item: len(item[1]), reverse=True):
            owner.update((process.pid, name) for process in processes)
        sample: dict[str, dict[int, float]] = {name: {} for name in self.roots}
        for name, processes in trees.items():
            for process in processes:
                if owner[process.pid] != name:
                    continue
                try:
                    times = process.cpu_times()
                    sample[name][process.pid] = times.user + times.system
                except psutil.Error:
                    pass
        return sample

    def start(self) -> None:
        self.before = self._sample()

    def alone(self, name: str) -> float:
        """CPU seconds of the root process ``name`` itself, without its children (after stop())."""
        pid = self.roots[name]
        return round(self.after.get(name, {}).get(pid, 0.0) - self.before.get(name, {}).get(pid, 0.0), 2)

    def stop(self) -> dict[str, float]:
        after = self.after = self._sample()
        return {name: round(sum(t - self.before.get(name, {}).get(pid, 0.0) for pid, t in per_pid.items()), 2)
                for name, per_pid in after.items()}


class Harness:
    """Services, fakes and the gateway, shared by every run; a worker per run. ``gateway=False``: no
    gateway (for a benchmark that sends no updates, like bench_alerts)."""

    def __init__(self, gateway: bool = True) -> None:
        self.with_gateway = gateway
        self.directory = ROOT / ".run" / f"bench-flash-{os.getpid()}-{uuid.uuid4().hex[:6]}"
        self.redis = self.postgres = self.telegram = self.stripe = self.gateway = None
        self.environ = None  # this run's services in os.environ, for the code it calls in-process
        self.next_customer = CUSTOMER_BASE
        self.env: dict[str, str] = {}

    def __enter__(self) -> Self:
        from localenv.services import PostgresServer, RedisServer, free_port
        from sandbox.stripe_fake import StripeFake
        from sandbox.telegram_fake import TelegramFake

        self.redis = RedisServer(self.directory / "redis", free_port()).start()
        self.postgres = PostgresServer(self.directory / "postgres", free_port(), database="bench").start()
        _migrate(self.postgres.url)
        self.telegram = TelegramFake()
        self.telegram.start()
        self.stripe = StripeFake()
        self.stripe.start()
        from sandbox.telegram_fake import TelegramFakeClient

        with TelegramFakeClient(self.telegram.url) as users:  # 429 beyond the paid-broadcast ceiling
            users.set_rate_limit(True, global_per_second=TELEGRAM_RATE, global_burst=TELEGRAM_RATE // 10,
                                 per_chat_per_second=1.0, per_chat_burst=3)
        self.env = {
            "REDIS_URL": self.redis.url, "DATABASE_URL": self.postgres.url, "TELEGRAM_API_URL": self.telegram.url,
            "TELEGRAM_WEBHOOK_SECRET": SECRET, "STRIPE_API_URL": self.stripe.url,
            "STRIPE_SECRET_KEY": "sk_test_bench", "STRIPE_WEBHOOK_SECRET": "whsec_bench",
            "BENCH_TELEGRAM_RATE": str(TELEGRAM_RATE),
            # The platform collects the payment itself, as before payouts (the drills do the same):
            # the sale measures the update path, not Connect onboarding, which the seeded business
            # lacks (without this every checkout was refused and every hold released).
            "PAYOUTS_REQUIRE_CONNECT": "false",
        }
        self.environ = mock.patch.dict(os.environ, self.env)
        self.environ.start()
        self._reset_settings()
        from tests.processes import start_gateway

        if self.with_gateway:
            self.gateway, self.gateway_url = start_gateway(self.env)
        self.control = self._control_app()
        return self

    def __exit__(self, *_exc) -> None:
        for process in (self.gateway,):
            if process is not None:
                process.stop()
        if self.environ is not None:
            self.environ.stop()
        self._reset_settings()
        for fake in (self.telegram, self.stripe):
            if fake is not None:
                fake.stop()
        if self.redis is not None:
            self.redis.stop()
        if self.postgres is not None:
            self.postgres.stop(mode="immediate")
        shutil.rmtree(self.directory, ignore_errors=True)

    @staticmethod
    def _reset_settings() -> None:
        from core import db
        from core.settings import get_settings

        get_settings.cache_clear()
        db.reset_engine()

    def _control_app(self):
        """A Celery client on this run's Redis (for `inspect`, control commands and no-op tasks)."""
        from celery import Celery

        client = Celery("bench-flash-client", broker=self.redis.url, backend=self.redis.url)
        client.conf.update(task_serializer="json", accept_content=["json"], result_serializer="json",
                           result_accept_content=["json"], broker_connection_retry_on_startup=True)
        return client

    def pids(self, worker) -> dict[str, int]:
        """The processes whose CPU is counted; ``worker`` is our Celery worker, or the peer bot."""
        pids = {"gateway": self.gateway.process.pid, "worker": worker.process.pid, "bench (fakes)": os.getpid(),
                "redis": self.redis.pid(), "postgres": self.postgres.pid()}
        return {name: pid for name, pid in pids.items() if pid is not None}

    # -------------------------------------------------------------------- one sale

    def seed(self, units: int) -> int:
        from tests.factories import make_business, make_offer

        return make_offer(make_business(name="Bäckerei Blitz"), TITLE, quantity=units, price_minor=PRICE_MINOR,
                          original_price_minor=900)

    def customers(self, count: int, offer_id: int) -> list[int]:
        """``count`` customers, known to the bot and to the fake, each with the confirmation screen."""
        from sqlalchemy.dialects.postgresql import insert

        from core import db
        from models import User

        first = self.next_customer
        self.next_customer += count
        ids = list(range(first, first + count))
        with db.session_scope() as session:
            session.execute(insert(User).values([{"id": c, "first_name": f"Customer {c - CUSTOMER_BASE}",
                                                  "language": "en"} for c in ids]).on_conflict_do_nothing())
        markup = {"inline_keyboard": [
            [{"text": "✅ Reserve and pay", "callback_data": f"buy:{offer_id}:1:{PRICE_MINOR}"}],
            [{"text": "⬅️ Back", "callback_data": f"offer:{offer_id}"},
             {"text": "⬅️ Main menu", "callback_data": "menu"}],
        ]}
        text = f"Reserve <b>1 × {TITLE}</b> for <b>€3.50</b>?\n\nYou then have 10 minutes to pay by card."
        base = self.telegram.url
        token = self.telegram.token
        local = threading.local()

        def prepare(customer: int) -> None:
            client = _thread_client(local)
            # The name the bot stored from their earlier updates: a returning customer's row is not rewritten.
            name = f"Customer {customer - CUSTOMER_BASE}"
            client.post(f"{base}/_sandbox/users", json={"id": customer, "first_name": name}).raise_for_status()
            sent = client.post(f"{base}/bot{token}/sendMessage", json={
                "chat_id": customer, "text": text, "parse_mode": "HTML", "reply_markup": markup})
            sent.raise_for_status()
            confirm_screens[customer] = sent.json()["result"]["message_id"]

        confirm_screens: dict[int, int] = {}
        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            list(pool.map(prepare, ids))
        self.confirm_screens = confirm_screens
        return ids

    def taps(self, customers: list[int], offer_id: int) -> list[dict]:
        """Each customer's tap as the fake records it (a callback query it will expect answered);
        the updates themselves go to the gateway from the load generator."""

        base = self.telegram.url
        local = threading.local()

        def press(customer: int) -> dict:
            client = _thread_client(local)
            response = client.post(f"{base}/_sandbox/callbacks", json={
                "user_id": customer, "message_id": self.confirm_screens[customer],
                "data": f"buy:{offer_id}:1:{PRICE_MINOR}"})
            response.raise_for_status()
            body = response.json()
            body = body.get("result", body)
            return {"update_id": body["update_id"], "callback_query": body["callback_query"]}

        with concurrent.futures.ThreadPoolExecutor(8) as pool:
            return list(pool.map(press, customers))

    def executed(self) -> dict[str, int]:
        """Tasks executed so far by name, summed over the workers (``celery inspect stats``)."""
        # One worker per run (limit=1: its reply ends the wait instead of the whole timeout).
        stats = self.control.control.inspect(timeout=2.0, limit=1).stats() or {}
        totals: collections.Counter[str] = collections.Counter()
        for worker in stats.values():
            totals.update(worker.get("total", {}))
        return dict(totals)

    def calls_since(self, call_id: int) -> list[dict]:
        """The fake's Bot API calls after the one with this id (its log is bounded: read often)."""
        new = []
        with self.telegram.state.lock:
            for call in reversed(self.telegram.state.calls):
                if call["id"] <= call_id:
                    break
                new.append(call)
        new.reverse()
        return new

    def last_call_id(self) -> int:
        with self.telegram.state.lock:
            calls = self.telegram.state.calls
            return calls[-1]["id"] if calls else 0

    def start_peer(self):
        """The peer (bench/peer_bot.py) on a free port: the process, and the port it listens on."""
        import socket

        from localenv.services import free_port
        from tests.processes import ManagedProcess

        port = free_port()
        peer = ManagedProcess("bench-flash-peer", [sys.executable, "-m", "bench.peer_bot", "--port", str(port),
                                                   "--secret", SECRET], self.env)
        peer.wait_for_output(peer_bot_ready(), timeout=60)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                return peer, port
            except OSError:
                time.sleep(0.05)
        peer.stop()
        raise RuntimeError("the peer bot did not listen")

    def stop_peer(self, peer) -> None:
        peer.stop()
        import httpx

        # No webhook delivery to a peer that is gone: the next run's taps stay with the fake.
        httpx.post(f"{self.telegram.url}/bot{self.telegram.token}/deleteWebhook", timeout=10)

    def sale(self, customers: int, units: int, concurrency: int, timeout_s: float, peer: bool = False) -> dict:
        """One sale, handled by our worker with ``concurrency`` processes, or by the peer."""
        from sqlalchemy import func, select

        from core import db
        from models import Offer, Order, ProcessedUpdate
        from tests.processes import start_worker

        offer_id = self.seed(units)
        started = time.monotonic()
        ids = self.customers(customers, offer_id)
        taps = self.taps(ids, offer_id)
        setup_s = time.monotonic() - started
        bodies = Path(tempfile.mkdtemp(prefix="bench-flash-", dir=ROOT / ".run")) / "taps.jsonl"
        bodies.write_text("\n".join(json.dumps(t, separators=(",", ":")) for t in taps))

        load_average = [round(x, 2) for x in os.getloadavg()]
        if peer:
            worker, port = self.start_peer()
        else:
            worker = start_worker(f"bench-flash-c{concurrency}", concurrency=concurrency, env=self.env,
                                  app="bench.worker")
            port = int(self.gateway_url.rsplit(":", 1)[1])
        try:
            if not peer:
                self.executed()  # the worker answers control commands: it is consuming
            before = collections.Counter(self.executed() if not peer else {})
            calls_before = self.last_call_id()
            cpu = CpuMeter(self.pids(worker))
            cpu.start()
            # The result through a file: 2,000 timestamps through a pipe were once cut at 64 KiB.
            result_path = bodies.with_name("sent.json")
            subprocess.run(
                [sys.executable, "-m", "bench.loadgen", "--port", str(port),
                 "--secret", SECRET, "--bodies", str(bodies), "--duration", "1", "--timestamps",
                 "--connections", "40", "--output", str(result_path)],
                cwd=ROOT, capture_output=True, text=True, check=True, timeout=120,
            )
            sent = json.loads(result_path.read_text())
            due = {ids[i]: sent["due_wall"][i] for i in range(len(ids))}
            answers: dict[int, tuple[float, str]] = {}
            too_many = 0
            scanned = calls_before
            deadline = time.monotonic() + timeout_s
            while len(answers) < len(ids) and time.monotonic() < deadline:
                new = self.calls_since(scanned)
                scanned = new[-1]["id"] if new else scanned
                for call in new:
                    if call["status"] == 429:
                        too_many += 1
                    if not call["ok"] or call["method"] not in ("sendMessage", "editMessageText"):
                        continue
                    chat = int(call["params"].get("chat_id", 0))
                    kind = _answer_kind(str(call["params"].get("text", "")))
                    if kind and chat in due and chat not in answers:
                        answers[chat] = (call["time"], kind)
                time.sleep(0.02)
            cpu_s = cpu.stop()
            time.sleep(0.5)  # anything still running settles, then count
            after = collections.Counter(self.executed() if not peer else {})
            executed = {name: after[name] - before.get(name, 0) for name in after if after[name] != before.get(name, 0)}
            total_tasks = sum(executed.values())

            with db.session_scope() as session:
                offer = session.get(Offer, offer_id)
                reserved = offer.units_held + offer.units_sold
                orders = session.scalar(select(func.count()).select_from(Order).where(Order.offer_id == offer_id))
                buyers = session.scalar(select(func.count(func.distinct(Order.customer_id)))
                                        .where(Order.offer_id == offer_id))
                processed = session.scalar(select(func.count()).select_from(ProcessedUpdate).where(
                    ProcessedUpdate.update_id.in_([tap["update_id"] for tap in taps])))
            first_tap = min(due.values())
            latencies = [answers[c][0] - due[c] for c in answers]
            by_kind: dict[str, list[float]] = {"pay_link": [], "refused": []}
            for chat, (answered_at, kind) in answers.items():
                by_kind[kind].append(answered_at - due[chat])
            last_answer = max((t for t, _kind in answers.values()), default=first_tap)
            kinds = collections.Counter(kind for _t, kind in answers.values())
            sale_s = last_answer - first_tap

            drain = self.noop_drain(max(total_tasks, 1)) if not peer else {"count": 0, "seconds": 0.0}
        finally:
            if peer:
                self.stop_peer(worker)
            else:
                worker.stop()
            shutil.rmtree(bodies.parent, ignore_errors=True)
        return {
            "concurrency": concurrency,
            "peer": peer,
            "load_average": load_average,
            "worker_cpu_ms_per_tap": round(1000 * cpu_s.get("worker", 0.0) / len(ids), 2),
            # Celery's main process (consuming, acknowledging, handing tasks to the pool) apart from
            # the pool's processes that run the tasks; the peer has no such split.
            "worker_main_cpu_ms_per_tap": None if peer else round(1000 * cpu.alone("worker") / len(ids), 2),
            "customers": customers,
            "units": units,
            "setup_s": round(setup_s, 1),
            "taps_acknowledged": sent["acknowledged"],
            "tap_ack_p99_ms": sent["p99_ms"],
            "sale_s": round(sale_s, 3),
            "answer_p50_ms": round(_percentile(latencies, 50) * 1000, 1),
            "answer_p99_ms": round(_percentile(latencies, 99) * 1000, 1),
            # The buyers' wait for their Pay link apart from the others' for "sold out".
            "pay_link_p50_ms": round(_percentile(by_kind["pay_link"], 50) * 1000, 1),
            "refused_p50_ms": round(_percentile(by_kind["refused"], 50) * 1000, 1),
            "answered": len(answers),
            "without_answer": len(ids) - len(answers),
            "pay_links": kinds.get("pay_link", 0),
            "refused": kinds.get("refused", 0),
            "units_reserved": reserved,
            "orders": orders,
            "buyers": buyers,
            "too_many_requests": too_many,
            "tasks_executed": executed,
            "tasks_total": total_tasks,
            "tasks_per_tap": round(total_tasks / len(ids), 3),
            # The taps' updates handled, and in how many tasks (the gateway queues those that arrive
            # together as one `updates.handle_updates`).
            "updates_processed": processed,
            "update_tasks": executed.get("updates.handle_update", 0) + executed.get("updates.handle_updates", 0),
            "noop_tasks": drain["count"],
            "noop_drain_s": drain["seconds"],
            "ratio_to_noop": round(sale_s / drain["seconds"], 2) if drain["seconds"] else None,
            "cpu_s": {**cpu_s, "load generator": sent.get("cpu_s", 0.0)},
            # Tap-to-answer seconds at each percentile 0..100 (for the plot).
            "answer_percentiles_s": [round(_percentile(latencies, q), 4) for q in range(101)],
        }

    def noop_drain(self, count: int) -> dict:
        """``count`` bare no-op tasks (and one marker that stores a result) queued on the
        maintenance queue while the worker is not consuming it, then let go: seconds until the
        marker, the last of them, has run."""
        control = self.control.control
        control.cancel_consumer("maintenance", reply=True, timeout=5, limit=1)  # the run's one worker
        try:
            for _ in range(count - 1):
                self.control.send_task("bench.noop", queue="maintenance")
            marker = self.control.send_task("bench.mark", queue="maintenance")
        finally:
            resumed = time.time()
            control.add_consumer("maintenance", reply=True, timeout=5, limit=1)
        finished = marker.get(timeout=120)
        return {"count": count, "seconds": round(finished - resumed, 3)}


def summarize(runs: list[dict]) -> dict:
    keys = ("sale_s", "answer_p50_ms", "answer_p99_ms", "tasks_per_tap", "noop_drain_s", "ratio_to_noop")
    return {k: statistics.median(r[k] for r in runs if r[k] is not None) for k in keys}


def run(customers: int = 2000, units: int = 100, concurrencies: tuple[int, ...] = (1, 2), repeat: int = 3, *,
        timeout_s: float = 180.0, peer: bool = True) -> dict:
    """``runs``: ours by worker processes (``runs["2"]``); ``peer``: the peer bot's runs."""
    (ROOT / ".run").mkdir(exist_ok=True)
    runs: dict[str, list[dict]] = {str(c): [] for c in concurrencies}
    peer_runs: list[dict] = []
    with Harness() as harness:
        for _ in range(repeat):  # interleaved, so drift in the machine affects all alike
            for concurrency in concurrencies:
                runs[str(concurrency)].append(harness.sale(customers, units, concurrency, timeout_s))
            if peer:
                peer_runs.append(harness.sale(customers, units, 1, timeout_s, peer=True))
    result = {"customers": customers, "units": units, "repeat": repeat, "telegram_rate": TELEGRAM_RATE,
              "runs": runs, "median": {c: summarize(r) for c, r in runs.items()}}
    if peer_runs:
        result["peer"] = peer_runs
    return result


def peer_bot_ready() -> str:
    from bench.peer_bot import READY

    return READY


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=2000)
    parser.add_argument("--units", type=int, default=100)
    parser.add_argument("--concurrency", default="1,2,4")
    parser.add_argument("--no-peer", action="store_true", help="leave out the peer bot (bench/peer_bot.py)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    result = run(args.customers, args.units, tuple(int(c) for c in args.concurrency.split(",")), args.repeat,
                 peer=not args.no_peer)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
