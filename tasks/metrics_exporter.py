"""`/metrics` for Prometheus, summed over every worker process on this host.

    PROMETHEUS_MULTIPROC_DIR=/path/shared/by/the/workers python -m tasks.metrics_exporter

Celery's prefork children each write their samples to files in that directory (core/metrics.py);
this process reads them all at each scrape. Wipe the directory before the workers start, so a
previous run's counts don't linger. Listens on WORKER_METRICS_HOST:WORKER_METRICS_PORT
(default 127.0.0.1:9808).

At each scrape it also reads what the alerts need from Redis and Postgres (`SystemCollector`): the
length of each queue, beat's last tick, the oldest unsent outbox message, the dead letters. Each
source has a short timeout; one that does not answer is reported as `redis_up 0` or
`database_up 0`, its figures left out, and the rest of the scrape goes on.
"""

from __future__ import annotations

import contextlib
import glob
import math
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator

import orjson
import redis
import sqlalchemy as sa
from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from core.celery_app import PUBLISHED_AT_HEADER
from core.logging import configure_logging, get_logger
from core.metrics import BEAT_LAST_TICK_KEY
from core.queues import QUEUES
from core.settings import get_settings

log = get_logger("metrics_exporter")

# A worker's file starts with its 8-byte header (bytes used, padding).
_HEADER_BYTES = 8
# A live gauge's file (multiprocess_mode live*), which counts only while its process runs.
_LIVE_GAUGE_FILE = re.compile(r"gauge_live\w+?_(?P<pid>\d+)\.db")


def _process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


class WorkerFilesCollector(MultiProcessCollector):
    """prometheus-client's multiprocess collector, minus files that hold no header yet, and minus
    the live gauges of processes that ended.

    A process creates its file empty and sizes it a moment later; a scrape in between made the
    stock collector raise and fail the whole scrape (prometheus/client_python#1199), and a
    worker killed in that moment leaves the empty file for good. Such a file has no samples.
    A live gauge (e.g. db_pool_checked_out_connections) of a pool process that was recycled or
    killed would count forever; its files are removed as prometheus-client's mark_process_dead does.
    """

    def __init__(self, registry: CollectorRegistry, path: str) -> None:
        super().__init__(registry, path)
        self._directory = path

    def collect(self):
        files = []
        for name in glob.glob(os.path.join(self._directory, "*.db")):
            live = _LIVE_GAUGE_FILE.fullmatch(os.path.basename(name))
            if live and _process_gone(int(live["pid"])):
                mark_process_dead(int(live["pid"]), self._directory)
                continue
            try:
                if os.path.getsize(name) >= _HEADER_BYTES:
                    files.append(name)
            except FileNotFoundError:  # a live gauge's file, removed as its process ended
                continue
        return self.merge(files, accumulate=True)


# kombu's Redis transport keeps a queue's messages of priority p > 0 in "<queue>\x06\x16<p>".
_PRIORITY_SUFFIXES = ("", "\x06\x163", "\x06\x166", "\x06\x169")
# Counted up to this many, so a huge backlog cannot make the scrape's query slow.
_COUNT_CAP = 1_000_000
_DATABASE_SQL = sa.text(
    f"""
    SELECT (SELECT extract(epoch FROM now() - min(created_at)) FROM notifications WHERE status = 'pending')
               AS oldest_pending_age,
           (SELECT count(*) FROM (SELECT 1 FROM notifications WHERE status = 'pending' LIMIT {_COUNT_CAP}) p)
               AS pending,
           (SELECT count(*) FROM (SELECT 1 FROM dead_letters LIMIT {_COUNT_CAP}) d) AS dead_letters,
           (SELECT extract(epoch FROM now() - min(created_at)) FROM handovers WHERE sent_at IS NULL)
               AS oldest_unsent_handover_age
    """
)


def _published_at(raw: bytes | None) -> float | None:
    """When a queued task message was published (its `published_at` header), if it says."""
    if raw is None:
        return None
    try:
        stamp = orjson.loads(raw)["headers"].get(PUBLISHED_AT_HEADER)
    except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return None
    return float(stamp) if isinstance(stamp, int | float) else None


class SystemCollector:
    """Gauges read from Redis and Postgres at scrape time, each source bounded by `timeout`."""

    def __init__(self, redis_url: str, database_url: str, timeout: float = 2.0,
                 queues: Iterable[str] = QUEUES) -> None:
        self._queues = tuple(queues)
        self._redis = redis.Redis.from_url(redis_url, socket_timeout=timeout, socket_connect_timeout=timeout)
        millis = max(round(timeout * 1000), 1)
        self._engine = sa.create_engine(
            database_url, pool_size=1, max_overflow=0, pool_timeout=timeout, pool_pre_ping=True,
            connect_args={"connect_timeout": max(math.ceil(timeout), 2),  # libpq's minimum is 2 s
                          "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
                          "application_name": "metrics_exporter"},
        )
        self._down: set[str] = set()

    def close(self) -> None:
        self._redis.close()
        self._engine.dispose()

    def collect(self) -> Iterator[Metric]:
        yield from self._broker()
        yield from self._database()

    def _broker(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("redis_up", "Whether the exporter could read the broker (Redis) at this scrape")
        try:
            with self._redis.pipeline(transaction=False) as pipe:
                for queue in self._queues:
                    for suffix in _PRIORITY_SUFFIXES:
                        pipe.llen(queue + suffix)
                for queue in self._queues:
                    for suffix in _PRIORITY_SUFFIXES:
                        pipe.lindex(queue + suffix, -1)  # the oldest: LPUSH in, BRPOP out
                pipe.hlen("unacked")
                pipe.get(BEAT_LAST_TICK_KEY)
                *lengths_and_oldest, unacked, last_tick = pipe.execute()
        except redis.RedisError as error:
            self._source_down("redis", error)
            up.add_metric([], 0)
            yield up
            return
        self._source_up("redis")
        up.add_metric([], 1)
        yield up
        per_queue = GaugeMetricFamily("celery_queue_length", "Messages waiting in a Celery queue", labels=["queue"])
        waited = GaugeMetricFamily(
            "celery_queue_oldest_task_age_seconds",
            "Seconds the oldest task waiting in a queue has waited since it was handed over (published); 0 when "
            "the queue is empty", labels=["queue"])
        steps = len(_PRIORITY_SUFFIXES)
        lengths, oldest = lengths_and_oldest[:len(self._queues) * steps], lengths_and_oldest[len(self._queues) * steps:]
        now = time.time()
        for position, queue in enumerate(self._queues):
            span = slice(position * steps, (position + 1) * steps)
            per_queue.add_metric([queue], sum(lengths[span]))
            published = [at for at in map(_published_at, oldest[span]) if at is not None]
            waited.add_metric([queue], max(now - min(published), 0.0) if published else 0.0)
        yield per_queue
        yield waited
        yield GaugeMetricFamily(
            "celery_unacked_messages", "Messages taken by workers and not yet acknowledged (running, or waiting "
            "for their countdown)", value=unacked)
        # +Inf when beat never ticked with the lock (a fresh Redis, or no beat at all).
        age = max(time.time() - float(last_tick), 0.0) if last_tick is not None else math.inf
        yield GaugeMetricFamily("beat_last_tick_age_seconds",
                                "Seconds since beat last ticked holding its lock (able to send jobs)", value=age)

    def _database(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("database_up", "Whether the exporter could read Postgres at this scrape")
        try:
            with self._engine.connect() as connection:
                row = connection.execute(_DATABASE_SQL).one()
        except sa.exc.SQLAlchemyError as error:
            self._source_down("database", error)
            up.add_metric([], 0)
            yield up
            return
        self._source_up("database")
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "outbox_oldest_pending_age_seconds",
            "Age of the oldest outbox message not yet sent (notifications pending); 0 when none",
            value=float(row.oldest_pending_age or 0.0))
        yield GaugeMetricFamily("outbox_pending_messages", "Outbox messages not yet sent", value=row.pending)
        yield GaugeMetricFamily(
            "handovers_oldest_unsent_age_seconds",
            "Age of the oldest hand-over (a follow-up task recorded in a transaction) not yet published; 0 when none",
            value=float(row.oldest_unsent_handover_age or 0.0))
        yield GaugeMetricFamily("dead_letters_rows",
                                "Rows in dead_letters: tasks that gave up after their retries", value=row.dead_letters)

    def _source_down(self, source: str, error: Exception) -> None:
        if source not in self._down:  # once per outage, not once per scrape
            self._down.add(source)
            log.warning("metrics_source_unreachable", source=source, error=str(error).strip().splitlines()[0][:300])

    def _source_up(self, source: str) -> None:
        if source in self._down:
            self._down.discard(source)
            log.info("metrics_source_reachable_again", source=source)


def main() -> None:
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_json)
    directory = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if not directory or not os.path.isdir(directory):
        sys.exit("PROMETHEUS_MULTIPROC_DIR must name the directory the workers write their metrics to")
    registry = CollectorRegistry()
    WorkerFilesCollector(registry, directory)
    system = SystemCollector(settings.redis_url, settings.database_url)
    registry.register(system)
    server, thread = start_http_server(settings.worker_metrics_port, settings.worker_metrics_host, registry)
    log.info("metrics_exporter_started", host=settings.worker_metrics_host, port=settings.worker_metrics_port,
             directory=directory)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    thread.join(5)
    with contextlib.suppress(Exception):
        system.close()


if __name__ == "__main__":
    main()
