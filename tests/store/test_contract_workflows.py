"""The ``DurableStore`` contract, on every store: workflows (claims, finishing, releasing,
listing, forking) and resuming them."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    ResumeOutcome,
    StepState,
    WorkflowKind,
    WorkflowRecord,
)
from tests.store.contract import (
    MINUTE,
    S,
    chain,
    claim,
    clock,
    executor,
    fresh,
    get,
    get_step,
    lease,
    resumed,
    run_link,
    step,
    uid,
    workflow,
)


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


def test_list_workflows_finds_a_parents_children(any_store: DurableStore) -> None:
    parent = workflow(any_store)
    children = [
        workflow(any_store, parent_workflow_id=parent.workflow_id, created_at_ms=i)
        for i in range(2)
    ]
    workflow(any_store, parent_workflow_id=uid("other"))
    found = any_store.list_workflows(parent_workflow_id=parent.workflow_id, newest_first=False)
    assert [w.workflow_id for w in found] == [c.workflow_id for c in children]
    assert all(w.parent_workflow_id == parent.workflow_id for w in found)


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
        deadline_ms=1 << 50, started_at_ms=1, queue="q", parent_workflow_id="p", awaited=1,
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
            "updated_at_ms": now, "started_at_ms": None, "parent_workflow_id": None,
            "awaited": 0,
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


def test_resume_leaves_succeeded_workflows_alone(any_store: DurableStore) -> None:
    record = workflow(any_store, status=S.SUCCESS)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.FINISHED
    assert get(any_store, record.workflow_id) == record
    assert any_store.resume_workflow(uid("missing"), fresh(any_store)) is None


def test_resume_of_a_failed_workflow_retries_its_failed_step(any_store: DurableStore) -> None:
    record = workflow(any_store)
    claim(any_store, record, executor(any_store))
    wid = record.workflow_id
    assert any_store.record_step(step(wid, 0))
    any_store.record_step_error(wid, 1, 0, "flaky", '"e0"')
    assert any_store.record_step(step(wid, 1, "flaky", status="ERROR", output=None, error='"e"'))
    assert any_store.finish_workflow(wid, None, S.ERROR, error='"e"')
    assert resumed(any_store, wid) == ResumeOutcome.RESUMED
    again = get(any_store, wid)
    assert (again.status, again.error, again.recovery_attempts) == (S.ENQUEUED, None, 1)
    assert list(any_store.load_steps(wid)) == [0]  # the failed step runs again, afresh
    (earlier,) = any_store.load_step_history(wid)[1]  # its failed run is set aside
    assert (earlier.status, earlier.error, earlier.attempt_errors) == ("ERROR", '"e"', ('"e0"',))


def test_resume_of_a_failed_chain_reopens_its_failed_step(any_store: DurableStore) -> None:
    wid = chain(any_store, links=3)
    run_link(any_store, wid, 0)
    held = lease(any_store, wid, 1, executor(any_store))
    assert any_store.fail_chain_step(wid, 1, held, 0, "link1", '"e0"', '"final"')
    assert get(any_store, wid).status == S.ERROR
    assert resumed(any_store, wid) == ResumeOutcome.RESUMED
    reopened = get_step(any_store, wid, 1)
    assert (reopened.status, reopened.attempts, reopened.error) == (StepState.PENDING, 0, None)
    assert any_store.load_steps(wid)[1].attempt_errors == ()
    (earlier,) = any_store.load_step_history(wid)[1]  # the failed run, kept with its errors
    assert (earlier.status, earlier.error, earlier.attempts) == ("ERROR", '"final"', 1)
    assert earlier.attempt_errors == ('"e0"',)
    assert get_step(any_store, wid, 0).status == StepState.SUCCESS
    assert 0 not in any_store.load_step_history(wid)
    found = any_store.first_open_step(wid)
    assert found is not None and found[0].step_id == 1


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
