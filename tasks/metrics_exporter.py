"""`/metrics` for Prometheus, summed over every worker process on this host.

    PROMETHEUS_MULTIPROC_DIR=/path/shared/by/the/workers python -m tasks.metrics_exporter

Celery's prefork children each write their samples to files in that directory (core/metrics.py);
this process reads them all at each scrape. Wipe the directory before the workers start, so a
previous run's counts don't linger. Listens on WORKER_METRICS_HOST:WORKER_METRICS_PORT
(default 127.0.0.1:9808).
"""

from __future__ import annotations

import os
import signal
import sys
import threading

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from core.logging import configure_logging, get_logger
from core.settings import get_settings


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    log = get_logger("metrics_exporter")
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        sys.exit("PROMETHEUS_MULTIPROC_DIR must name the directory the workers write their metrics to")
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
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
