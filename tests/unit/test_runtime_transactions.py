"""@durable.transaction steps called in-process: atomic with their checkpoint, retried."""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from celery_durable import DatabaseUnavailableError, Durable
from celery_durable.store.memory import MemoryStore
from tests.unit.helpers import (
    Counter,
    Crash,
    Declined,
    call_as,
    crash_then_reenqueue,
    run_in_threads,
    transaction,
    uid,
    workflow,
)

ITEMS_DDL = (
    "CREATE TABLE IF NOT EXISTS rt_items (item_id VARCHAR(64) PRIMARY KEY, "
    "workflow_id VARCHAR(255) NOT NULL)"
)
COUNTERS_DDL = "CREATE TABLE IF NOT EXISTS rt_counters (counter_id VARCHAR(64) PRIMARY KEY, n INT)"


def rows(durable: Durable, sql: str, **params: Any) -> list[Any]:
    """Run ``sql`` in its own transaction (creating the user tables first); return its rows."""
    store: Any = durable.store  # a SQL store's engine, or where a MemoryStore runs them
    engine = store.sql_engine if isinstance(store, MemoryStore) else store.engine
    with engine.begin() as conn:
        conn.execute(text(ITEMS_DDL))
        conn.execute(text(COUNTERS_DDL))
        result = conn.execute(text(sql), params)
        return list(result.all()) if result.returns_rows else []


def insert_item(durable: Durable, item_id: str) -> None:
    durable.sql_session.execute(
        text("INSERT INTO rt_items VALUES (:i, :w)"), {"i": item_id, "w": durable.workflow_id}
    )


def test_transaction_that_raises_leaves_no_rows(durable: Durable) -> None:
    item = uid("item")
    rows(durable, "SELECT 1")

    def add() -> None:
        insert_item(durable, item)
        raise Declined("rolled back")

    wid = uid("id")
    with pytest.raises(Declined, match="rolled back"):
        call_as(wid, workflow(durable, transaction(durable, add)))
    assert rows(durable, "SELECT * FROM rt_items WHERE item_id = :i", i=item) == []
    [info] = durable.list_workflow_steps(wid)
    assert info.status == "ERROR" and isinstance(info.error, Declined)


def test_replayed_transaction_does_not_insert_twice(durable: Durable) -> None:
    item, calls, crashes = uid("item"), Counter(), [Crash()]
    rows(durable, "SELECT 1")

    def add() -> str:
        calls()
        insert_item(durable, item)
        return item

    add_tx = transaction(durable, add)

    def run() -> str:
        added = add_tx()
        if crashes:
            raise crashes.pop()
        return str(added)

    wf, wid = workflow(durable, run), uid("id")
    crash_then_reenqueue(durable, wid, wf)
    assert call_as(wid, wf) == item
    assert rows(durable, "SELECT workflow_id FROM rt_items WHERE item_id = :i", i=item) == [(wid,)]
    assert calls.calls == 1


def test_serialization_failure_is_retried_and_applied_once(
    make_durable: Callable[[str], Durable], pg_url: str
) -> None:
    durable = make_durable(pg_url)
    counter = uid("ctr")
    rows(durable, "INSERT INTO rt_counters VALUES (:c, 0)", c=counter)
    barrier, attempts = threading.Barrier(2, timeout=10), []

    def bump() -> int:
        session = durable.sql_session
        n = session.execute(text("SELECT n FROM rt_counters WHERE counter_id = :c"), {"c": counter})
        value = int(n.scalar_one())
        first_attempt = threading.current_thread().name not in attempts
        attempts.append(threading.current_thread().name)
        if first_attempt:
            barrier.wait()  # both have read before either writes
        session.execute(
            text("UPDATE rt_counters SET n = :n WHERE counter_id = :c"),
            {"n": value + 1, "c": counter},
        )
        return value + 1

    wf = workflow(durable, transaction(durable, bump, isolation_level="SERIALIZABLE"))
    wids = [uid("id"), uid("id")]
    results = run_in_threads([functools.partial(call_as, w, wf) for w in wids])
    assert sorted(results) == [1, 2]
    assert rows(durable, "SELECT n FROM rt_counters WHERE counter_id = :c", c=counter) == [(2,)]
    assert len(attempts) == 3  # one of the two was retried once
    for wid, result in zip(wids, results, strict=True):
        [info] = durable.list_workflow_steps(wid)
        assert (info.status, info.output) == ("SUCCESS", result)


def test_a_sql_error_in_the_users_code_is_raised_at_once_not_retried(durable: Durable) -> None:
    """A syntax error is the step's own error (never 'database unavailable'), on both
    backends: the body runs once (its one attempt) and the database's error is raised."""
    calls = Counter()

    def broken() -> None:
        calls()
        durable.sql_session.execute(text("selct abc from c"))

    wid = uid("id")
    with pytest.raises(DBAPIError) as info:
        call_as(wid, workflow(durable, transaction(durable, broken)))
    assert not isinstance(info.value, DatabaseUnavailableError)
    assert "selct" in str(info.value)
    assert calls.calls == 1
    [step_info] = durable.list_workflow_steps(wid)
    assert (step_info.status, step_info.attempts) == ("ERROR", 1)
    assert "selct" in str(step_info.error)
