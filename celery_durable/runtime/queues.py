"""Durable queues: a workflow waits in the store until admission, which publishes it
(no SQL, no Celery: the store admits, ``runtime.publish`` sends).

A start in a queue writes the workflow (ENQUEUED, waiting for admission) and admits what
the queue's limits allow in the same transaction, so the happy path costs one write. A
slot freed by a workflow's end is refilled by an admission right after it (the worker
that ran it calls ``admit``), and a periodic pass (``admission_pass``, one cheap read per
queue when nothing is due) covers delays, limiter windows and cancellations.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace

from ..errors import ConflictingWorkflowError, DuplicateWorkflowError
from ..flowtypes import WAIT_FOR_ADMISSION_MS, QueueEntry, QueueSpec
from ..types import StepRecord, WorkflowRecord
from .enqueue_options import EnqueueOptions
from .runtime import Runtime, log
from .workflows import StartRequest, build_record

Publish = Callable[[WorkflowRecord], None]


def check_options(spec: QueueSpec, options: EnqueueOptions) -> None:
    if options.priority is not None and not spec.priority_enabled:
        raise ValueError(
            f"priority given for durable queue {spec.name!r}, which has no priorities: "
            "declare it with priority_enabled=True"
        )


def enqueue(
    runtime: Runtime, request: StartRequest, spec: QueueSpec, options: EnqueueOptions
) -> tuple[WorkflowRecord, bool]:
    """Record ``request`` waiting in ``spec``'s queue and publish whatever this admitted.

    Returns the row and whether this call created it (an existing id of the same name is
    returned as it is). A deduplication id held by an active workflow of the queue raises
    ``DuplicateWorkflowError``; nothing is written then.
    """
    check_options(spec, options)
    if options.timeout_seconds is not None:
        request = replace(request, timeout=options.timeout_seconds)
    record = replace(
        build_record(runtime, replace(request, queue=spec.name)),
        wake_at_ms=WAIT_FOR_ADMISSION_MS,
    )
    delay_ms = int((options.delay_seconds or 0) * 1000)
    entry = QueueEntry(
        workflow_id=record.workflow_id,
        queue=spec.name,
        priority=options.priority or 0,
        deduplication_id=options.deduplication_id,
        enqueued_at_ms=record.created_at_ms,
        not_before_ms=record.created_at_ms + delay_ms,
    )
    return record_waiting(runtime, record, entry, spec)


def record_waiting(
    runtime: Runtime,
    record: WorkflowRecord,
    entry: QueueEntry,
    spec: QueueSpec,
    chain_steps: Sequence[StepRecord] = (),
) -> tuple[WorkflowRecord, bool]:
    """Write ``record`` (a chain: with its steps) waiting in ``spec``'s queue with
    ``entry``, and publish whatever this admitted; an existing id of the same name is
    returned as it is (with False), another name or a held deduplication id raises."""
    result = runtime.store.enqueue_workflow(record, entry, spec, chain_steps)
    if result.duplicate_of is not None:
        assert entry.deduplication_id is not None
        raise DuplicateWorkflowError(entry.deduplication_id, result.duplicate_of, spec.name)
    assert result.record is not None
    if result.record.name != record.name:
        raise ConflictingWorkflowError(record.workflow_id, result.record.name, record.name)
    publish(runtime, result.admitted)
    return result.record, result.created


def requeue(runtime: Runtime, workflow_id: str, spec: QueueSpec) -> None:
    """An active workflow (or chain step) of ``spec``'s queue waits for admission again,
    at the end of the line; admitted by the next admission (a worker's, in a queue with
    ``worker_concurrency``: each counts its own)."""
    now = runtime.clock.now_ms()
    runtime.store.requeue_workflow(QueueEntry(workflow_id, spec.name, enqueued_at_ms=now,
                                              not_before_ms=now))  # fmt: skip


def admit(
    runtime: Runtime,
    spec: QueueSpec,
    executor_id: str | None = None,
    send: Publish | None = None,
) -> int:
    """Admit what fits in ``spec``'s queue now (for worker ``executor_id`` in a queue with
    ``worker_concurrency``) and publish it (with ``send``, default ``runtime.publish``);
    returns how many."""
    admitted = runtime.store.admit(spec, executor_id)
    publish(runtime, admitted, send)
    return len(admitted)


def admit_after_end(
    runtime: Runtime,
    spec: QueueSpec,
    executor_id: str | None = None,
    send: Publish | None = None,
    patience: float = 1.0,
) -> int:
    """After a workflow of the queue ran: admit, without queueing behind another admitter.

    When another admission holds the queue's lock, it may have counted the slots before
    this workflow's end committed; one that takes the lock after it cannot miss it. So
    this waits (polling briefly) until it takes the lock itself, or the queue's version
    shows two more admissions since it began (the second began after this one did), or
    ``patience`` runs out (the periodic pass covers it). Under load, the admitters thus
    take turns in batches instead of in a convoy on the lock.
    """
    store = runtime.store
    start = store.queue_version(spec.name)
    deadline = runtime.clock.monotonic() + patience
    while True:
        admitted = store.try_admit(spec, executor_id)
        if admitted is not None:
            publish(runtime, admitted, send)
            return len(admitted)
        if store.queue_version(spec.name) >= start + 2 or runtime.clock.monotonic() > deadline:
            return 0
        runtime.clock.sleep(0.005)


def admission_pass(
    runtime: Runtime,
    specs: Iterable[QueueSpec],
    executor_id: str | None = None,
    send: Publish | None = None,
) -> int:
    """Admit in every queue where a workflow is due (an idle queue costs one read)."""
    total = 0
    for spec in specs:
        if spec.worker_concurrency is not None and executor_id is None:
            continue
        if runtime.store.queue_due(spec.name):
            owner = executor_id if spec.worker_concurrency else None
            total += admit(runtime, spec, owner, send)
    return total


def publish(
    runtime: Runtime, admitted: Iterable[WorkflowRecord], send: Publish | None = None
) -> None:
    """Send each admitted workflow's message; one that fails stays admitted and due, and
    the recovery sweep sends it after ``durable_enqueue_timeout``."""
    send = send or runtime.publish
    if send is None:
        return
    for record in admitted:
        try:
            send(record)
        except Exception as exc:
            log.warning("could not publish admitted workflow %s: %s", record.workflow_id, exc)
