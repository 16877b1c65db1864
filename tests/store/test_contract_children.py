"""The ``DurableStore`` contract, on every store: a parent waiting for its children with
its slot given back, the children's end waking it, and the sweep covering a lost wake-up."""

from __future__ import annotations

from celery_durable.store.interface import DurableStore
from celery_durable.types import WAIT_FOR_CHILDREN_MS, WorkflowRecord
from tests.store.contract import (
    MINUTE,
    RECOVERED,
    S,
    claim,
    clock,
    executor,
    get,
    stalled,
    workflow,
)


def family(store: DurableStore, children: int = 2) -> tuple[WorkflowRecord, list[str], str]:
    """A parent running under a live executor, and its children (ENQUEUED)."""
    owner = executor(store)
    parent = claim(store, workflow(store), owner)
    ids = [
        workflow(store, parent_workflow_id=parent.workflow_id).workflow_id for _ in range(children)
    ]
    return parent, ids, owner


def end(store: DurableStore, child_id: str, status: str = S.SUCCESS) -> None:
    assert store.set_status(child_id, status)


def test_a_parent_waits_for_the_children_it_awaits(any_store: DurableStore) -> None:
    parent, (first, second), owner = family(any_store)
    other = workflow(any_store, parent_workflow_id=parent.workflow_id).workflow_id
    assert not any_store.suspend_for_children(parent.workflow_id, executor(any_store), [first])
    assert any_store.suspend_for_children(parent.workflow_id, owner, [first, second])
    waiting = get(any_store, parent.workflow_id)
    assert (waiting.status, waiting.executor_id, waiting.wake_at_ms) == (
        S.ENQUEUED,
        None,
        WAIT_FOR_CHILDREN_MS,
    )
    assert [get(any_store, c).awaited for c in (first, second, other)] == [1, 1, 0]
    # not due by itself: no delivery may claim it
    assert any_store.claim_workflow(parent.workflow_id, parent.name, owner, 0) is None

    end(any_store, other)
    assert not any_store.wake_parent(parent.workflow_id)  # not one it awaits
    end(any_store, first)
    assert not any_store.wake_parent(parent.workflow_id)  # the second still runs
    end(any_store, second, S.ERROR)
    assert any_store.wake_parent(parent.workflow_id)
    assert not any_store.wake_parent(parent.workflow_id)  # once
    woken = get(any_store, parent.workflow_id)
    assert (woken.status, woken.wake_at_ms) == (S.ENQUEUED, None)
    assert any_store.claim_workflow(parent.workflow_id, parent.name, owner, 0) is not None


def test_a_new_wait_replaces_the_awaited_set(any_store: DurableStore) -> None:
    parent, (first, second), owner = family(any_store)
    assert any_store.suspend_for_children(parent.workflow_id, owner, [first])
    end(any_store, first)
    assert any_store.wake_parent(parent.workflow_id)
    claim(any_store, parent, owner)
    assert any_store.suspend_for_children(parent.workflow_id, owner, [second])
    assert [get(any_store, c).awaited for c in (first, second)] == [0, 1]
    assert not any_store.wake_parent(parent.workflow_id)


def test_a_parent_that_is_not_waiting_is_never_woken(any_store: DurableStore) -> None:
    parent, (child, _), owner = family(any_store)
    end(any_store, child)
    assert not any_store.wake_parent(parent.workflow_id)  # still running
    assert any_store.suspend_workflow(parent.workflow_id, owner, any_store.clock.now_ms() + MINUTE)
    assert not any_store.wake_parent(parent.workflow_id)  # waiting out a retry instead


def test_the_sweep_wakes_a_parent_whose_wake_up_was_lost(any_store: DurableStore) -> None:
    parent, (first, second), owner = family(any_store)
    assert any_store.suspend_for_children(parent.workflow_id, owner, [first, second])
    clock(any_store).advance(2 * MINUTE)
    assert parent.workflow_id not in [w for w, _ in stalled(any_store)]  # children still run
    end(any_store, first)
    end(any_store, second)  # ... and the worker that ended it died before waking the parent
    clock(any_store).advance(2 * MINUTE)
    assert (parent.workflow_id, RECOVERED) in stalled(any_store)
    woken = get(any_store, parent.workflow_id)
    assert (woken.status, woken.wake_at_ms, woken.recovery_attempts) == (S.ENQUEUED, None, 0)


def test_past_its_deadline_a_waiting_workflow_can_be_claimed(any_store: DurableStore) -> None:
    """To be cancelled: a delivery at the deadline takes a parent waiting for children, or
    a workflow waiting out a retry due later."""
    owner = executor(any_store)
    deadline = any_store.clock.now_ms() + 1000
    parent = claim(any_store, workflow(any_store, deadline_ms=deadline), owner)
    child = workflow(any_store, parent_workflow_id=parent.workflow_id).workflow_id
    assert any_store.suspend_for_children(parent.workflow_id, owner, [child])
    retrying = workflow(any_store, wake_at_ms=deadline + MINUTE, deadline_ms=deadline)
    for waiting in (parent, retrying):
        assert any_store.claim_workflow(waiting.workflow_id, waiting.name, owner, 0) is None
    clock(any_store).advance(1000)
    for waiting in (parent, retrying):
        assert any_store.claim_workflow(waiting.workflow_id, waiting.name, owner, 0) is not None
