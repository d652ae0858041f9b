"""The schema is built only by migrations: upgrade, downgrade and upgrade again on an empty database."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa

from models import Base

ROOT = Path(__file__).resolve().parents[2]


def alembic(url: str, *args: str) -> None:
    subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={url}", *args], cwd=ROOT, check=True,
                   capture_output=True, env=os.environ)


def test_upgrade_downgrade_upgrade_on_an_empty_database(database_url):
    admin = sa.create_engine(database_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(sa.text("DROP DATABASE IF EXISTS migrations_roundtrip"))
        connection.execute(sa.text("CREATE DATABASE migrations_roundtrip"))
    url = database_url.rsplit("/", 1)[0] + "/migrations_roundtrip"
    engine = sa.create_engine(url)
    # PostGIS (migration 0007) brings its table of coordinate systems; downgrading drops the extension.
    at_head = set(Base.metadata.tables) | {"alembic_version", "spatial_ref_sys"}
    try:
        alembic(url, "upgrade", "head")
        assert set(sa.inspect(engine).get_table_names()) == at_head
        alembic(url, "downgrade", "base")
        engine.dispose()
        assert set(sa.inspect(engine).get_table_names()) == {"alembic_version"}
        alembic(url, "upgrade", "head")
        engine.dispose()
        assert set(sa.inspect(engine).get_table_names()) == at_head
        # The models and the migrations describe the same schema.
        result = subprocess.run([sys.executable, "-m", "alembic", "-x", f"url={url}", "check"], cwd=ROOT,
                                capture_output=True, text=True, check=False)
        assert result.returncode == 0, result.stdout + result.stderr
    finally:
        engine.dispose()
        with admin.connect() as connection:
            connection.execute(sa.text("DROP DATABASE IF EXISTS migrations_roundtrip WITH (FORCE)"))
        admin.dispose()
