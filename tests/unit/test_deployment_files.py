"""docker-compose.yml is valid (checked by Debian's docker-compose, which needs no engine) and
declares every process of the system, with Redis and Postgres kept inside its network."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
QUEUES = ["updates", "reservations", "payments", "images", "notifications", "maintenance"]


@pytest.fixture
def compose_dir(tmp_path: Path) -> Path:
    shutil.copy(ROOT / "docker-compose.yml", tmp_path)
    shutil.copy(ROOT / ".env.example", tmp_path / ".env")
    return tmp_path


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="make test installs docker-compose")
def test_compose_file_is_accepted(compose_dir: Path):
    env = {"PATH": "/usr/bin:/bin", "POSTGRES_PASSWORD": "p", "REDIS_PASSWORD": "r"}
    result = subprocess.run(["docker-compose", "config", "-q"], cwd=compose_dir, env=env, capture_output=True,
                            text=True, check=False)
    assert result.returncode == 0, result.stderr


def test_every_process_is_declared_and_internals_are_private():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    expected = {"postgres", "redis", "migrate", "gateway", "poller", "beat", "flower"} | {f"worker-{q}" for q in QUEUES}
    assert expected <= set(services)
    assert "ports" not in services["redis"] and "ports" not in services["postgres"]
    assert "--requirepass" in services["redis"]["command"]
    assert "--appendonly" in services["redis"]["command"]
    assert "FLOWER_BASIC_AUTH" in " ".join(services["flower"]["command"])
    for queue in QUEUES:
        command = services[f"worker-{queue}"]["command"]
        assert command[command.index("-Q") + 1] == queue


def test_every_long_running_service_restarts_and_has_a_health_check():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    long_running = {name: service for name, service in services.items() if name != "migrate"}
    restarts = {name: service.get("restart") for name, service in long_running.items()}
    assert restarts == dict.fromkeys(long_running, "unless-stopped")
    without_check = {name for name, service in long_running.items() if not service.get("healthcheck", {}).get("test")}
    assert without_check == {"poller"}  # nothing to ask it yet: it would need a heartbeat
    # Beat answers the ping only with remote control on (and only while its scheduler ticks).
    assert "--enable-remote-control" in services["beat"]["command"]
    assert "celerybeat@" in " ".join(services["beat"]["healthcheck"]["test"])
    assert "/healthz" in " ".join(services["gateway"]["healthcheck"]["test"])
    assert "/healthcheck" in " ".join(services["flower"]["healthcheck"]["test"])


def test_prometheus_runs_under_the_monitoring_profile_with_the_rules_of_ops():
    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    prometheus = services["prometheus"]
    assert prometheus["profiles"] == ["monitoring"]
    mounts = {volume.split(":")[0]: volume.split(":")[1] for volume in prometheus["volumes"]}
    assert mounts["./ops/prometheus.yml"] == "/etc/prometheus/prometheus.yml"
    assert mounts["./ops/alerts.yml"] == "/etc/prometheus/alerts.yml"  # rule_files: [alerts.yml], beside it
    for source in ("./ops/prometheus.yml", "./ops/alerts.yml"):
        assert (ROOT / source).is_file()
    assert all(port.startswith("127.0.0.1:") for port in prometheus["ports"])  # no authentication of its own
    # It scrapes what compose runs: the gateway, and every worker service's exporter.
    config = yaml.safe_load((ROOT / "ops" / "prometheus.yml").read_text())
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert jobs["gateway"]["static_configs"][0]["targets"] == ["gateway:8080"]
    assert set(jobs["workers"]["dns_sd_configs"][0]["names"]) == {f"worker-{q}" for q in QUEUES}

