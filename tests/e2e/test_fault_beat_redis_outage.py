"""Beat through a broker outage, with real `celery -A tasks beat` processes, a real worker and a
Redis of its own (stopping it disturbs no other test). Runs are counted through the audit log.

* Redis stopped for 8 s under three beats (the one acting, one waiting for the lock since before
  the outage, one started while Redis is down): afterwards all three still run, the job fires
  again, and only the beat that held the lock sends it.
* A beat whose lock was taken by another (as when it expired during a longer outage) sends nothing
  until it holds the lock again, and then carries on.
"""

from __future__ import annotations

import itertools
import json
import secrets
import sys
import time
from datetime import datetime, timedelta

import pytest
import redis

from localenv.services import RedisServer, free_port
from tests.e2e.test_beat import runs, wait_for_runs
from tests.processes import ManagedProcess, start_worker, stop_all

pytestmark = pytest.mark.slow

EVERY = 1.0  # seconds between runs of the test job
OUTAGE = 8.0  # seconds Redis stays down: eight failed 1 s ticks of each beat; the late one starts within it
LOCK_KEY = "redbeat::lock"  # celery-redbeat's default lock key


@pytest.fixture(scope="module")
def beat_redis(migrated, tmp_path_factory):
    """A Redis of this module's own, and a worker consuming the maintenance queue from it."""
    server = RedisServer(tmp_path_factory.mktemp("beat-redis"), free_port()).start()
    worker = start_worker("beat-outage-worker", queues="maintenance", concurrency=1,
                          env={"REDIS_URL": server.url})
    yield server
    worker.stop()
    server.stop()


@pytest.fixture
def job(beat_redis):
    """A schedule of one cheap job every second, under an actor of its own (its audit entries)."""
    redis.Redis.from_url(beat_redis.url).delete(LOCK_KEY)  # nothing left from an earlier test
    actor = f"beat-outage-{secrets.token_hex(4)}"
    schedule = {f"{actor}-cleanup": {"task": "maintenance.cleanup", "every": EVERY, "kwargs": {"actor": actor}}}
    return actor, schedule


def start_beat(name: str, schedule: dict, redis_url: str) -> ManagedProcess:
    return ManagedProcess(
        name,
        # --max-interval: the longest tick, so how often a beat without the lock tries to take it.
        [sys.executable, "-m", "celery", "-A", "tasks", "beat", "--loglevel", "INFO", "--max-interval", "1"],
        {"BEAT_SCHEDULE_JSON": json.dumps(schedule), "REDIS_URL": redis_url},
    )


def sent(beat: ManagedProcess, since: int = 0) -> int:
    """How many jobs the beat sent after the first `since` characters of its output."""
    return beat.output()[since:].count("Sending due task")


def send_times(beat: ManagedProcess) -> list[datetime]:
    """When the beat sent the job, from its log (one JSON object per line). The worker's runs are
    no measure of this: the jobs sent before it reconnected run one right after the other."""
    times = []
    for line in beat.output().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if "Sending due task" in str(record.get("event")):
            times.append(datetime.fromisoformat(record["timestamp"]))
    return times


def test_beats_outlive_a_redis_outage_and_only_the_lock_holder_sends(beat_redis, job):
    actor, schedule = job
    beats: list[ManagedProcess] = []
    try:
        holder = start_beat("beat-holder", schedule, beat_redis.url)
        beats.append(holder)
        wait_for_runs(actor, 2)
        waiting = start_beat("beat-waiting", schedule, beat_redis.url)
        beats.append(waiting)
        waiting.wait_for_output("beat: Starting...")
        time.sleep(1.0)  # let it reach the lock: a start-up step, with no event to wait for

        beat_redis.stop()
        down_since = time.monotonic()
        late = start_beat("beat-late", schedule, beat_redis.url)
        beats.append(late)
        late.wait_for_output("beat: Starting...")  # it does not give up at start-up either
        while time.monotonic() - down_since < OUTAGE:
            exited = [beat.name for beat in beats if beat.process.poll() is not None]
            assert not exited, f"{exited} exited while Redis was down:\n{holder.output()[-3000:]}"
            time.sleep(0.25)
        beat_redis.start()

        marks = {beat.name: len(beat.output()) for beat in beats}
        back, counted_from = time.monotonic(), len(runs(actor))
        wait_for_runs(actor, counted_from + 5, timeout=60)
        elapsed = time.monotonic() - back
        fired = len(runs(actor)) - counted_from
        exited = [beat.name for beat in beats if beat.process.poll() is not None]
        assert not exited, f"{exited} exited after Redis came back"
        # The holder kept its lock through the outage (it had not expired): it alone sends.
        assert sent(holder, marks[holder.name]) > 0
        assert sent(waiting) == 0 and sent(late) == 0, (waiting.output()[-2000:], late.output()[-2000:])
    finally:
        beat_redis.start()  # when the test failed during the outage (a no-op when it runs)
        stop_all(beats)

    # Each period's job was sent once, by one beat or another (two would be moments apart).
    sends = sorted(at for beat in beats for at in send_times(beat))
    gaps = [later - earlier for earlier, later in itertools.pairwise(sends)]
    assert min(gaps) > timedelta(seconds=EVERY / 2), sends
    assert fired <= elapsed / EVERY + 2, (fired, elapsed)


def test_a_beat_whose_lock_was_taken_sends_nothing_until_it_holds_it_again(beat_redis, job):
    actor, schedule = job
    beat = start_beat("beat-a", schedule, beat_redis.url)
    client = redis.Redis.from_url(beat_redis.url)
    try:
        wait_for_runs(actor, 2)
        # As after an outage longer than the lock's timeout: the lock expired and another beat took it.
        assert client.set(LOCK_KEY, "another-beat", xx=True, px=60_000)
        beat.wait_for_output("beat_lock_lost", timeout=15)
        mark, taken_at = len(beat.output()), len(runs(actor))
        time.sleep(4 * EVERY)  # a few ticks without the lock
        assert sent(beat, mark) == 0, beat.output()[mark:]
        assert len(runs(actor)) <= taken_at + 1  # at most one that was already on its way

        client.delete(LOCK_KEY)  # the other beat stopped and released it
        wait_for_runs(actor, len(runs(actor)) + 3)
        assert sent(beat, mark) > 0
        assert beat.output()[mark:].count("beat_lock_acquired") == 1
        assert beat.process.poll() is None
    finally:
        beat.stop()
        client.close()
