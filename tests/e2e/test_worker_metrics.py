"""Worker metrics: samples from every prefork process of a real worker, summed by the exporter."""

from __future__ import annotations

import sys
import time

import httpx
import pytest
from kombu import Connection
from prometheus_client.parser import text_string_to_metric_families

from localenv.services import RedisServer, free_port
from sandbox.telegram_fake import TelegramFake, TelegramFakeClient
from tasks.app import app
from tests.e2e.conftest import new_user_id
from tests.factories import make_business, make_offer, make_user
from tests.processes import ManagedProcess, start_worker, stop_all


@pytest.fixture
def metrics_stack(migrated, tmp_path):
    telegram = TelegramFake().start()
    redis = RedisServer(tmp_path / "redis", free_port()).start()
    directory = tmp_path / "metrics"
    directory.mkdir()
    port = free_port()
    env = {"TELEGRAM_API_URL": telegram.url, "REDIS_URL": redis.url, "PROMETHEUS_MULTIPROC_DIR": str(directory),
           "WORKER_METRICS_PORT": str(port)}
    worker = start_worker("metrics-worker", queues="reservations,notifications,payments", concurrency=2, env=env)
    exporter = ManagedProcess("metrics-exporter", [sys.executable, "-m", "tasks.metrics_exporter"], env)
    exporter.wait_for_output("metrics_exporter_started")
    yield TelegramFakeClient(telegram.url), redis, f"http://127.0.0.1:{port}/metrics"
    stop_all([exporter, worker])
    redis.stop()
    telegram.stop()


def _samples(url: str) -> dict[tuple[str, tuple], float]:
    text = httpx.get(url, timeout=5).text
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def test_task_runs_and_outcomes_from_all_worker_processes_reach_one_endpoint(metrics_stack):
    telegram, redis, url = metrics_stack
    first, second = new_user_id(), new_user_id()
    for user in (first, second):
        telegram.create_user(user)
        make_user(user)
    offer = make_offer(make_business(new_user_id()), "Last loaf", quantity=1)
    with Connection(redis.url) as broker:
        for user in (first, second):
            app.send_task("reservations.place_order", args=[offer, user, 1, f"metrics-{user}"], connection=broker)

    def reported() -> dict:
        samples = _samples(url)
        runs = samples.get(("worker_task_seconds_count", (("state", "SUCCESS"), ("task", "reservations.place_order"))))
        sent = samples.get(("notifications_total", (("result", "sent"),)), 0)
        return samples if runs == 2 and sent >= 1 else {}

    deadline = time.monotonic() + 30
    while not (samples := reported()) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert samples, _samples(url)
    outcomes = {labels: value for (name, labels), value in samples.items() if name == "worker_task_outcomes_total"}
    assert outcomes[(("outcome", "reserved"), ("task", "reservations.place_order"))] == 1
    assert outcomes[(("outcome", "sold_out"), ("task", "reservations.place_order"))] == 1
