"""Plain data of flow control: durable queues and schedules (issue 13), shared by every
layer like ``types.py``."""

from __future__ import annotations

from dataclasses import dataclass

from .types import WorkflowRecord

#: ``wake_at_ms`` of a workflow waiting in a durable queue for admission: never due by
#: itself (no delivery claims it, the sweep does not re-send it), made due by admission
#: (or cancelled past its deadline). Distinct from ``WAIT_FOR_CHILDREN_MS``.
WAIT_FOR_ADMISSION_MS = (1 << 62) + 1


@dataclass(frozen=True)
class QueueSpec:
    """A declared durable queue's limits (``durable.queue``); ``None`` means no limit.
    ``limiter`` is (starts, period in seconds)."""

    name: str
    concurrency: int | None = None
    worker_concurrency: int | None = None
    limiter: tuple[int, float] | None = None
    priority_enabled: bool = False


@dataclass(frozen=True)
class QueueEntry:
    """A workflow's place in a durable queue, as stored (``durable_queue_entries``)."""

    workflow_id: str
    queue: str
    priority: int = 0
    deduplication_id: str | None = None
    enqueued_at_ms: int = 0
    not_before_ms: int = 0  # delay_seconds: admitted no earlier
    admitted_at_ms: int | None = None  # None while waiting
    executor_id: str | None = None  # the worker it was admitted for (worker_concurrency)


@dataclass(frozen=True)
class ChainRoute:
    """Where a chain goes as a step's checkpoint commits, when a durable queue is involved:
    with ``entry``, its next step waits for admission in ``entry.queue`` (the chain row
    ENQUEUED, waiting, in that queue); without, the chain leaves its durable queue (its
    slot is free) and its ``queue`` column becomes ``queue``, the next step's Celery queue."""

    queue: str | None
    entry: QueueEntry | None = None


@dataclass(frozen=True)
class QueueStats:
    """One queue as operators see it: workflows running (admitted and active), waiting,
    the oldest waiting one's enqueue time, and starts in the current limiter window."""

    queue: str
    running: int
    waiting: int
    oldest_waiting_ms: int | None
    window_starts: int


@dataclass(frozen=True)
class ScheduleState:
    """A schedule's stored state: the latest tick started (epoch ms) and whether paused."""

    name: str
    last_tick_ms: int | None = None
    paused: bool = False


@dataclass(frozen=True)
class Enqueued:
    """What ``enqueue_workflow`` did: the workflow's row (the new one, or the existing one
    with that id; None for a duplicate), whether this call created it, the active workflow
    holding the deduplication id (nothing was written then), and the workflows admitted in
    the same transaction (to publish)."""

    record: WorkflowRecord | None
    created: bool
    duplicate_of: str | None = None
    admitted: tuple[WorkflowRecord, ...] = ()
