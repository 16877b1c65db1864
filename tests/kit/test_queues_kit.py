"""Durable queues under ``celery_durable.testing`` (in-memory store, messages run in this
process): the end of a queued workflow admits the next (Celery's tracer sends
``task_postrun`` there too), priorities order the waiting ones, deduplication holds while
the holder is active, and a queued workflow's timeout counts from its start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery

from celery_durable import DuplicateWorkflowError, Durable, SetEnqueueOptions
from celery_durable.testing import DurableTestKit

app = Celery("kit_queues", set_as_current=False)
durable = Durable(app)
one_at_a_time = durable.queue("kit-one", concurrency=1, priority_enabled=True)
ran: list[str] = []


@durable.workflow()
def note(key: str) -> str:
    ran.append(key)
    return key


@pytest.fixture
def kit() -> Iterator[DurableTestKit]:
    ran.clear()
    with DurableTestKit(durable) as kit:
        yield kit


def test_an_end_admits_the_next_in_priority_then_fifo_order(kit: DurableTestKit) -> None:
    with kit.hold(note):  # as if no worker took the first message yet
        first = durable.start_workflow(note, "first", queue=one_at_a_time)
        low = [durable.start_workflow(note, f"low{i}", queue="kit-one", priority=5)
               for i in range(2)]  # fmt: skip
        with SetEnqueueOptions(priority=1):
            high = note.apply_async(("high",), queue="kit-one")
        assert durable.get_workflow_status(low[0].workflow_id).status == "ENQUEUED"  # type: ignore[union-attr]
    assert ran == ["first", "high", "low0", "low1"]
    assert first.get_result(timeout=1) == "first" and high.get(timeout=1) == "high"
    assert [s.running for s in durable.queue_stats()] == [0]


def test_deduplication_holds_while_the_holder_is_active(kit: DurableTestKit) -> None:
    with kit.hold(note):
        first = durable.start_workflow(note, "a", queue=one_at_a_time, deduplication_id="d")
        with pytest.raises(DuplicateWorkflowError) as err:
            durable.start_workflow(note, "b", queue=one_at_a_time, deduplication_id="d")
        assert err.value.workflow_id == first.workflow_id
    again = durable.start_workflow(note, "c", queue=one_at_a_time, deduplication_id="d")
    assert again.get_result(timeout=1) == "c" and ran == ["a", "c"]


def test_start_options_are_checked(kit: DurableTestKit) -> None:
    plain = durable.queue("kit-plain")
    with pytest.raises(ValueError, match="priority_enabled"):
        durable.start_workflow(note, "x", queue=plain, priority=1)
    with pytest.raises(ValueError, match="durable queue"):
        durable.start_workflow(note, "x", deduplication_id="d")
    with pytest.raises(ValueError, match="already declared"):
        durable.queue("kit-plain", concurrency=2)
    assert ran == []


@durable.workflow()
def fragile(key: str) -> str:
    ran.append(key)
    if key in broken:
        raise RuntimeError(f"{key} broke")
    return key


broken: set[str] = set()


def test_a_resumed_failed_workflow_waits_for_a_slot(kit: DurableTestKit) -> None:
    """It held no slot once it failed: resumed while the queue is full, it waits (as a
    start does) and the holder's end admits it."""
    broken.add("f")
    failed = durable.start_workflow(fragile, "f", queue=one_at_a_time)
    assert durable.get_workflow_status(failed.workflow_id).status == "ERROR"  # type: ignore[union-attr]
    broken.clear()
    with kit.hold(note):
        holder = durable.start_workflow(note, "holder", queue=one_at_a_time)
        durable.resume_workflow(failed.workflow_id)
        status = durable.get_workflow_status(failed.workflow_id)
        assert status is not None and status.status == "ENQUEUED"
        assert [s.running for s in durable.queue_stats() if s.queue == "kit-one"] == [1]
    assert holder.get_result(timeout=1) == "holder"
    assert failed.get_result(timeout=1) == "f"
    assert ran == ["f", "holder", "f"]


def test_a_fork_in_a_durable_queue_waits_for_a_slot(kit: DurableTestKit) -> None:
    done = durable.start_workflow(note, "source", queue=one_at_a_time)
    assert done.get_result(timeout=1) == "source"
    with kit.hold(note):
        holder = durable.start_workflow(note, "holder", queue=one_at_a_time)
        copy = durable.fork_workflow(done.workflow_id, 0)
        status = durable.get_workflow_status(copy.workflow_id)
        assert status is not None and status.status == "ENQUEUED"
        assert [s.running for s in durable.queue_stats() if s.queue == "kit-one"] == [1]
    assert holder.get_result(timeout=1) == "holder" and copy.get_result(timeout=1) == "source"
    assert ran == ["source", "holder", "source"]
