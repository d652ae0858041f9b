"""Run on its own by tests/integration/test_terminated_test_run.py: a test session that starts a
worker, writes down what it started, and waits to be terminated."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from tests import conftest
from tests.processes import start_worker


def test_waits_to_be_terminated() -> None:
    worker = start_worker("sigterm-probe", queues="maintenance", concurrency=1)
    try:
        worker.wait_for_output("ready", timeout=60)
        started = {"pids": [worker.process.pid, *(s.pid() for s in conftest._started)],
                   "run_dir": str(conftest._RUN_DIR)}
        Path(os.environ["SIGTERM_PROBE_REPORT"]).write_text(json.dumps(started))
        time.sleep(120)
    finally:
        worker.stop()
