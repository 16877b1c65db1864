"""The ``DurableStore`` contract of flow control, on every store: a queued workflow waits
(no delivery claims it, the sweep leaves it), admission respects concurrency, the limiter
window, priorities and FIFO and delays, slots are counted from workflow rows (an end frees
one, a dead owner keeps it), deduplication while active, and schedule states."""

from __future__ import annotations

from dataclasses import replace

from celery_durable.flowtypes import WAIT_FOR_ADMISSION_MS, QueueEntry, QueueSpec
from celery_durable.store.interface import DurableStore
from celery_durable.types import WorkflowRecord
from tests.store.contract import MINUTE, S, claim, clock, executor, get, stalled, uid

Q = QueueSpec("q", concurrency=2)


def put(
    store: DurableStore, spec: QueueSpec = Q, *, wid: str | None = None, **entry: object
) -> tuple[str, list[str]]:
    """Enqueue a fresh workflow; returns its id and the ids admitted by that call."""
    now = store.clock.now_ms()
    record = WorkflowRecord(
        workflow_id=wid or uid(), name="tests.store.wf", status=S.ENQUEUED, queue=spec.name,
        inputs='{"args": [], "kwargs": {}}', wake_at_ms=WAIT_FOR_ADMISSION_MS,
        created_at_ms=now, updated_at_ms=now,
    )  # fmt: skip
    values = {"enqueued_at_ms": now, "not_before_ms": now, **entry}
    result = store.enqueue_workflow(
        record,
        QueueEntry(record.workflow_id, spec.name, **values),
        spec,  # type: ignore[arg-type]
    )
    assert result.duplicate_of is None and result.record is not None
    return record.workflow_id, [r.workflow_id for r in result.admitted]


def test_admission_keeps_concurrency_and_fifo(any_store: DurableStore) -> None:
    ids = [put(any_store)[1] for _ in range(4)]
    admitted = [a for batch in ids for a in batch]
    assert len(admitted) == 2
    waiting = [get(any_store, w) for w in (put(any_store)[0],)]
    assert waiting[0].wake_at_ms == WAIT_FOR_ADMISSION_MS
    # a waiting workflow is never claimed by a delivery, nor re-sent by the sweep
    owner = executor(any_store)
    assert any_store.claim_workflow(waiting[0].workflow_id, "tests.store.wf", owner, 0) is None
    clock(any_store).advance(2 * MINUTE)
    assert waiting[0].workflow_id not in dict(stalled(any_store))
    assert any_store.admit(Q) == []  # both slots held (admitted, not yet claimed)
    first = claim(any_store, get(any_store, admitted[0]), executor(any_store))
    assert any_store.finish_workflow(first.workflow_id, first.executor_id, S.SUCCESS, '"ok"')
    stats = any_store.queue_stats(Q)
    assert (stats.running, stats.waiting) == (1, 3)
    nxt = any_store.admit(Q)
    assert len(nxt) == 1 and nxt[0].wake_at_ms is None and nxt[0].status == S.ENQUEUED
    assert any_store.admit(Q) == []


def test_a_dead_owner_keeps_its_slot_until_the_workflow_ends(any_store: DurableStore) -> None:
    spec = QueueSpec("one", concurrency=1)
    first, admitted = put(any_store, spec)
    assert admitted == [first]
    put(any_store, spec)
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 10 * MINUTE)
    claim(any_store, get(any_store, first), dead)
    assert any_store.admit(spec) == []
    assert any_store.queue_stats(spec).running == 1
    assert any_store.set_status(first, S.CANCELLED)
    assert len(any_store.admit(spec)) == 1


def test_limiter_counts_starts_in_the_window(any_store: DurableStore) -> None:
    spec = QueueSpec("rate", limiter=(2, 1.0))
    admitted = [a for _ in range(5) for a in put(any_store, spec)[1]]
    assert len(admitted) == 2
    assert any_store.queue_stats(spec).window_starts == 2
    clock(any_store).advance(999)
    assert any_store.admit(spec) == []
    clock(any_store).advance(1)
    assert len(any_store.admit(spec)) == 2
    clock(any_store).advance(1000)
    assert len(any_store.admit(spec)) == 1


def test_priority_then_fifo_and_delays(any_store: DurableStore) -> None:
    spec = QueueSpec("prio", concurrency=1, priority_enabled=True)
    now = any_store.clock.now_ms()
    running, _ = put(any_store, spec)
    low = [put(any_store, spec, priority=5)[0] for _ in range(2)]
    late = put(any_store, spec, priority=0, not_before_ms=now + 5000)[0]
    high = [put(any_store, spec, priority=1)[0] for _ in range(2)]
    order = []
    previous = running
    for _ in range(4):
        assert any_store.set_status(previous, S.SUCCESS)
        (admitted,) = any_store.admit(spec)
        order.append(admitted.workflow_id)
        previous = admitted.workflow_id
    assert order == [*high, *low]
    assert any_store.set_status(previous, S.SUCCESS)
    assert not any_store.queue_due(spec.name) and any_store.admit(spec) == []
    clock(any_store).advance(5000)
    assert any_store.queue_due(spec.name)
    assert [r.workflow_id for r in any_store.admit(spec)] == [late]


def test_deduplication_while_active(any_store: DurableStore) -> None:
    spec = QueueSpec("dedup")
    first, _ = put(any_store, spec, deduplication_id="order-1")
    record = replace(get(any_store, first), workflow_id=uid())
    entry = QueueEntry(record.workflow_id, spec.name, deduplication_id="order-1")
    result = any_store.enqueue_workflow(record, entry, spec)
    assert (result.created, result.duplicate_of) == (False, first)
    assert any_store.get_workflow(record.workflow_id) is None
    put(any_store, QueueSpec("other"), deduplication_id="order-1")  # another queue: free
    assert any_store.set_status(first, S.SUCCESS)
    assert any_store.enqueue_workflow(record, entry, spec).created


def test_an_existing_id_is_returned_whoever_holds_its_deduplication_id(
    any_store: DurableStore,
) -> None:
    """A replayed start (a child's, after a crash before its parent's checkpoint) finds
    its workflow, even when it ended and another now holds the deduplication id."""
    spec = QueueSpec("dedup-replay")
    first, _ = put(any_store, spec, deduplication_id="order-2")
    assert any_store.set_status(first, S.SUCCESS)
    holder, _ = put(any_store, spec, deduplication_id="order-2")
    again = any_store.enqueue_workflow(
        get(any_store, first), QueueEntry(first, spec.name, deduplication_id="order-2"), spec
    )
    assert (again.created, again.duplicate_of) == (False, None)
    assert again.record is not None and again.record.status == S.SUCCESS
    assert any_store.queue_stats(spec).waiting == 0  # no second entry, nothing re-queued
    fresh = replace(get(any_store, first), workflow_id=uid(), status=S.ENQUEUED)
    entry = QueueEntry(fresh.workflow_id, spec.name, deduplication_id="order-2")
    assert any_store.enqueue_workflow(fresh, entry, spec).duplicate_of == holder  # still held


def test_an_existing_id_is_returned(any_store: DurableStore) -> None:
    wid, _ = put(any_store)
    record = get(any_store, wid)
    result = any_store.enqueue_workflow(record, QueueEntry(wid, Q.name), Q)
    assert not result.created and result.record is not None
    assert result.record.workflow_id == wid


def test_schedule_states(any_store: DurableStore) -> None:
    assert any_store.get_schedules(["s"]) == []
    any_store.advance_schedule("s", 2000)
    any_store.advance_schedule("s", 1000)  # never back
    any_store.set_schedule_paused("s", True)
    any_store.set_schedule_paused("t", True)
    (s,) = any_store.get_schedules(["s"])
    assert (s.last_tick_ms, s.paused) == (2000, True)
    any_store.set_schedule_paused("s", False)
    assert [(x.name, x.paused) for x in any_store.get_schedules()] == [("s", False), ("t", True)]


def test_worker_concurrency_admits_per_worker(any_store: DurableStore) -> None:
    spec = QueueSpec("wc", concurrency=3, worker_concurrency=2)
    for _ in range(6):
        assert put(any_store, spec)[1] == []  # only a worker admits, for itself
    a, b = executor(any_store), executor(any_store)
    mine = any_store.admit(spec, a)
    assert len(mine) == 2 and any_store.admit(spec, a) == []
    assert len(any_store.admit(spec, b)) == 1  # the global concurrency caps b
    assert any_store.set_status(mine[0].workflow_id, S.SUCCESS)
    assert len(any_store.admit(spec, a)) == 1


def test_an_admitted_workflow_whose_message_is_lost_is_recovered(any_store: DurableStore) -> None:
    wid, admitted = put(any_store)
    assert admitted == [wid]
    clock(any_store).advance(2 * MINUTE)
    assert wid in dict(stalled(any_store))  # the sweep re-sends it (to its queue)


def test_a_workflow_cancelled_while_waiting_leaves_the_queue(any_store: DurableStore) -> None:
    spec = QueueSpec("leave", concurrency=1, limiter=(5, 60.0))
    first, _ = put(any_store, spec)
    gone, _ = put(any_store, spec)
    last, _ = put(any_store, spec)
    assert any_store.set_status(gone, S.CANCELLED)
    assert any_store.set_status(first, S.SUCCESS)
    assert [r.workflow_id for r in any_store.admit(spec)] == [last]
    stats = any_store.queue_stats(spec)
    assert (stats.running, stats.waiting, stats.window_starts) == (1, 0, 2)
    assert not any_store.queue_due(spec.name)


def test_the_slot_index_names_the_admission_wait() -> None:
    from celery_durable.store.tables import HOLDS_SLOT_WHERE, WAITING_ROW_WHERE

    assert f"wake_at_ms <> {WAIT_FOR_ADMISSION_MS}" in str(HOLDS_SLOT_WHERE)
    assert f"wake_at_ms = {WAIT_FOR_ADMISSION_MS}" in str(WAITING_ROW_WHERE)


def test_versions_count_admissions_and_try_admit_admits(any_store: DurableStore) -> None:
    spec = QueueSpec("ver", concurrency=1)
    assert any_store.queue_version("ver") == 0
    first, _ = put(any_store, spec)
    second, _ = put(any_store, spec)
    before = any_store.queue_version("ver")
    assert before >= 2
    assert any_store.try_admit(spec) == []
    assert any_store.set_status(first, S.SUCCESS)
    admitted = any_store.try_admit(spec)
    assert admitted is not None and [r.workflow_id for r in admitted] == [second]
    assert any_store.queue_version("ver") == before + 2
