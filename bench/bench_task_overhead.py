"""Task overhead: a no-op task's round trip and how many no-op tasks a worker drains per second,
with this project's Celery configuration and base task against Celery's defaults.

    python -m bench.bench_task_overhead [--round-trips 300] [--batch 3000] [--repeat 3]

One private Redis; one worker process at a time, one prefork child (``-c 1``):

* ``defaults``: ``bench.plain_app``, a Celery app with nothing but the broker (and a result
  backend, to time round trips): prefetch 4, early acks, no events; a plain ``@app.task`` no-op;
* ``project``: ``bench.worker``, the project's app (celeryconfig.py: late acks, prefetch 1, task
  events, soft/hard time limits, JSON only, structlog) with a plain ``@app.task`` no-op;
* ``project_base``: the same worker, the no-op on the project's ``BaseTask`` (retry policy,
  correlation id bound for the logs, dead letters on failure).

Round trip: ``send_task(...).get()`` one after another (the worker stores that task's result),
p50 / p99. Throughput: ``batch`` no-ops queued while the worker does not consume their queue (and
a last one that stores a result), then the queue is let go: batch / seconds until the last ran.
Each client runs in a fresh interpreter whose settings point at the benchmark's Redis, so the
publishing side uses each configuration too.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CONFIGS = {  # name: (worker app, queue, task)
    "defaults": ("bench.plain_app", "celery", "bench.noop"),
    "project": ("bench.worker", "maintenance", "bench.noop"),
    "project_base": ("bench.worker", "maintenance", "bench.noop_base"),
    # The same, without task events (as updates.handle_update runs): what the events cost.
    "project_base_quiet": ("bench.worker", "maintenance", "bench.noop_base_quiet"),
}


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))] if ordered else 0.0


# --------------------------------------------------------------------------- client (own process)


def client(config: str, round_trips: int, batch: int) -> dict:
    app_module, queue, task = CONFIGS[config]
    if app_module == "bench.plain_app":
        from bench.plain_app import app
    else:
        from bench.worker import app
    control = app.control
    for _ in range(20):  # warm up: connections, the worker's first tasks
        app.send_task(task, queue=queue, ignore_result=False).get(timeout=30)
    latencies = []
    for _ in range(round_trips):
        started = time.perf_counter()
        app.send_task(task, queue=queue, ignore_result=False).get(timeout=30)
        latencies.append(time.perf_counter() - started)

    # One worker consumes this Redis: its reply is the only one, so no need to wait out the timeout.
    control.cancel_consumer(queue, reply=True, timeout=5, limit=1)
    try:
        for _ in range(batch):
            app.send_task(task, queue=queue, ignore_result=True)
        last = app.send_task("bench.mark", queue=queue, ignore_result=False)
    finally:
        resumed = time.time()
        control.add_consumer(queue, reply=True, timeout=5, limit=1)
    finished = last.get(timeout=300)
    drain_s = finished - resumed
    return {
        "config": config,
        "round_trips": round_trips,
        "round_trip_p50_ms": round(_percentile(latencies, 50) * 1000, 3),
        "round_trip_p99_ms": round(_percentile(latencies, 99) * 1000, 3),
        "batch": batch,
        "drain_s": round(drain_s, 3),
        "tasks_per_s": round((batch + 1) / drain_s, 1),
    }


# --------------------------------------------------------------------------- orchestration


def _measure(configs: list[str], redis_url: str, round_trips: int, batch: int) -> list[dict]:
    """One worker for these configurations (they share its app and queue), a client for each."""
    from tests.processes import start_worker

    app_module, queue, _task = CONFIGS[configs[0]]
    env = {"REDIS_URL": redis_url, "LOG_LEVEL": os.environ.get("LOG_LEVEL", "INFO")}
    worker = start_worker(f"bench-overhead-{configs[0]}", queues=queue, concurrency=1, env=env, app=app_module)
    try:
        out = subprocess.run([sys.executable, "-m", "bench.bench_task_overhead", "--client", ",".join(configs),
                              "--round-trips", str(round_trips), "--batch", str(batch)],
                             cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600,
                             check=False)
        if out.returncode != 0:
            raise RuntimeError(f"client {configs} failed:\n{out.stderr[-3000:]}")
        return [json.loads(line) for line in out.stdout.strip().splitlines()[-len(configs):]]
    finally:
        worker.stop()


def run(round_trips: int = 300, batch: int = 3000, repeat: int = 3,
        configs: tuple[str, ...] = ("defaults", "project", "project_base", "project_base_quiet")) -> dict:
    from localenv.services import RedisServer, free_port

    (ROOT / ".run").mkdir(exist_ok=True)
    directory = ROOT / ".run" / f"bench-overhead-{os.getpid()}-{uuid.uuid4().hex[:6]}"
    redis = RedisServer(directory / "redis", free_port()).start()
    runs: dict[str, list[dict]] = {c: [] for c in configs}
    try:
        by_worker: dict[str, list[str]] = {}
        for config in configs:
            by_worker.setdefault(CONFIGS[config][0], []).append(config)
        for _ in range(repeat):  # interleaved
            for group in by_worker.values():
                for measured in _measure(group, redis.url, round_trips, batch):
                    runs[measured["config"]].append(measured)
    finally:
        redis.stop()
        shutil.rmtree(directory, ignore_errors=True)
    median = {c: {k: statistics.median(r[k] for r in rs) for k in
                  ("round_trip_p50_ms", "round_trip_p99_ms", "tasks_per_s")} for c, rs in runs.items()}
    result = {"round_trips": round_trips, "batch": batch, "repeat": repeat, "runs": runs, "median": median}
    if "project" in median and "project_base" in median:
        # Time per task on the base task against the plain one, from the drain rates.
        plain, base = median["project"]["tasks_per_s"], median["project_base"]["tasks_per_s"]
        result["base_task_overhead_percent"] = round(100 * (plain / base - 1), 1)
    if "defaults" in median and "project" in median:
        result["config_overhead_percent"] = round(
            100 * (median["defaults"]["tasks_per_s"] / median["project"]["tasks_per_s"] - 1), 1)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--client", help=argparse.SUPPRESS)  # configurations, comma separated
    parser.add_argument("--round-trips", type=int, default=300)
    parser.add_argument("--batch", type=int, default=3000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", metavar="PATH")
    args = parser.parse_args(argv)
    if args.client:
        for config in args.client.split(","):
            print(json.dumps(client(config, args.round_trips, args.batch)), flush=True)
        return
    result = run(args.round_trips, args.batch, args.repeat)
    print(json.dumps(result, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
