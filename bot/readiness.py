"""Readiness of the database for /readyz: reachable, and the schema at Alembic's head."""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path

import psycopg2
from alembic.config import Config
from alembic.script import ScriptDirectory

ROOT = Path(__file__).resolve().parent.parent


@functools.cache
def head_revisions() -> frozenset[str]:
    config = Config(str(ROOT / "alembic.ini"))
    return frozenset(ScriptDirectory.from_config(config).get_heads())


def database_ready(database_url: str) -> tuple[bool, str]:
    dsn = database_url.replace("postgresql+psycopg2://", "postgresql://", 1)
    try:
        with contextlib.closing(psycopg2.connect(dsn, connect_timeout=2)) as connection, connection.cursor() as cursor:
            cursor.execute("SELECT version_num FROM alembic_version")
            current = frozenset(row[0] for row in cursor.fetchall())
    except psycopg2.Error as error:
        return False, f"database: {str(error).strip().splitlines()[0] if str(error).strip() else 'unreachable'}"
    if current != head_revisions():
        return False, f"schema at {sorted(current)}, expected {sorted(head_revisions())}: run migrations"
    return True, "ok"
