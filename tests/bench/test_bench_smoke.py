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
                   capture_output=True, timeout=420)
    report = json.loads((tmp_path / "report.json").read_text())
    (gateway_run,) = report["gateway"]["runs"]["batched"]
    assert gateway_run["requests"] > 0 and gateway_run["non_2xx"] == 0
    # Everything acknowledged was queued (wrk may stop before reading the last replies).
    assert gateway_run["queued"] >= gateway_run["requests"]
    (fixed,) = report["gateway_fixed_rate"]["runs"]["batched"]["200"]
    assert fixed["acknowledged"] == fixed["offered"] > 0 and fixed["non_2xx"] == fixed["errors"] == 0
    assert fixed["queued"] >= fixed["acknowledged"]
    (sale,) = report["flash_sale"]["runs"]["1"]
    # Every customer answered, exactly the units on offer reserved, one order each.
    assert sale["without_answer"] == 0 and sale["answered"] == sale["customers"]
    assert sale["units_reserved"] == sale["units"] == sale["orders"] == sale["buyers"] == sale["pay_links"]
    # Each tap's update handled once, in as many tasks as the gateway made of them (several share one).
    assert sale["updates_processed"] == sale["customers"]
    assert 0 < sale["update_tasks"] <= sale["customers"]
    assert sale["noop_tasks"] == sale["tasks_total"] and sale["noop_drain_s"] > 0
    (peer,) = report["flash_sale"]["peer"]  # the conventional PTB bot, in the same run
    assert peer["without_answer"] == 0 and peer["units_reserved"] == peer["units"] == peer["pay_links"]
    alerts = report["alerts"]
    assert alerts["free"]["alerts_received"] == alerts["subscribers"] and alerts["free"]["paid_broadcasts"] == 0
    assert all(r["alerts_received"] == r["paid_broadcasts"] == alerts["subscribers"] for r in alerts["paid"])
    assert alerts["fairness"]["offers"] == alerts["offers"]
    overhead = report["task_overhead"]["runs"]
    assert set(overhead) == {"defaults", "project", "project_base", "project_base_quiet"}
    assert all(run["tasks_per_s"] > 0 and run["round_trip_p50_ms"] > 0 for runs in overhead.values() for run in runs)
    (reservations,) = report["reservations"]
    assert reservations["oversold_units"] == 0 and reservations["ledger_rows_match"]
    assert report["images"]["pipeline"]["output_bytes"]["card"] > 0
    notifications = report["notifications"]
    assert notifications["received"] == notifications["count"] > 0
    assert notifications["duplicates"] == 0 and notifications["lost"] == 0
    discovery = report["discovery"]
    assert discovery["nearby"]["postgis"]["count"] == 20 and discovery["audience"]["postgis"]["count"] == 5
    assert discovery["nearby"]["found"]["postgis"] > 0 and discovery["jit"] == "off"
    text = (tmp_path / "report.md").read_text()
    assert "# Benchmarks" in text and "## 2. Flash sale" in text and "## 4. Task overhead" in text
    assert "## 7. Finding deals" in text and "## 8. Deal alerts" in text and "peer" in text
    for plot in ("gateway_fixed_rate.png", "flash_sale.png", "task_overhead.png", "reservations.png"):
        assert (tmp_path / plot).stat().st_size > 0 and f"({plot})" in text
