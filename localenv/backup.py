"""`make backup` / `make restore`: pg_dump and pg_restore of the product's database.

The database is DATABASE_URL when set, else the private cluster `make run` keeps in .run/postgres
(started for the duration of the command when `make run` is not running, then stopped again).

    python -m localenv.backup dump [--dir backups]      -> backups/surplus-<UTC timestamp>.dump
    python -m localenv.backup restore PATH              -> PATH restored over the database

Dumps use the custom format (compressed, restorable table by table). A restore drops and recreates
every object in the dump inside one transaction (`--single-transaction --exit-on-error`): it either
applies completely or leaves the database as it was. Stop the workers (`make run`) before restoring.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy.engine import URL, make_url

from localenv.services import PostgresServer, ServiceError, port_open

ROOT = Path(__file__).resolve().parent.parent
BACKUP_DIR = ROOT / "backups"
RUN_CLUSTER_PORT = 15432  # as localenv/run.py starts it
DUMP_MAGIC = b"PGDMP"  # first bytes of a pg_dump custom-format archive


class BackupError(RuntimeError):
    pass


def pg_tool(name: str) -> str:
    """The newest pg_dump/pg_restore installed (a newer client can dump an older server, not the reverse)."""
    for candidate in sorted(Path("/usr/lib/postgresql").glob(f"*/bin/{name}"),
                            key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0, reverse=True):
        return str(candidate)
    found = shutil.which(name)
    if found:
        return found
    raise BackupError(f"{name} not found: install the PostgreSQL client (apt-get install -y postgresql-client)")


def libpq_target(database_url: str) -> tuple[str, dict[str, str], str]:
    """(libpq URL without the password, extra environment carrying the password, URL safe to print)
    for a SQLAlchemy URL such as postgresql+psycopg2://user:secret@host:5432/db."""
    url: URL = make_url(database_url)
    if url.get_backend_name() not in ("postgresql", "postgres"):
        raise BackupError(f"not a PostgreSQL URL: {url.render_as_string(hide_password=True)}")
    env = {"PGPASSWORD": url.password} if url.password else {}
    bare = URL.create("postgresql", username=url.username, host=url.host, port=url.port,
                      database=url.database, query=url.query)
    libpq = bare.render_as_string(hide_password=False)
    shown = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return libpq, env, shown


@contextmanager
def target_database():
    """The URL to work on: DATABASE_URL, or make run's private cluster (started here if it is not running)."""
    configured = os.environ.get("DATABASE_URL", "").strip()
    if configured:
        yield configured
        return
    server = PostgresServer(ROOT / ".run" / "postgres", RUN_CLUSTER_PORT)
    already_running = port_open(RUN_CLUSTER_PORT)
    if not already_running and not (server.data_dir / "PG_VERSION").exists():
        raise BackupError("DATABASE_URL is unset and there is no `make run` database in .run/postgres "
                          "(run `make run` once, or set DATABASE_URL)")
    try:
        server.start()
    except ServiceError as error:
        raise BackupError(str(error)) from error
    try:
        yield server.url
    finally:
        if not already_running:
            server.stop()


def _run(command: list[str], extra_env: dict[str, str]) -> None:
    env = {**os.environ, "PGCONNECT_TIMEOUT": os.environ.get("PGCONNECT_TIMEOUT", "10"), **extra_env}
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)  # exit code read below
    if result.returncode != 0:
        raise BackupError(f"{Path(command[0]).name} failed (exit {result.returncode}):\n{result.stderr.strip()}")


def backup(database_url: str, directory: Path = BACKUP_DIR, now: datetime | None = None) -> Path:
    """Dump the database to directory/surplus-<UTC timestamp>.dump; returns the file's path.
    The dump is written under a temporary name and renamed when complete, so a file with the
    final name is always a whole dump."""
    libpq, env, _ = libpq_target(database_url)
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)  # the dump holds personal data
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"surplus-{stamp}.dump"
    counter = 1
    while path.exists():
        path = directory / f"surplus-{stamp}-{counter}.dump"
        counter += 1
    partial = path.with_name(path.name + ".partial")
    try:
        _run([pg_tool("pg_dump"), "--format=custom", "--no-password", f"--file={partial}", f"--dbname={libpq}"], env)
        partial.chmod(0o600)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def check_backup_file(path: str | os.PathLike | None) -> Path:
    if not path or not str(path).strip():
        raise BackupError("say which backup to restore: make restore BACKUP=backups/surplus-<timestamp>.dump")
    file = Path(path)
    if not file.is_file():
        raise BackupError(f"backup file not found: {file}")
    with file.open("rb") as handle:
        if handle.read(len(DUMP_MAGIC)) != DUMP_MAGIC:
            raise BackupError(f"{file} is not a pg_dump custom-format archive (made by `make backup`)")
    return file


def restore(database_url: str, path: str | os.PathLike) -> None:
    """Restore a `backup()` file over the database: the objects in the dump are dropped and recreated
    with their rows, all in one transaction."""
    file = check_backup_file(path)
    libpq, env, _ = libpq_target(database_url)
    _run([pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--single-transaction",
          "--exit-on-error", "--no-password", f"--dbname={libpq}", str(file)], env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localenv.backup", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    dump = commands.add_parser("dump", help="write backups/surplus-<UTC timestamp>.dump")
    dump.add_argument("--dir", type=Path, default=BACKUP_DIR, help="where to write the dump (default: backups/)")
    load = commands.add_parser("restore", help="restore a dump over the database")
    load.add_argument("path", nargs="?", default="", help="the .dump file")
    args = parser.parse_args(argv)
    try:
        if args.command == "dump":
            with target_database() as url:
                path = backup(url, args.dir)
                print(f"Backed up {libpq_target(url)[2]} to {path}")
        else:
            file = check_backup_file(args.path)  # refuse before starting anything
            with target_database() as url:
                restore(url, file)
                print(f"Restored {file} into {libpq_target(url)[2]}")
    except BackupError as error:
        print(f"{args.command}: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
