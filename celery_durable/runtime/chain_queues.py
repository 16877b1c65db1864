"""Chain steps in durable queues: a step routed to one waits in the store for a slot, as a
workflow does (no SQL, no Celery here).

The chain's row is what waits and what holds the slot: while its next step waits, the row
is ENQUEUED in that queue with ``wake_at_ms = WAIT_FOR_ADMISSION_MS`` and an entry of its
own; admission makes it due and publishes the step (``runtime.publish``); it holds the slot
while the step runs, through its retries, and frees it when the step's checkpoint moves the
chain on (to the next step's queue) or the chain ends. A chain whose first step is routed
to a durable queue is recorded waiting; a later step is routed by the checkpoint of the one
before it (``ChainRoute``), in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..flowtypes import WAIT_FOR_ADMISSION_MS, ChainRoute, QueueEntry, QueueSpec
from ..types import StepRecord, WorkflowRecord
from .enqueue_options import EnqueueOptions
from .queues import check_options, record_waiting
from .runtime import Runtime


def step_entry(runtime: Runtime, workflow_id: str, spec: QueueSpec, priority: int) -> QueueEntry:
    """A chain step's place in ``spec``'s queue, from now (a chain step takes no delay and
    no deduplication id; its ``priority`` counts where the queue enables priorities)."""
    check_options(spec, EnqueueOptions(priority=priority or None))
    now = runtime.clock.now_ms()
    return QueueEntry(
        workflow_id=workflow_id,
        queue=spec.name,
        priority=priority,
        enqueued_at_ms=now,
        not_before_ms=now,
    )


def enqueue_chain(
    runtime: Runtime,
    record: WorkflowRecord,
    chain_steps: Sequence[StepRecord],
    spec: QueueSpec,
    options: EnqueueOptions,
) -> tuple[WorkflowRecord, bool]:
    """Record a chain whose first step waits in ``spec``'s queue (with the start's
    priority, deduplication id and delay), admit what fits and publish it. Returns the row
    and whether this call created it; a held deduplication id raises
    ``DuplicateWorkflowError`` and writes nothing."""
    check_options(spec, options)
    entry = step_entry(runtime, record.workflow_id, spec, options.priority or 0)
    delay_ms = int((options.delay_seconds or 0) * 1000)
    entry = replace(
        entry,
        deduplication_id=options.deduplication_id,
        not_before_ms=entry.enqueued_at_ms + delay_ms,
    )
    waiting = replace(record, queue=spec.name, wake_at_ms=WAIT_FOR_ADMISSION_MS)
    return record_waiting(runtime, waiting, entry, spec, chain_steps)


def next_route(
    runtime: Runtime,
    workflow_id: str,
    current: QueueSpec | None,
    following: QueueSpec | None,
    following_queue: str | None,
    priority: int = 0,
) -> ChainRoute | None:
    """Where the chain goes when the step delivered from ``current`` (a durable queue, or
    None) commits, its next step being routed to ``following`` (a durable queue, or None)
    and to the Celery queue ``following_queue``. None: no durable queue involved, nothing
    to write beyond the checkpoint (the hot path)."""
    if following is not None:
        return ChainRoute(following.name, step_entry(runtime, workflow_id, following, priority))
    if current is not None:
        return ChainRoute(following_queue)
    return None


def stamped(runtime: Runtime, route: ChainRoute | None) -> ChainRoute | None:
    """``route`` with its entry enqueued now (as the checkpoint commits, not as the step
    began)."""
    if route is None or route.entry is None:
        return route
    now = runtime.clock.now_ms()
    return replace(route, entry=replace(route.entry, enqueued_at_ms=now, not_before_ms=now))
