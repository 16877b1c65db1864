"""Alembic environment for the durable schema; run through celery_durable.store.migrate."""

from __future__ import annotations

from alembic import context

VERSION_TABLE = "durable_alembic_version"

# the store passes its connection and metadata in (see store/migrate.py)
connection = context.config.attributes.get("connection")
metadata = context.config.attributes.get("target_metadata")
if connection is None:  # pragma: no cover - only when run by the alembic CLI
    from sqlalchemy import create_engine

    engine = create_engine(context.config.get_main_option("sqlalchemy.url") or "")
    with engine.connect() as conn:
        context.configure(connection=conn, target_metadata=metadata, version_table=VERSION_TABLE)
        with context.begin_transaction():
            context.run_migrations()
else:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        version_table=VERSION_TABLE,
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()
