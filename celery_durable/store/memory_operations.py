"""``MemoryStore``'s operations: store/operations.py in plain Python, condition for
condition (tests/store/test_contract_operations.py holds both to the same cases).

Each method scans the dicts under the store's lock: fine for tests and the testing kit,
which is all the memory store is for.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence

from ..clock import Clock
from ..types import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ActivityBucket,
    EndedWorkflow,
    ExecutorWork,
    PageCursor,
    StepState,
    WorkflowFilter,
    WorkflowRecord,
    WorkflowState,
)
from .memory_claims import MemoryClaims
from .memory_tables import CHAIN, MemoryTransaction


class MemoryOperations(MemoryClaims):
    """Listings, counts, activity, bulk cancellation and retention over the dicts."""

    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        # workflow id -> step id -> attempt -> (step name, when recorded): the
        # step_errors table's created_at_ms, which activity and metrics read
        self._error_rows: dict[str, dict[int, dict[int, tuple[str, int]]]] = {}

    def apply(self, tx: MemoryTransaction) -> None:
        super().apply(tx)
        now = self.clock.now_ms()
        for workflow_id, step_id, attempt, name, _error in tx.errors:
            attempts = self._error_rows.setdefault(workflow_id, {}).setdefault(step_id, {})
            attempts.setdefault(attempt, (name, now))

    # filters --------------------------------------------------------------
    def _runs_on(self, w: WorkflowRecord, executor_id: str) -> bool:
        return self._running_under(w, lambda owner: owner == executor_id)

    def _matches(self, w: WorkflowRecord, where: WorkflowFilter) -> bool:
        created = w.created_at_ms
        return (
            (not where.statuses or w.status in where.statuses)
            and (where.name is None or w.name == where.name)
            and (where.queue is None or w.queue == where.queue)
            and (where.created_after_ms is None or created >= where.created_after_ms)
            and (where.created_before_ms is None or created < where.created_before_ms)
            and (not where.id_prefix or w.workflow_id.startswith(where.id_prefix))
            and (
                where.parent_workflow_id is None or w.parent_workflow_id == where.parent_workflow_id
            )
            and (where.executor_id is None or self._runs_on(w, where.executor_id))
        )

    def _matching(self, where: WorkflowFilter) -> Iterator[WorkflowRecord]:
        return (w for w in list(self._workflows.values()) if self._matches(w, where))

    def count_by_status(self, where: WorkflowFilter, cap: int | None = None) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for w in self._matching(where):
                counts[w.status] = counts.get(w.status, 0) + 1
        if cap is None:
            return counts
        return {status: min(n, cap + 1) for status, n in counts.items()}

    def list_page(
        self, where: WorkflowFilter, *, limit: int, after: PageCursor | None = None
    ) -> list[WorkflowRecord]:
        with self._lock:
            found = [
                w
                for w in self._matching(where)
                if after is None or (w.created_at_ms, w.workflow_id) < after
            ]
        found.sort(key=lambda w: (w.created_at_ms, w.workflow_id), reverse=True)
        return found[:limit]

    def count_active_by_name(self) -> list[tuple[str, str, int]]:
        counts: dict[tuple[str, str], int] = {}
        with self._lock:
            for w in self._workflows.values():
                if w.status in ACTIVE_STATUSES:
                    counts[w.name, w.status] = counts.get((w.name, w.status), 0) + 1
        return [(name, status, n) for (name, status), n in sorted(counts.items())]

    # executors and stalls ---------------------------------------------------
    def _active_work(self) -> list[tuple[str, str]]:
        """(executor_id, workflow_id) of every active workflow and who runs it."""
        work: set[tuple[str, str]] = set()
        for w in self._workflows.values():
            if w.status not in ACTIVE_STATUSES:
                continue
            if w.kind != CHAIN and w.executor_id is not None:
                work.add((w.executor_id, w.workflow_id))
            elif w.kind == CHAIN:
                for s in self._steps.get(w.workflow_id, {}).values():
                    if s.status == StepState.RUNNING and s.executor_id is not None:
                        work.add((s.executor_id, w.workflow_id))
        return sorted(work)

    def list_executors(self, heartbeat_after_ms: int) -> list[ExecutorWork]:
        with self._lock:
            owned: dict[str, list[str]] = {}
            for executor_id, workflow_id in self._active_work():
                owned.setdefault(executor_id, []).append(workflow_id)
            found = [
                ExecutorWork(e, tuple(owned.get(e.executor_id, ())))
                for e in self._executors.values()
                if e.last_heartbeat_ms >= heartbeat_after_ms or e.executor_id in owned
            ]
        found.sort(key=lambda x: (-x.executor.last_heartbeat_ms, x.executor.executor_id))
        return found

    def _stalled_now(self, stale_before_ms: int, lost_before_ms: int) -> list[WorkflowRecord]:
        with self._lock:
            found = [
                w
                for w in self._workflows.values()
                if self._stalled(w, stale_before_ms, lost_before_ms)
            ]
        return sorted(found, key=lambda w: (w.updated_at_ms, w.workflow_id))

    def count_stalled(self, stale_before_ms: int, lost_before_ms: int) -> int:
        return len(self._stalled_now(stale_before_ms, lost_before_ms))

    def list_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int
    ) -> list[WorkflowRecord]:
        return self._stalled_now(stale_before_ms, lost_before_ms)[: max(limit, 0)]

    def oldest_enqueued_ms(self, now_ms: int) -> int | None:
        with self._lock:
            due = [
                max(w.updated_at_ms, w.wake_at_ms or 0)
                for w in self._workflows.values()
                if w.status == WorkflowState.ENQUEUED
                and (w.wake_at_ms is None or w.wake_at_ms <= now_ms)
            ]
        return min(due, default=None)

    # activity and the metrics feed -----------------------------------------
    def activity(self, since_ms: int, bucket_ms: int) -> list[ActivityBucket]:
        found: dict[int, dict[str, int]] = {}

        def count(at_ms: int, key: str) -> None:
            bucket = found.setdefault(at_ms // bucket_ms, {})
            bucket[key] = bucket.get(key, 0) + 1

        with self._lock:
            for w in self._workflows.values():
                if w.created_at_ms >= since_ms:
                    count(w.created_at_ms, "started")
                ended = w.completed_at_ms
                if ended is not None and ended >= since_ms:
                    if w.status == WorkflowState.SUCCESS:
                        count(ended, "succeeded")
                    elif w.status == WorkflowState.ERROR:
                        count(ended, "failed")
            for _name, at_ms in self._error_times():
                if at_ms >= since_ms:
                    count(at_ms, "retries")
        return [ActivityBucket(b * bucket_ms, **found[b]) for b in sorted(found)]

    def _error_times(self) -> Iterator[tuple[str, int]]:
        """(step name, time) of every failed attempt of a workflow still stored."""
        for workflow_id, attempts_by_step in self._error_rows.items():
            if workflow_id in self._workflows:
                for attempts in attempts_by_step.values():
                    yield from attempts.values()

    def ended_after(self, after: PageCursor, until_ms: int, limit: int) -> list[EndedWorkflow]:
        with self._lock:
            ended = sorted(
                (w for w in self._workflows.values() if w.completed_at_ms is not None),
                key=lambda w: (w.completed_at_ms or 0, w.workflow_id),
            )
            found = [
                w
                for w in ended
                if (w.completed_at_ms or 0, w.workflow_id) > after
                and (w.completed_at_ms or 0) < until_ms
            ][:limit]
            return [
                EndedWorkflow(
                    w,
                    tuple(s for _, s in sorted(self._steps.get(w.workflow_id, {}).items())),
                )
                for w in found
            ]

    def failed_attempts_between(self, since_ms: int, until_ms: int) -> dict[str, int]:
        counts: dict[str, int] = {}
        with self._lock:
            for name, at_ms in self._error_times():
                if since_ms <= at_ms < until_ms:
                    counts[name] = counts.get(name, 0) + 1
        return counts

    # actions ----------------------------------------------------------------
    def cancel_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        now = self.clock.now_ms()
        with self.atomic() as tx:
            found = sorted(
                {
                    wid
                    for wid in workflow_ids
                    if (w := self._workflows.get(wid)) is not None and w.status in ACTIVE_STATUSES
                }
            )
            for wid in found:
                tx.put_workflow(
                    self._workflows[wid],
                    status=WorkflowState.CANCELLED,
                    updated_at_ms=now,
                    completed_at_ms=now,
                )
            return found

    # retention --------------------------------------------------------------
    def _deletable(
        self, candidates: Iterable[WorkflowRecord], statuses: Sequence[str], before_ms: int | None
    ) -> list[WorkflowRecord]:
        """Ended in ``statuses`` (before ``before_ms``), no active parent, no active child."""
        active = [w for w in self._workflows.values() if w.status in ACTIVE_STATUSES]
        active_ids = {w.workflow_id for w in active}
        busy_parents = {w.parent_workflow_id for w in active}
        ended = TERMINAL_STATUSES.intersection(statuses)  # never an active one
        return [
            w
            for w in candidates
            if w.status in ended
            and w.completed_at_ms is not None
            and (before_ms is None or w.completed_at_ms < before_ms)
            and w.parent_workflow_id not in active_ids
            and w.workflow_id not in busy_parents
        ]

    def count_deletable(self, statuses: Sequence[str], before_ms: int | None) -> int:
        with self._lock:
            return len(self._deletable(self._workflows.values(), statuses, before_ms))

    def delete_ended(
        self,
        statuses: Sequence[str],
        limit: int,
        *,
        before_ms: int | None = None,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[str]:
        with self._lock:
            candidates = (
                self._workflows.values()
                if workflow_ids is None
                else [w for i in set(workflow_ids) if (w := self._workflows.get(i)) is not None]
            )
            found = sorted(
                self._deletable(candidates, statuses, before_ms),
                key=lambda w: (w.completed_at_ms or 0, w.workflow_id),
            )[: max(limit, 0)]
            for w in found:
                for table in (self._error_rows, self._errors, self._steps, self._workflows):
                    table.pop(w.workflow_id, None)
                self._forget(w.workflow_id)
            return [w.workflow_id for w in found]

    def delete_stale_executors(self, before_ms: int) -> int:
        with self._lock:
            busy = {executor_id for executor_id, _ in self._active_work()}
            gone = [
                e.executor_id
                for e in self._executors.values()
                if e.last_heartbeat_ms < before_ms and e.executor_id not in busy
            ]
            for executor_id in gone:
                del self._executors[executor_id]
            return len(gone)
