"""``MemoryStore``: the ``DurableStore`` contract in plain Python, for tests and
``celery_durable.testing``; nothing survives the process.

Each method is one atomic step under one lock, with the SQL ``Store``'s conditions
(tests/store/test_contract.py holds both to the same cases); records handed out are frozen.
A transaction step's body runs in a SQLAlchemy session on ``sql_engine`` (by default a
private in-memory SQLite database, one transaction step at a time); its checkpoint is
applied only once that session commits.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import replace
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import StaticPool

from ..clock import SYSTEM_CLOCK, Clock
from ..flowtypes import ChainRoute, QueueEntry
from ..types import (
    ACTIVE_STATUSES,
    TERMINAL_STATUSES,
    ExecutorRecord,
    ExecutorState,
    StepRecord,
    StepState,
    WorkflowFilter,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from .memory_canvas import MemoryCanvas
from .memory_children import MemoryChildren
from .memory_history import MemoryHistory
from .memory_messages import MemoryMessages
from .memory_queues import MemoryQueues
from .memory_tables import MemoryTransaction

T = TypeVar("T")


class MemoryStore(MemoryQueues, MemoryChildren, MemoryMessages, MemoryCanvas, MemoryHistory):
    """The durable state in dicts; see the SQL ``Store`` for what each method means."""

    def __init__(self, clock: Clock = SYSTEM_CLOCK, sql_engine: Engine | None = None) -> None:
        super().__init__(clock)
        self._sql_engine = sql_engine
        # the default engine is one shared connection: one transaction step at a time
        self._sql_serial: AbstractContextManager[object] = (
            threading.RLock() if sql_engine is None else nullcontext()
        )

    # lifecycle ----------------------------------------------------------
    def migrate(self, revision: str = "head") -> str | None:
        return None

    def prepare(self) -> None:
        pass

    def dispose(self) -> None:
        """Nothing to close: the rows (and the default SQL database) stay."""

    @property
    def sql_engine(self) -> Engine:
        """Where transaction steps run their body."""
        with self._lock:
            if self._sql_engine is None:
                self._sql_engine = create_engine(
                    "sqlite://",
                    poolclass=StaticPool,
                    connect_args={"check_same_thread": False},
                )
            return self._sql_engine

    # workflows ----------------------------------------------------------
    def insert_workflow(self, record: WorkflowRecord) -> bool:
        with self._lock:
            if record.workflow_id in self._workflows:
                return False
            self._workflows[record.workflow_id] = record
            return True

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        with self._lock:
            return self._workflows.get(workflow_id)

    def finish_workflow(
        self,
        workflow_id: str,
        executor_id: str | None,
        status: str,
        output: str | None = None,
        error: str | None = None,
    ) -> bool:
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            if w is None or w.status != WorkflowState.PENDING:
                return False
            if executor_id is not None and w.executor_id != executor_id:
                return False
            self._end(tx, w, status=status, output=output, error=error)
            return True

    def _end(self, tx: MemoryTransaction, w: WorkflowRecord, **values: str | None) -> None:
        """The end of a run (a workflow's or a chain's): final status, output or error."""
        now = self.clock.now_ms()
        tx.put_workflow(w, executor_id=None, updated_at_ms=now, completed_at_ms=now, **values)

    def set_status(
        self,
        workflow_id: str,
        status: str,
        *,
        only_from: Sequence[str] | None = None,
        error: str | None = None,
        executor_id: str | None = None,
        keep_owner: bool = False,
    ) -> bool:
        now = self.clock.now_ms()
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            if w is None or (only_from is not None and w.status not in only_from):
                return False
            if executor_id is not None and w.executor_id != executor_id:
                return False
            tx.put_workflow(
                w,
                status=status,
                updated_at_ms=now,
                executor_id=w.executor_id if keep_owner else None,
                error=w.error if error is None else error,
                completed_at_ms=now if status in TERMINAL_STATUSES else w.completed_at_ms,
            )
            return True

    def delete_workflow(self, workflow_id: str) -> None:
        with self._lock:
            for table in (self._errors, self._steps, self._workflows):
                table.pop(workflow_id, None)
            self._forget(workflow_id)

    def fork_workflow(
        self,
        source_id: str,
        new_id: str,
        start_step: int,
        *,
        deadline_ms: int | None = None,
        queue: str | None = None,
        wait_in: QueueEntry | None = None,
    ) -> None:
        """Copy under ``new_id`` (ENQUEUED) with its steps before ``start_step`` (attempt
        errors are not copied); a chain's later steps come PENDING with fresh task ids."""
        now = self.clock.now_ms()
        with self.atomic() as tx:
            src = self._workflows[source_id]
            if new_id in self._workflows:
                raise KeyError(f"workflow {new_id!r} exists")
            chain = src.kind == WorkflowKind.CHAIN
            # run_count > 0 makes the first run of a code workflow replay the copied steps
            tx.put_workflow(
                src, workflow_id=new_id, status=WorkflowState.ENQUEUED, output=None, error=None,
                executor_id=None, recovery_attempts=0, run_count=0 if chain else 1,
                deadline_ms=deadline_ms, queue=src.queue if queue is None else queue,
                wake_at_ms=None, created_at_ms=now, updated_at_ms=now,
                started_at_ms=None, completed_at_ms=None, parent_workflow_id=None, awaited=0,
            )  # fmt: skip
            for s in self._steps.get(source_id, {}).values():
                copy = replace(s, workflow_id=new_id, executor_id=None)
                if s.step_id < start_step:
                    tx.put_step(copy)
                elif chain:
                    tx.put_step(
                        copy, status=StepState.PENDING, output=None, error=None, attempts=0,
                        due_at_ms=None, started_at_ms=None, completed_at_ms=None,
                        task_id=str(uuid.uuid4()),
                    )  # fmt: skip
            if wait_in is not None:
                self._route_chain(tx, new_id, ChainRoute(wait_in.queue, wait_in))

    def list_workflows(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
        workflow_ids: Sequence[str] | None = None,
        parent_workflow_id: str | None = None,
        where: WorkflowFilter | None = None,
    ) -> list[WorkflowRecord]:
        statuses = [status] if isinstance(status, str) else status
        with self._lock:
            found = [
                w
                for w in self._workflows.values()
                if (statuses is None or w.status in statuses)
                and (name is None or w.name == name)
                and (workflow_ids is None or w.workflow_id in workflow_ids)
                and (parent_workflow_id is None or w.parent_workflow_id == parent_workflow_id)
                and (where is None or self._matches(w, where))
            ]
        sign = -1 if newest_first else 1
        found.sort(key=lambda w: (sign * w.created_at_ms, w.workflow_id))
        return found[offset:] if limit is None else found[offset : offset + limit]

    # steps --------------------------------------------------------------
    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        """Every step with its attempt errors; a step with failed attempts and no row yet
        is reported RETRYING."""
        with self._lock:
            rows = self._steps.get(workflow_id, {})
            errors = self._errors.get(workflow_id, {})
            out = {
                step_id: replace(rows[step_id], attempt_errors=_in_order(errors.get(step_id, {})))
                for step_id in sorted(rows)
            }
            for step_id in sorted(errors.keys() - rows.keys()):
                attempts = errors[step_id]
                out[step_id] = StepRecord(
                    workflow_id=workflow_id,
                    step_id=step_id,
                    name=attempts[max(attempts)][0],
                    status=StepState.RETRYING,
                    attempts=len(attempts),
                    attempt_errors=_in_order(attempts),
                )
            return out

    def get_step(self, workflow_id: str, step_id: int) -> StepRecord | None:
        with self._lock:
            return self._steps.get(workflow_id, {}).get(step_id)

    def find_step_by_task_id(self, task_id: str) -> StepRecord | None:
        with self._lock:
            for rows in self._steps.values():
                for s in rows.values():
                    if s.task_id == task_id:
                        return s
            return None

    def record_step(self, record: StepRecord) -> bool:
        with self.atomic() as tx:
            return self.insert_checkpoint(tx, record)

    def insert_checkpoint(self, tx: MemoryTransaction, record: StepRecord) -> bool:
        """Stage a checkpoint while its workflow is PENDING and before its deadline; the
        first one wins."""
        w = tx.workflow(record.workflow_id)
        if w is None or w.status != WorkflowState.PENDING:
            return False
        done = record.completed_at_ms
        if w.deadline_ms is not None and done is not None and done > w.deadline_ms:
            return False
        if tx.step(record.workflow_id, record.step_id) is not None:
            return False
        tx.put_step(record)
        return True

    def record_step_error(
        self, workflow_id: str, step_id: int, attempt: int, name: str, error: str
    ) -> None:
        with self.atomic() as tx:
            tx.add_error(workflow_id, step_id, attempt, name, error)

    def run_transaction_step(
        self,
        body: Callable[[Session], T],
        finish: Callable[[MemoryTransaction, T], bool],
        isolation_level: str | None = None,
        start: Callable[[MemoryTransaction], bool] | None = None,
    ) -> tuple[bool, T | None]:
        """``start(tx)`` (a lease, staged), ``body(session)``, then ``finish(tx, result)``
        stages the checkpoint: committed with the session, or refused (by ``start`` or
        ``finish``) and the session rolled back. With a ``start`` the store lock is held
        throughout, as the SQL store's row lock holds a duplicate delivery."""
        with self._sql_serial, self.sql_engine.connect() as conn:
            if isolation_level and conn.dialect.name == "postgresql":
                conn = conn.execution_options(isolation_level=isolation_level)
            with conn.begin() as sql, self._lock if start is not None else nullcontext():
                tx = self.begin()
                if start is not None and not start(tx):
                    sql.rollback()
                    return False, None
                with Session(bind=conn) as session:
                    result = body(session)
                    session.flush()
                with self._lock:
                    if not finish(tx, result):
                        sql.rollback()
                        return False, None
                    sql.commit()  # raising, it leaves the staged rows unapplied
                    self.apply(tx)
            return True, result

    # chains -------------------------------------------------------------
    def insert_chain(self, workflow: WorkflowRecord, chain_steps: Sequence[StepRecord]) -> bool:
        with self.atomic() as tx:
            if workflow.workflow_id in self._workflows:
                return False
            tx.put_workflow(workflow)
            for s in chain_steps:
                tx.put_step(s)
            return True

    def finish_chain_step(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        last: bool,
        route: ChainRoute | None = None,
    ) -> bool:
        with self.atomic() as tx:
            return self.complete_chain_step(
                tx, workflow_id, step_id, lease_id, output, attempts, last, route
            )

    def complete_chain_step(
        self,
        tx: MemoryTransaction,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        last: bool,
        route: ChainRoute | None = None,
    ) -> bool:
        """Checkpoint the output if the lease still holds; the last step ends the chain; a
        ``route`` moves the chain into or out of a durable queue."""
        if not self._under_lease(
            tx, workflow_id, step_id, lease_id,
            status=StepState.SUCCESS, output=output, attempts=attempts,
            completed_at_ms=self.clock.now_ms(),
        ):  # fmt: skip
            return False
        if last:
            self._end_chain(tx, workflow_id, status=WorkflowState.SUCCESS, output=output)
        elif route is not None:
            self._route_chain(tx, workflow_id, route)
        return True

    def _end_chain(
        self, tx: MemoryTransaction, workflow_id: str, *, status: str, output: str | None = None,
        error: str | None = None
    ) -> None:  # fmt: skip
        """The chain ends (its last step committed, or a step failed for good), if active."""
        w = tx.workflow(workflow_id)
        if w is not None and w.status in ACTIVE_STATUSES:
            self._end(tx, w, status=status, output=output, error=error)

    def _under_lease(
        self, tx: MemoryTransaction, workflow_id: str, step_id: int, lease: str, **values: Any
    ) -> bool:
        """Update the step this delivery leased (no executor after); False if it lost the
        lease. A completed step keeps its lease id, as in the SQL store."""
        s = tx.step(workflow_id, step_id)
        if s is None or s.status != StepState.RUNNING or s.lease_id != lease:
            return False
        tx.put_step(s, executor_id=None, **values)
        return True

    def retry_chain_step(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        attempt: int,
        name: str,
        error: str,
        due_at_ms: int,
    ) -> bool:
        with self.atomic() as tx:
            if not self._under_lease(
                tx, workflow_id, step_id, lease_id, lease_id=None,
                status=StepState.RETRYING, attempts=attempt + 1, due_at_ms=due_at_ms,
            ):  # fmt: skip
                return False
            tx.add_error(workflow_id, step_id, attempt, name, error)
            return True

    def fail_chain_step(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        attempt: int,
        name: str,
        attempt_error: str,
        final_error: str,
    ) -> bool:
        with self.atomic() as tx:
            if not self._under_lease(
                tx, workflow_id, step_id, lease_id, lease_id=None,
                status=StepState.ERROR, error=final_error, attempts=attempt + 1,
                completed_at_ms=self.clock.now_ms(),
            ):  # fmt: skip
                return False
            tx.add_error(workflow_id, step_id, attempt, name, attempt_error)
            self._end_chain(tx, workflow_id, status=WorkflowState.ERROR, error=final_error)
            return True

    def first_open_step(self, workflow_id: str) -> tuple[StepRecord, StepRecord | None] | None:
        with self._lock:
            rows = self._steps.get(workflow_id, {})
            previous: StepRecord | None = None
            for step_id in sorted(rows):
                if rows[step_id].status != StepState.SUCCESS:
                    return rows[step_id], previous
                previous = rows[step_id]
            return None

    # executors ----------------------------------------------------------
    def register_executor(self, record: ExecutorRecord) -> None:
        with self._lock:
            known = self._executors.get(record.executor_id)
            if known is not None:  # re-registered: beats again, RUNNING
                record = replace(
                    known, last_heartbeat_ms=record.last_heartbeat_ms, status=ExecutorState.RUNNING
                )
            self._executors[record.executor_id] = record

    def heartbeat(self, executor_id: str) -> None:
        self._update_executor(executor_id, last_heartbeat_ms=self.clock.now_ms())

    def stop_executor(self, executor_id: str) -> None:
        """A clean shutdown: what it owned is free at once."""
        now = self.clock.now_ms()
        self._update_executor(executor_id, status=ExecutorState.STOPPED, last_heartbeat_ms=now)

    def _update_executor(self, executor_id: str, **values: Any) -> None:
        with self._lock:
            known = self._executors.get(executor_id)
            if known is not None:
                self._executors[executor_id] = replace(known, **values)

    def get_executor(self, executor_id: str) -> ExecutorRecord | None:
        with self._lock:
            return self._executors.get(executor_id)


def _in_order(attempts: dict[int, tuple[str, str]]) -> tuple[str, ...]:
    """A step's attempt errors in attempt order."""
    return tuple(attempts[a][1] for a in sorted(attempts))
