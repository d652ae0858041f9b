"""The benchmarks still run (tiny sizes; the figures themselves come from `make bench`)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.processes import ROOT


@pytest.mark.skipif(shutil.which("wrk") is None, reason="make test installs wrk")
def test_bench_smoke_writes_a_report(tmp_path):
    subprocess.run([sys.executable, "-m", "bench", "--smoke", "--output", str(tmp_path)], cwd=ROOT, check=True,
                   capture_output=True, timeout=240)
    report = json.loads((tmp_path / "report.json").read_text())
    (gateway_run,) = report["gateway"]["runs"]["batched"]
    assert gateway_run["requests"] > 0 and gateway_run["non_2xx"] == 0
    # Everything acknowledged was queued (wrk may stop before reading the last replies).
    assert gateway_run["queued"] >= gateway_run["requests"]
    (reservations,) = report["reservations"]
    assert reservations["oversold_units"] == 0 and reservations["ledger_rows_match"]
    assert report["images"]["pipeline"]["output_bytes"]["card"] > 0
    notifications = report["notifications"]
    assert notifications["received"] == notifications["count"] > 0
    assert notifications["duplicates"] == 0 and notifications["lost"] == 0
    assert "# Benchmarks" in (tmp_path / "report.md").read_text()
