"""Alembic migrations for the durable schema, in their own version table, under a lock."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, text

from .tables import metadata

MIGRATIONS_DIR = Path(__file__).with_name("migrations")
VERSION_TABLE = "durable_alembic_version"
# pg_advisory_lock key: any fixed 64-bit number unique to this library ("durable" in ASCII).
ADVISORY_LOCK_KEY = 0x64757261626C65


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["target_metadata"] = metadata
    return cfg


def head_revision() -> str | None:
    head: str | None = ScriptDirectory.from_config(_config()).get_current_head()
    return head


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"version_table": VERSION_TABLE})
        rev: str | None = ctx.get_current_revision()
        return rev


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Bring the schema to ``revision``; concurrent callers on Postgres wait for one another."""
    cfg = _config()
    with engine.connect() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_lock(:k)"), {"k": ADVISORY_LOCK_KEY})
            conn.commit()
        try:
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)
            conn.commit()
        finally:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": ADVISORY_LOCK_KEY})
                conn.commit()
    return current_revision(engine)
