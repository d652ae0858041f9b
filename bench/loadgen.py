"""An open-loop HTTP load generator: POSTs Telegram updates at a fixed offered rate.

    python -m bench.loadgen --port 8080 --rate 2000 --duration 5 [--connections 50] [--warmup 1]
    python -m bench.loadgen --port 8080 --bodies taps.jsonl --duration 1 --timestamps [--output result.json]

wrk sends the next request as soon as the previous answer arrives (closed loop), so a slow
server is simply offered less and its queueing never shows in the latency. Here request ``i``
is due at ``start + i / rate`` whatever happened before; it goes out on an idle keep-alive
connection (or waits for one), and its latency is counted from the moment it was due, so time
spent waiting for a connection counts too (no coordinated omission).

One process, asyncio on uvloop, raw HTTP/1.1 over ``--connections`` keep-alive connections
(one request in flight per connection, as Telegram's webhook delivery does). Every request is a
new update (``update_id`` from ``--first-id``), unless ``--bodies`` gives the updates, one JSON
object per line, sent in that order spread evenly over ``--duration``. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import sys
import time
from pathlib import Path

UPDATE = ('{{"update_id":{n},"message":{{"message_id":{m},"date":1700000000,'
          '"chat":{{"id":{c},"type":"private","first_name":"Bench"}},'
          '"from":{{"id":{c},"is_bot":false,"first_name":"Bench"}},"text":"/start"}}}}')


def start_update(n: int) -> bytes:
    chat = 100000 + n % 5000
    return UPDATE.format(n=n, m=n % 1000000, c=chat).encode()


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


class Connection(asyncio.Protocol):
    def __init__(self, generator: Generator) -> None:
        self.generator = generator
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.current: tuple[int, float] | None = None  # (request index, time it was due)
        self.ready = asyncio.get_running_loop().create_future()

    def connection_made(self, transport) -> None:
        self.transport = transport
        self.ready.set_result(None)

    def send(self, index: int, due: float, request: bytes) -> None:
        self.current = (index, due)
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while self.current is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end]).decode("latin-1")
            lines = head.split("\r\n")
            status = int(lines[0].split(" ", 2)[1])
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
            if headers.get("transfer-encoding", "").lower() == "chunked":
                stop = self.buffer.find(b"0\r\n\r\n", end + 4)
                if stop < 0:
                    return
                consumed = stop + 5
            else:
                consumed = end + 4 + int(headers.get("content-length", "0"))
                if len(self.buffer) < consumed:
                    return
            del self.buffer[:consumed]
            index, due = self.current
            self.current = None
            self.generator.completed(self, index, due, status)

    def connection_lost(self, exc) -> None:
        if self.current is not None:
            index, due = self.current
            self.current = None
            self.generator.failed(index, due)
        self.generator.lost(self)


class Generator:
    def __init__(self, host: str, port: int, path: str, secret: str, connections: int) -> None:
        self.host, self.port, self.path, self.secret = host, port, path, secret
        self.connections = connections
        self.idle: collections.deque[Connection] = collections.deque()
        self.backlog: collections.deque[tuple[int, float, bytes]] = collections.deque()
        self.record = False
        self.latencies: list[float] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors = 0
        self.outstanding = 0
        self.done_at: dict[int, float] = {}
        self.sent_at: dict[int, float] = {}
        self.all_done: asyncio.Event | None = None

    def request(self, body: bytes) -> bytes:
        return (f"POST {self.path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nX-Telegram-Bot-Api-Secret-Token: {self.secret}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode() + body

    async def connect(self) -> None:
        loop = asyncio.get_running_loop()
        for _ in range(self.connections):
            _transport, connection = await loop.create_connection(lambda: Connection(self), self.host, self.port)
            await connection.ready
            self.idle.append(connection)

    def dispatch(self, index: int, due: float, request: bytes) -> None:
        self.outstanding += 1
        if self.idle:
            self.idle.popleft().send(index, due, request)
            if self.record:
                self.sent_at[index] = time.monotonic()
        else:
            self.backlog.append((index, due, request))

    def _next(self, connection: Connection) -> None:
        if self.backlog:
            index, due, request = self.backlog.popleft()
            connection.send(index, due, request)
            if self.record:
                self.sent_at[index] = time.monotonic()
        else:
            self.idle.append(connection)

    def _finish(self) -> None:
        self.outstanding -= 1
        if self.outstanding == 0 and self.all_done is not None:
            self.all_done.set()  # only set once every request of the run went out (see offer)

    def completed(self, connection: Connection, index: int, due: float, status: int) -> None:
        now = time.monotonic()
        if self.record:
            self.latencies.append(now - due)
            self.statuses[status] += 1
            self.done_at[index] = now
        self._next(connection)
        self._finish()

    def failed(self, index: int, due: float) -> None:
        if self.record:
            self.errors += 1
        self._finish()

    def lost(self, connection: Connection) -> None:
        with contextlib.suppress(ValueError):
            self.idle.remove(connection)

    async def offer(self, bodies, count: int, rate: float, answer_wait_s: float) -> tuple[float, float]:
        """Send ``count`` requests at ``rate`` and wait up to ``answer_wait_s`` for the last answers (those
        still missing then count as unanswered); returns (start, end)."""
        self.all_done = None
        start = time.monotonic() + 0.01
        index = 0
        while index < count:
            now = time.monotonic()
            while index < count and start + index / rate <= now:
                self.dispatch(index, start + index / rate, self.request(bodies(index)))
                index += 1
            if index < count:
                # The loop's timers tick in milliseconds: sleep at least one tick (sending what fell
                # due meanwhile in one go) rather than spinning on zero-length sleeps.
                await asyncio.sleep(max(0.001, start + index / rate - time.monotonic()))
        self.all_done = asyncio.Event()
        if self.outstanding:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.all_done.wait(), answer_wait_s)
        return start, time.monotonic()


async def generate(args, fixed: list[bytes] | None) -> dict:
    generator = Generator(args.host, args.port, args.path, args.secret, args.connections)
    await generator.connect()
    rate = len(fixed) / args.duration if fixed else args.rate
    first = args.first_id
    if args.warmup > 0 and not fixed:
        warm = int(args.rate * args.warmup)
        await generator.offer(lambda i: start_update(first + i), warm, args.rate, 30)
        first += warm
    generator.record = True
    count = len(fixed) if fixed else int(rate * args.duration)
    wall_offset = time.time() - time.monotonic()
    start, end = await generator.offer((lambda i: fixed[i]) if fixed else (lambda i: start_update(first + i)),
                                       count, rate, args.timeout)
    ok = sum(n for status, n in generator.statuses.items() if 200 <= status < 300)
    last = max(generator.done_at.values(), default=start)
    result = {
        "offered_rate": rate,
        "offered": count,
        "acknowledged": ok,
        "non_2xx": sum(generator.statuses.values()) - ok,
        "errors": generator.errors,
        "unanswered": count - sum(generator.statuses.values()) - generator.errors,
        "connections": args.connections,
        "elapsed_s": round(last - start, 4),
        "acknowledged_per_s": round(ok / max(last - start, 1e-9), 1),
        "p50_ms": round(percentile(generator.latencies, 50) * 1000, 3),
        "p90_ms": round(percentile(generator.latencies, 90) * 1000, 3),
        "p99_ms": round(percentile(generator.latencies, 99) * 1000, 3),
        "max_ms": round(max(generator.latencies, default=0) * 1000, 3),
        "next_update_id": first + count,
        "cpu_s": round(time.process_time(), 3),  # this generator's own CPU time, warm-up included
    }
    if args.timestamps:
        # Wall-clock times (time.time()) per request: when it was due and when it was answered.
        result["due_wall"] = [start + i / rate + wall_offset for i in range(count)]
        result["answered_wall"] = [generator.done_at[i] + wall_offset if i in generator.done_at else None
                                   for i in range(count)]
    _ = end
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--path", default="/telegram/webhook")
    parser.add_argument("--secret", default="bench-secret")
    parser.add_argument("--rate", type=float, default=1000.0, help="requests per second offered")
    parser.add_argument("--duration", type=float, default=5.0, help="seconds of measured load")
    parser.add_argument("--warmup", type=float, default=0.0, help="seconds at the same rate, not measured")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--first-id", type=int, default=1)
    parser.add_argument("--bodies", help="JSON lines: the updates to send, in order")
    parser.add_argument("--timestamps", action="store_true", help="report per-request due and answer times")
    parser.add_argument("--timeout", type=float, default=30.0, help="wait this long for the last answers")
    parser.add_argument("--output", help="write the result (JSON) to this file instead of stdout")
    args = parser.parse_args(argv)
    fixed = None
    if args.bodies:
        fixed = [line.strip().encode() for line in Path(args.bodies).read_text().splitlines() if line.strip()]
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is pinned; plain asyncio still works
        result = asyncio.run(generate(args, fixed))
    else:
        result = uvloop.run(generate(args, fixed))
    if args.output:  # a large result (2,000 timestamps) never goes through a pipe at all
        Path(args.output).write_text(json.dumps(result) + "\n")
        return
    # The event loop may leave stdout non-blocking: a result larger than the pipe's buffer (2,000
    # timestamps) was then cut short whenever the reader was slow (a busy machine), and the run lost.
    os.set_blocking(sys.stdout.fileno(), True)
    sys.stdout.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
