"""`python -m bench --smoke`: every benchmark at a tiny size, to check that it still works (the tests
run it; its figures mean nothing).

At these sizes a section is mostly waiting: for its Postgres, workers and gateway to start, and for
messages paced by Telegram's limits. So the sections run in two lanes side by side, each lane a
process of its own (a section points ``os.environ`` and the settings at its private services for the
code it calls in-process), its sections one after another. Each section keeps its own services and
checks; only the figures, which the smoke does not read, feel the company. ``--sequential`` runs them
one after another in this process instead. The full benchmark (`make bench`) always runs them one at
a time, on an otherwise quiet machine.
"""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import time

# About equal in wall time: one after another on the 2-core reference machine, flash_sale 18 s, alerts
# 13 s and images 2 s; gateway 5, gateway_fixed_rate 4, reservations 7, task_overhead 8, discovery 4
# and notifications 9 s. Each lane has sections that keep a core busy for a moment (the flash sale's
# worker, wrk against the gateway, the reservations' clients) and sections that mostly wait (alerts
# and notifications are paced by Telegram's limits).
LANES = (
    ("flash_sale", "alerts", "images"),
    ("gateway", "gateway_fixed_rate", "reservations", "task_overhead", "discovery", "notifications", "mini_app"),
)


def run_sections(names: list[str]) -> tuple[dict, dict[str, float]]:
    """The named sections at their smoke sizes, one after another: results and seconds by name."""
    from bench import (
        bench_alerts,
        bench_discovery,
        bench_flash_sale,
        bench_gateway,
        bench_images,
        bench_mini_app,
        bench_notifications,
        bench_reservations,
        bench_task_overhead,
    )

    sections = {
        "gateway": lambda: bench_gateway.run(duration=1, connections=10, repeat=1, variants=("batched",)),
        "gateway_fixed_rate": lambda: bench_gateway.run_fixed_rate(rates=(200,), duration=1, connections=10,
                                                                   repeat=1, variants=("batched",)),
        "flash_sale": lambda: bench_flash_sale.run(customers=40, units=5, concurrencies=(1,), repeat=1,
                                                   timeout_s=60),
        "reservations": lambda: [bench_reservations.run(duration_s=0.5, clients=(2,), pgbench=False)],
        "task_overhead": lambda: bench_task_overhead.run(round_trips=10, batch=50, repeat=1),
        "images": lambda: bench_images.run(repeat=1),
        "notifications": lambda: bench_notifications.run(count=60, chats=30),
        "discovery": lambda: bench_discovery.run(offers=500, subscribers=2000, queries=20, audiences=5),
        "alerts": lambda: bench_alerts.run(subscribers=20, offers=2, timeout_s=30),
        "mini_app": lambda: bench_mini_app.run(offers=500, sessions=4, seconds=0.5, think_s=0.05, ceiling_s=0.3,
                                               queries=5),
    }
    results: dict = {}
    timings: dict[str, float] = {}
    for name in names:
        began = time.monotonic()
        try:
            results[name] = sections[name]()
        finally:
            timings[name] = round(time.monotonic() - began, 1)
    return results, timings


def run(names: list[str], sequential: bool = False) -> tuple[dict, dict[str, float]]:
    """The named sections (in the order given), in lanes side by side unless ``sequential``."""
    lanes = [[name for name in lane if name in names] for lane in LANES]
    lanes = [lane for lane in lanes if lane]
    lanes += [[name] for name in names if not any(name in lane for lane in LANES)]  # none today; never lost
    if sequential or len(lanes) < 2:
        return run_sections(names)
    results: dict = {}
    timings: dict[str, float] = {}
    # Fresh interpreters (spawn): nothing of this process's state, settings or connections is shared.
    with concurrent.futures.ProcessPoolExecutor(len(lanes), mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(run_sections, lane) for lane in lanes]
        for future in futures:  # a failing section fails the run, after the other lanes are done
            lane_results, lane_timings = future.result()
            results.update(lane_results)
            timings.update(lane_timings)
    return {name: results[name] for name in names}, {name: timings[name] for name in names}
