"""Schema migrations with Alembic, run programmatically (``hie db upgrade`` and first start).

One set of migrations serves SQLite and PostgreSQL (``render_as_batch`` lets ALTERs
work on SQLite). Tests compare the migrated schema with the table definitions so a
forgotten migration fails CI.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine, revision: str = "heads") -> None:
    """Upgrade to every head: each capability ships its own revision branch off the
    initial schema (Alembic branches), so independent features migrate independently."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def current(engine: Engine) -> str:
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        heads = MigrationContext.configure(conn).get_current_heads()
    return ", ".join(sorted(heads)) or "(empty)"
