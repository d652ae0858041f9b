"""`make bench`: every benchmark in one run, each next to the alternative a user would pick,
written to bench/report.md and bench/report.json.

    python -m bench            # full sizes (several minutes)
    python -m bench --smoke    # tiny sizes: checks the benchmarks still work (used by the tests)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent


def machine() -> dict:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    memory_kb = int(next(line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines()
                         if line.startswith("MemTotal")))
    return {"cpu": cpu, "cores": os.cpu_count(), "memory_gib": round(memory_kb / 2**20, 1),
            "python": platform.python_version(), "kernel": platform.release()}


def spread(values: list[float], digits: int = 1) -> str:
    median = statistics.median(values)
    if len(values) == 1:
        return f"{median:,.{digits}f}"
    return f"{median:,.{digits}f} ({min(values):,.{digits}f}–{max(values):,.{digits}f})"


def gateway_section(result: dict) -> list[str]:
    labels = {
        "batched": "gateway as shipped (async publish, batched per loop tick, durable)",
        "unbatched": "gateway, one Redis round trip per update",
        "send_task": "Celery `send_task` inside the async route",
        "ptb": "python-telegram-bot webhook server (in-memory queue, not durable)",
    }
    lines = [
        "## 1. Webhook intake",
        "",
        f"wrk, 1 thread, {result['connections']} connections, {result['duration_s']:.0f} s per run, "
        f"{result['repeat']} interleaved runs; median (min–max).",
        "",
        "| server | updates acknowledged / s | p50 ms | p99 ms | non-2xx |",
        "| --- | --- | --- | --- | --- |",
    ]
    for variant, runs in result["runs"].items():
        lines.append(
            f"| {labels.get(variant, variant)} | {spread([r['requests_per_second'] for r in runs], 0)} "
            f"| {spread([r['p50_ms'] for r in runs], 2)} | {spread([r['p99_ms'] for r in runs], 2)} "
            f"| {sum(r['non_2xx'] for r in runs)} |"
        )
    lines += [
        "",
        "Limit: the gateway's single event loop (one core, HTTP parsing and the route) while wrk and "
        "redis-server share the other core; `send_task` is bound by its synchronous publish.",
        "",
    ]
    return lines


def reservations_section(runs: list[dict]) -> list[str]:
    labels = {
        "one_statement": "`reserve`: one statement, autocommit (shipped)",
        "one_statement_tx": "`reserve` inside a longer transaction",
        "locking": "`reserve_locking`: SELECT … FOR UPDATE, then updates",
    }
    clients = runs[0]["clients"]
    lines = [
        "## 3. Reservations on one hot offer",
        "",
        f"Reservations per second (each with its order and ledger row), {runs[0]['duration_s']:g} s per run, "
        f"{len(runs)} runs; median (min–max). Every run also checks the books.",
        "",
        "| strategy | " + " | ".join(f"{n} clients" for n in clients) + " |",
        "| --- | " + " | ".join("---" for _ in clients) + " |",
    ]
    for strategy in runs[0]["strategies"]:
        cells = [spread([r["strategies"][strategy][n]["reservations_per_s"] for r in runs], 0) for n in clients]
        lines.append(f"| {labels.get(strategy, strategy)} | " + " | ".join(cells) + " |")
    if runs[0].get("pgbench"):
        for script in runs[0]["pgbench"]["scripts"]:
            cells = [spread([r["pgbench"]["scripts"][script][n].get("tps", 0) for r in runs], 0) for n in clients]
            lines.append(f"| pgbench: {script} | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Oversold units: {sum(r['oversold_units'] for r in runs)}; ledger rows match the reservations: "
        f"{all(r['ledger_rows_match'] for r in runs)}.",
        "",
        "Limit: the hot offer's row lock. Reservations on one offer go through one at a time, and each "
        "holds the lock while its order and ledger rows are written and the commit is flushed.",
        "",
    ]
    return lines


def images_section(result: dict) -> list[str]:
    pipeline, baseline = result["pipeline"], result["baseline"]
    return [
        "## 5. Photo pipeline",
        "",
        f"A {result['input']['width']}×{result['input']['height']} JPEG ({result['input']['bytes'] / 1e6:.1f} MB) "
        f"to the large image, thumbnail and deal card; {result['repeat']} runs, median (min–max).",
        "",
        "| | seconds | speed-up |",
        "| --- | --- | --- |",
        f"| this project's pipeline (draft-mode decode, one resize) | {spread(pipeline['times_s'], 3)} "
        f"| {result['speedup']}× |",
        f"| plain Pillow (open, resize each output from the original, save) | {spread(baseline['times_s'], 3)} | 1× |",
        "",
        "Limit: JPEG entropy decoding of the 12-megapixel input, which draft mode cannot skip.",
        "",
    ]


def notifications_section(result: dict) -> list[str]:
    return [
        "## 6. Notifications",
        "",
        f"{result['count']:,} messages, each with its own text, to {result['chats']:,} chats, recorded with "
        f"`notify` in a few transactions and sent by {result['workers']} Celery workers "
        f"(concurrency {result['concurrency']}) through the shared rate limiter, to the Telegram fake "
        "enforcing Telegram's limits (429 beyond them). From the first transaction to the last message received.",
        "",
        "| messages / s | share of the 30/s ceiling | seconds | 429s received | duplicates | lost |",
        "| --- | --- | --- | --- | --- | --- |",
        f"| {result['messages_per_s']:,.1f} | {result['percent_of_ceiling']:.1f} % | {result['elapsed_s']:,.1f} "
        f"| {result['too_many_requests']} | {result['duplicates']} | {result['lost']} |",
        "",
        "Limit: Telegram's 30 messages/s per bot. The workers' limiter grants a little under it "
        "(28/s, burst 25), a margin so that the jitter between a grant and the message's arrival never draws a 429.",
        "",
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, to check the benchmarks work")
    parser.add_argument("--output", type=Path, default=HERE)
    args = parser.parse_args()
    (HERE.parent / ".run").mkdir(exist_ok=True)

    from bench import bench_gateway, bench_images, bench_notifications, bench_reservations

    started = time.monotonic()
    results: dict = {"machine": machine(), "date": datetime.now(UTC).isoformat(timespec="seconds"),
                     "smoke": args.smoke}
    if args.smoke:
        results["gateway"] = bench_gateway.run(duration=1, connections=10, repeat=1, variants=("batched",))
        results["reservations"] = [bench_reservations.run(duration_s=0.5, clients=(2,), pgbench=False)]
        results["images"] = bench_images.run(repeat=1)
        results["notifications"] = bench_notifications.run(count=60, chats=30)
    else:
        results["gateway"] = bench_gateway.run(duration=10, connections=50, repeat=3)
        results["reservations"] = [bench_reservations.run(duration_s=3.0, clients=(1, 8, 32)) for _ in range(3)]
        results["images"] = bench_images.run(repeat=7)
        results["notifications"] = bench_notifications.run(count=3000, chats=300)
    results["elapsed_s"] = round(time.monotonic() - started, 1)

    m = results["machine"]
    lines = [
        "# Benchmarks",
        "",
        f"Measured {results['date']} on {m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, "
        f"Python {m['python']}, Linux {m['kernel']}. Reproduce with `make bench`.",
        "",
        *gateway_section(results["gateway"]),
        *reservations_section(results["reservations"]),
        *images_section(results["images"]),
        *notifications_section(results["notifications"]),
    ]
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "report.json").write_text(json.dumps(results, indent=2))
    (args.output / "report.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
