"""Starting the project's real processes for tests: Celery workers, the gateway and the Mini App."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from localenv.services import free_port, pid_alive

ROOT = Path(__file__).resolve().parent.parent
ALL_QUEUES = "updates,reservations,payments,images,notifications,maintenance"
LOG_DIR = ROOT / ".run"
_LOG_NAME = re.compile(r".+-(?P<pid>\d+)-\d+\.log")  # as ManagedProcess names them


def prune_finished_logs(directory: Path = LOG_DIR) -> int:
    """Delete the process logs of earlier runs (tests or benchmarks) whose run has ended; returns
    how many. A run's logs stay until the next run starts, to be read after a failure, and no
    longer pile up over hundreds of runs."""
    removed = 0
    for path in directory.glob("*.log"):
        match = _LOG_NAME.fullmatch(path.name)
        if match and not pid_alive(int(match["pid"])):
            path.unlink(missing_ok=True)
            removed += 1
    return removed


class ManagedProcess:
    """A child process whose output is kept (shown when a test fails) and who is stopped cleanly."""

    def __init__(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        self.name = name
        self.log_path = LOG_DIR / f"{name}-{os.getpid()}-{time.monotonic_ns()}.log"
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=self._log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, needle: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if needle in self.output():
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"{self.name} did not print {needle!r}:\n{self.output()[-4000:]}")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and its pool children)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, sig)

    def stop(self, timeout: float = 20) -> None:
        stop_all([self], timeout)


def stop_all(processes: list[ManagedProcess], timeout: float = 20) -> None:
    """Stop several processes as ``stop()`` stops one (SIGTERM to each group, SIGKILL to one still
    running after ``timeout`` s), but all signalled first: their shutdowns overlap (a Celery worker's
    takes a second or two) instead of adding up."""
    running = [p for p in processes if p.process.poll() is None]
    for managed in running:
        managed.kill(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for managed in running:
        try:
            managed.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            managed.kill(signal.SIGKILL)
            managed.process.wait(5)
    for managed in processes:
        managed._log.close()


def start_worker(name: str = "worker", queues: str = ALL_QUEUES, concurrency: int = 2,
                 env: dict[str, str] | None = None, app: str = "tasks") -> ManagedProcess:
    """A Celery worker of ``app`` (the benchmarks pass their own module, which adds a few tasks)."""
    worker = ManagedProcess(
        name,
        [sys.executable, "-m", "celery", "-A", app, "worker", "-Q", queues, "-c", str(concurrency),
         "-n", f"{name}-{time.monotonic_ns()}@%h", "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        env,
    )
    worker.wait_for_output("ready.", timeout=60)
    return worker


def start_http_process(name: str, module: str, port_variable: str, env: dict[str, str] | None = None,
                       port: int | None = None) -> tuple[ManagedProcess, str]:
    """``python -m module`` listening on a free port (or ``port``) named by ``port_variable``,
    once its /healthz answers."""
    port = port or free_port()
    started = ManagedProcess(name, [sys.executable, "-m", module], {port_variable: str(port), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return started, url
        except httpx.TransportError:
            pass
        if started.process.poll() is not None:
            break
        time.sleep(0.1)
    raise RuntimeError(f"{name} did not start:\n{started.output()[-4000:]}")


def start_gateway(env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    return start_http_process("gateway", "bot.gateway", "GATEWAY_PORT", env)


def start_webapp(port: int, env: dict[str, str] | None = None) -> tuple[ManagedProcess, str]:
    """The Mini App process, on the port the stack's WEBAPP_URL names (tests/e2e/conftest.py)."""
    return start_http_process("webapp", "webapp", "WEBAPP_PORT", env, port=port)
