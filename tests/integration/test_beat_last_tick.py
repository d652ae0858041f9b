"""Beat records each tick it holds its lock in (so it may send jobs) under surplus:beat:last_tick;
the exporter reports its age, and the "beat not ticking" alert reads that. A real beat process."""

from __future__ import annotations

import sys
import time

import redis

from core.metrics import BEAT_LAST_TICK_KEY
from localenv.services import RedisServer, free_port
from tests.processes import ManagedProcess
from tests.support.waiting import wait_until


def last_tick(client: redis.Redis) -> float | None:
    value = client.get(BEAT_LAST_TICK_KEY)
    return float(value) if value is not None else None


def test_beat_records_its_ticks_and_stops_when_it_stops(tmp_path):
    server = RedisServer(tmp_path / "redis", free_port()).start()
    client = redis.Redis.from_url(server.url)
    beat = ManagedProcess(
        "beat-tick",
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "--max-interval", "1",
         "--schedule", str(tmp_path / "beat-schedule")],
        {"REDIS_URL": server.url, "BEAT_SCHEDULE_JSON": "{}"},
    )
    try:
        first = wait_until(lambda: last_tick(client), 30, "beat's first tick recorded", beat)
        later = wait_until(lambda: (t := last_tick(client)) is not None and t > first and t, 10,
                           "a later tick recorded", beat)
        assert abs(time.time() - later) < 5
        beat.stop()
        stopped_at = last_tick(client)
        time.sleep(2.5)
        assert last_tick(client) == stopped_at  # no beat, no tick: the age grows and the alert fires
    finally:
        beat.stop()
        client.close()
        server.stop()
