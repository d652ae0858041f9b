"""Alembic environment: the URL comes from the validated settings (or an explicit -x url=...)."""

from __future__ import annotations

from logging.config import fileConfig

from alembic import context
from sqlalchemy import create_engine, pool

from core.settings import get_settings
from models import Base

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)


def _database_url() -> str:
    explicit = context.get_x_argument(as_dictionary=True).get("url") or config.attributes.get("url")
    if explicit:
        return explicit
    return get_settings().database_url


# Tables that come with an extension, not from our models: PostGIS's table of coordinate systems.
EXTENSION_TABLES = frozenset({"spatial_ref_sys"})


def include_object(obj, name, type_, reflected, compare_to) -> bool:
    """Leave what an extension created out of the models-versus-database comparison."""
    return not (type_ == "table" and reflected and compare_to is None and name in EXTENSION_TABLES)


def run_migrations_offline() -> None:
    context.configure(url=_database_url(), target_metadata=Base.metadata, literal_binds=True,
                      include_object=include_object)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_database_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(connection=connection, target_metadata=Base.metadata, compare_type=True,
                          include_object=include_object)
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
