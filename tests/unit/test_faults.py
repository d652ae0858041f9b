"""Fault points (core/faults.py): a no-op unless armed; armed, SIGKILL at the point, once per
once-file across processes, optionally only for one task; an unknown name stops the process."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

from tests.processes import ROOT


def run(code: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, capture_output=True, text=True,
                          check=False, env={"PATH": "/usr/bin:/bin", **env}, timeout=60)


REACH = """
    from core import faults
    faults.kill_point("mid_send", "reply")
    print("survived")
"""


def test_unarmed_points_do_nothing():
    from core import faults

    assert faults.ARMED == {}  # as in every test process and in production
    done = run(REACH)
    assert done.returncode == 0 and "survived" in done.stdout


def test_an_armed_point_kills_once_per_once_file(tmp_path):
    once = tmp_path / "armed"
    once.write_text("x")
    first = run(REACH, FAULT_KILL_AT="mid_send", FAULT_KILL_ONCE_FILE=str(once))
    assert first.returncode == -signal.SIGKILL and "survived" not in first.stdout
    assert '"fault_point_fired", "point": "mid_send"' in first.stderr
    assert not once.exists()
    second = run(REACH, FAULT_KILL_AT="mid_send", FAULT_KILL_ONCE_FILE=str(once))
    assert second.returncode == 0 and "survived" in second.stdout


def test_without_a_once_file_an_armed_point_fires_every_time():
    for _ in range(2):
        assert run(REACH, FAULT_KILL_AT="after_commit_before_enqueue,mid_send").returncode == -signal.SIGKILL


def test_a_point_armed_for_one_task_spares_the_others():
    assert run(REACH, FAULT_KILL_AT="mid_send:checkout").returncode == 0
    assert run(REACH, FAULT_KILL_AT="mid_send:reply").returncode == -signal.SIGKILL


def test_an_unknown_point_stops_the_process_at_start():
    done = run(REACH, FAULT_KILL_AT="after_lunch")
    assert done.returncode == 1 and "unknown fault point 'after_lunch'" in done.stderr


def test_after_enqueue_before_ack_fires_after_the_task_body_returned():
    code = """
        from celery import Celery
        import core.faults  # noqa: F401 (connects the postrun handler when armed)

        app = Celery("probe")

        @app.task(name="probe.work")
        def work():
            print("body done", flush=True)
            return 1

        work.apply()
        print("acknowledged")
    """
    armed = run(code, FAULT_KILL_AT="after_enqueue_before_ack")
    assert armed.returncode == -signal.SIGKILL
    assert "body done" in armed.stdout and "acknowledged" not in armed.stdout
    assert run(code, FAULT_KILL_AT="after_enqueue_before_ack:probe.other").returncode == 0
    assert run(code).returncode == 0
