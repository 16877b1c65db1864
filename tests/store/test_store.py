"""The SQL Store on both backends: migrations, the schema, and rows as SQL sees them.

What any ``DurableStore`` must do (claims, checkpoints, transactions, chains, recovery)
is in test_contract.py, run on this store and on ``MemoryStore``.
"""

from __future__ import annotations

from sqlalchemy import inspect, text

from celery_durable.store import Store, head_revision, upgrade
from tests.store.contract import step, uid, workflow

__all__ = ["step", "uid", "workflow"]  # test_hot_path.py imports them from here


def test_migrations_are_idempotent_and_use_their_own_version_table(store: Store) -> None:
    head = head_revision()
    assert head is not None
    assert upgrade(store.engine) == head
    assert upgrade(store.engine) == head
    tables = set(inspect(store.engine).get_table_names())
    assert "durable_alembic_version" in tables
    assert "alembic_version" not in tables
    assert {"durable_workflows", "durable_steps", "durable_step_errors"} <= tables
    with store.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM durable_alembic_version")).all()
    assert [v[0] for v in versions] == [head]


def test_migrate_returns_the_head_revision(store: Store) -> None:
    assert store.migrate() == head_revision()


def test_delete_workflow_leaves_no_rows(store: Store) -> None:
    wid = workflow(store).workflow_id
    store.record_step(step(wid, 0))
    store.record_step_error(wid, 1, 0, "tests.store.flaky", '"e"')
    store.delete_workflow(wid)
    with store.engine.connect() as conn:
        for table in ("durable_steps", "durable_step_errors"):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE workflow_id = :w"), {"w": wid}
            ).scalar()
            assert count == 0, table


def test_the_migrated_schema_matches_the_tables_the_store_queries(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from celery_durable.store.tables import POSTGRES_ONLY_INDEXES, metadata

    def ours(name: str | None, kind: str, _parents: object) -> bool:
        # other tables share the test database; the version table is Alembic's own
        return kind != "table" or name in metadata.tables

    def here(_obj: object, name: str | None, kind: str, _reflected: bool, _other: object) -> bool:
        # an index tables.py creates only on Postgres (Index.ddl_if)
        return store.dialect == "postgresql" or kind != "index" or name not in POSTGRES_ONLY_INDEXES

    with store.engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"include_name": ours, "include_object": here}
        )
        diff = compare_metadata(context, metadata)
    assert diff == []


def test_no_index_covers_what_a_step_update_changes(store: Store) -> None:
    """Lease and completion updates change no indexed column (migration 0002)."""
    indexed = {
        column
        for index in inspect(store.engine).get_indexes("durable_steps")
        for column in index["column_names"]
    }
    assert indexed == {"task_id"}
