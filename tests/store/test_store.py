"""The Store on both backends: migrations, workflow rows, claims, checkpoints, transactions."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from sqlalchemy import Connection, inspect, text
from sqlalchemy.orm import Session

from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.store import Store, head_revision, upgrade
from celery_durable.types import (
    ExecutorRecord,
    ResumeOutcome,
    StepRecord,
    WorkflowRecord,
    WorkflowStatusString,
)

S = WorkflowStatusString
ITEMS_DDL = "CREATE TABLE IF NOT EXISTS store_test_items (item_id VARCHAR(64) PRIMARY KEY)"


now_ms = SYSTEM_CLOCK.now_ms


def uid(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def workflow(store: Store, status: str = S.ENQUEUED, **fields: Any) -> WorkflowRecord:
    """Insert a fresh workflow row and return it."""
    now = now_ms()
    values: dict[str, Any] = {
        "workflow_id": uid(),
        "name": "tests.store.wf",
        "status": status,
        "inputs": '{"args": [], "kwargs": {}}',
        "created_at_ms": now,
        "updated_at_ms": now,
        **fields,
    }
    record = WorkflowRecord(**values)
    assert store.insert_workflow(record)
    return record


def step(
    workflow_id: str, step_id: int, name: str = "tests.store.step", **fields: Any
) -> StepRecord:
    values: dict[str, Any] = {
        "status": "SUCCESS",
        "output": '"out"',
        "completed_at_ms": now_ms(),
    }
    return StepRecord(workflow_id, step_id, name, **{**values, **fields})


def executor(store: Store, heartbeat_ms: int | None = None) -> str:
    """Register a RUNNING executor whose last heartbeat is ``heartbeat_ms`` (default: now)."""
    executor_id = uid("ex")
    beat = now_ms() if heartbeat_ms is None else heartbeat_ms
    store.register_executor(ExecutorRecord(executor_id, "host", 1, beat, beat, "RUNNING"))
    return executor_id


def fresh_cutoff() -> int:
    """A stale_before_ms under which an executor that beat just now counts as live."""
    return now_ms() - 60_000


def resumed(store: Store, workflow_id: str) -> ResumeOutcome:
    found = store.resume_workflow(workflow_id, fresh_cutoff())
    assert found is not None
    return found[1]


def status_of(store: Store, workflow_id: str) -> str:
    record = store.get_workflow(workflow_id)
    assert record is not None
    return record.status


def items(store: Store, *item_ids: str) -> int:
    with store.engine.connect() as conn:
        conn.execute(text(ITEMS_DDL))
        conn.commit()
        rows = conn.execute(text("SELECT item_id FROM store_test_items")).scalars().all()
    return len(set(rows) & set(item_ids))


# migrations -----------------------------------------------------------------
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


# workflows ------------------------------------------------------------------
def test_insert_workflow_creates_once(store: Store) -> None:
    record = workflow(store)
    assert store.insert_workflow(record) is False
    assert store.insert_workflow(WorkflowRecord(**{**record.__dict__, "name": "other"})) is False
    stored = store.get_workflow(record.workflow_id)
    assert stored == record
    assert store.get_workflow(uid("missing")) is None


def test_enqueued_workflow_is_claimed_once_while_owner_is_live(store: Store) -> None:
    record = workflow(store)
    first, second = executor(store), executor(store)
    claimed = store.claim_workflow(record.workflow_id, record.name, first, fresh_cutoff())
    assert claimed is not None
    assert (claimed.status, claimed.executor_id, claimed.run_count) == (S.PENDING, first, 1)
    assert claimed.started_at_ms is not None
    assert store.claim_workflow(record.workflow_id, record.name, second, fresh_cutoff()) is None
    assert store.get_workflow(record.workflow_id).executor_id == first  # type: ignore[union-attr]


def test_workflow_becomes_claimable_when_owner_heartbeat_is_stale(store: Store) -> None:
    record = workflow(store)
    first, second = executor(store), executor(store)
    assert store.claim_workflow(record.workflow_id, record.name, first, fresh_cutoff()) is not None
    stale_cutoff = now_ms() + 60_000  # every heartbeat so far is older than this
    claimed = store.claim_workflow(record.workflow_id, record.name, second, stale_cutoff)
    assert claimed is not None
    assert (claimed.executor_id, claimed.run_count) == (second, 2)


def test_workflow_becomes_claimable_when_owner_stopped(store: Store) -> None:
    record = workflow(store)
    first, second = executor(store), executor(store)
    assert store.claim_workflow(record.workflow_id, record.name, first, fresh_cutoff()) is not None
    store.stop_executor(first)
    assert store.get_executor(first).status == "STOPPED"  # type: ignore[union-attr]
    claimed = store.claim_workflow(record.workflow_id, record.name, second, fresh_cutoff())
    assert claimed is not None and claimed.executor_id == second


@pytest.mark.parametrize("status", [S.SUCCESS, S.ERROR, S.CANCELLED])
def test_ended_workflow_is_never_claimed(store: Store, status: str) -> None:
    record = workflow(store, status=status)
    assert (
        store.claim_workflow(record.workflow_id, record.name, executor(store), now_ms() + 60_000)
        is None
    )


def test_finish_workflow_only_by_its_owner(store: Store) -> None:
    record = workflow(store)
    owner, other = executor(store), executor(store)
    store.claim_workflow(record.workflow_id, record.name, owner, fresh_cutoff())
    assert not store.finish_workflow(record.workflow_id, other, S.SUCCESS, output='"x"')
    assert status_of(store, record.workflow_id) == S.PENDING
    assert store.finish_workflow(record.workflow_id, owner, S.SUCCESS, output='"done"')
    done = store.get_workflow(record.workflow_id)
    assert done is not None
    assert (done.status, done.output, done.executor_id) == (S.SUCCESS, '"done"', None)
    assert done.completed_at_ms is not None
    assert not store.finish_workflow(record.workflow_id, owner, S.ERROR, error="{}")
    assert status_of(store, record.workflow_id) == S.SUCCESS


def test_resume_counts_recovery_attempts_and_reset_starts_anew(store: Store) -> None:
    record = workflow(store)
    gone = executor(store, heartbeat_ms=now_ms() - 120_000)
    store.claim_workflow(record.workflow_id, record.name, gone, fresh_cutoff() - 120_000)
    assert resumed(store, record.workflow_id) == ResumeOutcome.RESUMED  # its owner is gone
    assert resumed(store, record.workflow_id) == ResumeOutcome.RESUMED  # ENQUEUED: sent again
    again = store.get_workflow(record.workflow_id)
    assert again is not None
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 2)

    assert store.set_status(record.workflow_id, S.CANCELLED, only_from=[S.ENQUEUED], error="{}")
    assert resumed(store, record.workflow_id) == ResumeOutcome.RESUMED
    reset = store.get_workflow(record.workflow_id)
    assert reset is not None
    assert (reset.status, reset.recovery_attempts, reset.completed_at_ms) == (S.ENQUEUED, 1, None)
    assert reset.error is None


def test_resume_leaves_a_workflow_its_live_owner_runs_alone(store: Store) -> None:
    record = workflow(store)
    owner = executor(store)
    store.claim_workflow(record.workflow_id, record.name, owner, fresh_cutoff())
    assert resumed(store, record.workflow_id) == ResumeOutcome.RUNNING
    assert store.set_status(record.workflow_id, S.CANCELLED, keep_owner=True)
    assert resumed(store, record.workflow_id) == ResumeOutcome.RUNNING  # still in a step body
    stored = store.get_workflow(record.workflow_id)
    assert stored is not None
    assert (stored.status, stored.executor_id, stored.recovery_attempts) == (
        S.CANCELLED,
        owner,
        0,
    )
    assert store.release_workflow(record.workflow_id, owner, stored.run_count)
    assert resumed(store, record.workflow_id) == ResumeOutcome.RESUMED


def test_resume_leaves_finished_workflows_alone(store: Store) -> None:
    record = workflow(store, status=S.SUCCESS)
    assert resumed(store, record.workflow_id) == ResumeOutcome.FINISHED
    assert status_of(store, record.workflow_id) == S.SUCCESS
    assert store.resume_workflow(uid("missing"), fresh_cutoff()) is None


def test_a_released_run_is_enqueued_again_only_by_its_own_run(store: Store) -> None:
    record = workflow(store)
    owner = executor(store)
    claimed = store.claim_workflow(record.workflow_id, record.name, owner, fresh_cutoff())
    assert claimed is not None
    assert not store.release_workflow(record.workflow_id, owner, claimed.run_count - 1)
    assert store.release_workflow(record.workflow_id, owner, claimed.run_count)
    released = store.get_workflow(record.workflow_id)
    assert released is not None
    assert (released.status, released.executor_id) == (S.ENQUEUED, None)


def test_a_message_claims_only_the_workflow_it_names(store: Store) -> None:
    record = workflow(store)
    assert store.claim_workflow(record.workflow_id, "other.task", executor(store), 0) is None
    assert status_of(store, record.workflow_id) == S.ENQUEUED


def test_list_workflows_filters_and_orders_newest_first(store: Store) -> None:
    name = uid("tests.store.listed")
    base = now_ms()
    made = [
        workflow(store, status=status, name=name, created_at_ms=base + i)
        for i, status in enumerate([S.SUCCESS, S.ENQUEUED, S.SUCCESS, S.ERROR])
    ]
    workflow(store, status=S.SUCCESS, name=uid("tests.store.other"), created_at_ms=base + 10)
    ids = [r.workflow_id for r in made]
    listed = store.list_workflows(name=name)
    assert [r.workflow_id for r in listed] == ids[::-1]
    assert [r.workflow_id for r in store.list_workflows(name=name, status=S.SUCCESS)] == [
        ids[2],
        ids[0],
    ]
    both = store.list_workflows(name=name, status=[S.ENQUEUED, S.ERROR])
    assert [r.workflow_id for r in both] == [ids[3], ids[1]]
    assert [r.workflow_id for r in store.list_workflows(name=name, limit=2)] == [ids[3], ids[2]]
    oldest = store.list_workflows(name=name, newest_first=False, limit=1)
    assert [r.workflow_id for r in oldest] == [ids[0]]


# steps ----------------------------------------------------------------------
def test_record_step_first_wins(store: Store) -> None:
    """Checkpoints land only while the workflow runs (PENDING); the first one wins."""
    record = workflow(store, S.PENDING)
    assert store.record_step(step(record.workflow_id, 0, output='"first"'))
    assert not store.record_step(step(record.workflow_id, 0, output='"second"'))
    assert store.record_step(step(record.workflow_id, 1))
    loaded = store.load_steps(record.workflow_id)
    assert sorted(loaded) == [0, 1]
    assert loaded[0].output == '"first"'


def test_attempt_errors_load_in_order_and_unfinished_step_is_retrying(store: Store) -> None:
    wid = workflow(store, S.PENDING).workflow_id
    for attempt in (2, 0, 1):  # recorded out of order on purpose
        store.record_step_error(wid, 1, attempt, "tests.store.flaky", f'"err {attempt}"')
    store.record_step_error(wid, 1, 0, "tests.store.flaky", '"duplicate ignored"')
    store.record_step_error(wid, 0, 0, "tests.store.done", '"err done"')
    store.record_step(step(wid, 0, "tests.store.done", attempts=2))
    loaded = store.load_steps(wid)
    assert loaded[0].status == "SUCCESS"
    assert loaded[0].attempt_errors == ('"err done"',)
    retrying = loaded[1]
    assert (retrying.status, retrying.name, retrying.attempts) == (
        "RETRYING",
        "tests.store.flaky",
        3,
    )
    assert retrying.attempt_errors == ('"err 0"', '"err 1"', '"err 2"')
    assert retrying.output is None


def test_delete_workflow_removes_steps_and_errors(store: Store) -> None:
    wid = workflow(store).workflow_id
    store.record_step(step(wid, 0))
    store.record_step_error(wid, 1, 0, "tests.store.flaky", '"e"')
    store.delete_workflow(wid)
    assert store.get_workflow(wid) is None
    assert store.load_steps(wid) == {}
    with store.engine.connect() as conn:
        for table in ("durable_steps", "durable_step_errors"):
            count = conn.execute(
                text(f"SELECT count(*) FROM {table} WHERE workflow_id = :w"), {"w": wid}
            ).scalar()
            assert count == 0, table


# transaction steps ----------------------------------------------------------
def run_tx(store: Store, wid: str, item_id: str, fail: bool = False) -> tuple[bool, Any]:
    """Insert ``item_id`` and checkpoint step 0 of ``wid`` in one transaction."""
    items(store)  # make sure the table exists, outside the transaction

    def body(session: Session) -> str:
        session.execute(text("INSERT INTO store_test_items VALUES (:i)"), {"i": item_id})
        if fail:
            raise RuntimeError("body failed")
        return item_id

    def finish(conn: Connection, result: str) -> bool:
        return store.insert_checkpoint(conn, step(wid, 0, output=f'"{result}"'))

    return store.run_transaction_step(body, finish)


def test_transaction_commits_body_and_checkpoint_together(store: Store) -> None:
    wid, item = workflow(store, S.PENDING).workflow_id, uid("item")
    assert run_tx(store, wid, item) == (True, item)
    assert items(store, item) == 1
    assert store.load_steps(wid)[0].output == f'"{item}"'


def test_transaction_with_duplicate_checkpoint_rolls_back_its_body(store: Store) -> None:
    wid, first, second = workflow(store, S.PENDING).workflow_id, uid("item"), uid("item")
    run_tx(store, wid, first)
    assert run_tx(store, wid, second) == (False, None)
    assert items(store, first, second) == 1
    assert items(store, second) == 0
    assert store.load_steps(wid)[0].output == f'"{first}"'


def test_transaction_whose_body_raises_leaves_nothing(store: Store) -> None:
    wid, item = workflow(store).workflow_id, uid("item")
    with pytest.raises(RuntimeError, match="body failed"):
        run_tx(store, wid, item, fail=True)
    assert items(store, item) == 0
    assert store.load_steps(wid) == {}


def test_no_checkpoint_once_the_workflow_is_not_running(store: Store) -> None:
    """A cancelled (or not yet claimed) workflow records no further step."""
    wid = workflow(store, S.PENDING).workflow_id
    assert store.set_status(wid, S.CANCELLED)
    assert not store.record_step(step(wid, 0))
    assert store.load_steps(wid) == {}


def test_the_migrated_schema_matches_the_tables_the_store_queries(store: Store) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from celery_durable.store.tables import metadata

    def ours(name: str | None, kind: str, _parents: object) -> bool:
        # other tables share the test database; the version table is Alembic's own
        return kind != "table" or name in metadata.tables

    with store.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"include_name": ours})
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
