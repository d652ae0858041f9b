"""`/metrics` for Prometheus, summed over every worker process on this host.

    PROMETHEUS_MULTIPROC_DIR=/path/shared/by/the/workers python -m tasks.metrics_exporter

Celery's prefork children each write their samples to files in that directory (core/metrics.py);
this process reads them all at each scrape. Wipe the directory before the workers start, so a
previous run's counts don't linger. Listens on WORKER_METRICS_HOST:WORKER_METRICS_PORT
(default 127.0.0.1:9808).
"""

from __future__ import annotations

import glob
import os
import signal
import sys
import threading

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

from core.logging import configure_logging, get_logger
from core.settings import get_settings

# A worker's file starts with its 8-byte header (bytes used, padding).
_HEADER_BYTES = 8


class WorkerFilesCollector(MultiProcessCollector):
    """prometheus-client's multiprocess collector, minus files that hold no header yet.

    A process creates its file empty and sizes it a moment later; a scrape in between made the
    stock collector raise and fail the whole scrape (prometheus/client_python#1199), and a
    worker killed in that moment leaves the empty file for good. Such a file has no samples.
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(registry, path)
        self._directory = path

    def collect(self):
        files = []
        for name in glob.glob(os.path.join(self._directory, "*.db")):
            try:
                if os.path.getsize(name) >= _HEADER_BYTES:
                    files.append(name)
            except FileNotFoundError:  # a live gauge's file, removed as its process ended
                continue
        return self.merge(files, accumulate=True)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log = get_logger("metrics_exporter")
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        sys.exit("PROMETHEUS_MULTIPROC_DIR must name the directory the workers write their metrics to")
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, directory)
    server, thread = start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry)
    log.info("metrics_exporter_started", host=settings.worker_metrics_host, port=settings.worker_metrics_port,
             directory=directory)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(5)


if __name__ == "__main__":
    main()
