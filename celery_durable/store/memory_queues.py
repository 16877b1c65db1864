"""``MemoryStore``'s durable queues and schedules: store/queues.py's semantics in Python
(one lock makes each call atomic, as the queue row's lock serializes admission in SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..clock import Clock
from ..flowtypes import (
    WAIT_FOR_ADMISSION_MS,
    ChainRoute,
    Enqueued,
    QueueEntry,
    QueueSpec,
    QueueStats,
    ScheduleState,
)
from ..types import ACTIVE_STATUSES, StepRecord, WorkflowRecord, WorkflowState
from .memory_operations import MemoryOperations
from .memory_tables import MemoryTransaction
from .queues import ADMIT_BATCH, LEFT


def _waiting(w: WorkflowRecord | None) -> bool:
    return (
        w is not None
        and w.status == WorkflowState.ENQUEUED
        and w.wake_at_ms == WAIT_FOR_ADMISSION_MS
    )


class MemoryQueues(MemoryOperations):
    """Queue entries (in FIFO order: dicts keep insertion order) and schedule states."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        # seq -> entry, in FIFO order (a chain has one entry per step it routes to a queue)
        self._entries: dict[int, QueueEntry] = {}
        self._seq = 0
        self._schedules: dict[str, ScheduleState] = {}
        self._versions: dict[str, int] = {}

    def _holds_slot(self, w: WorkflowRecord, queue: str) -> bool:
        return w.queue == queue and w.status in ACTIVE_STATUSES and not _waiting(w)

    def enqueue_workflow(
        self,
        record: WorkflowRecord,
        entry: QueueEntry,
        spec: QueueSpec,
        chain_steps: Sequence[StepRecord] = (),
    ) -> Enqueued:
        with self._lock:
            if entry.deduplication_id is not None and record.workflow_id not in self._workflows:
                for other in self._entries.values():
                    w = self._workflows.get(other.workflow_id)
                    if (
                        other.queue == spec.name
                        and other.deduplication_id == entry.deduplication_id
                        and other.workflow_id != record.workflow_id
                        and w is not None
                        and w.status in ACTIVE_STATUSES
                    ):
                        return Enqueued(None, False, duplicate_of=other.workflow_id)
            existing = self._workflows.get(record.workflow_id)
            if existing is None:
                with self.atomic() as tx:
                    tx.put_workflow(record)
                    for s in chain_steps:
                        tx.put_step(s)
                self._add_entry(entry)
            admitted = self._admit(spec, None)
            stored = existing or self._workflows[record.workflow_id]
            return Enqueued(stored, existing is None, admitted=tuple(admitted))

    def admit(self, spec: QueueSpec, executor_id: str | None = None) -> list[WorkflowRecord]:
        with self._lock:
            return self._admit(spec, executor_id)

    def try_admit(
        self, spec: QueueSpec, executor_id: str | None = None
    ) -> list[WorkflowRecord] | None:
        return self.admit(spec, executor_id)  # one lock: never busy in between calls

    def queue_version(self, queue: str) -> int:
        with self._lock:
            return self._versions.get(queue, 0)

    def queue_due(self, queue: str) -> bool:
        now = self.clock.now_ms()
        with self._lock:
            return any(
                e.queue == queue and e.admitted_at_ms is None and e.not_before_ms <= now
                for e in self._entries.values()
            )

    def queue_stats(self, spec: QueueSpec) -> QueueStats:
        with self._lock:
            running = sum(self._holds_slot(w, spec.name) for w in self._workflows.values())
            waiting = [
                w.created_at_ms
                for w in self._workflows.values()
                if w.queue == spec.name and _waiting(w)
            ]
            starts = self._window_starts(spec) if spec.limiter else 0
            return QueueStats(
                spec.name, running, len(waiting), min(waiting) if waiting else None, starts
            )

    def get_schedules(self, names: Sequence[str] | None = None) -> list[ScheduleState]:
        with self._lock:
            found = [s for n, s in sorted(self._schedules.items()) if names is None or n in names]
            return found

    def advance_schedule(self, name: str, tick_ms: int) -> None:
        with self._lock:
            state = self._schedules.get(name, ScheduleState(name))
            last = tick_ms if state.last_tick_ms is None else max(state.last_tick_ms, tick_ms)
            self._schedules[name] = replace(state, last_tick_ms=last)

    def set_schedule_paused(self, name: str, paused: bool) -> None:
        with self._lock:
            state = self._schedules.get(name, ScheduleState(name))
            self._schedules[name] = replace(state, paused=paused)

    def requeue_workflow(self, entry: QueueEntry) -> None:
        """See ``Store.requeue_workflow``."""
        with self.atomic() as tx:
            self._route_chain(tx, entry.workflow_id, ChainRoute(entry.queue, entry))

    def _route_chain(self, tx: MemoryTransaction, workflow_id: str, route: ChainRoute) -> None:
        """See ``store.queues.route_chain`` (staged in ``tx``; the entry written at once)."""
        w = tx.workflow(workflow_id)
        if w is None or w.status not in ACTIVE_STATUSES:
            return
        now = self.clock.now_ms()
        if route.entry is None:
            tx.put_workflow(w, queue=route.queue, updated_at_ms=now)
            return
        tx.put_workflow(
            w,
            queue=route.entry.queue,
            status=WorkflowState.ENQUEUED,
            wake_at_ms=WAIT_FOR_ADMISSION_MS,
            updated_at_ms=now,
        )
        for seq, e in self._entries.items():
            if e.workflow_id == workflow_id and e.executor_id is not None:
                self._entries[seq] = replace(e, executor_id=None)
        self._add_entry(route.entry)

    # under the lock -------------------------------------------------------
    def _add_entry(self, entry: QueueEntry) -> None:
        self._seq += 1
        self._entries[self._seq] = entry

    def _window_starts(self, spec: QueueSpec) -> int:
        assert spec.limiter is not None
        since = self.clock.now_ms() - int(spec.limiter[1] * 1000)
        return sum(
            1
            for e in self._entries.values()
            if e.queue == spec.name and e.admitted_at_ms is not None and e.admitted_at_ms > since
        )

    def _admit(self, spec: QueueSpec, executor_id: str | None) -> list[WorkflowRecord]:
        self._versions[spec.name] = self._versions.get(spec.name, 0) + 1
        if spec.worker_concurrency is not None and executor_id is None:
            return []
        now = self.clock.now_ms()
        free = ADMIT_BATCH
        if spec.concurrency is not None:
            running = sum(self._holds_slot(w, spec.name) for w in self._workflows.values())
            free = min(free, spec.concurrency - running)
        if spec.worker_concurrency is not None:
            mine = sum(
                1
                for e in self._entries.values()
                if e.executor_id == executor_id
                and (w := self._workflows.get(e.workflow_id)) is not None
                and self._holds_slot(w, spec.name)
            )
            free = min(free, spec.worker_concurrency - mine)
        if spec.limiter is not None:
            free = min(free, spec.limiter[0] - self._window_starts(spec))
        if free <= 0:
            return []
        candidates = []
        for seq, e in self._entries.items():
            if e.queue != spec.name or e.admitted_at_ms is not None or e.not_before_ms > now:
                continue
            w = self._workflows.get(e.workflow_id)
            if _waiting(w) and w is not None and w.queue == spec.name:
                candidates.append((seq, e))
            else:  # left the queue unadmitted (cancelled, timed out, resumed)
                self._entries[seq] = replace(e, admitted_at_ms=LEFT)
        candidates.sort(key=lambda c: c[1].priority)  # stable: FIFO within a priority
        admitted: dict[str, WorkflowRecord] = {}
        for seq, e in candidates:
            if e.workflow_id not in admitted and len(admitted) >= free:
                continue
            self._entries[seq] = replace(e, admitted_at_ms=now, executor_id=executor_id)
            if e.workflow_id not in admitted:
                w = replace(self._workflows[e.workflow_id], wake_at_ms=None, updated_at_ms=now)
                self._workflows[e.workflow_id] = admitted[e.workflow_id] = w
        return list(admitted.values())
