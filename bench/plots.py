"""Plots for bench/report.md (matplotlib, no display): each function writes one PNG and returns
its file name, or None when the results it needs are missing."""

from __future__ import annotations

import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

LABELS = {"batched": "gateway (durable)", "ptb": "python-telegram-bot webhook (in memory)"}


def _save(fig, directory: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(directory / name, dpi=110)
    plt.close(fig)
    return name


def gateway_fixed_rate(result: dict | None, directory: Path) -> str | None:
    if not result:
        return None
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4))
    rates = result["rates"]
    for variant, by_rate in result["runs"].items():
        acked = [statistics.median(r["acknowledged_per_s"] for r in by_rate[str(rate)]) for rate in rates]
        p99 = [statistics.median(r["p99_ms"] for r in by_rate[str(rate)]) for rate in rates]
        p50 = [statistics.median(r["p50_ms"] for r in by_rate[str(rate)]) for rate in rates]
        label = LABELS.get(variant, variant)
        left.plot(rates, acked, marker="o", label=label)
        line, = right.plot(rates, p99, marker="o", label=f"{label} p99")
        right.plot(rates, p50, marker=".", linestyle="--", color=line.get_color(), label=f"{label} p50")
    left.plot(rates, rates, color="grey", linestyle=":", label="offered")
    left.set(xlabel="offered updates / s", ylabel="acknowledged updates / s",
             title="Throughput at a fixed offered rate")
    right.axhline(10, color="red", linestyle=":", linewidth=1, label="10 ms target")
    right.set(xlabel="offered updates / s", ylabel="ms from due to acknowledged", yscale="log",
              title="Acknowledgement latency (open loop)")
    left.legend(fontsize=8)
    right.legend(fontsize=7)
    return _save(fig, directory, "gateway_fixed_rate.png")


def flash_sale(result: dict | None, directory: Path) -> str | None:
    if not result:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for concurrency, runs in result["runs"].items():
        run = sorted(runs, key=lambda r: r["sale_s"])[len(runs) // 2]  # the median run
        ax.plot(run["answer_percentiles_s"], range(101),
                label=f"{concurrency} worker process(es), {run['sale_s']:.1f} s")
    ax.set(xlabel="seconds from tap to answer", ylabel="% of customers answered",
           title=f"Flash sale: {result['customers']:,} taps on {result['units']} units")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, directory, "flash_sale.png")


def task_overhead(result: dict | None, directory: Path) -> str | None:
    if not result:
        return None
    names = {"defaults": "Celery defaults", "project": "project config", "project_base": "project config\n+ BaseTask",
             "project_base_quiet": "+ BaseTask,\nno events"}
    configs = list(result["runs"])
    rates = [[r["tasks_per_s"] for r in result["runs"][c]] for c in configs]
    medians = [statistics.median(v) for v in rates]
    errors = [[m - min(v) for m, v in zip(medians, rates, strict=True)],
              [max(v) - m for m, v in zip(medians, rates, strict=True)]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.bar([names.get(c, c) for c in configs], medians, yerr=errors, capsize=5,
           color=["#999", "#4a7", "#27a", "#a72"][:len(configs)])
    ax.set(ylabel="no-op tasks / s (one worker process)", title="Task overhead: no-op drain rate")
    return _save(fig, directory, "task_overhead.png")


def reservations(runs: list[dict] | None, directory: Path) -> str | None:
    if not runs:
        return None
    clients = runs[0]["clients"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    for strategy in runs[0]["strategies"]:
        ax.plot(clients, [statistics.median(r["strategies"][strategy][n]["reservations_per_s"] for r in runs)
                          for n in clients], marker="o", label=strategy)
    if runs[0].get("pgbench"):
        for script in runs[0]["pgbench"]["scripts"]:
            ax.plot(clients, [statistics.median(r["pgbench"]["scripts"][script][n].get("tps", 0) for r in runs)
                              for n in clients], marker="x", linestyle="--", label=f"pgbench {script}")
    ax.set(xscale="log", xlabel="concurrent clients", ylabel="per second", title="Reservations on one hot offer")
    ax.set_xticks(clients, [str(n) for n in clients])
    ax.legend(fontsize=7)
    return _save(fig, directory, "reservations.png")
