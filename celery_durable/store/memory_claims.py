"""The in-memory store's moves deciding who runs what: claims of workflows, leases of chain
steps, the recovery sweep and resume (store/recovery.py in Python). The conditions mirror
the SQL ones term by term; a change to either side belongs in both, held by the contract
suite (tests/store/test_contract_*.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from ..flowtypes import WAIT_FOR_ADMISSION_MS, ChainRoute, QueueEntry
from ..types import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    RecoveryAction,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowRecord,
    WorkflowState,
)
from .interface import ErrorFor
from .memory_history import set_aside_step
from .memory_tables import CHAIN, Gone, MemoryTables, MemoryTransaction

# chain steps a resume puts back to PENDING: leased (by a dead executor), or due later
_LEASED_OR_DUE = frozenset({StepState.RUNNING, StepState.RETRYING})


class MemoryClaims(MemoryTables):
    """Claims, leases and recovery: each decides who may run a workflow or a step next."""

    def claim_workflow(
        self, workflow_id: str, name: str, executor_id: str, stale_before_ms: int
    ) -> WorkflowRecord | None:
        now = self.clock.now_ms()
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            if w is None or w.name != name:  # a message runs only as the workflow it names
                return None
            soon = now + 50  # past its deadline, any delivery takes it, to cancel it
            due = any(at is not None and at <= soon for at in (w.wake_at_ms, w.deadline_ms))
            due = due or w.wake_at_ms is None
            free = (w.status == WorkflowState.ENQUEUED and due) or (
                w.status == WorkflowState.PENDING and not self._live(w.executor_id, stale_before_ms)
            )
            if not free:
                return None
            tx.put_workflow(
                w,
                status=WorkflowState.PENDING,
                executor_id=executor_id,
                run_count=w.run_count + 1,
                started_at_ms=now if w.started_at_ms is None else w.started_at_ms,
                updated_at_ms=now,
                wake_at_ms=None,
            )
            return tx.workflows[workflow_id]

    def release_workflow(self, workflow_id: str, executor_id: str, run: int) -> bool:
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            # a worker's pool processes share its executor id: the run number tells them apart
            if w is None or w.executor_id != executor_id or w.run_count != run:
                return False
            pending = w.status == WorkflowState.PENDING
            tx.put_workflow(
                w,
                executor_id=None,
                status=WorkflowState.ENQUEUED if pending else w.status,
                updated_at_ms=self.clock.now_ms(),
            )
            return True

    def suspend_workflow(self, workflow_id: str, executor_id: str, wake_at_ms: int) -> bool:
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            if w is None or w.status != WorkflowState.PENDING or w.executor_id != executor_id:
                return False
            tx.put_workflow(
                w,
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                wake_at_ms=wake_at_ms,
                updated_at_ms=self.clock.now_ms(),
            )
            return True

    def claim_chain_step(
        self, workflow_id: str, step_id: int, name: str, executor_id: str, stale_before_ms: int
    ) -> StepRecord | None:
        """Lease a step (see ``Store.claim_chain_step``); an ENQUEUED chain becomes PENDING."""
        with self.atomic() as tx:
            return self.lease_chain_step(
                tx, workflow_id, step_id, name, executor_id, stale_before_ms
            )

    def lease_chain_step(
        self,
        tx: MemoryTransaction,
        workflow_id: str,
        step_id: int,
        name: str,
        executor_id: str,
        stale_before_ms: int,
    ) -> StepRecord | None:
        """The lease, staged in ``tx`` (applied with the call or transaction step)."""
        now = self.clock.now_ms()
        w = tx.workflow(workflow_id)
        s = tx.step(workflow_id, step_id)
        if w is None or s is None or s.name != name:
            return None
        if w.status not in ACTIVE_STATUSES or (w.deadline_ms is not None and w.deadline_ms < now):
            return None  # no step starts once its chain ended or passed its deadline
        if w.wake_at_ms == WAIT_FOR_ADMISSION_MS:
            return None  # nor while it waits for admission in a durable queue
        free = s.status in (StepState.PENDING, StepState.RETRYING) or (
            s.status == StepState.RUNNING and not self._live(s.executor_id, stale_before_ms)
        )
        if not free:
            return None
        lease = uuid.uuid4().hex
        started = now if s.started_at_ms is None else s.started_at_ms
        tx.put_step(
            s, status=StepState.RUNNING, executor_id=executor_id, lease_id=lease,
            started_at_ms=started, due_at_ms=None,
        )  # fmt: skip
        if w.status == WorkflowState.ENQUEUED:  # first step, or after recovery
            begun = now if w.started_at_ms is None else w.started_at_ms
            tx.put_workflow(w, status=WorkflowState.PENDING, started_at_ms=begun, updated_at_ms=now)
        return StepRecord(
            workflow_id=workflow_id,
            step_id=step_id,
            name=s.name,
            status=StepState.RUNNING,
            attempts=s.attempts,
            executor_id=executor_id,
            lease_id=lease,
        )

    def claim_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int, error: ErrorFor
    ) -> list[tuple[WorkflowRecord, RecoveryAction]]:
        """Up to ``limit`` stalled workflows, oldest update first, each re-enqueued (a chain's
        step held by a gone executor released) or, over its limit, dead-lettered."""
        gone = self._dead(stale_before_ms)
        with self.atomic() as tx:
            found = [
                w
                for w in self._workflows.values()
                if self._stalled(w, stale_before_ms, lost_before_ms)
            ]
            found = sorted(found, key=lambda w: (w.updated_at_ms, w.workflow_id))[: max(limit, 0)]
            return [(w, self._recover_or_dead_letter(tx, w, error, gone)) for w in found]

    def recover_lost(
        self, workflow_id: str, executor_id: str, error: ErrorFor
    ) -> tuple[WorkflowRecord, RecoveryAction] | None:
        """Treat the run of ``workflow_id`` under the live ``executor_id`` as crashed (its
        pool process died); None when nothing runs under it any more."""

        def gone(owner: str | None) -> bool:
            return owner == executor_id

        with self.atomic() as tx:
            record = self._workflows.get(workflow_id)
            if record is None:
                return None
            if record.status in TERMINAL_STATUSES and record.executor_id == executor_id:
                tx.put_workflow(record, executor_id=None)  # a cancelled run, over now
                return None
            if not self._running_under(record, gone):
                return None
            return record, self._recover_or_dead_letter(tx, record, error, gone)

    def _recover_or_dead_letter(
        self, tx: MemoryTransaction, record: WorkflowRecord, error: ErrorFor, gone: Gone
    ) -> RecoveryAction:
        now = self.clock.now_ms()
        limit = record.max_recovery_attempts
        # only a crash counts a recovery attempt: a lost or queued message must not
        counts = self._running_under(record, gone)
        if counts and limit is not None and record.recovery_attempts + 1 > limit:
            tx.put_workflow(
                record,
                status=WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
                error=error(record),
                executor_id=None,
                updated_at_ms=now,
                completed_at_ms=now,
            )
            return RecoveryAction.DEAD_LETTERED
        tx.put_workflow(
            record,
            status=WorkflowState.ENQUEUED,
            executor_id=None,
            recovery_attempts=record.recovery_attempts + int(counts),
            wake_at_ms=None,
            updated_at_ms=now,
        )
        if record.kind == CHAIN:
            tx.update_steps(
                record.workflow_id,
                lambda s: s.status == StepState.RUNNING and gone(s.executor_id),
                status=StepState.PENDING,
                executor_id=None,
                lease_id=None,
            )
        return RecoveryAction.RECOVERED

    def resume_workflow(
        self,
        workflow_id: str,
        stale_before_ms: int,
        *,
        queue: str | None = None,
        wait_in: QueueEntry | None = None,
    ) -> tuple[WorkflowRecord, ResumeOutcome] | None:
        """Re-enqueue from the first incomplete step unless it finished or a live executor
        runs it (or one of its chain steps); see ``Store.resume_workflow``."""
        with self.atomic() as tx:
            record = self._workflows.get(workflow_id)
            if record is None:
                return None
            if record.status == WorkflowState.SUCCESS:
                return record, ResumeOutcome.FINISHED
            if self._owner_live(record, stale_before_ms):
                return record, ResumeOutcome.RUNNING
            values: dict[str, Any] = {"recovery_attempts": record.recovery_attempts + 1}
            if record.status not in ACTIVE_STATUSES:  # an operator's fresh start
                values = {"recovery_attempts": 1, "deadline_ms": None, "error": None}
            if queue is not None:
                values["queue"] = queue
            tx.put_workflow(
                record,
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                wake_at_ms=None,
                completed_at_ms=None,
                updated_at_ms=self.clock.now_ms(),
                **values,
            )
            tx.update_steps(
                workflow_id,
                lambda s: s.status in _LEASED_OR_DUE,
                status=StepState.PENDING,
                executor_id=None,
                lease_id=None,
                due_at_ms=None,
            )
            if record.status == WorkflowState.ERROR:
                self._reopen_failed_step(tx, record)
            if wait_in is not None and record.status not in ACTIVE_STATUSES:
                self._route_chain(tx, workflow_id, ChainRoute(wait_in.queue, wait_in))
            return record, ResumeOutcome.RESUMED

    def _route_chain(self, tx: MemoryTransaction, workflow_id: str, route: ChainRoute) -> None:
        """Move a workflow into (or out of) a durable queue: the queues' part (memory_queues)."""
        raise NotImplementedError

    def _reopen_failed_step(self, tx: MemoryTransaction, record: WorkflowRecord) -> None:
        """See ``Store._reopen_failed_step``: the last ERROR step is set aside in its
        history and runs again, afresh."""
        wid = record.workflow_id
        rows = tx.steps_of(wid)
        failed = max(
            (s.step_id for s in rows.values() if s.status == StepState.ERROR), default=None
        )
        if failed is None:
            return
        set_aside_step(self, tx, wid, failed)  # its record and errors kept in its history
        # dropped at once, not staged: the call holds the lock and nothing after this raises
        for step_id in [k for k in self._errors.get(wid, {}) if k > failed]:
            del self._errors[wid][step_id]
        if record.kind == CHAIN:
            tx.put_step(
                rows[failed], status=StepState.PENDING, error=None, attempts=0, executor_id=None,
                lease_id=None, due_at_ms=None, started_at_ms=None, completed_at_ms=None,
            )  # fmt: skip
            return
        for step_id in [k for k in self._steps.get(wid, {}) if k >= failed]:
            del self._steps[wid][step_id]

    def _owner_live(self, record: WorkflowRecord, stale_before_ms: int) -> bool:
        if record.kind != CHAIN:
            return self._live(record.executor_id, stale_before_ms)
        return any(
            s.status == StepState.RUNNING and self._live(s.executor_id, stale_before_ms)
            for s in self._steps.get(record.workflow_id, {}).values()
        )

    def cancel_expired(self, now: int, limit: int, error: Callable[[str], str]) -> list[str]:
        """End active workflows whose deadline passed as CANCELLED, keeping their owner (a
        run inside a step body gives it up at its next checkpoint)."""
        with self.atomic() as tx:
            expired = [
                w
                for w in self._workflows.values()
                if w.status in ACTIVE_STATUSES and w.deadline_ms is not None and w.deadline_ms < now
            ][: max(limit, 0)]
            for w in expired:
                tx.put_workflow(
                    w,
                    status=WorkflowState.CANCELLED,
                    error=error(w.workflow_id),
                    updated_at_ms=now,
                    completed_at_ms=now,
                )
            return [w.workflow_id for w in expired]
