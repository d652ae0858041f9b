"""The worker metrics exporter reads every worker's file, including one caught half-created, and
leaves out the live gauges of processes that ended."""

from __future__ import annotations

import os
import subprocess
import sys

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.mmap_dict import MmapedDict, mmap_key
from prometheus_client.parser import text_string_to_metric_families

from tasks.metrics_exporter import WorkerFilesCollector


def _write_counter(path, value: float) -> None:
    key = mmap_key("notifications_total", "notifications_total", ["result"], ["sent"], "Outbox messages")
    values = MmapedDict(str(path))
    values.write_value(key, value, 0.0)
    values.close()


def test_a_file_created_but_not_yet_sized_does_not_fail_the_scrape(tmp_path):
    _write_counter(tmp_path / "counter_101.db", 3)
    _write_counter(tmp_path / "counter_102.db", 4)
    # What a worker's file looks like between its creation and its first truncate(), and forever
    # after when the worker is killed in that moment.
    (tmp_path / "counter_103.db").touch()
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, str(tmp_path))

    text = generate_latest(registry).decode()

    samples = {(sample.name, tuple(sample.labels.items())): sample.value
               for family in text_string_to_metric_families(text) for sample in family.samples}
    assert samples[("notifications_total", (("result", "sent"),))] == 7


def _write_live_gauge(directory, pid: int, value: float) -> None:
    key = mmap_key("db_pool_checked_out_connections", "db_pool_checked_out_connections", [], [],
                   "Database connections in use")
    values = MmapedDict(str(directory / f"gauge_livesum_{pid}.db"))
    values.write_value(key, value, 0.0)
    values.close()


def test_a_live_gauge_counts_only_the_processes_still_running(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    gone = int(ended.stdout)  # a pool process recycled, or killed with connections checked out
    _write_live_gauge(tmp_path, os.getpid(), 2)
    _write_live_gauge(tmp_path, gone, 5)
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, str(tmp_path))

    text = generate_latest(registry).decode()

    samples = {sample.name: sample.value for family in text_string_to_metric_families(text)
               for sample in family.samples}
    assert samples["db_pool_checked_out_connections"] == 2
    assert not (tmp_path / f"gauge_livesum_{gone}.db").exists()
