"""Visibility timeouts per queue (celeryconfig, core/broker.py, docs/redelivery.md): what the
defaults promise, how the environment changes them, and when a held message counts as lost."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime, timedelta

import pytest
from kombu.utils.json import dumps

import celeryconfig
from core.broker import QoS, due_at
from core.queues import QUEUES
from core.settings import get_settings, load_settings


@pytest.fixture
def config(monkeypatch):
    """celeryconfig as a process with the given environment loads it."""
    def load(**environment: str):
        for name in ("BROKER_VISIBILITY_TIMEOUT", "BROKER_VISIBILITY_TIMEOUTS"):
            monkeypatch.delenv(name, raising=False)
        for name, value in environment.items():
            monkeypatch.setenv(name, value)
        get_settings.cache_clear()
        return importlib.reload(celeryconfig).broker_transport_options

    yield load
    monkeypatch.undo()
    get_settings.cache_clear()
    importlib.reload(celeryconfig)


def test_defaults_answer_a_lost_tap_within_two_minutes_and_cover_every_queue(config):
    options = config()
    timeouts = options["visibility_timeouts"]
    assert set(timeouts) == set(QUEUES)
    # A killed worker's tap: visible again after the updates timeout, found by the next sweep.
    assert options["unacked_restore_throttle"] == 1
    assert timeouts["updates"] + options["unacked_restore_interval"] <= 120 - 30
    # No healthy task is given away while it may still run (soft limit), and none waits for it.
    assert min(timeouts.values()) >= get_settings().task_soft_time_limit_seconds
    assert options["visibility_timeout"] == max(timeouts.values())


def test_one_value_sets_every_queue_and_the_per_queue_value_wins(config):
    options = config(BROKER_VISIBILITY_TIMEOUT="5", BROKER_VISIBILITY_TIMEOUTS="updates=8, payments=30")
    assert options["visibility_timeouts"] == {
        "updates": 8, "reservations": 5, "notifications": 5, "payments": 30, "images": 5, "maintenance": 5}
    assert config(BROKER_VISIBILITY_TIMEOUT="", BROKER_VISIBILITY_TIMEOUTS="")["visibility_timeouts"] == \
        celeryconfig.VISIBILITY_TIMEOUTS


@pytest.mark.parametrize("value", ["update=60", "updates", "updates=0", "updates=soon"])
def test_a_bad_per_queue_value_is_named(monkeypatch, value):
    monkeypatch.setenv("BROKER_VISIBILITY_TIMEOUTS", value)
    with pytest.raises(SystemExit) as exit_info:
        load_settings()
    assert "BROKER_VISIBILITY_TIMEOUTS" in str(exit_info.value)


def test_a_message_is_lost_only_its_queues_timeout_after_it_was_delivered_or_fell_due():
    now = datetime.now(UTC)
    timeouts = {"updates": 60, "payments": 180}

    def visible_again(routing_key: str, delivered: datetime, eta: datetime | None = None) -> float:
        headers = {"eta": eta.isoformat() if eta else None}
        raw = dumps([{"headers": headers, "body": ""}, "", routing_key]).encode()
        return QoS._visible_again_at(raw, delivered.timestamp(), timeouts, 300)[1]

    assert visible_again("updates", now) == pytest.approx(now.timestamp() + 60)
    assert visible_again("payments", now) == pytest.approx(now.timestamp() + 180)
    assert visible_again("celery", now) == pytest.approx(now.timestamp() + 300)  # a queue not named
    # Held for a 10-minute countdown (a hold's end): counted from when it falls due.
    due = now + timedelta(minutes=10)
    assert visible_again("payments", now, due) == pytest.approx(due.timestamp() + 180)
    assert QoS._visible_again_at(None, now.timestamp(), timeouts, 300)[1] == now.timestamp()


def test_due_at_reads_celerys_eta_header():
    moment = datetime(2030, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert due_at({"eta": moment.isoformat()}) == moment.timestamp()
    assert due_at({"eta": moment.replace(tzinfo=None).isoformat()}) == moment.timestamp()  # naive: UTC
    assert due_at({"eta": None}) is None
    assert due_at({"eta": "tomorrow"}) is None
    assert due_at(None) is None
