"""Benchmark outbound notifications: a fan-out of many messages to many chats, through the outbox
and the real Celery workers, against a Telegram fake that enforces Telegram's limits.

    python -m bench.bench_notifications [--count 3000] [--chats 300] [--workers 2] [--json out.json]

Everything is private to the run: a Redis and a Postgres (migrated to head) on free ports in
``.run/``, the Telegram fake with its rate limits on (30 messages/s overall, 1/s per chat, with
bursts; beyond them it answers 429), and ``--workers`` Celery worker processes consuming the
``notifications`` queue with 2 pool processes each. ``count`` messages, each with a unique text,
are recorded with ``domain.outbox.notify`` for ``chats`` users in a few transactions (each
enqueues its sends after commit, as the product does). Measured from the first transaction to
the last message the fake accepted:

* the achieved rate (messages/s) and its share of Telegram's 30/s ceiling;
* 429s the fake answered (each one means a worker overstepped the limits);
* duplicates (a text seen twice in a chat) and lost messages (expected - received).
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import multiprocessing
import os
import shutil
import time
import uuid
from pathlib import Path
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
TELEGRAM_CEILING_PER_S = 30.0
USER_BASE = 8_000_000_000  # Telegram-sized ids, away from anything else
TRANSACTIONS = 5


def _migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logging"] = False
    config.attributes["url"] = url
    command.upgrade(config, "head")


def _record(count: int, chat_ids: list[int], run_id: str, results) -> None:
    """In a fresh interpreter (spawned, so the settings and the Celery app read this run's Redis
    and Postgres): the users, then ``count`` notifications in a few transactions."""
    try:
        import sqlalchemy as sa
        from sqlalchemy.dialects.postgresql import insert

        from chat.replies import Reply
        from core import db, outbox
        from models import User

        with db.session_scope() as session:
            session.execute(insert(User).values([{"id": c, "first_name": "bench"} for c in chat_ids])
                            .on_conflict_do_nothing())
        per_transaction = -(-count // TRANSACTIONS)
        started = time.time()
        for first in range(0, count, per_transaction):
            with db.session_scope() as session:
                for i in range(first, min(count, first + per_transaction)):
                    chat = chat_ids[i % len(chat_ids)]
                    outbox.notify(session, f"bench:{run_id}:{i}", chat, Reply(text=_text(run_id, i)))
        recorded = time.time()
        with db.session_scope() as session:
            rows = session.scalar(sa.text("SELECT count(*) FROM notifications WHERE idempotency_key LIKE :p"),
                                  {"p": f"bench:{run_id}:%"})
        results.put(("ok", started, recorded, rows))
    except BaseException:  # noqa: BLE001 - reported to the parent
        import traceback

        results.put(("error", traceback.format_exc(), None, None))


def _text(run_id: str, i: int) -> str:
    return f"Deal {i} ({run_id})"


def _outcomes(database_url: str, run_id: str) -> dict[str, int]:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    engine = sa.create_engine(database_url, poolclass=NullPool)
    try:
        with engine.connect() as c:
            rows = c.execute(sa.text("SELECT status, count(*) FROM notifications WHERE idempotency_key LIKE :p"
                                     " GROUP BY status"), {"p": f"bench:{run_id}:%"}).all()
        return {str(status): n for status, n in rows}
    finally:
        engine.dispose()


def _sent_calls(fake) -> list[float]:
    """Times of the sendMessage calls the fake accepted (read in-process, under its lock)."""
    with fake.state.lock:
        return [call["time"] for call in fake.state.calls if call["method"] == "sendMessage" and call["ok"]]


def run(count: int = 3000, chats: int = 300, workers: int = 2, concurrency: int = 2,
        timeout_s: float | None = None) -> dict:
    """Fan ``count`` messages out over ``chats`` chats; see the module doc."""
    from localenv.services import PostgresServer, RedisServer, free_port
    from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
    from tests.processes import start_worker, stop_all

    run_id = uuid.uuid4().hex[:8]
    directory = ROOT / ".run" / f"bench-notifications-{os.getpid()}-{run_id}"
    timeout_s = timeout_s if timeout_s is not None else 60 + count / 20
    chat_ids = [USER_BASE + n for n in range(chats)]
    redis = postgres = fake = client = None
    started_workers = []
    try:
        redis = RedisServer(directory / "redis", free_port()).start()
        postgres = PostgresServer(directory / "postgres", free_port(), database="bench").start()
        _migrate(postgres.url)
        fake = TelegramFake()
        fake.start()
        client = TelegramFakeClient(fake.url)
        client.set_rate_limit(True)  # Telegram's limits: 429 beyond them
        for chat in chat_ids:
            client.create_user(chat, f"Bench {chat - USER_BASE}")
        env = {"REDIS_URL": redis.url, "DATABASE_URL": postgres.url, "TELEGRAM_API_URL": fake.url}
        # Started side by side (a start is mostly one interpreter importing the app); every one started is
        # kept, to be stopped, even when another failed.
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            starting = [pool.submit(start_worker, f"bench-notify-{n}", queues="notifications",
                                    concurrency=concurrency, env=env) for n in range(workers)]
        started_workers += [future.result() for future in starting if future.exception() is None]
        for future in starting:
            if (error := future.exception()) is not None:
                raise error
        too_many_before = client.stats()["too_many_requests"]

        ctx = multiprocessing.get_context("spawn")
        results = ctx.Queue()
        recorder = ctx.Process(target=_record, args=(count, chat_ids, run_id, results), daemon=True)
        with mock.patch.dict(os.environ, env):  # inherited by the spawned recorder
            recorder.start()
        status, started, recorded, rows = results.get(timeout=120 + count / 50)
        recorder.join(30)
        if status != "ok":
            raise RuntimeError(f"recording the notifications failed:\n{started}")

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if len(_sent_calls(fake)) >= count:
                break
            if any(w.process.poll() is not None for w in started_workers):
                raise RuntimeError("a worker died:\n" + "\n".join(w.output()[-3000:] for w in started_workers))
            time.sleep(0.05)
        # Every row settled (sent or dropped), then a moment for any late duplicate to show up.
        settle = time.monotonic() + 10
        while time.monotonic() < min(settle, deadline + 10) and _outcomes(postgres.url, run_id).get("pending"):
            time.sleep(0.1)
        time.sleep(0.5)

        sends = sorted(_sent_calls(fake))
        finished = sends[-1] if sends else time.time()
        received = duplicates = 0
        per_chat_max = 0
        for chat in chat_ids:
            texts = collections.Counter(m["text"] for m in client.messages(chat) if m.get("from", {}).get("is_bot"))
            received += len(texts)  # distinct texts
            duplicates += sum(n - 1 for n in texts.values())
            per_chat_max = max(per_chat_max, sum(texts.values()))
        elapsed = max(finished - started, 1e-9)
        rate = received / elapsed
        return {
            "count": count,
            "chats": chats,
            "workers": workers,
            "concurrency": concurrency,
            "recorded_rows": rows,
            "record_s": round(recorded - started, 3),
            "elapsed_s": round(elapsed, 2),
            "messages_per_s": round(rate, 1),
            "ceiling_per_s": TELEGRAM_CEILING_PER_S,
            "percent_of_ceiling": round(100 * rate / TELEGRAM_CEILING_PER_S, 1),
            "too_many_requests": client.stats()["too_many_requests"] - too_many_before,
            "received": received,
            "duplicates": duplicates,
            "lost": count - received,
            "statuses": _outcomes(postgres.url, run_id),
        }
    finally:
        try:
            stop_all(started_workers)
        except Exception:  # noqa: BLE001 - keep tearing down the rest
            for worker in started_workers:
                worker.kill()
        if client is not None:
            client.close()
        if fake is not None:
            fake.stop()
        if redis is not None:
            redis.stop()
        if postgres is not None:
            postgres.stop(mode="immediate")
        shutil.rmtree(directory, ignore_errors=True)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=3000)
    parser.add_argument("--chats", type=int, default=300)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--json", metavar="PATH", help="also write the result as JSON")
    args = parser.parse_args(argv)
    result = run(args.count, args.chats, args.workers)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
