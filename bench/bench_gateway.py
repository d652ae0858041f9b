"""Webhook intake: updates acknowledged per second and latency, for each server variant in
bench/gateway_variants.py, driven by the same load generators on loopback: wrk (one thread, so the
server keeps a core to itself) at its maximum rate, and bench/loadgen.py (open loop) at fixed
offered rates. Run: python -m bench.bench_gateway [--duration 10] [--fixed-rates 1000,2500,5000]."""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import orjson
import redis

from bot.publisher import HANDLE_UPDATES_TASK, UPDATES_QUEUE
from localenv.services import RedisServer, free_port, port_open

ROOT = Path(__file__).resolve().parent.parent
SECRET = "bench-secret"

# Each wrk thread numbers its updates in its own range, so every request is a new update.
WRK_SCRIPT = """
local counter = 0
function init(args)
  -- Every wrk run passes its own first update_id, so a run never repeats an earlier run's ids.
  counter = tonumber(args[1])
end
function request()
  counter = counter + 1
  local body = string.format('{"update_id":%d,"message":{"message_id":%d,"date":1700000000,'
    .. '"chat":{"id":%d,"type":"private","first_name":"Bench"},'
    .. '"from":{"id":%d,"is_bot":false,"first_name":"Bench"},"text":"/start"}}',
    counter, counter % 1000000, 100000 + counter % 5000, 100000 + counter % 5000)
  return wrk.format("POST", "/telegram/webhook",
    {["Content-Type"] = "application/json", ["X-Telegram-Bot-Api-Secret-Token"] = "SECRET"}, body)
end
""".replace("SECRET", SECRET)


def _wait_http(port: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while not port_open(port):
        if time.monotonic() > deadline:
            raise RuntimeError(f"server on {port} did not start")
        time.sleep(0.1)


def parse_wrk(output: str) -> dict:
    def seconds(value: str, unit: str) -> float:
        return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]

    percentiles = re.findall(r"^\s+(50|75|90|99)%\s+([\d.]+)(us|ms|s|m)\s*$", output, re.MULTILINE)
    latency = {p: seconds(v, u) for p, v, u in percentiles}
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "requests_per_second": rps,
        "requests": requests,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
        "socket_errors": errors.group(1) if errors else "",
        "p50_ms": latency.get("50", 0) * 1000,
        "p99_ms": latency.get("99", 0) * 1000,
    }


@contextlib.contextmanager
def serving(variant: str, telegram_url: str | None):
    """One server variant on a free port with its own Redis; yields (port, Redis client)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-gw-", dir=ROOT / ".run"))
    redis_server = RedisServer(workdir / "redis", free_port()).start()
    port = free_port()
    env = {**os.environ, "REDIS_URL": redis_server.url, "TELEGRAM_WEBHOOK_SECRET": SECRET, "LOG_LEVEL": "WARNING"}
    if telegram_url:
        env["TELEGRAM_API_URL"] = telegram_url
    server = subprocess.Popen([sys.executable, "-m", "bench.gateway_variants", variant, "--port", str(port),
                               "--api-url", telegram_url or ""], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_http(port)
        yield port, redis.Redis.from_url(redis_server.url)
    finally:
        server.terminate()
        try:
            server.wait(10)
        except subprocess.TimeoutExpired:
            server.kill()
        redis_server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


def queued_updates(client) -> int:
    """The updates on the queue, each in a message of its own or several in one (the shipped gateway
    queues the updates that arrive together as one `updates.handle_updates`)."""
    count = 0
    for raw in client.lrange(UPDATES_QUEUE, 0, -1):
        envelope = orjson.loads(raw)
        if envelope["headers"]["task"] == HANDLE_UPDATES_TASK:
            (updates,), _kwargs, _embed = orjson.loads(base64.b64decode(envelope["body"]))
            count += len(updates)
        else:
            count += 1
    return count


def run_variant(variant: str, duration: float, connections: int, telegram_url: str | None) -> dict:
    with serving(variant, telegram_url) as (port, client):
        script = Path(tempfile.mkdtemp(prefix="bench-wrk-", dir=ROOT / ".run")) / "updates.lua"
        script.write_text(WRK_SCRIPT)
        try:
            # Warm up, then measure.
            subprocess.run(["wrk", "-t1", "-c", str(connections), "-d", "2s", "-s", str(script),
                            f"http://127.0.0.1:{port}", "--", "1"], capture_output=True, check=True)
            queued_before = queued_updates(client)
            result = subprocess.run(
                ["wrk", "-t1", "-c", str(connections), "-d", f"{int(duration)}s", "--latency", "-s", str(script),
                 f"http://127.0.0.1:{port}", "--", str(10**9)], capture_output=True, text=True, check=True,
            )
        finally:
            shutil.rmtree(script.parent, ignore_errors=True)
        figures = parse_wrk(result.stdout)
        figures["queued"] = queued_updates(client) - queued_before if variant != "ptb" else None
        figures["variant"] = variant
        return figures


def loadgen(port: int, rate: float, duration: float, *, connections: int, first_id: int,
            warmup: float = 0.0) -> dict:
    """bench/loadgen.py in its own process (so it has a core's worth of interpreter to itself)."""
    out = subprocess.run(
        [sys.executable, "-m", "bench.loadgen", "--port", str(port), "--rate", str(rate), "--duration",
         str(duration), "--connections", str(connections), "--first-id", str(first_id), "--warmup", str(warmup),
         "--secret", SECRET],
        cwd=ROOT, capture_output=True, text=True, check=True, timeout=duration + warmup + 120,
    )
    return json.loads(out.stdout)


def run_fixed_rate(rates: tuple[float, ...] = (1000, 2500, 5000), duration: float = 5.0, connections: int = 50,
                   repeat: int = 3, variants: tuple[str, ...] = ("batched", "ptb")) -> dict:
    """The open-loop load generator at each fixed offered rate against each server: what is
    acknowledged per second and how long each update waited, counted from when it was due."""
    telegram = None
    if "ptb" in variants:
        from sandbox.telegram_fake import TelegramFake

        telegram = TelegramFake()
        telegram.start()
    try:
        runs: dict[str, dict[str, list[dict]]] = {v: {str(int(r)): [] for r in rates} for v in variants}
        for _ in range(repeat):  # interleaved: a fresh server per variant and repeat, every rate on it
            for variant in variants:
                with serving(variant, telegram.url if telegram else None) as (port, client):
                    first_id = 1
                    for rate in rates:
                        queued_before = queued_updates(client)
                        figures = loadgen(port, rate, duration, connections=connections, first_id=first_id,
                                          warmup=1.0)
                        first_id = figures["next_update_id"]
                        figures["queued"] = (queued_updates(client) - queued_before
                                             if variant != "ptb" else None)
                        runs[variant][str(int(rate))].append(figures)
    finally:
        if telegram:
            telegram.stop()
    return {"rates": [int(r) for r in rates], "duration_s": duration, "connections": connections,
            "repeat": repeat, "runs": runs}


def run(duration: float = 10.0, connections: int = 50, repeat: int = 3,
        variants: tuple[str, ...] = ("batched", "unbatched", "send_task", "ptb")) -> dict:
    if shutil.which("wrk") is None:
        raise RuntimeError("wrk is not installed (make bench installs it)")
    (ROOT / ".run").mkdir(exist_ok=True)
    telegram = None
    if "ptb" in variants:
        from sandbox.telegram_fake import TelegramFake

        telegram = TelegramFake()
        telegram.start()
    try:
        runs: dict[str, list[dict]] = {v: [] for v in variants}
        for _ in range(repeat):  # interleaved, so drift in the machine affects every variant alike
            for variant in variants:
                runs[variant].append(run_variant(variant, duration, connections, telegram.url if telegram else None))
    finally:
        if telegram:
            telegram.stop()
    return {"duration_s": duration, "connections": connections, "repeat": repeat, "runs": runs}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--variants", default="batched,unbatched,send_task,ptb")
    parser.add_argument("--fixed-rates", default="", help="e.g. 1000,2500,5000: run the open-loop sweep instead")
    args = parser.parse_args()
    if args.fixed_rates:
        rates = tuple(float(r) for r in args.fixed_rates.split(","))
        result = run_fixed_rate(rates, min(args.duration, 5.0), args.connections, args.repeat,
                                tuple(v for v in args.variants.split(",") if v in ("batched", "ptb")))
    else:
        result = run(args.duration, args.connections, args.repeat, tuple(args.variants.split(",")))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
