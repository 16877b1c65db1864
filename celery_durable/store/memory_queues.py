"""``MemoryStore``'s durable queues and schedules: store/queues.py's semantics in Python
(one lock makes each call atomic, as the queue row's lock serializes admission in SQL)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from ..clock import Clock
from ..flowtypes import (
    WAIT_FOR_ADMISSION_MS,
    Enqueued,
    QueueEntry,
    QueueSpec,
    QueueStats,
    ScheduleState,
)
from ..types import ACTIVE_STATUSES, WorkflowRecord, WorkflowState
from .memory_operations import MemoryOperations
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
        self._entries: dict[str, QueueEntry] = {}
        self._schedules: dict[str, ScheduleState] = {}
        self._versions: dict[str, int] = {}

    def _holds_slot(self, w: WorkflowRecord, queue: str) -> bool:
        return w.queue == queue and w.status in ACTIVE_STATUSES and not _waiting(w)

    def enqueue_workflow(
        self, record: WorkflowRecord, entry: QueueEntry, spec: QueueSpec
    ) -> Enqueued:
        with self._lock:
            if entry.deduplication_id is not None:
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
                self._workflows[record.workflow_id] = record
                self._entries[record.workflow_id] = entry
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

    # under the lock -------------------------------------------------------
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
        for e in self._entries.values():
            if e.queue != spec.name or e.admitted_at_ms is not None or e.not_before_ms > now:
                continue
            if _waiting(self._workflows.get(e.workflow_id)):
                candidates.append(e)
            else:  # left the queue unadmitted (cancelled, timed out, resumed)
                self._entries[e.workflow_id] = replace(e, admitted_at_ms=LEFT)
        candidates.sort(key=lambda e: e.priority)  # stable: FIFO within a priority
        admitted = []
        for e in candidates[:free]:
            self._entries[e.workflow_id] = replace(e, admitted_at_ms=now, executor_id=executor_id)
            w = replace(self._workflows[e.workflow_id], wake_at_ms=None, updated_at_ms=now)
            self._workflows[e.workflow_id] = w
            admitted.append(w)
        return admitted
