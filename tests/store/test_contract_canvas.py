"""The ``DurableStore`` contract, on every store: canvas members (a stage completed once,
a failure that ends the canvas once) and a failed step's history across resumes."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    NESTED_STEP,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
    nested_canvas_id,
)
from tests.store.contract import (
    MINUTE,
    RECOVERED,
    S,
    chain,
    clock,
    executor,
    get,
    get_step,
    lease,
    resumed,
    stalled,
)


def combine(outputs: list[str]) -> str:
    return json.dumps([json.loads(o) for o in outputs])


def finish(store: DurableStore, wid: str, sid: int, stage: range, last: bool = False) -> object:
    held = lease(store, wid, sid, executor(store))
    return store.finish_member(wid, sid, held, f"{sid * 10}", 1, stage, combine if last else None)


def test_only_the_completion_that_finishes_a_stage_gets_its_outputs(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, links=4)  # a stage of three members (0, 1, 2), then a callback
    stage = range(0, 3)
    assert finish(any_store, wid, 2, stage) == (True, None)
    assert finish(any_store, wid, 0, stage) == (True, None)
    assert finish(any_store, wid, 1, stage) == (True, ["0", "10", "20"])  # member order
    assert get(any_store, wid).status in (S.ENQUEUED, S.PENDING)
    assert finish(any_store, wid, 3, range(3, 4), last=True) == (True, ["30"])
    done = get(any_store, wid)
    assert (done.status, done.output) == (S.SUCCESS, "[30]")


def test_concurrent_completions_decide_the_stage_once(any_store: DurableStore) -> None:
    wid = chain(any_store, links=8)
    stage = range(0, 8)
    held = [lease(any_store, wid, i, executor(any_store)) for i in stage]

    def complete(i: int) -> object:
        return any_store.finish_member(wid, i, held[i], str(i), 1, stage, None)[1]

    with ThreadPoolExecutor(8) as pool:
        decided = [r for r in pool.map(complete, stage) if r is not None]
    assert decided == [[str(i) for i in stage]]


def test_a_lost_lease_commits_nothing(any_store: DurableStore) -> None:
    wid = chain(any_store, links=2)
    lease(any_store, wid, 0, executor(any_store))
    assert any_store.finish_member(wid, 0, "not-the-lease", "1", 1, range(0, 2), None) == (
        False,
        None,
    )
    assert get_step(any_store, wid, 0).status == StepState.RUNNING


def test_a_member_failing_ends_the_canvas_once_and_later_outputs_are_kept(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, links=3)
    stage = range(0, 3)
    a, b, c = (lease(any_store, wid, i, executor(any_store)) for i in stage)
    assert any_store.fail_member(wid, 0, a, 0, "link0", '"e0"', '"final0"') == (True, True)
    assert any_store.fail_member(wid, 1, b, 0, "link1", '"e1"', '"final1"') == (True, False)
    assert any_store.finish_member(wid, 2, c, "2", 1, stage, None) == (True, None)
    record = get(any_store, wid)
    assert (record.status, record.error) == (S.ERROR, '"final0"')
    assert get_step(any_store, wid, 2).status == StepState.SUCCESS  # a running one's output
    assert any_store.claim_chain_step(wid, 1, "link1", executor(any_store), 0) is None


def test_each_resume_sets_the_failed_run_aside(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    for run in range(2):
        held = lease(any_store, wid, 0, executor(any_store))
        assert any_store.fail_member(wid, 0, held, 0, "link0", f'"e{run}"', f'"f{run}"')[0]
        assert resumed(any_store, wid) == ResumeOutcome.RESUMED
    runs = any_store.load_step_history(wid)[0]
    assert [(r.error, r.attempt_errors) for r in runs] == [('"f0"', ('"e0"',)), ('"f1"', ('"e1"',))]
    assert get_step(any_store, wid, 0).status == StepState.PENDING


def test_a_deleted_workflow_takes_its_step_history_with_it(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    held = lease(any_store, wid, 0, executor(any_store))
    assert any_store.fail_member(wid, 0, held, 0, "link0", '"e"', '"f"')[0]
    assert resumed(any_store, wid) == ResumeOutcome.RESUMED
    assert any_store.load_step_history(wid)
    any_store.delete_workflow(wid)
    assert any_store.load_step_history(wid) == {}


def nested_parent(store: DurableStore) -> str:
    """A canvas whose member 0 is a nested canvas (runtime/nested.py), then a callback."""
    wid = chain(store, links=2)
    store.delete_workflow(wid)
    now = store.clock.now_ms()
    record = WorkflowRecord(wid, "canvas:x", S.ENQUEUED, kind=WorkflowKind.CHAIN,
                            created_at_ms=now, updated_at_ms=now)  # fmt: skip
    steps = [
        StepRecord(wid, i, name, StepState.PENDING, signature="{}", task_id=f"{wid}-t{i}")
        for i, name in enumerate((NESTED_STEP, "link1"))
    ]
    assert store.insert_chain(record, steps)
    return wid


def test_a_nested_member_waiting_for_its_running_child_is_not_stalled(
    any_store: DurableStore,
) -> None:
    """The sweep leaves a parent alone while its child canvas runs (the child has its own
    recovery); a child that ended without completing the parent's member (a crash between
    the two), or a child never started, makes the parent stalled."""
    waiting, ended, unopened = (nested_parent(any_store) for _ in range(3))
    running_child = chain(any_store, links=1, workflow_id=nested_canvas_id(waiting, 0))
    chain(any_store, links=1, workflow_id=nested_canvas_id(ended, 0), status=S.SUCCESS)
    clock(any_store).advance(2 * MINUTE)
    found = dict(stalled(any_store))
    assert found == {ended: RECOVERED, unopened: RECOVERED, running_child: RECOVERED}
