"""Worker and gateway logs of test and benchmark runs are kept until the next run, not forever."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.processes import prune_finished_logs


def test_logs_of_finished_runs_are_pruned_and_a_running_ones_kept(tmp_path):
    ended = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True,
                           check=True)
    ended_pid = int(ended.stdout)
    old = [tmp_path / f"worker-{ended_pid}-123.log", tmp_path / f"bench-notify-0-{ended_pid}-456.log"]
    kept = [tmp_path / f"gateway-{os.getpid()}-789.log", tmp_path / "redis.log", tmp_path / "flower-password"]
    for path in old + kept:
        path.write_text("x")
    assert prune_finished_logs(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in kept)
