"""Child workflows in durable queues under ``celery_durable.testing``: a child started with
``queue=`` waits for admission like any workflow of that queue (its priority, delay,
timeout and deduplication id count), its parent still gets its result, and a crash of the
parent around the child's start leaves one child and one queue entry per id."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from celery import Celery

from celery_durable import (
    DuplicateWorkflowError,
    Durable,
    SetEnqueueOptions,
    SetWorkflowTimeout,
)
from celery_durable.flowtypes import WAIT_FOR_ADMISSION_MS
from celery_durable.runtime.queues import admission_pass
from celery_durable.store.memory import MemoryStore
from celery_durable.testing import DurableTestKit, SimulatedCrash

app = Celery("kit_child_queues", set_as_current=False)
durable = Durable(app)
single = durable.queue("kit-children", concurrency=1)
ranked = durable.queue("kit-ranked-children", concurrency=1, priority_enabled=True)
seen: list[tuple[str, int]] = []  # (child's key, running in its queue) as each child runs


@durable.workflow()
def leaf(key: str) -> str:
    running = [s.running for s in durable.queue_stats() if s.queue == single.name]
    seen.append((key, running[0]))
    return key.upper()


@durable.workflow()
def fan_out(keys: list[str]) -> list[str]:
    handles = [durable.start_workflow(leaf, k, queue=single) for k in keys]
    return durable.gather(handles)  # type: ignore[no-any-return]


@durable.workflow()
def one_by_one(keys: list[str]) -> list[str]:
    with SetEnqueueOptions(queue=single):
        started = [leaf.apply_async((k,)) for k in keys]
    return durable.gather([durable.retrieve_workflow(r.id) for r in started])  # type: ignore[no-any-return]


@durable.workflow()
def ranked_children(options: list[dict[str, Any]]) -> list[str]:
    handles = [durable.start_workflow(leaf, o.pop("key"), queue=ranked, **o) for o in options]
    return durable.gather(handles)  # type: ignore[no-any-return]


@pytest.fixture
def kit() -> Iterator[DurableTestKit]:
    seen.clear()
    with DurableTestKit(durable) as kit:
        yield kit


def children_of(parent_id: str) -> list[str]:
    found = durable.list_workflows(parent_workflow_id=parent_id, limit=None)
    return sorted(w.workflow_id for w in found)


def entries_of(kit: DurableTestKit) -> Counter[str]:
    """Queue entries per workflow id (the memory store's own table)."""
    assert isinstance(kit.store, MemoryStore)
    return Counter(e.workflow_id for e in kit.store._entries.values())


def test_children_wait_in_their_queue_and_are_admitted_one_at_a_time(
    kit: DurableTestKit,
) -> None:
    with kit.hold(leaf):  # as if no worker took the first child yet
        handle = durable.start_workflow(fan_out, ["a", "b", "c"])
        ids = children_of(handle.workflow_id)
        assert ids == [f"{handle.workflow_id}-{i}" for i in (0, 1, 2)]
        rows = [kit.store.get_workflow(i) for i in ids]
        assert [r.status for r in rows if r] == ["ENQUEUED"] * 3
        assert [r.queue for r in rows if r] == [single.name] * 3
        # the first admitted in its start's transaction, the others waiting for a slot
        assert [r.wake_at_ms == WAIT_FOR_ADMISSION_MS for r in rows if r] == [False, True, True]
    assert handle.get_result() == ["A", "B", "C"]
    assert seen == [("a", 1), ("b", 1), ("c", 1)]
    assert entries_of(kit) == {i: 1 for i in ids}


def test_children_started_under_set_enqueue_options_wait_too(kit: DurableTestKit) -> None:
    handle = durable.start_workflow(one_by_one, ["x", "y"])
    assert handle.get_result() == ["X", "Y"]
    assert seen == [("x", 1), ("y", 1)]
    assert set(entries_of(kit)) == set(children_of(handle.workflow_id))


def test_a_childs_priority_and_delay_order_its_admission(kit: DurableTestKit) -> None:
    options: list[dict[str, Any]] = [
        {"key": "first", "priority": 5},
        {"key": "late", "priority": 0, "delay_seconds": 3600},
        {"key": "low", "priority": 9},
        {"key": "high", "priority": 1},
    ]
    with kit.hold(leaf):  # the first admitted at its start, the others wait
        handle = durable.start_workflow(ranked_children, options)
    assert [key for key, _ in seen] == ["first", "high", "low"]
    assert admission_pass(durable.runtime, [ranked.spec]) == 0  # a worker's pass: not yet
    kit.clock.advance(3601)
    assert admission_pass(durable.runtime, [ranked.spec]) == 1
    assert handle.get_result() == ["FIRST", "LATE", "LOW", "HIGH"]
    assert [key for key, _ in seen] == ["first", "high", "low", "late"]


def test_a_child_keeps_the_earlier_of_its_parents_deadline_and_its_own(
    kit: DurableTestKit,
) -> None:
    with SetWorkflowTimeout(300):
        handle = durable.start_workflow(
            ranked_children, [{"key": "own", "timeout_seconds": 60}, {"key": "inherits"}]
        )
    assert handle.get_result() == ["OWN", "INHERITS"]
    parent = kit.store.get_workflow(handle.workflow_id)
    own, inherits = [kit.store.get_workflow(i) for i in children_of(handle.workflow_id)]
    assert parent is not None and parent.deadline_ms is not None
    assert own is not None and own.deadline_ms is not None
    assert own.created_at_ms + 60_000 == own.deadline_ms < parent.deadline_ms
    assert inherits is not None and inherits.deadline_ms == parent.deadline_ms
    assert own.queue == inherits.queue == ranked.name


def test_a_childs_deduplication_id_is_held_by_an_active_workflow(kit: DurableTestKit) -> None:
    with kit.hold(leaf):
        holder = durable.start_workflow(leaf, "h", queue=ranked, deduplication_id="d")
        handle = durable.start_workflow(ranked_children, [{"key": "k", "deduplication_id": "d"}])
        with pytest.raises(DuplicateWorkflowError) as err:
            handle.get_result()
        assert err.value.workflow_id == holder.workflow_id
    assert children_of(handle.workflow_id) == []


def test_a_crash_after_the_childs_start_leaves_one_child_and_one_entry(
    kit: DurableTestKit,
) -> None:
    with kit.crash_after(f"durable.start:{leaf.name}", times=2):
        handle = durable.start_workflow(fan_out, ["a", "b", "c"])
    kit.recover()
    kit.recover()
    assert handle.get_result() == ["A", "B", "C"]
    ids = children_of(handle.workflow_id)
    assert ids == [f"{handle.workflow_id}-{i}" for i in (0, 1, 2)]
    assert entries_of(kit) == {i: 1 for i in ids}
    assert sorted(key for key, _ in seen) == ["a", "b", "c"]


def test_a_crash_before_the_start_is_checkpointed_enters_no_second_entry(
    kit: DurableTestKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    record_step = kit.store.record_step
    crashes = []

    def crash_once(step: Any) -> bool:
        if step.name.startswith("durable.start:") and not crashes:
            crashes.append(step.workflow_id)  # the child is recorded, its start is not
            raise SimulatedCrash("crash between the child's insert and the checkpoint")
        return record_step(step)

    monkeypatch.setattr(kit.store, "record_step", crash_once)
    handle = durable.start_workflow(fan_out, ["a", "b"])
    assert crashes == [handle.workflow_id]
    kit.recover()
    assert handle.get_result() == ["A", "B"]
    ids = children_of(handle.workflow_id)
    assert ids == [f"{handle.workflow_id}-{i}" for i in (0, 1)]
    assert entries_of(kit) == {i: 1 for i in ids}
    assert sorted(key for key, _ in seen) == ["a", "b"]


@durable.workflow()
def plain_child(timeout_seconds: float, delay_seconds: float) -> str:
    options = {"timeout_seconds": timeout_seconds, "delay_seconds": delay_seconds}
    handle = durable.start_workflow(leaf, "p", **options)  # no durable queue
    return handle.get_result()  # type: ignore[no-any-return]


def test_a_child_outside_durable_queues_takes_its_timeout_and_delay(kit: DurableTestKit) -> None:
    before = kit.clock.time()
    handle = durable.start_workflow(plain_child, 60, 30)
    assert handle.get_result() == "P"
    assert kit.clock.time() - before >= 30  # its message was sent with that countdown
    (child_id,) = children_of(handle.workflow_id)
    child = kit.store.get_workflow(child_id)
    assert child is not None and child.queue is None and child.deadline_ms is not None
    assert child.deadline_ms == child.created_at_ms + 60_000
    assert entries_of(kit) == {}
