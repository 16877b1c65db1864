"""``MemoryStore``'s rows under one re-entrant lock; each call's writes are staged in a
``MemoryTransaction`` and applied only when the whole call succeeded (as the SQL store's
transactions commit or roll back); and who counts as running or gone."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

from ..clock import Clock
from ..flowtypes import WAIT_FOR_ADMISSION_MS
from ..types import (
    ACTIVE_STATUSES,
    NESTED_STEP,
    WAIT_FOR_CHILDREN_MS,
    ExecutorRecord,
    ExecutorState,
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
    nested_canvas_id,
)

CHAIN = WorkflowKind.CHAIN
Gone = Callable[[str | None], bool]  # an executor id -> "that executor is gone"
# chain steps a resume puts back to PENDING: leased (by a dead executor), or due later
_LEASED_OR_DUE = frozenset({StepState.RUNNING, StepState.RETRYING})


class MemoryTransaction:
    """Rows written by one store call (or by ``finish`` in a transaction step), read back
    before the committed ones and applied all at once by ``MemoryTables.apply``."""

    def __init__(
        self, workflows: dict[str, WorkflowRecord], steps: dict[str, dict[int, StepRecord]]
    ) -> None:
        self._workflows = workflows
        self._steps = steps
        self.workflows: dict[str, WorkflowRecord] = {}
        self.steps: dict[str, dict[int, StepRecord]] = {}
        self.errors: list[tuple[str, int, int, str, str]] = []

    def workflow(self, workflow_id: str) -> WorkflowRecord | None:
        staged = self.workflows.get(workflow_id)
        return staged if staged is not None else self._workflows.get(workflow_id)

    def steps_of(self, workflow_id: str) -> dict[int, StepRecord]:
        return {**self._steps.get(workflow_id, {}), **self.steps.get(workflow_id, {})}

    def step(self, workflow_id: str, step_id: int) -> StepRecord | None:
        return self.steps_of(workflow_id).get(step_id)

    def put_workflow(self, record: WorkflowRecord, **values: Any) -> None:
        stored = replace(record, **values)
        self.workflows[stored.workflow_id] = stored

    def put_step(self, record: StepRecord, **values: Any) -> None:
        # attempt errors live apart, as in the step_errors table
        stored = replace(record, attempt_errors=(), **values)
        self.steps.setdefault(stored.workflow_id, {})[stored.step_id] = stored

    def update_steps(
        self, workflow_id: str, where: Callable[[StepRecord], bool], **values: Any
    ) -> None:
        for record in self.steps_of(workflow_id).values():
            if where(record):
                self.put_step(record, **values)

    def add_error(
        self, workflow_id: str, step_id: int, attempt: int, name: str, error: str
    ) -> None:
        self.errors.append((workflow_id, step_id, attempt, name, error))


class MemoryTables:
    """The rows, the lock that makes each store call atomic, and who counts as gone."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._lock = threading.RLock()
        self._workflows: dict[str, WorkflowRecord] = {}
        self._steps: dict[str, dict[int, StepRecord]] = {}
        # workflow id -> step id -> attempt -> (step name, error): the step_errors table
        self._errors: dict[str, dict[int, dict[int, tuple[str, str]]]] = {}
        self._executors: dict[str, ExecutorRecord] = {}
        # workflow id -> step id -> earlier runs set aside by resume (memory_history.py)
        self._history: dict[str, dict[int, list[StepRecord]]] = {}

    def begin(self) -> MemoryTransaction:
        """A transaction to stage writes in; the caller holds the lock until ``apply``."""
        return MemoryTransaction(self._workflows, self._steps)

    def apply(self, tx: MemoryTransaction) -> None:
        for workflow_id, step_id, *_ in tx.errors:
            if tx.workflow(workflow_id) is None:  # as the SQL foreign key refuses it
                raise KeyError(f"no workflow {workflow_id!r} for the error of step {step_id}")
        self._workflows.update(tx.workflows)
        for workflow_id, staged in tx.steps.items():
            self._steps.setdefault(workflow_id, {}).update(staged)
        for workflow_id, step_id, attempt, name, error in tx.errors:
            attempts = self._errors.setdefault(workflow_id, {}).setdefault(step_id, {})
            attempts.setdefault(attempt, (name, error))  # a repeat of an attempt is ignored

    @contextmanager
    def atomic(self) -> Iterator[MemoryTransaction]:
        """Stage a call's writes; applied when its block ends without raising."""
        with self._lock:
            tx = self.begin()
            yield tx
            self.apply(tx)

    def _forget(self, workflow_id: str) -> None:
        """Drop what other tables keep for a deleted workflow (in SQL their foreign keys
        cascade); mixins that keep such rows extend it."""

    def _live(self, executor_id: str | None, stale_before_ms: int) -> bool:
        found = None if executor_id is None else self._executors.get(executor_id)
        return (
            found is not None
            and found.status == ExecutorState.RUNNING
            and found.last_heartbeat_ms >= stale_before_ms
        )

    def _awaits_running(self, parent_id: str) -> bool:
        """A child the parent waits for is still running."""
        return any(
            w.parent_workflow_id == parent_id and w.awaited and w.status in ACTIVE_STATUSES
            for w in self._workflows.values()
        )

    def _dead(self, stale_before_ms: int) -> Gone:
        return lambda executor_id: not self._live(executor_id, stale_before_ms)

    def _running_under(self, w: WorkflowRecord, gone: Gone) -> bool:
        """Running under an executor that is ``gone``: a code workflow PENDING under it, or
        an active chain with a step RUNNING under it."""
        if w.kind != CHAIN:
            return w.status == WorkflowState.PENDING and gone(w.executor_id)
        return w.status in ACTIVE_STATUSES and any(
            s.status == StepState.RUNNING and gone(s.executor_id)
            for s in self._steps.get(w.workflow_id, {}).values()
        )

    def _stalled(self, w: WorkflowRecord, stale_before_ms: int, lost_before_ms: int) -> bool:
        """Owner gone, or message lost (due for longer than ``lost_before_ms``)."""
        if w.status not in ACTIVE_STATUSES:
            return False
        if self._running_under(w, self._dead(stale_before_ms)):
            return True
        if w.updated_at_ms >= lost_before_ms:
            return False
        if w.kind != CHAIN:
            if w.status != WorkflowState.ENQUEUED:
                return False
            if w.wake_at_ms == WAIT_FOR_CHILDREN_MS:  # its wake-up, when the children ended
                return self._children_ended(w.workflow_id)
            return w.wake_at_ms is None or w.wake_at_ms < lost_before_ms
        if w.wake_at_ms == WAIT_FOR_ADMISSION_MS:  # its next step waits in a durable queue
            return False
        return self._link_lost(w.workflow_id, lost_before_ms)

    def _children_ended(self, parent_id: str) -> bool:
        """It awaits children, and none of them is running any more."""
        awaited = [w for w in self._workflows.values() if w.parent_workflow_id == parent_id]
        return any(w.awaited for w in awaited) and not self._awaits_running(parent_id)

    def _nested_child(self, s: StepRecord) -> WorkflowRecord | None:
        """A nested member's child canvas (runtime/nested.py)."""
        if s.name != NESTED_STEP:
            return None
        return self._workflows.get(nested_canvas_id(s.workflow_id, s.step_id))

    def _link_lost(self, workflow_id: str, lost_before_ms: int) -> bool:
        """A chain step due (retry due, previous step done, or the first) and not started."""
        steps = self._steps.get(workflow_id, {})

        def before(ms: int | None) -> bool:
            return ms is not None and ms < lost_before_ms

        for s in steps.values():
            if s.status == StepState.RETRYING and before(s.due_at_ms):
                return True
            child = self._nested_child(s)
            if child is not None and s.status == StepState.PENDING:
                if child.status in ACTIVE_STATUSES:
                    continue  # it waits for its child canvas, which has its own sweep
                if before(child.updated_at_ms):
                    return True  # the child's end did not reach it (a crash between)
            if s.status == StepState.PENDING:
                previous = steps.get(s.step_id - 1)
                if s.step_id == 0 or (
                    previous is not None
                    and previous.status == StepState.SUCCESS
                    and before(previous.completed_at_ms)
                ):
                    return True
        return False
