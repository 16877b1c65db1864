"""The store's hot path: registered statements, compiled once, on driver connections it keeps."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from sqlalchemy import Float, bindparam, select, text, update

from celery_durable.errors import DatabaseUnavailableError
from celery_durable.store import Store, normalize_url, upgrade
from celery_durable.store.hot import compile_statement
from celery_durable.store.tables import steps, workflows
from celery_durable.types import WorkflowStatusString as S
from tests.store.test_store import step, uid, workflow


def backend_pid(store: Store, async_commit: bool = False) -> int:
    """The server process of the connection the next statement would use."""
    with store.hot.checkout(async_commit) as fairy:
        pid: int = fairy.dbapi_connection.info.backend_pid
    return pid


def test_expanding_in_lists_are_refused(store: Store) -> None:
    stmt = select(steps.c.step_id).where(steps.c.status.in_(["PENDING", "RUNNING"]))
    with pytest.raises(ValueError, match="expanding IN"):
        compile_statement(stmt, store.engine.dialect)


def test_checkpoints_go_through_the_hot_path_on_both_backends(store: Store) -> None:
    sent: list[str] = []
    wf = workflow(store, status=S.PENDING)
    store.hot.on_statement = sent.append
    assert store.record_step(step(wf.workflow_id, 0))
    assert not store.record_step(step(wf.workflow_id, 0))  # the first checkpoint wins
    assert len(sent) == 2 and sent[0].lstrip().upper().startswith("INSERT INTO DURABLE_STEPS")
    assert store.load_steps(wf.workflow_id)[0].output == '"out"'


def test_connections_are_reused_and_opened_only_for_concurrent_statements(
    pg_store: Store,
) -> None:
    wf = workflow(pg_store, status=S.PENDING)
    assert pg_store.record_step(step(wf.workflow_id, 0))
    first = backend_pid(pg_store)
    held = threading.Event()
    release = threading.Event()
    seen: list[int] = []

    def hold_a_transaction() -> None:  # keeps one connection busy in another thread
        stmt = (
            workflows.update()
            .where(workflows.c.workflow_id == wf.workflow_id)
            .values(updated_at_ms=1)
        )
        pg_store.hot.register(stmt)
        with pg_store.hot.transaction() as tx:
            tx.execute(stmt, {})
            seen.append(backend_pid(pg_store))  # the other one is taken: a second opens
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold_a_transaction)
    thread.start()
    assert held.wait(10)
    assert pg_store.record_step(step(wf.workflow_id, 1))  # runs beside the transaction
    release.set()
    thread.join()
    assert seen and seen[0] != first
    assert pg_store.hot.idle_count() == 2
    for sid in range(2, 6):  # one at a time: the most recently used connection, again
        assert pg_store.record_step(step(wf.workflow_id, sid))
    assert pg_store.hot.idle_count() == 2


def test_idle_connections_are_capped(db_url: str) -> None:
    store = Store(normalize_url(db_url), retry_timeout=5.0, pool_size=2)
    upgrade(store.engine)
    with store.hot.checkout(), store.hot.checkout(), store.hot.checkout():
        pass  # three at once
    assert store.hot.idle_count() == 2  # the third was closed when given back
    store.dispose()
    assert store.hot.idle_count() == 0


def test_a_killed_connection_is_replaced_and_the_write_lands(pg_store: Store) -> None:
    wf = workflow(pg_store, status=S.PENDING)
    assert pg_store.record_step(step(wf.workflow_id, 0))
    killed = backend_pid(pg_store)
    with pg_store.engine.connect() as conn:
        conn.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": killed})
    assert pg_store.record_step(step(wf.workflow_id, 1))  # retried on a new connection
    assert backend_pid(pg_store) != killed
    assert sorted(pg_store.load_steps(wf.workflow_id)) == [0, 1]


def test_leases_commit_asynchronously_and_checkpoints_do_not(pg_store: Store) -> None:
    def setting(async_commit: bool) -> str:
        with pg_store.hot.checkout(async_commit) as fairy:
            cursor = fairy.dbapi_connection.cursor()
            cursor.execute("SHOW synchronous_commit")
            value: str = cursor.fetchone()[0]
        return value

    assert setting(async_commit=True) == "off"
    assert setting(async_commit=False) == "on"
    assert backend_pid(pg_store, async_commit=True) != backend_pid(pg_store)


def test_a_failed_transaction_rolls_back_and_the_connection_stays_usable(store: Store) -> None:
    wf = workflow(store, status=S.PENDING)
    stmt = (
        workflows.update().where(workflows.c.workflow_id == wf.workflow_id).values(status=S.SUCCESS)
    )
    store.hot.register(stmt)
    with pytest.raises(RuntimeError), store.hot.transaction() as tx:
        assert tx.execute(stmt, {}).rowcount == 1
        raise RuntimeError("boom")
    got = store.get_workflow(wf.workflow_id)
    assert got is not None and got.status == S.PENDING
    assert store.record_step(step(wf.workflow_id, 0))  # not left inside a transaction


def test_a_forked_child_opens_its_own_connection_and_leaves_the_parents(
    pg_store: Store,
) -> None:
    wf = workflow(pg_store, status=S.PENDING)
    assert pg_store.record_step(step(wf.workflow_id, 0))
    parent_pid = backend_pid(pg_store)
    child = os.fork()
    if child == 0:  # the child: record a step, exit without closing anything shared
        code = 0
        try:
            code = 0 if pg_store.record_step(step(wf.workflow_id, 1)) else 1
            code = code or (2 if backend_pid(pg_store) == parent_pid else 0)
            pg_store.dispose()
        except BaseException:
            code = 3
        os._exit(code)
    _, status = os.waitpid(child, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert pg_store.record_step(step(wf.workflow_id, 2))
    assert backend_pid(pg_store) == parent_pid  # the child did not end the parent's session
    assert sorted(pg_store.load_steps(wf.workflow_id)) == [0, 1, 2]


def test_database_down_raises_a_clear_error() -> None:
    store = Store(normalize_url("postgresql://postgres@127.0.0.1:1/nowhere"), retry_timeout=0.5)
    with pytest.raises(DatabaseUnavailableError, match="record_step"):
        store.record_step(step(uid(), 0))


def test_every_hot_statement_compiles_up_front_on_both_backends(store: Store) -> None:
    store.prepare()  # what a worker does before forking its pool
    compiled_before = dict(store.hot._registered)
    assert len(compiled_before) == 13  # 10, and a canvas member's lock, count, outputs
    assert all(compiled is not None for _, compiled in compiled_before.values())
    wf = workflow(store, status=S.PENDING)
    assert store.record_step(step(wf.workflow_id, 0))
    assert store.hot._registered == compiled_before  # nothing compiled on use


class _Interrupts:
    """A parameter whose adaptation raises mid-statement (sqlite3 calls __conform__)."""

    def __conform__(self, _protocol: object) -> object:
        raise KeyboardInterrupt


def test_a_statement_interrupted_midway_gives_up_its_connection(tmp_path: Path) -> None:
    store = Store(normalize_url(f"sqlite:///{tmp_path / 'hot.sqlite3'}"), retry_timeout=1.0)
    upgrade(store.engine)
    wf = workflow(store, status=S.PENDING)
    with store.hot.checkout() as before:
        pass
    with pytest.raises(KeyboardInterrupt):
        store.record_step(step(wf.workflow_id, 0, output=_Interrupts()))  # type: ignore[arg-type]
    assert store.hot.idle_count() == 0  # its state was unknown: closed, not kept
    with store.hot.checkout() as after:
        assert after is not before
    assert store.record_step(step(wf.workflow_id, 0))
    store.dispose()


def test_throwaway_statements_never_run_another_statements_sql(store: Store) -> None:
    """Compiled SQL is found by the statement object itself, held by the hot path: a
    statement built and dropped in a loop is refused (unregistered) or runs its own SQL,
    never the SQL of another statement that happened to have the same ``id``."""
    wf = workflow(store)
    refused = 0
    for i in range(200):
        stmt = (
            update(workflows)
            .where(workflows.c.workflow_id == bindparam("wid"))
            .values(name=f"renamed-{i}")
        )
        try:
            store.hot.execute(stmt, {"wid": wf.workflow_id})
        except ValueError as exc:
            assert "not registered with the hot path" in str(exc)
            refused += 1
        if i % 2:  # registered ones run, each with its own SQL
            store.hot.register(stmt)
            assert store.hot.execute(stmt, {"wid": wf.workflow_id}).rowcount == 1
            renamed = store.get_workflow(wf.workflow_id)
            assert renamed is not None and renamed.name == f"renamed-{i}"
    assert refused == 200


def test_a_statement_whose_parameters_need_converting_is_refused(store: Store) -> None:
    stmt = update(workflows).values(updated_at_ms=bindparam("at", type_=Float))
    with pytest.raises(ValueError, match="only strings, integers and None"):
        store.hot.register(stmt)
