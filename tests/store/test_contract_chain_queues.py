"""The ``DurableStore`` contract of chain steps in durable queues, on every store: a chain
recorded waiting for its first step's queue is neither leased nor re-sent until admitted;
a step's checkpoint with a route moves the chain into its next step's queue (its slot
freed, a new entry) or out of it; the limiter counts every step's admission; a dead
executor keeps the slot until the sweep hands the step on."""

from __future__ import annotations

from celery_durable.flowtypes import WAIT_FOR_ADMISSION_MS, ChainRoute, QueueEntry, QueueSpec
from celery_durable.store.interface import DurableStore
from celery_durable.types import StepRecord, StepState, WorkflowKind, WorkflowRecord
from tests.store.contract import MINUTE, S, clock, executor, fresh, get, lease, stalled, uid

Q = QueueSpec("charges", concurrency=1, limiter=(10, 60.0))
OTHER = QueueSpec("notify", concurrency=1)


def entry(store: DurableStore, wid: str, spec: QueueSpec = Q) -> QueueEntry:
    now = store.clock.now_ms()
    return QueueEntry(wid, spec.name, enqueued_at_ms=now, not_before_ms=now)


def queued_chain(store: DurableStore, links: int = 3) -> tuple[str, list[str]]:
    """A chain whose first step waits in ``Q``; returns its id and the ids admitted."""
    now = store.clock.now_ms()
    wid = uid("chain")
    record = WorkflowRecord(
        wid, "chain:link0", S.ENQUEUED, kind=WorkflowKind.CHAIN, queue=Q.name,
        wake_at_ms=WAIT_FOR_ADMISSION_MS, created_at_ms=now, updated_at_ms=now,
    )  # fmt: skip
    steps = [
        StepRecord(wid, i, f"link{i}", StepState.PENDING, attempts=0, signature="{}")
        for i in range(links)
    ]
    result = store.enqueue_workflow(record, entry(store, wid), Q, steps)
    assert result.created and result.record is not None
    return wid, [r.workflow_id for r in result.admitted]


def finish(store: DurableStore, wid: str, step_id: int, route: ChainRoute | None) -> None:
    held = lease(store, wid, step_id, executor(store))
    assert store.finish_chain_step(wid, step_id, held, '"out"', 1, False, route)


def test_a_chain_waits_for_its_first_steps_queue(any_store: DurableStore) -> None:
    first, admitted = queued_chain(any_store)
    assert admitted == [first]  # a free slot: admitted with its recording
    second, admitted = queued_chain(any_store)
    assert admitted == []
    assert sorted(any_store.load_steps(second)) == [0, 1, 2]
    owner = executor(any_store)
    assert any_store.claim_chain_step(second, 0, "link0", owner, fresh(any_store)) is None
    clock(any_store).advance(2 * MINUTE)
    swept = dict(stalled(any_store))
    assert second not in swept  # waiting: no message to lose
    assert first in swept  # admitted, and its message never came
    assert (any_store.queue_stats(Q).running, any_store.queue_stats(Q).waiting) == (1, 1)


def test_a_checkpoint_moves_the_chain_into_and_out_of_queues(any_store: DurableStore) -> None:
    wid, _ = queued_chain(any_store, links=3)
    other, _ = queued_chain(any_store)
    finish(any_store, wid, 0, ChainRoute(OTHER.name, entry(any_store, wid, OTHER)))
    moved = get(any_store, wid)
    assert (moved.queue, moved.status, moved.wake_at_ms) == (
        OTHER.name, S.ENQUEUED, WAIT_FOR_ADMISSION_MS,
    )  # fmt: skip
    assert any_store.claim_chain_step(wid, 1, "link1", executor(any_store), 0) is None
    assert [r.workflow_id for r in any_store.admit(Q)] == [other]  # Q's slot was freed
    assert [r.workflow_id for r in any_store.admit(OTHER)] == [wid]
    finish(any_store, wid, 1, ChainRoute("plain"))
    left = get(any_store, wid)
    assert (left.queue, left.status, left.wake_at_ms) == ("plain", S.PENDING, None)
    assert any_store.queue_stats(OTHER).running == 0
    assert any_store.queue_stats(Q).window_starts == 2  # both admissions in the window


def test_a_chain_waits_again_in_the_same_queue(any_store: DurableStore) -> None:
    spec = QueueSpec("twice", concurrency=1, limiter=(2, 60.0))
    wid = uid("chain")
    now = any_store.clock.now_ms()
    record = WorkflowRecord(
        wid, "chain:link0", S.ENQUEUED, kind=WorkflowKind.CHAIN, queue=spec.name,
        wake_at_ms=WAIT_FOR_ADMISSION_MS, created_at_ms=now, updated_at_ms=now,
    )  # fmt: skip
    steps = [StepRecord(wid, i, f"link{i}", StepState.PENDING, attempts=0) for i in range(3)]
    assert any_store.enqueue_workflow(record, entry(any_store, wid, spec), spec, steps).admitted
    finish(any_store, wid, 0, ChainRoute(spec.name, entry(any_store, wid, spec)))
    assert [r.workflow_id for r in any_store.admit(spec)] == [wid]
    finish(any_store, wid, 1, ChainRoute(spec.name, entry(any_store, wid, spec)))
    assert any_store.admit(spec) == []  # the limiter: two starts in its window already
    clock(any_store).advance(60_001)
    assert [r.workflow_id for r in any_store.admit(spec)] == [wid]


def test_a_dead_executor_keeps_the_chain_steps_slot(any_store: DurableStore) -> None:
    wid, _ = queued_chain(any_store)
    waiting, _ = queued_chain(any_store)
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 10 * MINUTE)
    assert any_store.claim_chain_step(wid, 0, "link0", dead, fresh(any_store)) is not None
    assert any_store.admit(Q) == []  # its step runs (under a dead executor): slot held
    assert wid in dict(stalled(any_store))
    recovered = get(any_store, wid)
    assert (recovered.queue, recovered.status, recovered.wake_at_ms) == (Q.name, S.ENQUEUED, None)
    assert any_store.admit(Q) == []  # recovered and due: still holds it until it ends
    assert any_store.set_status(wid, S.CANCELLED)
    assert [r.workflow_id for r in any_store.admit(Q)] == [waiting]


def test_a_resumed_ended_chain_waits_for_a_slot_an_active_one_does_not(
    any_store: DurableStore,
) -> None:
    """``resume_workflow(wait_in=...)``: a chain that had ended held no slot, so it waits
    (a new entry, admitted by the next admission); a stalled one that holds its slot is
    due at once, the entry offered ignored."""
    ended, _ = queued_chain(any_store)
    any_store.set_status(ended, S.CANCELLED)
    holder, admitted = queued_chain(any_store)
    assert admitted == [holder]
    found = any_store.resume_workflow(ended, fresh(any_store), wait_in=entry(any_store, ended))
    assert found is not None and found[0].status == S.CANCELLED
    record = get(any_store, ended)
    assert (record.status, record.wake_at_ms, record.queue) == (
        S.ENQUEUED, WAIT_FOR_ADMISSION_MS, Q.name,
    )  # fmt: skip
    assert (any_store.queue_stats(Q).running, any_store.queue_stats(Q).waiting) == (1, 1)
    assert any_store.admit(Q) == []  # the holder still runs
    any_store.set_status(holder, S.SUCCESS)
    assert [r.workflow_id for r in any_store.admit(Q)] == [ended]

    found = any_store.resume_workflow(ended, fresh(any_store), wait_in=entry(any_store, ended))
    assert found is not None
    record = get(any_store, ended)
    assert record.wake_at_ms != WAIT_FOR_ADMISSION_MS  # active: it keeps its slot
    assert any_store.queue_stats(Q).waiting == 0


def test_a_fork_with_an_entry_waits_for_admission(any_store: DurableStore) -> None:
    source, admitted = queued_chain(any_store)
    assert admitted == [source]
    copy = uid("fork")
    any_store.fork_workflow(source, copy, 0, wait_in=entry(any_store, copy))
    record = get(any_store, copy)
    assert (record.status, record.wake_at_ms, record.queue) == (
        S.ENQUEUED, WAIT_FOR_ADMISSION_MS, Q.name,
    )  # fmt: skip
    assert any_store.admit(Q) == []  # the source holds the one slot
    any_store.set_status(source, S.SUCCESS)
    assert [r.workflow_id for r in any_store.admit(Q)] == [copy]


def test_requeue_puts_an_active_workflow_back_in_line(any_store: DurableStore) -> None:
    first, admitted = queued_chain(any_store)
    assert admitted == [first]
    second, _ = queued_chain(any_store)  # waits behind it
    any_store.requeue_workflow(entry(any_store, first))  # (recovery, its worker gone)
    record = get(any_store, first)
    assert (record.status, record.wake_at_ms) == (S.ENQUEUED, WAIT_FOR_ADMISSION_MS)
    assert [r.workflow_id for r in any_store.admit(Q)] == [second]  # back of the line
    any_store.set_status(second, S.SUCCESS)
    assert [r.workflow_id for r in any_store.admit(Q)] == [first]
    any_store.set_status(first, S.ERROR)
    any_store.requeue_workflow(entry(any_store, first))  # ended: nothing
    assert get(any_store, first).status == S.ERROR
    assert any_store.queue_stats(Q).waiting == 0
