"""Alembic environment: runs on the connection handed in by :func:`hie.storage.migrate.upgrade`
(or builds one from ``HIE_DATABASE_URL`` when alembic is run by hand)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import engine_from_config, pool

from hie.storage.schema import metadata

config = context.config
target_metadata = metadata


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
        return
    from hie.config import Settings
    from hie.storage.db import normalize_url

    url = normalize_url(Settings.from_env().database_url)
    engine = engine_from_config({"sqlalchemy.url": url}, prefix="sqlalchemy.", poolclass=pool.NullPool)
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()


if context.is_offline_mode():
    raise SystemExit("offline migrations are not supported; run `hie db upgrade`")
run_migrations_online()
