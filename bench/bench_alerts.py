"""Deal alerts to a large audience: how long the last follower waits, at Telegram's free 30
messages/s and with paid broadcasts (``allow_paid_broadcast``, up to 1,000/s), and how fair the
order is across offers.

    python -m bench.bench_alerts [--subscribers 3000] [--offers 10]

Private Redis and Postgres, the Telegram fake enforcing Telegram's limits (30/s overall, 1/s per
chat, and 1,000/s for paid broadcasts; 429 beyond them), one Celery worker on the
``notifications`` queue with 2 processes. One business with ``subscribers`` followers; each offer
is published the way the chat publishes it (``domain.announcements.announce`` in a transaction,
in a fresh interpreter so it reads this run's settings), and the alerts go out through the outbox.

* free: one offer, ``TELEGRAM_PAID_BROADCAST`` off: seconds from the commit to the last alert;
* paid: ``offers`` offers one after another, ``TELEGRAM_PAID_BROADCAST`` on: the same per offer, and
  each follower's place in each offer's sequence (as the fake received the alerts), whose mean over
  the offers says whether the same people always hear last.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import statistics
import time
from pathlib import Path
from unittest import mock

from bench.bench_flash_sale import Harness, _thread_client

FOLLOWER_BASE = 5_000_000_000  # Telegram-sized ids, away from anything else (tests.factories: 9e9 up)
SEND_METHODS = ("sendMessage", "sendPhoto")


def _announce(env: dict[str, str], offer_id: int, results) -> None:
    """In a fresh interpreter with this run's environment: publish's announcement of one offer."""
    try:
        from datetime import UTC, datetime

        import chat.messages  # noqa: F401 - the renderers (DealAlert), as in a worker
        from core.db import session_scope
        from domain import announcements

        with session_scope() as session:
            told = announcements.announce(session, offer_id, datetime.now(UTC))
            published = time.time()  # the transaction commits now; its hand-overs go out right after
        results.put(("ok", published, told))
    except BaseException:  # noqa: BLE001 - reported to the parent
        import traceback

        results.put(("error", traceback.format_exc(), None))


def _followers(harness: Harness, business_id: int, count: int) -> list[int]:
    import concurrent.futures
    import threading

    from sqlalchemy.dialects.postgresql import insert

    from core import db
    from models import Follow, User

    ids = [FOLLOWER_BASE + n for n in range(count)]
    with db.session_scope() as session:
        session.execute(insert(User).values([{"id": c, "first_name": f"Follower {c - FOLLOWER_BASE}",
                                              "language": "en"} for c in ids]).on_conflict_do_nothing())
        session.execute(insert(Follow).values([{"user_id": c, "business_id": business_id} for c in ids])
                        .on_conflict_do_nothing())
    base = harness.telegram.url
    local = threading.local()

    def create(customer: int) -> None:
        _thread_client(local).post(f"{base}/_sandbox/users", json={"id": customer, "first_name": "Follower"}) \
            .raise_for_status()

    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        list(pool.map(create, ids))
    return ids


def _one_offer(harness: Harness, business_id: int, followers: set[int], paid: bool, timeout_s: float) -> dict:
    from tests.factories import make_offer

    offer_id = make_offer(business_id, "Surprise bag", quantity=5)
    marker = harness.last_call_id()
    too_many_before = harness.telegram.state.stats()["too_many_requests"]
    paid_before = harness.telegram.state.stats()["paid_broadcasts"]
    env = {**harness.env, "TELEGRAM_PAID_BROADCAST": "true" if paid else "false",
           "TELEGRAM_PAID_BROADCAST_MIN_AUDIENCE": str(min(100, len(followers)))}
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_announce, args=(env, offer_id, results), daemon=True)
    with mock.patch.dict(os.environ, env):
        child.start()
    status, committed, told = results.get(timeout=120)
    child.join(30)
    if status != "ok":
        raise RuntimeError(f"announcing failed:\n{committed}")
    order: list[int] = []
    times: list[float] = []
    seen: set[int] = set()
    scanned = marker
    deadline = time.monotonic() + timeout_s
    while len(seen) < len(followers) and time.monotonic() < deadline:
        new = harness.calls_since(scanned)
        scanned = new[-1]["id"] if new else scanned
        for call in new:
            if call["ok"] and call["method"] in SEND_METHODS:
                chat = int(call["params"].get("chat_id", 0))
                if chat in followers and chat not in seen:
                    seen.add(chat)
                    order.append(chat)
                    times.append(call["time"])
        time.sleep(0.05)
    stats = harness.telegram.state.stats()
    return {
        "offer_id": offer_id,
        "paid_broadcast": paid,
        "recorded": told["recorded"],
        "alerts_received": len(order),
        "first_alert_s": round(times[0] - committed, 2) if times else None,
        "last_alert_s": round(times[-1] - committed, 2) if times else None,
        "median_alert_s": round(statistics.median(times) - committed, 2) if times else None,
        "too_many_requests": stats["too_many_requests"] - too_many_before,
        "paid_broadcasts": stats["paid_broadcasts"] - paid_before,
        "order": order,
    }


def fairness(orders: list[list[int]], followers: list[int]) -> dict:
    """Each follower's mean place (1 = first) over the offers, as a share of the audience: with one
    fixed order the last follower's mean is 1.0 every time; with a fair one every mean is near 0.5."""
    size = len(followers)
    places: dict[int, list[int]] = {f: [] for f in followers}
    for order in orders:
        for place, follower in enumerate(order, start=1):
            places[follower].append(place)
    means = sorted(statistics.mean(p) / size for p in places.values() if p)
    if not means:
        return {}

    def at(q: float) -> float:
        return round(means[min(len(means) - 1, int(q * len(means)))], 3)

    # Always in the last tenth (as a fixed order leaves the same tenth of the audience).
    always_late = sum(1 for p in places.values() if p and all(x > 0.9 * size for x in p))
    return {"offers": len(orders), "mean_place_min": round(means[0], 3), "mean_place_p10": at(0.10),
            "mean_place_median": at(0.50), "mean_place_p90": at(0.90), "mean_place_max": round(means[-1], 3),
            "always_in_last_tenth": always_late}


def run(subscribers: int = 3000, offers: int = 10, concurrency: int = 2, timeout_s: float | None = None) -> dict:
    from sandbox.telegram_fake import TelegramFakeClient
    from tests.factories import make_business
    from tests.processes import start_worker

    free_timeout = timeout_s or 60 + subscribers / 20
    paid_timeout = timeout_s or 60 + subscribers / 100
    with Harness(gateway=False) as harness:  # the alerts come from the outbox, not from updates
        with TelegramFakeClient(harness.telegram.url) as users:
            users.set_rate_limit(True)  # Telegram's own limits, the paid broadcasts' 1,000/s among them
        business_id = make_business(name="Bäckerei Beliebt")
        followers = _followers(harness, business_id, subscribers)
        audience = set(followers)
        # Telegram's own limits in the workers' limiter too (bench.worker raises them for a non-empty value).
        worker_env = {**harness.env, "BENCH_TELEGRAM_RATE": ""}
        worker = start_worker("bench-alerts", queues="notifications", concurrency=concurrency, env=worker_env,
                              app="bench.worker")
        try:
            free = _one_offer(harness, business_id, audience, paid=False, timeout_s=free_timeout)
            paid = [_one_offer(harness, business_id, audience, paid=True, timeout_s=paid_timeout)
                    for _ in range(offers)]
        finally:
            worker.stop()
    orders = [r.pop("order") for r in paid]
    free.pop("order")
    return {"subscribers": subscribers, "offers": offers, "concurrency": concurrency,
            "free": free, "paid": paid, "fairness": fairness(orders, followers),
            "paid_last_alert_s": [r["last_alert_s"] for r in paid]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscribers", type=int, default=3000)
    parser.add_argument("--offers", type=int, default=10)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    result = run(args.subscribers, args.offers)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
