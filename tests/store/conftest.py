"""Stores for the store tests: the SQL ``Store`` migrated on both backends (``store``) or
Postgres alone (``pg_store``), and every ``DurableStore`` for the contract (``any_store``).

The contract's stores read a ``ManualClock`` and start empty: its SQL databases (a SQLite
file, and a schema of its own in the session's Postgres database) are migrated once per
session and emptied before each case, since the sweep's queries scan every row.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text

from celery_durable.clock import SYSTEM_CLOCK, Clock
from celery_durable.store import Store, normalize_url, upgrade
from celery_durable.store.interface import DurableStore
from celery_durable.store.memory import MemoryStore

# what a transaction step's body writes in the contract cases: items, and children whose
# parent is checked only at COMMIT (a commit that fails)
BODY_DDL = (
    "CREATE TABLE IF NOT EXISTS store_test_items (item_id VARCHAR(64) PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS store_test_parents (parent_id INTEGER PRIMARY KEY)",
    "CREATE TABLE IF NOT EXISTS store_test_children (parent_id INTEGER"
    " REFERENCES store_test_parents (parent_id) DEFERRABLE INITIALLY DEFERRED)",
)
TABLES = (
    "durable_step_history",
    "durable_step_errors",
    "durable_steps",
    "durable_queue_entries",
    "durable_workflows",
    "durable_executors",
    "durable_queues",
    "durable_schedules",
)


def _migrated(url: str) -> Iterator[Store]:
    store = Store(normalize_url(url), retry_timeout=5.0)
    upgrade(store.engine)
    yield store
    store.dispose()


@pytest.fixture
def store(db_url: str) -> Iterator[Store]:
    yield from _migrated(db_url)


@pytest.fixture
def pg_store(pg_url: str) -> Iterator[Store]:
    yield from _migrated(pg_url)


class ManualClock(Clock):
    """Time that moves only when a case moves it, so boundaries are tested exactly."""

    def __init__(self) -> None:
        self.ms = SYSTEM_CLOCK.now_ms()

    def now_ms(self) -> int:
        return self.ms

    def time(self) -> float:
        return self.ms / 1000

    def advance(self, ms: int) -> None:
        self.ms += ms


def _create_body_tables(engine: Engine) -> None:
    with engine.begin() as conn:
        for ddl in BODY_DDL:
            conn.execute(text(ddl))


def _prepared(url: str) -> str:
    """Migrate ``url`` once and give it the tables the transaction cases write."""
    engine = create_engine(url)
    upgrade(engine)
    _create_body_tables(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def contract_sqlite_url(tmp_path_factory: pytest.TempPathFactory) -> str:
    path: Path = tmp_path_factory.mktemp("contract") / "durable.sqlite3"
    return _prepared(normalize_url(f"sqlite:///{path}"))


@pytest.fixture(scope="session")
def contract_pg_url(pg_url: str) -> str:
    schema = f"contract_{uuid.uuid4().hex[:8]}"
    admin = create_engine(pg_url)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return _prepared(normalize_url(f"{pg_url}?options=-csearch_path%3D{schema}"))


def sql_engine_of(store: DurableStore) -> Engine:
    """Where the store's transaction steps run their body."""
    if isinstance(store, MemoryStore):
        return store.sql_engine
    assert isinstance(store, Store)
    return store.engine


@pytest.fixture(params=["memory", "sqlite", "postgres"])
def any_store(request: pytest.FixtureRequest) -> Iterator[DurableStore]:
    """Each ``DurableStore``, empty, on a fresh ``ManualClock`` (``any_store.clock``)."""
    clock = ManualClock()
    if request.param == "memory":
        memory = MemoryStore(clock=clock)
        with memory.sql_engine.connect() as conn:  # its one connection: the setting stays
            conn.exec_driver_sql("PRAGMA foreign_keys=ON")
        _create_body_tables(memory.sql_engine)
        yield memory
        return
    fixture = "contract_pg_url" if request.param == "postgres" else "contract_sqlite_url"
    store = Store(request.getfixturevalue(fixture), retry_timeout=5.0, clock=clock)
    with store.engine.begin() as conn:
        for table in (*TABLES, "store_test_items", "store_test_children"):
            conn.execute(text(f"DELETE FROM {table}"))
    yield store
    store.dispose()
