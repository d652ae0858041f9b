"""What a durable hand-over costs the update task: button taps through `updates.handle_update`,
one after another in one process, against each source tree given (e.g. this one and an export of
the commit before the change), interleaved and repeated.

    python -m bench.bench_handover --tree . --tree /tmp/before [--updates 1000] [--repeat 3]

Two kinds of tap, each from a fresh customer: ``reserve`` (the "Reserve" button: the tap's
transaction, the hand-over of ``reservations.place_order`` published to Redis, the "⏳ Reserving…"
edit and the button's answer through the Telegram fake) and ``menu`` (the main-menu button: no
hand-over, only the reply and the answer); and the next hop, ``place_order`` (the task
``reservations.place_order`` for a fresh customer: the hold, and the hand-over of
``payments.create_checkout``). Nothing consumes the published tasks. Private Redis and
Postgres (a fresh database per tree and run, migrated by that tree), the Telegram fake in this
process; each run is a fresh interpreter started in the tree, so it runs that tree's code.
Figures: per-update wall time (median, p90, p99, mean) and the process's CPU time per update.
Not part of `make bench`: a before/after measurement for one change.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve()
WARM_UP = 50


# --------------------------------------------------------------------------- one run (in the tree)


def _updates(kind: str, count: int) -> list[dict]:
    import httpx

    from core.settings import SANDBOX_BOT_TOKEN, get_settings
    from sandbox.telegram_fake import TelegramFakeClient
    from tests.factories import make_business, make_offer

    url = get_settings().telegram_api_url
    # sold_out: the "Reserve" tap of a flash sale's late comer, refused at sight.
    sold = {"units_sold": 1, "quantity": 1} if kind == "sold_out" else {"quantity": 10_000}
    offer_id = make_offer(make_business(name="Bench bakery"), "Bench bag", **sold)
    data = f"buy:{offer_id}:1:350" if kind in ("reserve", "sold_out") else "menu"
    updates = []
    base = int(time.time() * 1000) % 1_000_000_000 * 1000
    with TelegramFakeClient(url) as client, httpx.Client(timeout=10) as http:
        for index in range(count):
            user = 7_000_000_000_000 + base + index
            client.create_user(user, first_name="Bench")
            message = http.post(f"{url}/bot{SANDBOX_BOT_TOKEN}/sendMessage", json={
                "chat_id": user, "text": "1 × Bench bag",
                "reply_markup": {"inline_keyboard": [[{"text": "Tap", "callback_data": data}]]},
            }).json()["result"]
            pressed = client.press_button(user, message["message_id"], data)
            updates.append({"update_id": pressed["update_id"], "callback_query": pressed["callback_query"]})
    return updates


def _reservations(count: int) -> list[tuple]:
    from tests.factories import make_business, make_offer, make_user

    offer_id = make_offer(make_business(name="Bench bakery"), "Bench bag", quantity=10_000)
    base = int(time.time() * 1000) % 1_000_000_000 * 1000
    return [(offer_id, make_user(7_000_000_000_000 + base + index), 1, f"bench:{index}") for index in range(count)]


def child(kind: str, count: int) -> dict:
    from core import ratelimit

    # Measure the worker, not Telegram's ceiling (as bench.worker does for the flash sale).
    ratelimit.SAFE_LIMITS = {**ratelimit.SAFE_LIMITS, "global_rate": 100_000.0, "global_burst": 10_000}
    from tasks.reservations import place_order
    from tasks.updates import handle_update

    if kind == "place_order":
        calls = [(place_order, args) for args in _reservations(WARM_UP + count)]
    else:
        calls = [(handle_update, (update,)) for update in _updates(kind, WARM_UP + count)]
    for task, args in calls[:WARM_UP]:
        task(*args)
    counts = _count_database_work()
    timings = []
    profiler = None
    if os.environ.get("BENCH_PROFILE"):  # a cProfile of the measured calls, to this file
        import cProfile

        profiler = cProfile.Profile(time.process_time)  # CPU time, not waiting
        profiler.enable()
    cpu_started = time.process_time()
    for task, args in calls[WARM_UP:]:
        started = time.perf_counter()
        task(*args)
        timings.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu_started
    if profiler is not None:
        profiler.disable()
        profiler.dump_stats(os.environ["BENCH_PROFILE"])
    ordered = sorted(timings)
    return {"kind": kind, "updates": count,
            "median_ms": round(statistics.median(ordered) * 1000, 3),
            "p90_ms": round(ordered[int(0.9 * len(ordered))] * 1000, 3),
            "p99_ms": round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 3),
            "mean_ms": round(statistics.fmean(ordered) * 1000, 3),
            "cpu_ms_per_update": round(cpu / count * 1000, 3),
            "statements_per_update": round(counts["statements"] / count, 2),
            "checkouts_per_update": round(counts["checkouts"] / count, 2)}


def _count_database_work() -> dict[str, int]:
    """Statements sent and pooled connections checked out (each checkout pings: a round trip)."""
    from sqlalchemy import event
    from sqlalchemy.engine import Engine
    from sqlalchemy.pool import Pool

    counts = {"statements": 0, "checkouts": 0}

    def statement(*_args: object) -> None:
        counts["statements"] += 1

    def checkout(*_args: object) -> None:
        counts["checkouts"] += 1

    event.listen(Engine, "before_cursor_execute", statement)
    event.listen(Pool, "checkout", checkout)
    return counts


# --------------------------------------------------------------------------- the runs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tree", action="append", dest="trees", help="a source tree to measure (repeatable)")
    parser.add_argument("--updates", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kinds", default="reserve,menu,place_order")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.updates)))
        return

    from localenv.services import PostgresServer, RedisServer, free_port
    from sandbox.telegram_fake import TelegramFake

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))  # stop the private servers on the way out

    trees = [Path(tree).resolve() for tree in (args.trees or ["."])]
    results: dict[str, dict[str, list[dict]]] = {str(t): {} for t in trees}
    with tempfile.TemporaryDirectory(prefix="bench-handover-") as scratch:
        redis = RedisServer(Path(scratch) / "redis", free_port()).start()
        postgres = PostgresServer(Path(scratch) / "postgres", free_port(), database="bench").start()
        telegram = TelegramFake().start()
        try:
            for round_ in range(args.repeat):
                for kind in args.kinds.split(","):
                    for number, tree in enumerate(trees):
                        database = f"handover_{round_}_{kind}_{number}"
                        postgres.create_database(database)
                        url = postgres.url.rsplit("/", 1)[0] + "/" + database
                        env = {**os.environ, "DATABASE_URL": url, "REDIS_URL": redis.url,
                               "TELEGRAM_API_URL": telegram.url, "PYTHONPATH": str(tree), "LOG_JSON": "true",
                               "LOG_LEVEL": "INFO"}
                        for variable in ("BOT_TOKEN", "STRIPE_SECRET_KEY", "FAULT_KILL_AT"):
                            env.pop(variable, None)
                        subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={url}", "upgrade", "head"],
                                       cwd=tree, env=env, check=True, capture_output=True)
                        done = subprocess.run(
                            [sys.executable, str(HERE), "--child", kind, "--updates", str(args.updates)],
                            cwd=tree, env=env, check=False, capture_output=True, text=True)
                        if done.returncode != 0:
                            raise RuntimeError(f"the run in {tree} failed:\n{done.stderr[-3000:]}")
                        result = json.loads(done.stdout.strip().splitlines()[-1])
                        results[str(tree)].setdefault(kind, []).append(result)
                        print(tree, json.dumps(result), flush=True)
        finally:
            telegram.stop()
            postgres.stop(mode="immediate")
            redis.stop()
    print()
    print("| tree | tap | median ms | p90 ms | p99 ms | mean ms | CPU ms / update | SQL statements | checkouts |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for label, kinds in results.items():
        for kind, runs in kinds.items():
            cells = [f"{statistics.median(r[key] for r in runs):.2f} ({min(r[key] for r in runs):.2f}–"
                     f"{max(r[key] for r in runs):.2f})"
                     for key in ("median_ms", "p90_ms", "p99_ms", "mean_ms", "cpu_ms_per_update",
                                 "statements_per_update", "checkouts_per_update")]
            print(f"| {label} | {kind} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
