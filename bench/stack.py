"""The whole system as `make run` runs it, private to one drill (bench/chaos.py, bench/soak.py).

* a Redis and a Postgres of its own (migrated), under ``.run/<name>-<pid>/``, which the drill can
  stop and start;
* the Telegram and Stripe fakes in this process (their state is read directly): Telegram delivers
  updates to the gateway's webhook and retries until it gets a 2xx, as Telegram does; Stripe
  signs its events and retries them with exponential backoff;
* the gateway, one Celery worker per queue (make run's layout, ``localenv.run.WORKERS``), beat,
  the workers' metrics exporter (and Flower when asked), each under ``localenv.supervisor``'s
  Supervisor in a child process (``python -m bench.stack supervise``), exactly as `make run`
  supervises them: a process that dies is restarted after its backoff, its process group killed.

The supervisor's output goes to ``supervisor.log`` in the run's directory; the process ids of its
programs are read from its own lines ("worker-updates restarted (pid 1234)").
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self
from unittest import mock

ROOT = Path(__file__).resolve().parent.parent
WEBHOOK_SECRET = "chaos-" + secrets.token_hex(8)
STRIPE_WEBHOOK_SECRET = "whsec_chaos_" + secrets.token_hex(8)
ADMIN_ID = 4242
_STARTED = re.compile(r"\| (?P<name>[\w-]+) (?:started|restarted) \(pid (?P<pid>\d+)\)")
# Variables of the caller's environment that would point the processes at something else (or, like
# the tests' shorter MARKS_DELAY_SECONDS, change the timing of what a drill measures).
_FOREIGN = ("BOT_TOKEN", "PUBLIC_URL", "SENTRY_DSN", "CHECKOUT_RETURN_URL", "BEAT_SCHEDULE_JSON",
            "PROMETHEUS_MULTIPROC_DIR", "FLOWER_BASIC_AUTH", "SANDBOX_STRIPE", "MARKS_DELAY_SECONDS")


def wait_until(predicate: Callable[[], Any], timeout: float, interval: float = 0.2) -> Any:
    """The predicate's first truthy value within `timeout` seconds (errors count as falsy), else None."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # noqa: BLE001 - a service may be down while we wait for it
            value = None
        if value:
            return value
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


def migrate(url: str) -> None:
    from alembic import command
    from alembic.config import Config

    config = Config(str(ROOT / "alembic.ini"))
    config.attributes["configure_logging"] = False
    config.attributes["url"] = url
    command.upgrade(config, "head")


class Stack:
    """`with Stack("chaos") as stack:` everything up and ready; stopped and removed afterwards."""

    def __init__(self, name: str, *, visibility_timeout: int = 3600, flower: bool = False,
                 keep: bool = False) -> None:
        self.name = name
        self.directory = ROOT / ".run" / f"{name}-{os.getpid()}-{secrets.token_hex(3)}"
        self.visibility_timeout = visibility_timeout
        self.flower = flower
        self.keep = keep  # keep the directory (logs) afterwards
        self.redis: Any = None
        self.postgres: Any = None
        self.telegram: Any = None
        self.stripe: Any = None
        self.supervisor: subprocess.Popen | None = None
        self.env: dict[str, str] = {}
        self.gateway_url = ""
        self.commands: dict[str, list[str]] = {}
        self._environ: Any = None
        self._log: Any = None

    # ------------------------------------------------------------------ start and stop

    def __enter__(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def _start(self) -> None:
        from localenv.services import PostgresServer, RedisServer, free_port
        from sandbox.stripe_fake import StripeFake
        from sandbox.telegram_fake import TelegramFake

        self.directory.mkdir(parents=True)
        self.redis = RedisServer(self.directory / "redis", free_port()).start()
        self.postgres = PostgresServer(self.directory / "postgres", free_port(), database="surplus").start()
        migrate(self.postgres.url)
        # Telegram's own pace: retries from 0.2 s doubling to 5 s until the webhook answers 2xx.
        self.telegram = TelegramFake(webhook_retry_initial=0.2, webhook_retry_max=5.0, webhook_timeout=10.0).start()
        self.stripe = StripeFake().start()
        gateway_port = free_port()
        self.gateway_url = f"http://127.0.0.1:{gateway_port}"
        metrics_dir = self.directory / "metrics"
        metrics_dir.mkdir()
        self.env = {
            "REDIS_URL": self.redis.url, "DATABASE_URL": self.postgres.url,
            "TELEGRAM_API_URL": self.telegram.url, "TELEGRAM_WEBHOOK_SECRET": WEBHOOK_SECRET,
            "PUBLIC_URL": self.gateway_url, "GATEWAY_HOST": "127.0.0.1", "GATEWAY_PORT": str(gateway_port),
            "STRIPE_API_URL": self.stripe.url, "STRIPE_SECRET_KEY": "sk_test_chaos",
            "STRIPE_WEBHOOK_SECRET": STRIPE_WEBHOOK_SECRET,
            "WORKER_METRICS_HOST": "127.0.0.1", "WORKER_METRICS_PORT": str(free_port()),
            "BROKER_VISIBILITY_TIMEOUT": str(self.visibility_timeout),
            "ADMIN_IDS": str(ADMIN_ID), "LOG_JSON": "true", "LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1",
            "WEBAPP_HOST": "127.0.0.1", "WEBAPP_PORT": str(free_port()),
            # The drills are about faults, not Connect onboarding: the platform collects and pays the
            # businesses itself (the operator's alternative), so the seeded businesses can sell.
            "PAYOUTS_REQUIRE_CONNECT": "false",
        }
        # This process reads the same services (seeding, checks): settings and engine follow os.environ.
        self._environ = mock.patch.dict(os.environ, self.env)
        self._environ.start()
        for variable in _FOREIGN:
            os.environ.pop(variable, None)
        reset_settings()
        self.stripe.configure_webhook(url=f"{self.gateway_url}/stripe/webhook", secret=STRIPE_WEBHOOK_SECRET,
                                      retry_base_delay=0.25, max_attempts=25, timeout=10.0)
        self._start_supervisor(metrics_dir)
        self._wait_ready()
        subprocess.run([sys.executable, "-m", "bot.setup", "webhook"], cwd=ROOT, env=self.process_env(),
                       check=True, capture_output=True, timeout=60)

    def process_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _FOREIGN}
        return {**env, **self.env}

    def _programs(self, metrics_dir: Path) -> list[dict[str, Any]]:
        from localenv import run
        from localenv.services import free_port

        base = self.process_env()
        programs = []
        for name, command in run.processes(base).items():
            if name in ("telegram", "stripe", "poller"):
                continue  # the fakes run in this process; the webhook is set, so no poller
            env = dict(base)
            if name.startswith("worker-") or name == "metrics":
                env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
            if name == "flower":
                if not self.flower:
                    continue
                env["FLOWER_BASIC_AUTH"] = "chaos:" + secrets.token_urlsafe(8)
                command = [*(c for c in command if not c.startswith(("--port=", "--address="))),  # noqa: PLW2901
                           "--address=127.0.0.1", f"--port={free_port()}"]
            programs.append({"name": name, "command": command, "env": env})
            self.commands[name] = command
        return programs

    def _start_supervisor(self, metrics_dir: Path) -> None:
        spec = self.directory / "supervisor.json"
        spec.write_text(json.dumps({"programs": self._programs(metrics_dir)}))
        self._log = (self.directory / "supervisor.log").open("ab")
        self.supervisor = subprocess.Popen(
            [sys.executable, "-m", "bench.stack", "supervise", str(spec)], cwd=ROOT, stdout=self._log,
            stderr=subprocess.STDOUT, start_new_session=True)

    def _wait_ready(self, timeout: float = 120.0) -> None:
        import httpx

        workers = [name for name in self.commands if name.startswith("worker-")]
        ready = wait_until(lambda: all(self.worker_ready(name) for name in workers), timeout, 0.5)
        if not ready:
            raise RuntimeError(f"workers did not start:\n{self.log_tail()}")
        if not wait_until(lambda: httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200, 60):
            raise RuntimeError(f"gateway not ready:\n{self.log_tail()}")

    def __exit__(self, *_exc: object) -> None:
        if self.supervisor is not None and self.supervisor.poll() is None:
            self.supervisor.send_signal(signal.SIGTERM)
            try:
                self.supervisor.wait(30)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.supervisor.pid, signal.SIGKILL)
                self.supervisor.wait(5)
        if self._log is not None:
            self._log.close()
        for fake in (self.telegram, self.stripe):
            if fake is not None:
                with contextlib.suppress(Exception):
                    fake.stop()
        if self._environ is not None:
            self._environ.stop()
            reset_settings()
        if self.redis is not None:
            with contextlib.suppress(Exception):
                self.redis.stop()
        if self.postgres is not None:
            with contextlib.suppress(Exception):
                self.postgres.stop(mode="immediate")
        if not self.keep:
            shutil.rmtree(self.directory, ignore_errors=True)

    # ------------------------------------------------------------------ the supervised processes

    def log_text(self) -> str:
        return (self.directory / "supervisor.log").read_text(errors="replace")

    def log_tail(self, characters: int = 4000) -> str:
        return self.log_text()[-characters:]

    def log_size(self) -> int:
        return (self.directory / "supervisor.log").stat().st_size

    def pids(self) -> dict[str, int]:
        """Each program's current main process id, from the supervisor's own lines."""
        found: dict[str, int] = {}
        for match in _STARTED.finditer(self.log_text()):
            found[match["name"]] = int(match["pid"])
        return {name: pid for name, pid in found.items() if name in self.commands}

    def pid(self, name: str) -> int:
        return self.pids()[name]

    def children(self, name: str) -> list[Any]:
        import psutil

        try:
            return psutil.Process(self.pid(name)).children(recursive=True)
        except (psutil.Error, KeyError):
            return []

    def log_since(self, since: int) -> str:
        """The supervised processes' output after byte `since` of the log (`log_size`)."""
        with (self.directory / "supervisor.log").open("rb") as log:
            log.seek(since)
            return log.read().decode(errors="replace")

    def worker_ready(self, name: str, since: int = 0) -> bool:
        """The worker printed "ready." after byte `since` of the log (its start or restart)."""
        text = self.log_since(since)
        prefix = re.compile(rf"^\S+ {re.escape(name)}\s+\| .*ready\.", re.MULTILINE)
        return bool(prefix.search(text))

    def restarted(self, name: str, old_pid: int, since: int, timeout: float) -> float | None:
        """Seconds until `name` runs again under a new pid and is ready (workers: "ready.", the
        gateway: /readyz); None if not within `timeout`."""
        import httpx

        began = time.monotonic()

        def back() -> bool:
            pid = self.pids().get(name)
            if pid is None or pid == old_pid:
                return False
            if name.startswith("worker-"):
                return self.worker_ready(name, since)
            if name == "gateway":
                return httpx.get(f"{self.gateway_url}/readyz", timeout=2).status_code == 200
            return True

        if wait_until(back, timeout, 0.1):
            return round(time.monotonic() - began, 2)
        return None

    # ------------------------------------------------------------------ broker and database

    def redis_client(self):
        import redis

        return redis.Redis.from_url(self.redis.url, socket_timeout=2, socket_connect_timeout=2)

    def queue_lengths(self) -> dict[str, int]:
        """Messages waiting in each queue (kombu's priority sub-queues included)."""
        from core.queues import QUEUES

        client = self.redis_client()
        try:
            lengths = {}
            for queue in QUEUES:
                keys = [queue, *(f"{queue}\x06\x16{step}" for step in range(1, 10))]
                pipe = client.pipeline()
                for key in keys:
                    pipe.llen(key)
                lengths[queue] = sum(pipe.execute())
            return lengths
        finally:
            client.close()

    def unacked(self) -> int:
        """Messages delivered to a worker and not acknowledged yet (running, prefetched, or waiting
        for their countdown); a killed worker's stay here until the visibility timeout."""
        client = self.redis_client()
        try:
            return int(client.hlen("unacked"))
        finally:
            client.close()


def reset_settings() -> None:
    from core import db
    from core.settings import get_settings

    get_settings.cache_clear()
    db.reset_engine()


def supervise(spec_path: str) -> int:
    """The child process: `make run`'s supervisor with the programs of the spec."""
    from localenv.supervisor import Supervisor

    spec = json.loads(Path(spec_path).read_text())
    supervisor = Supervisor()
    for program in spec["programs"]:
        supervisor.add(program["name"], program["command"], env=program["env"], cwd=str(ROOT))
    return supervisor.run()


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "supervise":
        sys.exit(supervise(sys.argv[2]))
    sys.exit("usage: python -m bench.stack supervise <spec.json>")
