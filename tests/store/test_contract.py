"""The ``DurableStore`` contract: every case runs on ``MemoryStore``, SQLite and Postgres.

Each store starts empty and reads a ``ManualClock`` (tests/store/conftest.py), so times
and boundaries (a wake-up 50 ms ahead, a deadline reached, a heartbeat just stale) are
exact. The helpers here are shared with test_store.py and test_hot_path.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from celery_durable.clock import SYSTEM_CLOCK
from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    ExecutorRecord,
    RecoveryAction,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from tests.store.conftest import ManualClock, sql_engine_of

S = WorkflowState
RECOVERED, DEAD_LETTERED = RecoveryAction.RECOVERED, RecoveryAction.DEAD_LETTERED
MINUTE = 60_000


def uid(prefix: str = "wf") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def workflow(store: DurableStore, status: str = S.ENQUEUED, **fields: Any) -> WorkflowRecord:
    """Insert a fresh workflow row (created and updated now) and return it."""
    now = store.clock.now_ms()
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
        "completed_at_ms": SYSTEM_CLOCK.now_ms(),
    }
    return StepRecord(workflow_id, step_id, name, **{**values, **fields})


def executor(store: DurableStore, heartbeat_ms: int | None = None) -> str:
    """Register a RUNNING executor whose last heartbeat is ``heartbeat_ms`` (default: now)."""
    executor_id = uid("ex")
    beat = store.clock.now_ms() if heartbeat_ms is None else heartbeat_ms
    store.register_executor(ExecutorRecord(executor_id, "host", 1, beat, beat, "RUNNING"))
    return executor_id


def clock(store: DurableStore) -> ManualClock:
    assert isinstance(store.clock, ManualClock)
    return store.clock


def fresh(store: DurableStore) -> int:
    """A stale_before_ms under which an executor that beat a minute ago is still live."""
    return store.clock.now_ms() - MINUTE


def get(store: DurableStore, workflow_id: str) -> WorkflowRecord:
    record = store.get_workflow(workflow_id)
    assert record is not None
    return record


def get_step(store: DurableStore, workflow_id: str, step_id: int) -> StepRecord:
    record = store.get_step(workflow_id, step_id)
    assert record is not None
    return record


def claim(store: DurableStore, wf: WorkflowRecord, executor_id: str) -> WorkflowRecord:
    claimed = store.claim_workflow(wf.workflow_id, wf.name, executor_id, fresh(store))
    assert claimed is not None
    return claimed


def resumed(store: DurableStore, workflow_id: str) -> ResumeOutcome:
    found = store.resume_workflow(workflow_id, fresh(store))
    assert found is not None
    return found[1]


def gave_up(record: WorkflowRecord) -> str:
    return f'"gave up {record.workflow_id}"'


def stalled(store: DurableStore, limit: int = 100) -> list[tuple[str, RecoveryAction]]:
    """One sweep: owners silent for a minute are gone, messages due for a minute lost."""
    cutoff = fresh(store)
    return [(r.workflow_id, a) for r, a in store.claim_stalled(cutoff, cutoff, limit, gave_up)]


# chains -----------------------------------------------------------------------
def chain(store: DurableStore, links: int = 2, **fields: Any) -> str:
    """Insert a chain (ENQUEUED) of ``links`` PENDING steps named link0, link1, ..."""
    now = store.clock.now_ms()
    values: dict[str, Any] = {"status": S.ENQUEUED, "created_at_ms": now, "updated_at_ms": now}
    wf = WorkflowRecord(uid("chain"), "tests.store.chain", kind=WorkflowKind.CHAIN, **values)
    wf = WorkflowRecord(**{**wf.__dict__, **fields})
    steps = [
        StepRecord(wf.workflow_id, i, f"link{i}", StepState.PENDING, attempts=0,
                   signature=f'{{"link": {i}}}', task_id=uid("task"))
        for i in range(links)
    ]  # fmt: skip
    assert store.insert_chain(wf, steps)
    return wf.workflow_id


def lease(store: DurableStore, workflow_id: str, step_id: int, executor_id: str) -> str:
    claimed = store.claim_chain_step(
        workflow_id, step_id, f"link{step_id}", executor_id, fresh(store)
    )
    assert claimed is not None and claimed.lease_id is not None
    return claimed.lease_id


def run_link(store: DurableStore, workflow_id: str, step_id: int, last: bool = False) -> None:
    held = lease(store, workflow_id, step_id, executor(store))
    assert store.finish_chain_step(workflow_id, step_id, held, f'"out{step_id}"', 1, last)


# workflows ----------------------------------------------------------------------
def test_insert_workflow_creates_once(any_store: DurableStore) -> None:
    record = workflow(any_store)
    assert any_store.insert_workflow(record) is False
    assert any_store.insert_workflow(WorkflowRecord(**{**record.__dict__, "name": "o"})) is False
    assert any_store.get_workflow(record.workflow_id) == record
    assert any_store.get_workflow(uid("missing")) is None


def test_enqueued_workflow_is_claimed_once_while_owner_is_live(any_store: DurableStore) -> None:
    record = workflow(any_store)
    first, second = executor(any_store), executor(any_store)
    claimed = claim(any_store, record, first)
    now = any_store.clock.now_ms()
    assert (claimed.status, claimed.executor_id, claimed.run_count) == (S.PENDING, first, 1)
    assert (claimed.started_at_ms, claimed.updated_at_ms) == (now, now)
    assert claimed == get(any_store, record.workflow_id)
    assert (
        any_store.claim_workflow(record.workflow_id, record.name, second, fresh(any_store)) is None
    )
    assert get(any_store, record.workflow_id).executor_id == first


def test_workflow_becomes_claimable_when_owner_heartbeat_is_stale(any_store: DurableStore) -> None:
    record = workflow(any_store)
    first, second = executor(any_store), executor(any_store)
    claim(any_store, record, first)
    beat = any_store.clock.now_ms()
    assert any_store.claim_workflow(record.workflow_id, record.name, second, beat) is None
    claimed = any_store.claim_workflow(record.workflow_id, record.name, second, beat + 1)
    assert claimed is not None
    assert (claimed.executor_id, claimed.run_count) == (second, 2)


def test_workflow_becomes_claimable_when_owner_stopped(any_store: DurableStore) -> None:
    record = workflow(any_store)
    first, second = executor(any_store), executor(any_store)
    claim(any_store, record, first)
    any_store.stop_executor(first)
    assert claim(any_store, record, second).executor_id == second


def test_a_pending_workflow_without_owner_is_claimable(any_store: DurableStore) -> None:
    record = workflow(any_store, S.PENDING)
    assert claim(any_store, record, executor(any_store)).run_count == 1


@pytest.mark.parametrize(
    "status", [S.SUCCESS, S.ERROR, S.CANCELLED, S.MAX_RECOVERY_ATTEMPTS_EXCEEDED]
)
def test_ended_workflow_is_never_claimed(any_store: DurableStore, status: str) -> None:
    record = workflow(any_store, status=status)
    cutoff = any_store.clock.now_ms() + MINUTE
    assert any_store.claim_workflow(record.workflow_id, record.name, "ex", cutoff) is None
    assert get(any_store, record.workflow_id) == record


def test_a_message_claims_only_the_workflow_it_names(any_store: DurableStore) -> None:
    record = workflow(any_store)
    assert (
        any_store.claim_workflow(record.workflow_id, "other.task", executor(any_store), 0) is None
    )
    assert any_store.claim_workflow(uid("missing"), record.name, executor(any_store), 0) is None
    assert get(any_store, record.workflow_id).status == S.ENQUEUED


def test_a_claim_waits_for_the_scheduled_wake_up(any_store: DurableStore) -> None:
    """An early duplicate of a scheduled retry waits; within 50 ms of it, it may start."""
    record = workflow(any_store, wake_at_ms=any_store.clock.now_ms() + 51)
    ex = executor(any_store)
    assert any_store.claim_workflow(record.workflow_id, record.name, ex, 0) is None
    clock(any_store).advance(1)
    claimed = claim(any_store, record, ex)
    assert (claimed.status, claimed.wake_at_ms) == (S.PENDING, None)


def test_a_new_run_keeps_started_at_and_counts_its_run(any_store: DurableStore) -> None:
    record = workflow(any_store)
    ex = executor(any_store)
    started = claim(any_store, record, ex).started_at_ms
    assert any_store.release_workflow(record.workflow_id, ex, 1)
    clock(any_store).advance(1_000)
    again = claim(any_store, record, ex)
    assert (again.run_count, again.started_at_ms) == (2, started)
    assert again.updated_at_ms == any_store.clock.now_ms()


def test_finish_workflow_only_by_its_owner(any_store: DurableStore) -> None:
    record = workflow(any_store)
    owner, other = executor(any_store), executor(any_store)
    assert not any_store.finish_workflow(record.workflow_id, owner, S.SUCCESS)  # ENQUEUED
    claim(any_store, record, owner)
    assert not any_store.finish_workflow(record.workflow_id, other, S.SUCCESS, output='"x"')
    assert get(any_store, record.workflow_id).status == S.PENDING
    clock(any_store).advance(10)
    assert any_store.finish_workflow(record.workflow_id, owner, S.SUCCESS, output='"done"')
    done = get(any_store, record.workflow_id)
    assert (done.status, done.output, done.error, done.executor_id) == (
        S.SUCCESS, '"done"', None, None,
    )  # fmt: skip
    assert done.completed_at_ms == done.updated_at_ms == any_store.clock.now_ms()
    assert not any_store.finish_workflow(record.workflow_id, owner, S.ERROR, error="{}")
    assert get(any_store, record.workflow_id).status == S.SUCCESS


def test_finish_workflow_without_an_owner_ends_any_pending_run(any_store: DurableStore) -> None:
    record = workflow(any_store)
    claim(any_store, record, executor(any_store))
    assert any_store.finish_workflow(record.workflow_id, None, S.ERROR, error='"boom"')
    done = get(any_store, record.workflow_id)
    assert (done.status, done.error, done.output, done.executor_id) == (
        S.ERROR, '"boom"', None, None,
    )  # fmt: skip
    assert not any_store.finish_workflow(uid("missing"), None, S.ERROR)


def test_set_status_conditions_owner_error_and_completion(any_store: DurableStore) -> None:
    record = workflow(any_store)
    wid, owner = record.workflow_id, executor(any_store)
    claim(any_store, record, owner)
    assert not any_store.set_status(wid, S.CANCELLED, only_from=[S.ENQUEUED])
    assert not any_store.set_status(wid, S.CANCELLED, executor_id="someone-else")
    assert not any_store.set_status(uid("missing"), S.CANCELLED)
    clock(any_store).advance(5)
    assert any_store.set_status(wid, S.ENQUEUED)  # not an end: no completion time
    back = get(any_store, wid)
    assert (back.status, back.executor_id, back.completed_at_ms) == (S.ENQUEUED, None, None)
    assert back.updated_at_ms == any_store.clock.now_ms()
    claim(any_store, record, owner)
    assert any_store.set_status(
        wid, S.CANCELLED, only_from=[S.PENDING], executor_id=owner, keep_owner=True, error='"e"'
    )
    cancelled = get(any_store, wid)
    assert (cancelled.status, cancelled.executor_id, cancelled.error) == (S.CANCELLED, owner, '"e"')
    assert cancelled.completed_at_ms == any_store.clock.now_ms()
    assert any_store.set_status(wid, S.CANCELLED)  # no error given: the error stays
    assert (get(any_store, wid).error, get(any_store, wid).executor_id) == ('"e"', None)


def test_a_released_run_is_enqueued_again_only_by_its_own_run(any_store: DurableStore) -> None:
    record = workflow(any_store)
    owner = executor(any_store)
    claimed = claim(any_store, record, owner)
    assert not any_store.release_workflow(record.workflow_id, owner, claimed.run_count - 1)
    assert not any_store.release_workflow(record.workflow_id, "other", claimed.run_count)
    assert any_store.release_workflow(record.workflow_id, owner, claimed.run_count)
    released = get(any_store, record.workflow_id)
    assert (released.status, released.executor_id) == (S.ENQUEUED, None)


def test_releasing_an_ended_run_keeps_its_status(any_store: DurableStore) -> None:
    record = workflow(any_store)
    owner = executor(any_store)
    run = claim(any_store, record, owner).run_count
    assert any_store.set_status(record.workflow_id, S.CANCELLED, keep_owner=True)
    assert any_store.release_workflow(record.workflow_id, owner, run)
    released = get(any_store, record.workflow_id)
    assert (released.status, released.executor_id) == (S.CANCELLED, None)


def test_a_suspended_workflow_waits_for_its_wake_up(any_store: DurableStore) -> None:
    record = workflow(any_store)
    owner, other = executor(any_store), executor(any_store)
    claim(any_store, record, owner)
    wake = any_store.clock.now_ms() + 10_000
    assert not any_store.suspend_workflow(record.workflow_id, other, wake)
    assert any_store.suspend_workflow(record.workflow_id, owner, wake)
    suspended = get(any_store, record.workflow_id)
    assert (suspended.status, suspended.executor_id, suspended.wake_at_ms) == (
        S.ENQUEUED, None, wake,
    )  # fmt: skip
    assert not any_store.suspend_workflow(record.workflow_id, owner, wake)  # not PENDING
    assert any_store.claim_workflow(record.workflow_id, record.name, owner, 0) is None
    clock(any_store).advance(10_000)
    assert claim(any_store, record, other).wake_at_ms is None


def test_list_workflows_filters_orders_and_pages(any_store: DurableStore) -> None:
    name = uid("tests.store.listed")
    base = any_store.clock.now_ms()
    made = [
        workflow(any_store, status=status, name=name, created_at_ms=base + i)
        for i, status in enumerate([S.SUCCESS, S.ENQUEUED, S.SUCCESS, S.ERROR])
    ]
    workflow(any_store, status=S.SUCCESS, name=uid("tests.store.other"), created_at_ms=base + 9)
    ids = [r.workflow_id for r in made]

    def listed(**options: Any) -> list[str]:
        return [r.workflow_id for r in any_store.list_workflows(name=name, **options)]

    assert listed() == ids[::-1]
    assert any_store.list_workflows(name=name)[0] == made[3]
    assert listed(status=S.SUCCESS) == [ids[2], ids[0]]
    assert listed(status=[S.ENQUEUED, S.ERROR]) == [ids[3], ids[1]]
    assert listed(limit=2) == [ids[3], ids[2]]
    assert listed(limit=2, offset=1) == [ids[2], ids[1]]
    assert listed(limit=None, offset=3) == [ids[0]]
    assert listed(newest_first=False, limit=1) == [ids[0]]
    assert listed(workflow_ids=[ids[0], ids[3], uid("missing")]) == [ids[3], ids[0]]
    assert len(any_store.list_workflows(limit=None)) == 5


def test_list_workflows_orders_ties_by_id_both_ways(any_store: DurableStore) -> None:
    name, suffix, at = uid("tests.store.ties"), uuid.uuid4().hex[:8], any_store.clock.now_ms()
    for letter in "bca":
        workflow(any_store, name=name, workflow_id=f"tie-{letter}-{suffix}", created_at_ms=at)
    expected = [f"tie-{letter}-{suffix}" for letter in "abc"]
    for newest_first in (True, False):
        found = any_store.list_workflows(name=name, newest_first=newest_first)
        assert [r.workflow_id for r in found] == expected


def test_delete_workflow_removes_steps_and_errors(any_store: DurableStore) -> None:
    wid = workflow(any_store, S.PENDING).workflow_id
    any_store.record_step(step(wid, 0))
    any_store.record_step_error(wid, 1, 0, "tests.store.flaky", '"e"')
    chain_id = chain(any_store)
    task_id = get_step(any_store, chain_id, 0).task_id
    assert task_id is not None
    for gone in (wid, chain_id):
        any_store.delete_workflow(gone)
        assert any_store.get_workflow(gone) is None
        assert any_store.load_steps(gone) == {}
    assert any_store.get_step(chain_id, 0) is None
    assert any_store.find_step_by_task_id(task_id) is None
    any_store.delete_workflow(uid("missing"))


def test_fork_copies_the_steps_before_start_step(any_store: DurableStore) -> None:
    src = workflow(
        any_store, S.PENDING, executor_id="ex", recovery_attempts=2, max_recovery_attempts=5,
        deadline_ms=1, started_at_ms=1, queue="q",
    )  # fmt: skip
    for step_id in range(3):
        assert any_store.record_step(step(src.workflow_id, step_id, output=f'"{step_id}"'))
    any_store.record_step_error(src.workflow_id, 0, 0, "tests.store.step", '"flaky"')
    clock(any_store).advance(10)
    new_id = uid("fork")
    any_store.fork_workflow(src.workflow_id, new_id, 2)
    now = any_store.clock.now_ms()
    assert get(any_store, new_id) == WorkflowRecord(
        **{
            **src.__dict__, "workflow_id": new_id, "status": S.ENQUEUED, "executor_id": None,
            "recovery_attempts": 0, "run_count": 1, "deadline_ms": None, "created_at_ms": now,
            "updated_at_ms": now, "started_at_ms": None,
        }
    )  # fmt: skip
    copied = any_store.load_steps(new_id)
    assert sorted(copied) == [0, 1]
    assert [copied[i].output for i in (0, 1)] == ['"0"', '"1"']
    assert copied[0].attempt_errors == ()  # attempt errors are not copied
    assert copied[0].workflow_id == new_id
    assert get(any_store, src.workflow_id) == src
    assert len(any_store.load_steps(src.workflow_id)) == 3


def test_fork_of_a_chain_makes_later_steps_pending_with_new_task_ids(
    any_store: DurableStore,
) -> None:
    src = chain(any_store, links=3)
    run_link(any_store, src, 0)
    held = lease(any_store, src, 1, executor(any_store))
    assert any_store.retry_chain_step(src, 1, held, 0, "link1", '"e"', 1)
    new_id = uid("fork")
    any_store.fork_workflow(src, new_id, 1)
    forked = get(any_store, new_id)
    assert (forked.status, forked.run_count, forked.kind) == (S.ENQUEUED, 0, WorkflowKind.CHAIN)
    done, old = get_step(any_store, new_id, 0), get_step(any_store, src, 0)
    assert (done.status, done.output, done.task_id) == (StepState.SUCCESS, '"out0"', old.task_id)
    for step_id in (1, 2):
        again, old = get_step(any_store, new_id, step_id), get_step(any_store, src, step_id)
        assert (again.status, again.output, again.attempts, again.due_at_ms) == (
            StepState.PENDING, None, 0, None,
        )  # fmt: skip
        assert (again.started_at_ms, again.completed_at_ms, again.executor_id) == (None,) * 3
        assert (again.name, again.signature) == (old.name, old.signature)
        assert again.task_id not in (None, old.task_id)
    assert any_store.load_steps(new_id)[1].attempt_errors == ()
    assert get_step(any_store, src, 1).status == StepState.RETRYING


# resume ---------------------------------------------------------------------------
def test_resume_counts_recovery_attempts_and_reset_starts_anew(any_store: DurableStore) -> None:
    record = workflow(any_store, deadline_ms=any_store.clock.now_ms() + MINUTE)
    gone = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    claim(any_store, record, gone)
    clock(any_store).advance(3)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RESUMED  # its owner is gone
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RESUMED  # ENQUEUED: again
    again = get(any_store, record.workflow_id)
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 2)
    assert (again.updated_at_ms, again.deadline_ms) == (
        any_store.clock.now_ms(),
        record.deadline_ms,
    )

    assert any_store.set_status(record.workflow_id, S.CANCELLED, only_from=[S.ENQUEUED], error="{}")
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RESUMED
    reset = get(any_store, record.workflow_id)
    assert (reset.status, reset.recovery_attempts, reset.completed_at_ms) == (S.ENQUEUED, 1, None)
    assert (reset.error, reset.deadline_ms) == (None, None)


def test_resume_leaves_a_workflow_its_live_owner_runs_alone(any_store: DurableStore) -> None:
    record = workflow(any_store)
    owner = executor(any_store)
    claim(any_store, record, owner)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RUNNING
    assert any_store.set_status(record.workflow_id, S.CANCELLED, keep_owner=True)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RUNNING  # still in a step body
    stored = get(any_store, record.workflow_id)
    assert (stored.status, stored.executor_id, stored.recovery_attempts) == (
        S.CANCELLED, owner, 0,
    )  # fmt: skip
    assert any_store.release_workflow(record.workflow_id, owner, stored.run_count)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RESUMED


@pytest.mark.parametrize("status", [S.SUCCESS, S.ERROR])
def test_resume_leaves_finished_workflows_alone(any_store: DurableStore, status: str) -> None:
    record = workflow(any_store, status=status)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.FINISHED
    assert get(any_store, record.workflow_id) == record
    assert any_store.resume_workflow(uid("missing"), fresh(any_store)) is None


def test_resume_of_a_chain_frees_steps_no_live_executor_holds(any_store: DurableStore) -> None:
    wid = chain(any_store)
    live = executor(any_store)
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    held = lease(any_store, wid, 0, live)
    assert resumed(any_store, wid) == ResumeOutcome.RUNNING
    assert get_step(any_store, wid, 0).lease_id == held
    assert any_store.retry_chain_step(wid, 0, held, 0, "link0", '"e"', 10**13)
    assert resumed(any_store, wid) == ResumeOutcome.RESUMED  # RETRYING: due again now
    due = get_step(any_store, wid, 0)
    assert (due.status, due.due_at_ms, due.attempts) == (StepState.PENDING, None, 1)
    lease(any_store, wid, 0, dead)
    assert resumed(any_store, wid) == ResumeOutcome.RESUMED
    freed = get_step(any_store, wid, 0)
    assert (freed.status, freed.executor_id, freed.lease_id) == (StepState.PENDING, None, None)
    assert (get(any_store, wid).status, get(any_store, wid).recovery_attempts) == (S.ENQUEUED, 2)


# steps ------------------------------------------------------------------------------
def test_record_step_first_wins(any_store: DurableStore) -> None:
    """Checkpoints land only while the workflow runs (PENDING); the first one wins."""
    record = workflow(any_store, S.PENDING)
    first = step(record.workflow_id, 0, output='"first"', attempts=2, started_at_ms=5)
    assert any_store.record_step(first)
    assert not any_store.record_step(step(record.workflow_id, 0, output='"second"'))
    assert any_store.record_step(step(record.workflow_id, 1))
    loaded = any_store.load_steps(record.workflow_id)
    assert sorted(loaded) == [0, 1]
    assert loaded[0] == first
    assert any_store.get_step(record.workflow_id, 0) == first


@pytest.mark.parametrize("status", [S.ENQUEUED, S.CANCELLED, S.SUCCESS])
def test_no_checkpoint_unless_the_workflow_is_running(any_store: DurableStore, status: str) -> None:
    """A cancelled (or not yet claimed, or ended) workflow records no further step."""
    wid = workflow(any_store, status).workflow_id
    assert not any_store.record_step(step(wid, 0))
    assert not any_store.record_step(step(uid("missing"), 0))
    assert any_store.load_steps(wid) == {}


def test_attempt_errors_load_in_order_and_unfinished_step_is_retrying(
    any_store: DurableStore,
) -> None:
    wid = workflow(any_store, S.PENDING).workflow_id
    for attempt in (2, 0, 1):  # recorded out of order on purpose
        any_store.record_step_error(wid, 1, attempt, "tests.store.flaky", f'"err {attempt}"')
    any_store.record_step_error(wid, 1, 0, "tests.store.flaky", '"duplicate ignored"')
    any_store.record_step_error(wid, 0, 0, "tests.store.done", '"err done"')
    any_store.record_step(step(wid, 0, "tests.store.done", attempts=2))
    loaded = any_store.load_steps(wid)
    assert (loaded[0].status, loaded[0].attempt_errors) == ("SUCCESS", ('"err done"',))
    assert loaded[1] == StepRecord(
        wid, 1, "tests.store.flaky", StepState.RETRYING, attempts=3,
        attempt_errors=('"err 0"', '"err 1"', '"err 2"'),
    )  # fmt: skip
    assert any_store.get_step(wid, 1) is None  # no row yet
    assert any_store.get_step(wid, 0).attempt_errors == ()  # type: ignore[union-attr]


def test_an_attempt_error_needs_its_workflow(any_store: DurableStore) -> None:
    missing = uid("missing")
    with pytest.raises(Exception):  # noqa: B017 (SQL: a foreign key; memory: KeyError)
        any_store.record_step_error(missing, 0, 0, "tests.store.flaky", '"e"')
    assert any_store.load_steps(missing) == {}


def test_steps_are_found_by_id_and_by_task_id(any_store: DurableStore) -> None:
    wid = chain(any_store)
    link = get_step(any_store, wid, 1)
    assert (link.name, link.status, link.signature) == ("link1", StepState.PENDING, '{"link": 1}')
    assert link.task_id is not None
    assert any_store.find_step_by_task_id(link.task_id) == link
    assert any_store.find_step_by_task_id(uid("task")) is None
    assert any_store.get_step(wid, 9) is None


# transaction steps ----------------------------------------------------------------
def items(store: DurableStore, *item_ids: str) -> int:
    with sql_engine_of(store).connect() as conn:
        rows = conn.execute(text("SELECT item_id FROM store_test_items")).scalars().all()
    return len(set(rows) & set(item_ids))


def run_tx(
    store: DurableStore,
    wid: str,
    item_id: str,
    finish: Callable[[Any, str], bool] | None = None,
    fail: bool = False,
) -> tuple[bool, Any]:
    """Insert ``item_id`` and (unless ``finish`` says otherwise) checkpoint step 0 of ``wid``
    in one transaction."""

    def body(session: Session) -> str:
        session.execute(text("INSERT INTO store_test_items VALUES (:i)"), {"i": item_id})
        if fail:
            raise RuntimeError("body failed")
        return item_id

    def checkpoint(tx: Any, result: str) -> bool:
        return store.insert_checkpoint(tx, step(wid, 0, output=f'"{result}"'))

    return store.run_transaction_step(body, finish or checkpoint)


def test_transaction_commits_body_and_checkpoint_together(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")
    assert run_tx(any_store, wid, item) == (True, item)
    assert items(any_store, item) == 1
    assert any_store.load_steps(wid)[0].output == f'"{item}"'


def test_transaction_with_duplicate_checkpoint_rolls_back_its_body(any_store: DurableStore) -> None:
    wid, first, second = workflow(any_store, S.PENDING).workflow_id, uid("item"), uid("item")
    run_tx(any_store, wid, first)
    assert run_tx(any_store, wid, second) == (False, None)
    assert (items(any_store, first), items(any_store, second)) == (1, 0)
    assert any_store.load_steps(wid)[0].output == f'"{first}"'


def test_transaction_of_a_workflow_not_running_rolls_back(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.CANCELLED).workflow_id, uid("item")
    assert run_tx(any_store, wid, item) == (False, None)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_transaction_whose_body_raises_leaves_nothing(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")
    with pytest.raises(RuntimeError, match="body failed"):
        run_tx(any_store, wid, item, fail=True)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_transaction_whose_finish_raises_leaves_nothing(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")

    def finish(tx: Any, result: str) -> bool:
        assert any_store.insert_checkpoint(tx, step(wid, 0))
        raise RuntimeError("finish failed")

    with pytest.raises(RuntimeError, match="finish failed"):
        run_tx(any_store, wid, item, finish)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_a_transaction_sees_its_own_checkpoint(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")

    def finish(tx: Any, result: str) -> bool:
        first = any_store.insert_checkpoint(tx, step(wid, 0, output='"first"'))
        return first and not any_store.insert_checkpoint(tx, step(wid, 0, output='"second"'))

    assert run_tx(any_store, wid, item, finish) == (True, item)
    assert any_store.load_steps(wid)[0].output == '"first"'


def test_a_commit_that_fails_leaves_no_checkpoint(any_store: DurableStore) -> None:
    """The body breaks a constraint checked only at COMMIT: its checkpoint is not kept."""
    wid = workflow(any_store, S.PENDING).workflow_id

    def body(session: Session) -> str:
        session.execute(text("INSERT INTO store_test_children VALUES (:p)"), {"p": 404})
        return "orphan"

    def finish(tx: Any, result: str) -> bool:
        return any_store.insert_checkpoint(tx, step(wid, 0))

    with pytest.raises(IntegrityError):
        any_store.run_transaction_step(body, finish)
    assert any_store.load_steps(wid) == {}
    assert any_store.record_step(step(wid, 0, output='"later"'))


def test_a_chain_step_commits_with_its_transaction_under_its_lease(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, links=1)
    held = lease(any_store, wid, 0, executor(any_store))
    item, lost = uid("item"), uid("item")

    def complete(lease_id: str) -> Callable[[Any, str], bool]:
        return lambda tx, result: any_store.complete_chain_step(
            tx, wid, 0, lease_id, f'"{result}"', 1, True
        )

    assert run_tx(any_store, wid, lost, complete("not-the-lease")) == (False, None)
    assert items(any_store, lost) == 0
    assert get_step(any_store, wid, 0).status == StepState.RUNNING
    assert run_tx(any_store, wid, item, complete(held)) == (True, item)
    assert items(any_store, item) == 1
    assert get_step(any_store, wid, 0).output == f'"{item}"'
    done = get(any_store, wid)
    assert (done.status, done.output) == (S.SUCCESS, f'"{item}"')


# chains --------------------------------------------------------------------------------
def test_insert_chain_creates_once(any_store: DurableStore) -> None:
    wid = chain(any_store, links=2)
    record = get(any_store, wid)
    assert (record.kind, record.status) == (WorkflowKind.CHAIN, S.ENQUEUED)
    other = StepRecord(wid, 0, "other", StepState.PENDING)
    assert not any_store.insert_chain(record, [other, StepRecord(wid, 5, "x", StepState.PENDING)])
    assert not any_store.insert_workflow(record)
    assert sorted(any_store.load_steps(wid)) == [0, 1]
    assert get_step(any_store, wid, 0).name == "link0"


def test_a_chain_step_is_leased_once_while_its_executor_is_live(any_store: DurableStore) -> None:
    wid = chain(any_store)
    first, second = executor(any_store), executor(any_store)
    now = any_store.clock.now_ms()
    assert any_store.claim_chain_step(wid, 0, "link1", first, fresh(any_store)) is None  # name
    assert any_store.claim_chain_step(wid, 7, "link7", first, fresh(any_store)) is None
    claimed = any_store.claim_chain_step(wid, 0, "link0", first, fresh(any_store))
    assert claimed is not None and claimed.lease_id
    assert claimed == StepRecord(
        wid, 0, "link0", StepState.RUNNING, attempts=0, executor_id=first,
        lease_id=claimed.lease_id,
    )  # fmt: skip
    leased = get_step(any_store, wid, 0)
    assert (leased.status, leased.executor_id, leased.lease_id) == (
        StepState.RUNNING, first, claimed.lease_id,
    )  # fmt: skip
    assert (leased.started_at_ms, leased.due_at_ms) == (now, None)
    running = get(any_store, wid)
    assert (running.status, running.started_at_ms, running.updated_at_ms) == (S.PENDING, now, now)
    assert any_store.claim_chain_step(wid, 0, "link0", second, now) is None  # first beat at now
    clock(any_store).advance(1_000)
    again = any_store.claim_chain_step(wid, 0, "link0", second, now + 1)
    assert again is not None and again.lease_id not in (None, claimed.lease_id)
    assert get_step(any_store, wid, 0).started_at_ms == now
    assert get(any_store, wid).updated_at_ms == now  # already PENDING: left as it was


def test_a_step_of_a_stopped_executor_can_be_leased_again(any_store: DurableStore) -> None:
    wid = chain(any_store)
    first = executor(any_store)
    lease(any_store, wid, 0, first)
    any_store.stop_executor(first)
    assert get_step(any_store, wid, 0).lease_id != lease(any_store, wid, 0, executor(any_store))


def test_no_step_starts_past_the_deadline_or_once_the_chain_ended(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, deadline_ms=any_store.clock.now_ms())
    ex = executor(any_store)
    held = lease(any_store, wid, 0, ex)  # at its deadline: still in time
    assert any_store.finish_chain_step(wid, 0, held, '"0"', 1, False)
    clock(any_store).advance(1)
    assert any_store.claim_chain_step(wid, 1, "link1", ex, fresh(any_store)) is None
    for status in (S.CANCELLED, S.SUCCESS, S.ERROR):
        ended = chain(any_store, status=status)
        assert any_store.claim_chain_step(ended, 0, "link0", ex, fresh(any_store)) is None
        assert get_step(any_store, ended, 0).status == StepState.PENDING


def test_finishing_a_step_needs_its_lease(any_store: DurableStore) -> None:
    wid = chain(any_store)
    held = lease(any_store, wid, 0, executor(any_store))
    assert not any_store.finish_chain_step(wid, 0, "not-the-lease", '"x"', 1, False)
    assert (get_step(any_store, wid, 0).status, get_step(any_store, wid, 0).output) == (
        StepState.RUNNING, None,
    )  # fmt: skip
    clock(any_store).advance(7)
    assert any_store.finish_chain_step(wid, 0, held, '"out"', 3, False)
    done = get_step(any_store, wid, 0)
    assert (done.status, done.output, done.attempts, done.executor_id) == (
        StepState.SUCCESS, '"out"', 3, None,
    )  # fmt: skip
    assert done.completed_at_ms == any_store.clock.now_ms()
    assert (get(any_store, wid).status, get(any_store, wid).output) == (S.PENDING, None)
    assert not any_store.finish_chain_step(wid, 0, held, '"again"', 4, False)
    assert get_step(any_store, wid, 0).output == '"out"'


def test_the_last_step_ends_the_chain_while_it_is_active(any_store: DurableStore) -> None:
    wid = chain(any_store)
    run_link(any_store, wid, 0)
    held = lease(any_store, wid, 1, executor(any_store))
    clock(any_store).advance(3)
    assert any_store.finish_chain_step(wid, 1, held, '"final"', 1, True)
    done = get(any_store, wid)
    assert (done.status, done.output, done.error, done.executor_id) == (
        S.SUCCESS, '"final"', None, None,
    )  # fmt: skip
    assert done.completed_at_ms == any_store.clock.now_ms()

    cancelled = chain(any_store, links=1)
    held = lease(any_store, cancelled, 0, executor(any_store))
    assert any_store.set_status(cancelled, S.CANCELLED, keep_owner=True)
    assert any_store.finish_chain_step(cancelled, 0, held, '"late"', 1, True)
    assert get_step(any_store, cancelled, 0).status == StepState.SUCCESS
    assert (get(any_store, cancelled).status, get(any_store, cancelled).output) == (
        S.CANCELLED, None,
    )  # fmt: skip


def test_retries_then_failure_record_every_attempt(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    ex = executor(any_store)
    due = any_store.clock.now_ms() + 5_000
    for attempt in (0, 1):
        claimed = any_store.claim_chain_step(wid, 0, "link0", ex, fresh(any_store))
        assert claimed is not None and claimed.attempts == attempt
        assert claimed.lease_id is not None
        error = f'"err {attempt}"'
        assert any_store.retry_chain_step(wid, 0, claimed.lease_id, attempt, "link0", error, due)
        waiting = get_step(any_store, wid, 0)
        assert (waiting.status, waiting.attempts, waiting.due_at_ms) == (
            StepState.RETRYING, attempt + 1, due,
        )  # fmt: skip
        assert (waiting.executor_id, waiting.lease_id) == (None, None)
    held = lease(any_store, wid, 0, ex)
    assert get_step(any_store, wid, 0).due_at_ms is None
    clock(any_store).advance(9)
    assert any_store.fail_chain_step(wid, 0, held, 2, "link0", '"err 2"', '"final"')
    failed = any_store.load_steps(wid)[0]
    assert (failed.status, failed.error, failed.attempts, failed.lease_id) == (
        StepState.ERROR, '"final"', 3, None,
    )  # fmt: skip
    assert failed.attempt_errors == ('"err 0"', '"err 1"', '"err 2"')
    assert failed.completed_at_ms == any_store.clock.now_ms()
    ended = get(any_store, wid)
    assert (ended.status, ended.error, ended.output, ended.executor_id) == (
        S.ERROR, '"final"', None, None,
    )  # fmt: skip
    assert ended.completed_at_ms == any_store.clock.now_ms()


def test_retry_or_failure_with_a_lost_lease_changes_nothing(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    held = lease(any_store, wid, 0, executor(any_store))
    assert not any_store.retry_chain_step(wid, 0, "lost", 0, "link0", '"e"', 1)
    assert not any_store.fail_chain_step(wid, 0, "lost", 0, "link0", '"e"', '"final"')
    still = get_step(any_store, wid, 0)
    assert (still.status, still.lease_id, still.attempts) == (StepState.RUNNING, held, 0)
    assert get(any_store, wid).status == S.PENDING


def test_first_open_step_and_the_one_before_it(any_store: DurableStore) -> None:
    wid = chain(any_store, links=3)
    assert any_store.first_open_step(wid) == (get_step(any_store, wid, 0), None)
    run_link(any_store, wid, 0)
    first, previous = any_store.first_open_step(wid) or (None, None)
    assert (first, previous) == (get_step(any_store, wid, 1), get_step(any_store, wid, 0))
    assert previous is not None and previous.output == '"out0"'
    held = lease(any_store, wid, 1, executor(any_store))
    running = any_store.first_open_step(wid)
    assert running is not None and (running[0].step_id, running[0].status) == (1, "RUNNING")
    assert any_store.finish_chain_step(wid, 1, held, '"out1"', 1, False)
    run_link(any_store, wid, 2, last=True)
    assert any_store.first_open_step(wid) is None
    assert any_store.first_open_step(uid("missing")) is None


def test_concurrent_claims_have_one_winner(any_store: DurableStore) -> None:
    record, wid = workflow(any_store), chain(any_store)
    owners = [executor(any_store) for _ in range(6)]
    cutoff = fresh(any_store)

    def run(owner: str) -> WorkflowRecord | None:
        return any_store.claim_workflow(record.workflow_id, record.name, owner, cutoff)

    with ThreadPoolExecutor(len(owners)) as pool:
        runs = list(pool.map(run, owners))
        leases = list(
            pool.map(lambda e: any_store.claim_chain_step(wid, 0, "link0", e, cutoff), owners)
        )
    assert sum(r is not None for r in runs) == 1
    assert sum(s is not None for s in leases) == 1


# recovery -------------------------------------------------------------------------
def test_a_run_under_a_dead_executor_is_recovered_and_counts(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    dead, live = executor(any_store, heartbeat_ms=now - 2 * MINUTE), executor(any_store)
    crashed, running = workflow(any_store), workflow(any_store)
    claim(any_store, crashed, dead)
    claim(any_store, running, live)
    found = any_store.claim_stalled(fresh(any_store), fresh(any_store), 10, gave_up)
    assert [(r.workflow_id, r.status, r.executor_id, a) for r, a in found] == [
        (crashed.workflow_id, S.PENDING, dead, RECOVERED)  # the row as it was
    ]
    again = get(any_store, crashed.workflow_id)
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 1)
    assert get(any_store, running.workflow_id).executor_id == live
    assert stalled(any_store) == []  # re-enqueued just now: not lost (yet)


def test_a_lost_message_is_sent_again_without_counting(any_store: DurableStore) -> None:
    start = any_store.clock.now_ms()
    lost = workflow(any_store, max_recovery_attempts=0)
    waiting = workflow(any_store, wake_at_ms=start + 2 * MINUTE)  # a retry not yet due
    clock(any_store).advance(2 * MINUTE - 1)
    recent = workflow(any_store)
    assert stalled(any_store) == [(lost.workflow_id, RECOVERED)]
    again = get(any_store, lost.workflow_id)
    assert (again.status, again.recovery_attempts) == (S.ENQUEUED, 0)
    assert again.updated_at_ms == any_store.clock.now_ms()
    for untouched in (waiting, recent):
        assert get(any_store, untouched.workflow_id) == untouched
    clock(any_store).advance(MINUTE + 2)  # all three lost now, the first one again
    found = {wid for wid, _ in stalled(any_store)}
    assert found == {lost.workflow_id, waiting.workflow_id, recent.workflow_id}


def test_a_crash_past_max_recovery_attempts_is_dead_lettered(any_store: DurableStore) -> None:
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    over = workflow(any_store, max_recovery_attempts=1, recovery_attempts=1)
    under = workflow(any_store, max_recovery_attempts=1)
    claim(any_store, over, dead)
    claim(any_store, under, dead)
    clock(any_store).advance(5)
    assert sorted(stalled(any_store)) == sorted(
        [(over.workflow_id, DEAD_LETTERED), (under.workflow_id, RECOVERED)]
    )
    ended = get(any_store, over.workflow_id)
    assert (ended.status, ended.error, ended.executor_id, ended.recovery_attempts) == (
        S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, gave_up(over), None, 1,
    )  # fmt: skip
    assert ended.completed_at_ms == any_store.clock.now_ms()
    assert get(any_store, under.workflow_id).recovery_attempts == 1
    assert any_store.claim_workflow(over.workflow_id, over.name, dead, 0) is None
    clock(any_store).advance(10 * MINUTE)
    assert stalled(any_store) == [(under.workflow_id, RECOVERED)]  # lost: not counted


def test_a_sweep_that_fails_midway_changes_nothing(any_store: DurableStore) -> None:
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    first = workflow(any_store)
    claim(any_store, first, dead)
    clock(any_store).advance(1)
    second = workflow(any_store, max_recovery_attempts=0)
    claim(any_store, second, dead)

    def broken(record: WorkflowRecord) -> str:
        raise RuntimeError("no error text")

    with pytest.raises(RuntimeError, match="no error text"):
        any_store.claim_stalled(fresh(any_store), fresh(any_store), 10, broken)
    for record in (first, second):
        after = get(any_store, record.workflow_id)
        assert (after.status, after.executor_id, after.recovery_attempts) == (S.PENDING, dead, 0)


def test_only_the_step_of_a_dead_executor_is_released(any_store: DurableStore) -> None:
    wid = chain(any_store)
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    live = executor(any_store)
    lease(any_store, wid, 0, dead)
    kept = lease(any_store, wid, 1, live)
    only_live = chain(any_store)
    lease(any_store, only_live, 0, live)
    assert stalled(any_store) == [(wid, RECOVERED)]
    record = get(any_store, wid)
    assert (record.status, record.recovery_attempts) == (S.ENQUEUED, 1)
    freed = get_step(any_store, wid, 0)
    assert (freed.status, freed.executor_id, freed.lease_id) == (StepState.PENDING, None, None)
    held = get_step(any_store, wid, 1)
    assert (held.status, held.executor_id, held.lease_id) == (StepState.RUNNING, live, kept)
    assert any_store.finish_chain_step(wid, 1, kept, '"1"', 1, False)


def test_lost_chain_links_are_sent_again_without_counting(any_store: DurableStore) -> None:
    never_started = chain(any_store)
    next_lost = chain(any_store)
    run_link(any_store, next_lost, 0)
    retry_due, retry_later = chain(any_store), chain(any_store)
    for wid, due in ((retry_due, 1), (retry_later, any_store.clock.now_ms() + 10 * MINUTE)):
        held = lease(any_store, wid, 0, executor(any_store))
        assert any_store.retry_chain_step(wid, 0, held, 0, "link0", '"e"', due)
    just_linked = chain(any_store)
    held = lease(any_store, just_linked, 0, executor(any_store))
    clock(any_store).advance(2 * MINUTE)
    # a long first step just ended: its chain's row is old, the next message is not
    assert any_store.finish_chain_step(just_linked, 0, held, '"0"', 1, False)
    chain(any_store)  # just made
    found = stalled(any_store)
    assert sorted(found) == sorted(
        (wid, RECOVERED) for wid in (never_started, next_lost, retry_due)
    )
    for wid in (never_started, next_lost, retry_due):
        assert (get(any_store, wid).status, get(any_store, wid).recovery_attempts) == (
            S.ENQUEUED, 0,
        )  # fmt: skip
    assert get_step(any_store, retry_due, 0).status == StepState.RETRYING


def test_claim_stalled_takes_the_oldest_first_up_to_its_limit(any_store: DurableStore) -> None:
    made = []
    for _ in range(3):
        made.append(workflow(any_store).workflow_id)
        clock(any_store).advance(1_000)
    clock(any_store).advance(2 * MINUTE)
    assert stalled(any_store, limit=2) == [(made[0], RECOVERED), (made[1], RECOVERED)]
    assert stalled(any_store, limit=2) == [(made[2], RECOVERED)]


def test_recover_lost_takes_only_the_run_that_died(any_store: DurableStore) -> None:
    """A pool process of a live worker died: its run counts as a crash, reported once."""
    worker, other = executor(any_store), executor(any_store)
    record = workflow(any_store)
    wid = record.workflow_id
    claim(any_store, record, worker)
    assert any_store.recover_lost(wid, other, gave_up) is None
    found = any_store.recover_lost(wid, worker, gave_up)
    assert found is not None
    assert (found[0].status, found[0].executor_id, found[1]) == (S.PENDING, worker, RECOVERED)
    again = get(any_store, wid)
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 1)
    assert any_store.recover_lost(wid, worker, gave_up) is None  # a second report
    claim(any_store, record, other)
    assert any_store.recover_lost(wid, worker, gave_up) is None
    assert any_store.recover_lost(uid("missing"), worker, gave_up) is None
    ownerless = workflow(any_store, S.PENDING)
    assert any_store.recover_lost(ownerless.workflow_id, worker, gave_up) is None


def test_recover_lost_releases_the_chain_step_of_that_worker(any_store: DurableStore) -> None:
    worker, other = executor(any_store), executor(any_store)
    wid = chain(any_store)
    lease(any_store, wid, 0, worker)
    found = any_store.recover_lost(wid, worker, gave_up)
    assert found is not None and found[1] == RECOVERED
    assert get_step(any_store, wid, 0).status == StepState.PENDING
    held = lease(any_store, wid, 0, other)  # redelivered elsewhere
    assert any_store.recover_lost(wid, worker, gave_up) is None
    assert get_step(any_store, wid, 0).lease_id == held


def test_recover_lost_dead_letters_past_the_limit(any_store: DurableStore) -> None:
    worker = executor(any_store)
    record = workflow(any_store, max_recovery_attempts=0)
    claim(any_store, record, worker)
    found = any_store.recover_lost(record.workflow_id, worker, gave_up)
    assert found is not None and found[1] == DEAD_LETTERED
    ended = get(any_store, record.workflow_id)
    assert (ended.status, ended.error) == (S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, gave_up(record))


def test_cancel_expired_ends_active_workflows_past_their_deadline(
    any_store: DurableStore,
) -> None:
    now = any_store.clock.now_ms()
    owner = executor(any_store)
    running = workflow(any_store, deadline_ms=now - 1)
    claim(any_store, running, owner)
    queued = workflow(any_store, deadline_ms=now - 5)
    untouched = [
        workflow(any_store, deadline_ms=now),  # not yet past
        workflow(any_store, S.SUCCESS, deadline_ms=now - 1),
        workflow(any_store),
    ]
    clock(any_store).advance(1_000)  # the sweep's `now` is what counts, not the clock

    def expired(wid: str) -> str:
        return f'"expired {wid}"'

    first = any_store.cancel_expired(now, 1, expired)
    assert len(first) == 1
    rest = any_store.cancel_expired(now, 10, expired)
    assert sorted(first + rest) == sorted([running.workflow_id, queued.workflow_id])
    assert any_store.cancel_expired(now, 10, expired) == []
    ended = get(any_store, running.workflow_id)
    assert (ended.status, ended.executor_id, ended.error) == (
        S.CANCELLED, owner, expired(running.workflow_id),
    )  # fmt: skip
    assert ended.completed_at_ms == ended.updated_at_ms == now
    for record in untouched:
        assert get(any_store, record.workflow_id) == record


# executors ----------------------------------------------------------------------------
def test_executors_register_beat_and_stop(any_store: DurableStore) -> None:
    start = any_store.clock.now_ms()
    ex = uid("ex")
    first = ExecutorRecord(ex, "host-a", 11, start, start, "RUNNING")
    any_store.register_executor(first)
    assert any_store.get_executor(ex) == first
    clock(any_store).advance(500)
    any_store.heartbeat(ex)
    beat = any_store.get_executor(ex)
    assert beat is not None and (beat.last_heartbeat_ms, beat.status) == (start + 500, "RUNNING")
    clock(any_store).advance(500)
    any_store.stop_executor(ex)
    stopped = any_store.get_executor(ex)
    assert stopped is not None
    assert (stopped.status, stopped.last_heartbeat_ms) == ("STOPPED", start + 1_000)
    any_store.heartbeat(ex)  # a late beat does not bring it back
    assert any_store.get_executor(ex).status == "STOPPED"  # type: ignore[union-attr]
    later = start + 5_000
    any_store.register_executor(ExecutorRecord(ex, "host-b", 22, later, later, "RUNNING"))
    assert any_store.get_executor(ex) == ExecutorRecord(ex, "host-a", 11, start, later, "RUNNING")
    assert any_store.get_executor(uid("ex")) is None
    any_store.heartbeat(uid("ex"))
    any_store.stop_executor(uid("ex"))


def test_prepare_and_dispose_keep_the_rows(any_store: DurableStore) -> None:
    record = workflow(any_store)
    any_store.prepare()
    any_store.dispose()
    assert any_store.get_workflow(record.workflow_id) == record
