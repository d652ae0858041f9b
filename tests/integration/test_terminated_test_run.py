"""A test run that is terminated (a timeout, a cancelled CI job) stops what it started, as Ctrl-C
does: its Celery workers, Redis and Postgres do not outlive it."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from localenv.services import pid_alive
from tests.processes import ROOT

pytestmark = pytest.mark.slow


def test_a_terminated_test_run_stops_its_workers_and_services(tmp_path):
    report = tmp_path / "started.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_REDIS_URL", "TEST_DATABASE_URL")}
    env["SIGTERM_PROBE_REPORT"] = str(report)
    run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "tests/support/sigterm_probe.py"], cwd=ROOT,
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while not report.exists() and run.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        assert report.exists(), run.communicate(timeout=30)[0].decode(errors="replace")[-3000:]
        started = json.loads(report.read_text())
        assert len(started["pids"]) == 3  # the worker, Redis and Postgres
        run.send_signal(signal.SIGTERM)
        output = run.communicate(timeout=60)[0].decode(errors="replace")
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0, output[-3000:]
    deadline = time.monotonic() + 10
    while any(pid_alive(pid) for pid in started["pids"]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert [pid for pid in started["pids"] if pid_alive(pid)] == [], output[-3000:]
    assert not Path(started["run_dir"]).exists()
