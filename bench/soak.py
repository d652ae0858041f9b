"""`make soak MINUTES=30`: steady mixed traffic for a while, watching every process for leaks.

    python -m bench.soak --minutes 30        # a sample a minute
    python -m bench.soak --minutes 2         # a sample every 4 s (about a 30th of the run)

The system runs as `make run` runs it (bench/stack.py: gateway, a worker per queue, beat, the
metrics exporter and Flower, under make run's supervisor) with the people of bench/traffic.py
acting all the time. Every sample records, per process (each program's main process, and each
Celery pool process by its slot), its memory (RSS), its open file descriptors and its Postgres
connections (pg_stat_activity's backends, matched to the process by its TCP port); Redis and
Postgres are sampled as well, for information (their data grows with the traffic by design).

Target: after the warm-up (the first 5 minutes; a sixth of a shorter run) no process of ours grows
its memory by more than 10 %. Growth compares the median of the first samples after the warm-up
with the median of the last ones. At the end the traffic stops and the run is audited like a
drill's phase (nothing lost, nothing doubled, stock and money exact).

Writes bench/soak.json, bench/soak.png and the soak section of bench/report.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import report_md
from bench.invariants import CallLog, Pending, audit, stripe_idle
from bench.stack import Stack
from bench.traffic import Profile, Traffic

HERE = Path(__file__).resolve().parent
GROWTH_TARGET = 10.0  # percent of RSS after the warm-up
# As many units posted as customers buy, and no business chat sent more than Telegram allows one chat.
STEADY = Profile(customers=12, businesses=3, subscribers=20, think_s=(1.0, 2.5), business_pause_s=(6.0, 12.0),
                 units=(4, 12))


class Sampler:
    """Per-process figures of the supervised programs, by a stable label: the program's name for
    its main process, "<program> pool <n>" for its n-th pool process (a recycled pool process
    takes the slot of the one it replaced)."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.slots: dict[str, dict[int, int]] = {}  # program -> pid -> slot
        self.samples: list[dict[str, Any]] = []

    def _processes(self) -> dict[str, Any]:
        import psutil

        found: dict[str, Any] = {}
        for name, pid in self.stack.pids().items():
            try:
                main = psutil.Process(pid)
                children = sorted(main.children(recursive=True), key=lambda p: p.pid)
            except psutil.Error:
                continue
            found[name] = main
            slots = self.slots.setdefault(name, {})
            alive = {c.pid for c in children}
            for gone in [p for p in slots if p not in alive]:
                del slots[gone]
            for child in children:
                if child.pid not in slots:
                    free = min(set(range(1, len(children) + 1)) - set(slots.values()), default=len(slots) + 1)
                    slots[child.pid] = free
                found[f"{name} pool {slots[child.pid]}"] = child
        for label, pid in (("redis", self.stack.redis.pid()), ("postgres", self.stack.postgres.pid())):
            if pid:
                with contextlib.suppress(psutil.Error):
                    found[label] = psutil.Process(pid)
        return found

    def sample(self, started: float) -> dict[str, Any]:
        import psutil

        from bench.invariants import _db_rows

        processes = self._processes()
        ports: dict[int, str] = {}
        figures: dict[str, dict[str, Any]] = {}
        for label, process in processes.items():
            try:
                with process.oneshot():
                    figures[label] = {"pid": process.pid, "rss_mb": round(process.memory_info().rss / 2**20, 2),
                                      "fds": process.num_fds(), "db": 0}
                    if label not in ("redis", "postgres"):
                        for connection in process.net_connections(kind="tcp"):
                            if connection.raddr and connection.raddr.port == self.stack.postgres.port:
                                ports[connection.laddr.port] = label
            except psutil.Error:
                continue
        backends = _db_rows("SELECT client_port FROM pg_stat_activity WHERE backend_type = 'client backend' "
                            "AND client_port IS NOT NULL")
        for (port,) in backends:
            if (label := ports.get(int(port))) is not None:
                figures[label]["db"] += 1
        if "postgres" in figures:
            figures["postgres"]["db"] = len(backends)
        with contextlib.suppress(Exception):
            client = self.stack.redis_client()
            try:
                figures["redis"]["used_memory_mb"] = round(int(client.info("memory")["used_memory"]) / 2**20, 2)
            finally:
                client.close()
        sample = {"t_s": round(time.monotonic() - started, 1), "processes": figures}
        self.samples.append(sample)
        return sample


def growth(samples: list[dict[str, Any]], warmup_s: float) -> dict[str, dict[str, Any]]:
    """Per process: RSS, open files and connections just after the warm-up and at the end (medians of
    the first and last few samples), and the RSS growth in percent."""
    after = [s for s in samples if s["t_s"] >= warmup_s] or samples[-1:]
    edge = max(1, min(3, len(after) // 4))
    first, last = after[:edge], after[-edge:]
    labels = sorted({label for s in after for label in s["processes"]})
    result = {}
    for label in labels:
        def median(window: list[dict], key: str, label: str = label) -> float | None:
            values = [s["processes"][label][key] for s in window if label in s["processes"]]
            return statistics.median(values) if values else None

        start, end = median(first, "rss_mb"), median(last, "rss_mb")
        pids = {s["processes"][label]["pid"] for s in after if label in s["processes"]}
        result[label] = {
            "rss_mb_start": start, "rss_mb_end": end,
            "rss_growth_percent": round(100 * (end - start) / start, 1) if start and end is not None else None,
            "fds_start": median(first, "fds"), "fds_end": median(last, "fds"),
            "db_start": median(first, "db"), "db_end": median(last, "db"),
            "restarted_or_recycled": len(pids) > 1,
            "ours": label not in ("redis", "postgres"),
        }
    return result


def chart(samples: list[dict[str, Any]], warmup_s: float, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = sorted({label for s in samples for label in s["processes"]})
    minutes = [s["t_s"] / 60 for s in samples]
    fig, axes = plt.subplots(3, 1, figsize=(11, 10), sharex=True)
    colours = plt.get_cmap("tab20").colors
    for key, axis, title in (("rss_mb", axes[0], "memory (RSS, MB)"), ("fds", axes[1], "open file descriptors"),
                             ("db", axes[2], "Postgres connections")):
        for number, label in enumerate(labels):
            if key == "db" and label == "postgres":
                continue
            values = [s["processes"].get(label, {}).get(key) for s in samples]
            style = ":" if label in ("redis", "postgres") else ("--" if " pool " in label else "-")
            axis.plot(minutes, values, style, label=label, linewidth=1.2, color=colours[number % len(colours)])
        axis.axvline(warmup_s / 60, color="grey", linestyle=":", linewidth=1)
        axis.set_ylabel(title)
        axis.grid(alpha=0.3)
    axes[0].set_title("Soak: every process, sampled while the traffic runs (grey line: end of the warm-up)")
    axes[-1].set_xlabel("minutes")
    axes[0].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def run(minutes: float = 30.0, *, interval: float | None = None, profile: Profile | None = None,
        flower: bool = True, stack: Stack | None = None, traffic: Traffic | None = None,
        chart_path: Path | None = None, min_samples: int = 2, log=print) -> dict[str, Any]:
    """Soak for `minutes`, and on until `min_samples` samples were taken (a sample of every process
    takes a while on a busy machine); on a running stack (and its seeded traffic) when given, else
    on its own."""
    duration = minutes * 60
    interval = interval or (60.0 if duration >= 600 else max(3.0, duration / 30))
    warmup_s = 300.0 if duration >= 600 else duration / 6  # the target's "first 5 minutes"
    load_at_start = [round(x, 2) for x in os.getloadavg()]
    with contextlib.ExitStack() as resources:
        if stack is None:
            began = time.monotonic()
            stack = resources.enter_context(Stack("soak", flower=flower))
            log(f"system up in {time.monotonic() - began:.0f} s ({len(stack.commands)} processes supervised)")
        if traffic is None:
            traffic = Traffic(stack, profile or STEADY)
            traffic.seed()
        calls = CallLog(stack.telegram).start()
        sampler = Sampler(stack)
        started = time.monotonic()
        traffic.start("soak")
        log(f"soaking for {minutes:g} min, a sample every {interval:g} s, warm-up {warmup_s / 60:.1f} min")
        every = max(1, round(60 / interval))  # about a line a minute
        while True:
            sample = sampler.sample(started)
            if len(sampler.samples) % every == 1 or every == 1:
                total = sum(p["rss_mb"] for label, p in sample["processes"].items()
                            if label not in ("redis", "postgres"))
                log(f"   {sample['t_s'] / 60:5.1f} min: {len(sample['processes'])} processes, "
                    f"ours {total:.0f} MB RSS")
            remaining = started + duration - time.monotonic()
            if remaining <= 0 and len(sampler.samples) >= min_samples:
                break
            # On a fixed grid from the start: the time a sample takes does not stretch the interval.
            next_at = started + len(sampler.samples) * interval
            time.sleep(max(0.0, min(next_at - time.monotonic(), remaining if remaining > 0 else interval)))
        traffic.stop()
        pending = Pending(stack, traffic, "soak")
        settled = None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                counts = pending.count()
                if pending.system_done(counts) and pending.payments_done(counts) and stripe_idle(stack):
                    settled = round(time.monotonic() - started - duration, 1)
                    break
            time.sleep(0.5)
        traffic.abort()
        traffic.join(30)
        calls.stop()
        result = audit(stack, traffic, calls, phase="soak")
        by_process = growth(sampler.samples, warmup_s)
        path = chart_path or HERE / "soak.png"
        chart(sampler.samples, warmup_s, path)
    ours = {label: g for label, g in by_process.items() if g["ours"] and g["rss_growth_percent"] is not None}
    worst = max(ours.items(), key=lambda item: item[1]["rss_growth_percent"], default=(None, None))
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cores": os.cpu_count(), "load_average_at_start": load_at_start,
                    "load_average_at_end": [round(x, 2) for x in os.getloadavg()]},
        "minutes": minutes, "interval_s": interval, "warmup_s": warmup_s,
        "samples": sampler.samples,
        "growth": by_process,
        "worst": {"process": worst[0], "rss_growth_percent": worst[1]["rss_growth_percent"] if worst[1] else None},
        "within_target": all(g["rss_growth_percent"] <= GROWTH_TARGET for g in ours.values()),
        "settled_after_s": settled,
        "audit": result,
        "chart": path.name,
    }


def section(result: dict) -> list[str]:
    audit_ = result["audit"]
    u = audit_["updates"]
    lines = [
        "## Soak (`make soak`)",
        "",
        (f"Measured {result['date']}: {result['minutes']:g} minutes of steady mixed traffic ({u['sent']:,} updates, "
         f"{audit_['money']['charges']:,} payments, {audit_['money']['refunds']:,} refunds, "
         f"{audit_['stock']['orders']:,} orders) through the system as `make run` runs it; a sample every "
         f"{result['interval_s']:g} s; warm-up {result['warmup_s'] / 60:.1f} min. Target: no process of ours grows "
         f"its memory by more than {GROWTH_TARGET:.0f} % after the warm-up. Reproduce with "
         f"`make soak MINUTES={result['minutes']:g}`; figures in `bench/soak.json`. "
         + report_md.load_line(result.get("machine", {}))),
        "",
        f"![Soak]({result['chart']})",
        "",
        "| process | RSS after warm-up MB | at the end MB | growth | open files | Postgres connections |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for label, g in sorted(result["growth"].items(), key=lambda item: (not item[1]["ours"], item[0])):
        if g["rss_growth_percent"] is None:
            continue
        mark = ("✅" if g["rss_growth_percent"] <= GROWTH_TARGET else "❌") if g["ours"] else "(data)"
        note = " (restarted or recycled)" if g["restarted_or_recycled"] else ""
        lines.append(f"| {label}{note} | {g['rss_mb_start']:.1f} | {g['rss_mb_end']:.1f} "
                     f"| {mark} {g['rss_growth_percent']:+.1f} % | {g['fds_start']:.0f} → {g['fds_end']:.0f} "
                     f"| {g['db_start']:.0f} → {g['db_end']:.0f} |")
    worst = result["worst"]
    lines += [
        "",
        (f"Largest growth of our processes: {worst['process']} {worst['rss_growth_percent']:+.1f} % "
         f"({'within' if result['within_target'] else 'over'} the {GROWTH_TARGET:.0f} % target). "
         "Redis and Postgres grow with their data (rows, and each update id remembered for a day), "
         "so they are shown but not judged."
         + (" A run this short measures warm-up as well: a pool process that had no work until after the first "
            "sixth grows on its first tasks; the target is for 30 minutes." if result["minutes"] < 10 else "")),
        "",
        (f"Afterwards: {u['answered']:,} of {u['sent']:,} updates answered, {len(audit_['lost'])} lost, "
         f"{len(audit_['doubled'])} doubled; stock exact {'✅' if audit_['stock']['exact'] else '❌'}, money exact "
         f"{'✅' if audit_['money']['exact'] else '❌'}; everything settled "
         + (f"{result['settled_after_s']} s after the traffic stopped." if result["settled_after_s"] is not None
            else "not within 60 s of the traffic stopping.")),
    ]
    if audit_["lost"] or audit_["doubled"] or audit_["late"]:
        lines += ["", "What the run lost, doubled, or had still on its way at the end (first 10 of each):", ""]
        lines += [f"* lost ({item['kind']}): {item['what']}" for item in audit_["lost"][:10]]
        lines += [f"* doubled ({item['kind']}): {item['what']}" for item in audit_["doubled"][:10]]
        lines += [f"* late: {what}" for what in audit_["late"][:10]]
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=30.0)
    parser.add_argument("--interval", type=float, help="seconds between samples (60; shorter runs: a 30th)")
    parser.add_argument("--no-flower", action="store_true", help="leave Flower out")
    parser.add_argument("--output", type=Path, default=HERE, help="where soak.json, soak.png and report.md go")
    args = parser.parse_args(argv)
    args.output.mkdir(parents=True, exist_ok=True)
    result = run(args.minutes, interval=args.interval, flower=not args.no_flower,
                 chart_path=args.output / "soak.png")
    (args.output / "soak.json").write_text(json.dumps(result, indent=2, default=str))
    lines = section(result)
    report_md.write_section(args.output / "report.md", "soak", lines)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
