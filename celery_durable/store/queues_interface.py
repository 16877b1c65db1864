"""What flow control needs of a store (part of ``DurableStore``): durable queues and
schedules. The SQL ``Store`` (store/queues.py) and ``MemoryStore``
(store/memory_queues.py) implement it under tests/store/test_contract_queues.py."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..flowtypes import Enqueued, QueueEntry, QueueSpec, QueueStats, ScheduleState
from ..types import StepRecord, WorkflowRecord


class QueueStore(Protocol):
    def enqueue_workflow(
        self,
        record: WorkflowRecord,
        entry: QueueEntry,
        spec: QueueSpec,
        chain_steps: Sequence[StepRecord] = (),
    ) -> Enqueued:
        """Insert ``record`` (ENQUEUED, waiting for admission; a chain with its
        ``chain_steps``) and its queue entry unless the id exists (returned as it is,
        whoever holds the deduplication id now) or an active workflow of the queue holds
        the deduplication id; then admit what fits: one transaction."""
        ...

    def requeue_workflow(self, entry: QueueEntry) -> None:
        """An active workflow (``entry.workflow_id``) waits for admission again with this new
        entry in its queue (its slot given up); nothing for one that has ended."""
        ...

    def admit(self, spec: QueueSpec, executor_id: str | None = None) -> list[WorkflowRecord]:
        """Admit the waiting workflows that fit the queue's limits now (priority, then FIFO),
        serialized per queue; returns them, due, in order."""
        ...

    def try_admit(
        self, spec: QueueSpec, executor_id: str | None = None
    ) -> list[WorkflowRecord] | None:
        """``admit`` unless another admission of the queue is under way: None then."""
        ...

    def queue_version(self, queue: str) -> int:
        """How many admissions (and enqueues) of ``queue`` have committed: one that
        commits at least two after a read began after that read."""
        ...

    def queue_due(self, queue: str) -> bool:
        """A workflow waits in ``queue`` whose delay has passed."""
        ...

    def queue_stats(self, spec: QueueSpec) -> QueueStats: ...

    def get_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleState]: ...

    def advance_schedule(self, name: str, tick_ms: int) -> None:
        """Record ``tick_ms`` as the schedule's latest tick, unless a later one is."""
        ...

    def set_schedule_paused(self, name: str, paused: bool) -> None: ...
