"""The task time limits kept in the process running the task (core/time_limits.py), with real
signals: soft, then hard, then the process's exit for a task that swallowed both."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import pytest
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded

from core import time_limits
from tests.processes import ROOT


@pytest.fixture(autouse=True)
def _disarmed():
    yield
    time_limits.disarm()


def _sleep_until_interrupted(seconds: float) -> type[BaseException] | None:
    try:
        time.sleep(seconds)
    except (SoftTimeLimitExceeded, TimeLimitExceeded) as interrupted:
        return type(interrupted)
    return None


def test_a_task_past_its_soft_limit_is_interrupted_and_past_its_hard_limit_failed():
    assert time_limits.arm(0.2, 0.4)
    assert _sleep_until_interrupted(5) is SoftTimeLimitExceeded
    assert _sleep_until_interrupted(5) is TimeLimitExceeded


def test_a_task_that_ended_is_not_interrupted_afterwards():
    assert time_limits.arm(0.2, 0.4)
    time_limits.disarm()
    assert _sleep_until_interrupted(0.6) is None


def test_without_a_soft_limit_the_hard_one_comes_first():
    assert time_limits.arm(0, 0.2)
    assert _sleep_until_interrupted(5) is TimeLimitExceeded


def test_no_limits_arm_nothing():
    assert not time_limits.arm(0, 0)
    assert _sleep_until_interrupted(0.3) is None


def test_outside_the_main_thread_nothing_is_armed():
    armed: list[bool] = []
    thread = threading.Thread(target=lambda: armed.append(time_limits.arm(0.1, 0.2)))
    thread.start()
    thread.join()
    assert armed == [False]
    assert _sleep_until_interrupted(0.3) is None


def test_a_task_that_swallows_both_limits_ends_its_process():
    script = textwrap.dedent("""
        import time
        from core import time_limits
        time_limits.EXIT_GRACE_SECONDS = 0.2
        time_limits.arm(0.1, 0.2)
        for _ in range(50):
            try:
                time.sleep(0.1)
            except Exception:
                pass
        print("still running")
    """)
    finished = subprocess.run([sys.executable, "-c", script], check=False, cwd=ROOT, capture_output=True,
                              text=True, timeout=30)
    assert finished.returncode == time_limits.EXIT_STATUS, finished.stderr
    assert "still running" not in finished.stdout
