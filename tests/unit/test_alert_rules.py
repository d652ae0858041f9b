"""The alert rules in ops/ are valid, unit-tested by promtool (ops/alerts_test.yml), complete (each
with `for`, a severity and what to do), each tested firing, and read only metrics the code exports."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
OPS = ROOT / "ops"
# Where the metrics the alerts read are declared (the gateway's, the workers', the exporter's).
METRIC_SOURCES = ["core/metrics.py", "bot/metrics.py", "tasks/metrics_exporter.py"]
PROMQL_WORDS = {"sum", "max", "min", "by", "without", "rate", "deriv", "increase", "absent", "and", "or", "unless",
                "offset", "on", "ignoring", "bool", "up"}

promtool = pytest.mark.skipif(shutil.which("promtool") is None, reason="make test installs promtool (prometheus)")


def rules() -> list[dict]:
    return [rule for group in yaml.safe_load((OPS / "alerts.yml").read_text())["groups"] for rule in group["rules"]]


def run_promtool(*args: str) -> None:
    result = subprocess.run(["promtool", *args], cwd=OPS, capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@promtool
def test_rules_and_prometheus_config_are_valid():
    run_promtool("check", "rules", "alerts.yml")
    run_promtool("check", "config", "prometheus.yml")


@promtool
def test_rules_pass_their_unit_tests():
    run_promtool("test", "rules", "alerts_test.yml")


def test_every_alert_says_how_long_how_bad_and_what_to_do():
    for rule in rules():
        assert re.fullmatch(r"\d+[smh]", rule.get("for", "")), rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
        assert {"summary", "description", "runbook"} <= set(rule["annotations"]), rule["alert"]


def test_every_alert_is_tested_firing():
    tests = yaml.safe_load((OPS / "alerts_test.yml").read_text())["tests"]
    fired = {check["alertname"] for test in tests for check in test["alert_rule_test"] if check["exp_alerts"]}
    assert {rule["alert"] for rule in rules()} == fired


def test_alerts_read_only_metrics_the_code_exports():
    declared = set()
    for source in METRIC_SOURCES:
        declared |= set(re.findall(r'"([a-z][a-z0-9_]+)"', (ROOT / source).read_text()))
    for rule in rules():
        # Leave out label matchers, ranges, `by (...)` lists, strings and numbers or durations (offset 15m).
        expr = re.sub(r"\{[^}]*\}|\[[^\]]*\]|\b(by|without|on|ignoring) *\([^)]*\)|\"[^\"]*\"|\b\d[\d.]*[a-z]*", " ",
                      rule["expr"])
        names = set(re.findall(r"[a-z_][a-z0-9_]*", expr)) - PROMQL_WORDS
        unknown = {name for name in names
                   if name not in declared and re.sub(r"_(count|bucket|sum)$", "", name) not in declared}
        assert not unknown, (rule["alert"], unknown)


def test_the_readme_tells_operators_about_every_alert():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("### Alerts"):]
    assert {rule["alert"] for rule in rules() if f"| `{rule['alert']}` |" not in table} == set()
