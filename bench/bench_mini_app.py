"""Benchmark the Mini App's nearby search: GET /api/deals near a point, over HTTP against the real
webapp process, with 50 sessions at once, next to the same search through the chat's path.

    python -m bench.bench_mini_app [--offers 50000] [--sessions 50] [--seconds 15] [--think 1.0] [--workers 1,2]

A private Postgres (migrated to head: PostGIS, JIT off) on a free port in ``.run/``, filled with the
city of bench/bench_discovery.py: 50,000 active offers, ten from each of 5,000 businesses spread
over 40 × 40 km. Then, for random positions in the city:

* **app**: ``python -m webapp`` as shipped (uvicorn), once for each ``--workers`` count (its
  WEBAPP_WORKERS: processes on one socket), and ``--sessions`` clients, each on its own keep-alive
  HTTP connection with its own Telegram user's signed initData, asking ``GET /api/deals?lat=…&lon=…``
  (initData checked, the user's row read, the 20 nearest deals and their businesses' ratings, JSON);
* **chat**: the same number of sessions, each a thread of one process with its own database
  connection, calling ``domain.catalog.browse`` (nearest first) as the chat's /deals calls it for
  a page, in a session of its own (a task's transaction);

each session waiting a random think time of 0 to ``2 × think`` seconds before each search, its
first one too (a person opens the app, then looks; about sessions / think searches a second in
all), for ``--seconds``. The same again with every session's first search at the same instant (how
this benchmark started before: a burst of 50 searches that queue behind each other), reported
apart, with the latency by time since the start. Then, to show the ceiling, the same without think
time for a few seconds (each session asks again as soon as it has its answer). Latency is from the
request's first byte to the answer's last (for the chat, the call), as the client sees it: the
queueing in the server counts. The webapp's CPU (all its processes) per search is taken from the
ceiling run.

Also, one at a time: the app's query (20 nearest in one ``browse``) against what the app did before
(four pages of the chat's ``browse``, one after the other).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
USER_BASE = 8_000_000_000
CEILING_SECONDS = 4.0


def _summary(seconds: list[float], elapsed: float) -> dict:
    ms = sorted(t * 1000 for t in seconds)
    if not ms:
        return {"count": 0}
    return {"count": len(ms), "per_s": round(len(ms) / elapsed, 1), "p50_ms": round(statistics.median(ms), 2),
            "p99_ms": round(ms[min(len(ms) - 1, round(0.99 * (len(ms) - 1)))], 2), "max_ms": round(ms[-1], 2)}


# Windows of time since a run's start (seconds) for the latency by time: the first burst, its tail, the rest.
WINDOWS = ((0.0, 0.5), (0.5, 1.0), (1.0, 2.0), (2.0, None))


def _by_time(samples: list[tuple[float, float, bool]]) -> dict:
    """Latency by when the search was sent (seconds since the run's start), and of each session's
    first search alone."""
    windows = []
    for start, end in WINDOWS:
        inside = [took for at, took, _first in samples if at >= start and (end is None or at < end)]
        windows.append({"from_s": start, "to_s": end, **_summary(inside, 1.0)})
    firsts = [took for _at, took, first in samples if first]
    seconds = []  # each second of the run: searches sent in it, their p99 and slowest (ms)
    for second in range(int(max((at for at, _took, _first in samples), default=0)) + 1):
        inside = _summary([took for at, took, _first in samples if second <= at < second + 1], 1.0)
        seconds.append([inside["count"], inside.get("p99_ms"), inside.get("max_ms")])
    return {"windows": windows, "first_search": _summary(firsts, 1.0), "seconds": seconds}


def _paced(samples: list[tuple[float, float, bool]], elapsed: float) -> dict:
    return {**_summary([took for _at, took, _first in samples], elapsed), "by_time": _by_time(samples)}


class _Positions:
    """Random customer positions in the city (bench_discovery's), the same sequence for each path."""

    def __init__(self, seed: int) -> None:
        from bench.bench_discovery import CENTRE, SPAN_LAT, SPAN_LON

        rng = random.Random(seed)
        self.points = [(round(CENTRE[0] + (rng.random() - 0.5) * SPAN_LAT * 0.8, 5),
                        round(CENTRE[1] + (rng.random() - 0.5) * SPAN_LON * 0.8, 5)) for _ in range(5000)]

    def of(self, session: int, n: int) -> tuple[float, float]:
        return self.points[(session * 97 + n) % len(self.points)]


# --------------------------------------------------------------------------- the app, over HTTP


async def _http_session(number: int, port: int, authorization: str, *, positions: _Positions, started_at: float,
                        stop_at: float, think_s: float, synchronized: bool, seed: int,
                        samples: list[tuple[float, float, bool]], failures: list[str]) -> None:
    """One customer's app: a keep-alive connection; a pause (unless ``synchronized``), a search,
    again until ``stop_at``."""
    rng = random.Random(seed * 1000 + number)
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while True:
            if think_s and (n or not synchronized):
                await asyncio.sleep(rng.uniform(0, 2 * think_s))
            if time.monotonic() >= stop_at:
                break
            latitude, longitude = positions.of(number, n)
            request = (f"GET /api/deals?lat={latitude}&lon={longitude} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                       f"Authorization: {authorization}\r\n\r\n").encode()
            sent_at = time.monotonic() - started_at
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            length = next(int(line.split(":", 1)[1]) for line in lines if line.lower().startswith("content-length:"))
            body = await reader.readexactly(length)
            samples.append((sent_at, time.perf_counter() - started, n == 0))
            n += 1
            if not lines[0].startswith("HTTP/1.1 200") or not body.startswith(b'{"deals":[{'):
                failures.append(f"{lines[0]} {body[:120]!r}")
    finally:
        writer.close()


def _cpu_seconds(pid: int) -> float:
    """CPU time (user and system) of a process and all its children: the webapp's workers."""
    import psutil

    main = psutil.Process(pid)
    total = 0.0
    for process in [main, *main.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def _app_run(port: int, users: list[str], positions: _Positions, *, seconds: float, think_s: float,
             seed: int, synchronized: bool = False, pid: int | None = None) -> dict:
    import uvloop

    samples: list[tuple[float, float, bool]] = []
    failures: list[str] = []

    async def everyone() -> float:
        await asyncio.sleep(0)
        started = time.monotonic()
        stop_at = started + seconds
        await asyncio.gather(*(_http_session(number, port, authorization, positions=positions, started_at=started,
                                             stop_at=stop_at, think_s=think_s, synchronized=synchronized,
                                             seed=seed, samples=samples, failures=failures)
                               for number, authorization in enumerate(users)))
        return time.monotonic() - started

    cpu_before = _cpu_seconds(pid) if pid else 0.0
    elapsed = uvloop.run(everyone())
    result = {**_paced(samples, elapsed), "failures": len(failures), "failure_sample": failures[:3]}
    if pid and samples:
        result["cpu_ms_per_search"] = round((_cpu_seconds(pid) - cpu_before) * 1000 / len(samples), 2)
    return result


# --------------------------------------------------------------------------- the chat's path, in process


def _chat_run(engine, sessions: int, positions: _Positions, *, seconds: float, think_s: float, seed: int,
              now: datetime, synchronized: bool = False) -> dict:
    from sqlalchemy.orm import Session

    from domain import catalog

    samples: list[tuple[float, float, bool]] = []
    found: list[int] = []
    lock = threading.Lock()
    started_at = time.monotonic()
    stop_at = started_at + seconds

    def one(number: int) -> None:
        rng = random.Random(seed * 1000 + number)
        n = 0
        while True:
            if think_s and (n or not synchronized):
                time.sleep(rng.uniform(0, 2 * think_s))
            if time.monotonic() >= stop_at:
                break
            latitude, longitude = positions.of(number, n)
            sent_at = time.monotonic() - started_at
            started = time.perf_counter()
            with Session(engine) as session, session.begin():
                page = catalog.browse(session, now, catalog.Sort.NEAREST, latitude=latitude, longitude=longitude)
            took = time.perf_counter() - started
            with lock:
                samples.append((sent_at, took, n == 0))
                found.append(len(page.items))
            n += 1

    threads = [threading.Thread(target=one, args=(number,)) for number in range(sessions)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {**_paced(samples, time.monotonic() - started_at), "empty_pages": found.count(0)}


def _one_at_a_time(engine, positions: _Positions, now: datetime, queries: int) -> dict:
    """The app's one query for a map against the four pages it asked for before, sequentially."""
    from sqlalchemy.orm import Session

    from domain import catalog
    from webapp import sources

    times: dict[str, list[float]] = {"one_query": [], "four_pages": []}
    differ = 0
    with Session(engine) as session:
        for n in range(queries):
            latitude, longitude = positions.of(n, n)
            started = time.perf_counter()
            one = catalog.browse(session, now, catalog.Sort.NEAREST, latitude=latitude, longitude=longitude,
                                 size=sources.MAP_LIMIT)
            times["one_query"].append(time.perf_counter() - started)
            started = time.perf_counter()
            pages = [catalog.browse(session, now, catalog.Sort.NEAREST, page, latitude=latitude, longitude=longitude)
                     for page in range(4)]
            times["four_pages"].append(time.perf_counter() - started)
            if [i.offer.id for i in one.items] != [i.offer.id for p in pages for i in p.items]:
                differ += 1
            session.expunge_all()
    return {name: _summary(values, sum(values)) for name, values in times.items()} | {"results_differ": differ}


# --------------------------------------------------------------------------- the run


def run(offers: int = 50_000, sessions: int = 50, seconds: float = 15.0, *, think_s: float = 1.0,
        ceiling_s: float = CEILING_SECONDS, queries: int = 200, seed: int = 23,
        workers: tuple[int, ...] = (1, 2)) -> dict:
    import sqlalchemy as sa

    from bench.bench_discovery import OFFERS_PER_BUSINESS, start_city
    from core.settings import Settings, get_settings
    from localenv.services import free_port
    from tests.processes import start_webapp
    from webapp import auth

    directory = ROOT / ".run" / f"bench-mini-app-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    postgres = None
    webapps: dict[int, tuple] = {}
    try:
        postgres, fill_s = start_city(directory, offers, 0, seed)
        engine = sa.create_engine(postgres.url, pool_size=sessions, max_overflow=0)
        now = datetime.now(UTC)
        positions = _Positions(seed)

        for count in workers:  # every variant up at once, idle while another is measured
            port = free_port()
            process, _url = start_webapp(port, {"DATABASE_URL": postgres.url, "LOG_LEVEL": "WARNING",
                                                "WEBAPP_WORKERS": str(count)})
            webapps[count] = (process, port)
        token = get_settings().telegram_token  # the webapp's too: the same environment
        signed_at = int(time.time())
        users = ["tma " + auth.sign({"id": USER_BASE + n, "first_name": f"Bench {n}", "language_code": "en"}, token,
                                    auth_date=signed_at) for n in range(sessions)]
        # Warm-up, not counted: each user's first visit records them, the pools fill, plans are cached.
        warm_s = min(2.0, seconds)
        for _process, port in webapps.values():
            _app_run(port, users, positions, seconds=warm_s, think_s=0.0, seed=seed + 1)
        _chat_run(engine, sessions, positions, seconds=warm_s, think_s=0.0, seed=seed + 1, now=now)

        def measured(count: int, **kwargs) -> dict:
            process, port = webapps[count]
            return _app_run(port, users, positions, pid=process.process.pid, **kwargs)

        # Each kind of run for every variant in turn, so a change in the machine's load weighs on all.
        app: dict[str, dict] = {str(count): {} for count in workers}
        for kind, kwargs in (("paced", {"seconds": seconds, "think_s": think_s, "seed": seed}),
                             ("synchronized", {"seconds": seconds, "think_s": think_s, "seed": seed,
                                               "synchronized": True}),
                             ("ceiling", {"seconds": ceiling_s, "think_s": 0.0, "seed": seed + 2})):
            for count in workers:
                app[str(count)][kind] = measured(count, **kwargs)
        result = {
            "offers": offers, "businesses": max(offers // OFFERS_PER_BUSINESS, 1), "fill_s": round(fill_s, 1),
            "sessions": sessions, "seconds": seconds, "think_s": think_s, "ceiling_seconds": ceiling_s,
            "limit": _limit(), "jit": _jit(engine), "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
            "default_workers": Settings.model_fields["webapp_workers"].default,
            "app": app,
            "chat": {
                "paced": _chat_run(engine, sessions, positions, seconds=seconds, think_s=think_s, seed=seed, now=now),
                "synchronized": _chat_run(engine, sessions, positions, seconds=seconds, think_s=think_s, seed=seed,
                                          now=now, synchronized=True),
                "ceiling": _chat_run(engine, sessions, positions, seconds=ceiling_s, think_s=0.0, seed=seed + 2,
                                     now=now),
            },
            "one_at_a_time": _one_at_a_time(engine, positions, now, queries),
        }
        engine.dispose()
        result["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
        return result
    finally:
        for process, _port in webapps.values():
            process.stop()
        if postgres is not None:
            postgres.stop(mode="immediate")
        import shutil

        shutil.rmtree(directory, ignore_errors=True)


def _limit() -> int:
    from webapp import sources

    return sources.MAP_LIMIT


def _jit(engine) -> str:
    import sqlalchemy as sa

    with engine.connect() as connection:
        return str(connection.scalar(sa.text("SHOW jit")))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--offers", type=int, default=50_000)
    parser.add_argument("--sessions", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds before each of a session's searches")
    parser.add_argument("--workers", type=lambda value: tuple(int(v) for v in value.split(",")), default=(1, 2),
                        help="the WEBAPP_WORKERS counts to measure, comma-separated")
    args = parser.parse_args()
    print(json.dumps(run(args.offers, args.sessions, args.seconds, think_s=args.think, workers=args.workers),
                     indent=2))


if __name__ == "__main__":
    main()
