"""Private Redis and Postgres instances for `make run` and the test suite.

Both are started from the Debian/PostgreSQL binaries already on the machine, each in its own
directory, on loopback only. Postgres refuses to run as root, so as root the cluster belongs to
the `postgres` user and its commands run through `runuser`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


class ServiceError(RuntimeError):
    pass


def free_port() -> int:
    with contextlib.closing(socket.socket()) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int, host: str = "127.0.0.1") -> bool:
    with contextlib.closing(socket.socket()) as s:
        s.settimeout(0.2)
        return s.connect_ex((host, port)) == 0


def _wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise ServiceError(f"{what} did not come up within {timeout:.0f}s")


@dataclass
class RedisServer:
    """A private redis-server with append-only persistence (an acknowledged update survives a restart)."""

    directory: Path
    port: int

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pidfile(self) -> Path:
        return self.directory / "redis.pid"

    def pid(self) -> int | None:
        """The running server's process id, None when it is not running."""
        with contextlib.suppress(FileNotFoundError, ValueError):
            return int(self.pidfile.read_text().strip())
        return None

    def start(self) -> RedisServer:
        self.directory = self.directory.resolve()
        binary = shutil.which("redis-server")
        if not binary:
            raise ServiceError("redis-server is not installed (apt-get install -y redis-server)")
        self.directory.mkdir(parents=True, exist_ok=True)
        if port_open(self.port):
            if self.pidfile.exists():
                return self  # ours, still running from an earlier start
            raise ServiceError(f"port {self.port} is taken by another server; stop it or set REDIS_URL")
        subprocess.run(
            [
                binary,
                "--bind", "127.0.0.1",
                "--port", str(self.port),
                "--dir", str(self.directory),
                "--appendonly", "yes",
                "--appendfsync", "everysec",
                "--save", "",
                "--daemonize", "yes",
                "--pidfile", str(self.pidfile),
                "--logfile", str(self.directory / "redis.log"),
            ],
            check=True,
        )
        _wait_for(lambda: port_open(self.port), 10, f"redis on port {self.port}")
        return self

    def stop(self) -> None:
        if (pid := self.pid()) is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 15)
            _wait_for(lambda: not pid_alive(pid), 10, "redis shutdown")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process: it exists
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(FileNotFoundError):
        if Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z":
            return False
    return True


def _pg_bin(name: str) -> str:
    found = shutil.which(name)
    if found:
        return found
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"), reverse=True):
        return str(candidate)
    raise ServiceError(f"{name} not found: install PostgreSQL (apt-get install -y postgresql)")


@dataclass
class PostgresServer:
    """A private Postgres cluster (initdb + pg_ctl), trust auth on loopback, one database."""

    directory: Path
    port: int
    database: str = "surplus"

    @property
    def user(self) -> str:
        return "postgres"

    @property
    def url(self) -> str:
        return f"postgresql+psycopg2://{self.user}@127.0.0.1:{self.port}/{self.database}"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    def pid(self) -> int | None:
        """The postmaster's process id, None when the cluster is not running."""
        with contextlib.suppress(FileNotFoundError, ValueError, IndexError):
            return int((self.data_dir / "postmaster.pid").read_text().splitlines()[0])
        return None

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        command = list(args)
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        return subprocess.run(command, check=check, capture_output=True, text=True)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            shutil.chown(path, "postgres", "postgres")

    def start(self) -> PostgresServer:
        self.directory = self.directory.resolve()
        self.directory.mkdir(parents=True, exist_ok=True)
        self._chown(self.directory)
        # The postgres user must be able to reach the directory through its parents.
        if os.geteuid() == 0:
            for parent in self.directory.resolve().parents:
                mode = parent.stat().st_mode
                if not mode & 0o001:
                    parent.chmod(mode | 0o001)
        if not (self.data_dir / "PG_VERSION").exists():
            result = self._run(
                _pg_bin("initdb"), "-D", str(self.data_dir), "-U", self.user,
                "--auth=trust", "--encoding=UTF8", "--locale=C.UTF-8", check=False,
            )
            if result.returncode != 0:
                raise ServiceError(f"initdb failed:\n{result.stderr}")
        if port_open(self.port) and not (self.data_dir / "postmaster.pid").exists():
            raise ServiceError(f"port {self.port} is taken by another server; stop it or set DATABASE_URL")
        if not port_open(self.port):
            socket_dir = self.directory / "socket"
            socket_dir.mkdir(exist_ok=True)
            self._chown(socket_dir)
            options = (
                f"-p {self.port} -c listen_addresses=127.0.0.1 -k {socket_dir} "
                "-c max_connections=300 -c fsync=on -c shared_buffers=256MB"
            )
            result = self._run(
                _pg_bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.directory / "postgres.log"),
                "-o", options, "-w", "-t", "60", "start", check=False,
            )
            if result.returncode != 0:
                log = (self.directory / "postgres.log")
                tail = log.read_text()[-2000:] if log.exists() else ""
                raise ServiceError(f"pg_ctl start failed:\n{result.stderr}\n{tail}")
        _wait_for(lambda: port_open(self.port), 30, f"postgres on port {self.port}")
        self.create_database(self.database)
        return self

    def create_database(self, name: str) -> None:
        check = self._psql("postgres", f"SELECT 1 FROM pg_database WHERE datname = '{name}'")
        if check.stdout.strip() != "1":
            self._psql("postgres", f'CREATE DATABASE "{name}"')

    def _psql(self, database: str, sql: str) -> subprocess.CompletedProcess:
        result = self._run(
            _pg_bin("psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user,
            "-d", database, "-tAc", sql, check=False,
        )
        if result.returncode != 0:
            raise ServiceError(f"psql failed: {result.stderr}")
        return result

    def stop(self, mode: str = "fast") -> None:
        if (self.data_dir / "postmaster.pid").exists():
            self._run(_pg_bin("pg_ctl"), "-D", str(self.data_dir), "-m", mode, "-w", "stop", check=False)
