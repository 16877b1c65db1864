"""All durable SQL: one ``Store`` per database, safe to use after fork."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from sqlalchemy import Connection, case, delete, select, update
from sqlalchemy.orm import Session

from ..flowtypes import ChainRoute, QueueEntry
from ..types import (
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
from .base import StoreBase
from .canvas import HOT_STATEMENTS as CANVAS_HOT_STATEMENTS
from .canvas import CanvasQueries
from .chains import HOT_STATEMENTS as CHAIN_HOT_STATEMENTS
from .chains import ChainQueries
from .children import ChildQueries
from .engine import is_serialization_failure, is_transient, with_retries
from .history import HistoryQueries
from .messages import MessageQueries
from .migrate import upgrade
from .operations import OperationsQueries
from .queues import QueueQueries, route_chain
from .statements import (
    CLAIM_WORKFLOW,
    FINISH_ANY,
    FINISH_OWNED,
    INSERT_WORKFLOW,
    give_up_ownership,
    hot_statements,
)
from .tables import executors, step_errors, steps, workflows

T = TypeVar("T")


class _AlreadyRecorded(Exception):
    """Raised inside a transaction step whose checkpoint exists: roll the user's work back."""


class Store(
    QueueQueries,
    OperationsQueries,
    CanvasQueries,
    HistoryQueries,
    ChainQueries,
    ChildQueries,
    MessageQueries,
    StoreBase,
):
    """Narrow data access for the runtime; knows nothing of Celery."""

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, **options)
        self.hot.register(
            *hot_statements(self.dialect), *CHAIN_HOT_STATEMENTS, *CANVAS_HOT_STATEMENTS
        )

    def migrate(self, revision: str = "head") -> str | None:
        """Create or upgrade the schema (Alembic, under a lock on Postgres)."""
        return upgrade(self.engine, revision)

    def prepare(self) -> None:
        """Compile every hot-path statement now (a worker, before it forks its pool)."""
        self.hot.warm()

    # workflows ----------------------------------------------------------
    def insert_workflow(self, record: WorkflowRecord) -> bool:
        """Insert unless the id exists; True when this call created it."""
        stmt = INSERT_WORKFLOW[self.dialect]
        return self._hot("insert_workflow", stmt, record.__dict__).first() is not None

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None:
        stmt = select(workflows).where(workflows.c.workflow_id == workflow_id)

        def run(conn: Connection) -> WorkflowRecord | None:
            row = conn.execute(stmt).mappings().first()
            return WorkflowRecord(**row) if row is not None else None

        return self._read("get_workflow", run)

    def claim_workflow(
        self, workflow_id: str, name: str, executor_id: str, stale_before_ms: int
    ) -> WorkflowRecord | None:
        """Make ``executor_id`` the owner when the workflow is ENQUEUED or its owner is gone.

        Returns the updated row, or None when someone live owns it, it has ended, it is
        waiting out a scheduled retry, or it was recorded under another ``name``.
        """
        now = self.clock.now_ms()
        params = {
            "wid": workflow_id,
            "task_name": name,
            "executor": executor_id,
            "stale": stale_before_ms,
            "now": now,
            "soon": now + 50,
        }

        row = self._hot("claim_workflow", CLAIM_WORKFLOW, params).first()
        return WorkflowRecord(**row) if row is not None else None

    def finish_workflow(
        self,
        workflow_id: str,
        executor_id: str | None,
        status: str,
        output: str | None = None,
        error: str | None = None,
    ) -> bool:
        """Record the end of a run this executor owns; False when it no longer owns it."""
        params = {
            "wid": workflow_id,
            "executor": executor_id,
            "status": status,
            "output": output,
            "error": error,
            "now": self.clock.now_ms(),
        }
        stmt = FINISH_ANY if executor_id is None else FINISH_OWNED
        return self._hot("finish_workflow", stmt, params).rowcount == 1

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
        """Set a status (optionally only from given statuses); clears the owner unless
        ``keep_owner`` (a cancelled run may still be inside a step: see release_workflow)."""
        now = self.clock.now_ms()
        cond = [workflows.c.workflow_id == workflow_id]
        if only_from is not None:
            cond.append(workflows.c.status.in_(list(only_from)))
        if executor_id is not None:
            cond.append(workflows.c.executor_id == executor_id)
        values: dict[str, Any] = {"status": status, "updated_at_ms": now}
        if not keep_owner:
            values["executor_id"] = None
        if error is not None:
            values["error"] = error
        if status in TERMINAL_STATUSES:
            values["completed_at_ms"] = now
        stmt = update(workflows).where(*cond).values(**values)
        return self._autocommit("set_status", lambda c: c.execute(stmt).rowcount == 1)

    def release_workflow(self, workflow_id: str, executor_id: str, run: int) -> bool:
        """A run ends without finishing its workflow (interrupted, cancelled, superseded):
        give up ownership. Still PENDING, it becomes ENQUEUED, so a direct re-call or the
        sweep takes it over; an ended one keeps its status."""
        stmt = (
            update(workflows)
            .where(
                workflows.c.workflow_id == workflow_id,
                workflows.c.executor_id == executor_id,
                # a worker's pool processes share its executor id: the run number tells
                # this run from a later claim of the same workflow on the same worker
                workflows.c.run_count == run,
            )
            .values(
                executor_id=None,
                status=case(
                    (workflows.c.status == WorkflowState.PENDING, WorkflowState.ENQUEUED),
                    else_=workflows.c.status,
                ),
                updated_at_ms=self.clock.now_ms(),
            )
        )
        return self._autocommit("release_workflow", lambda c: c.execute(stmt).rowcount == 1)

    def suspend_workflow(self, workflow_id: str, executor_id: str, wake_at_ms: int) -> bool:
        """Give up ownership until ``wake_at_ms`` (a long retry wait); the row says when."""
        stmt = give_up_ownership(workflow_id, executor_id, wake_at_ms, self.clock.now_ms())
        return self._autocommit("suspend_workflow", lambda c: c.execute(stmt).rowcount == 1)

    def delete_workflow(self, workflow_id: str) -> None:
        """Remove a workflow and its steps (used when its first publish failed)."""

        def run(conn: Connection) -> None:
            conn.execute(delete(step_errors).where(step_errors.c.workflow_id == workflow_id))
            conn.execute(delete(steps).where(steps.c.workflow_id == workflow_id))
            conn.execute(delete(workflows).where(workflows.c.workflow_id == workflow_id))

        self._write("delete_workflow", run)

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
        """Copy a workflow under ``new_id`` (ENQUEUED) keeping its steps before ``start_step``,
        with this deadline and queue (None: the source's queue).

        Chain steps from ``start_step`` on are copied as PENDING with fresh task ids.
        """
        import uuid

        def run(conn: Connection) -> None:
            src = (
                conn.execute(select(workflows).where(workflows.c.workflow_id == source_id))
                .mappings()
                .one()
            )
            now = self.clock.now_ms()
            chain = src["kind"] == WorkflowKind.CHAIN
            conn.execute(
                workflows.insert().values(
                    {
                        **src,
                        "workflow_id": new_id,
                        "status": WorkflowState.ENQUEUED,
                        "output": None,
                        "error": None,
                        "executor_id": None,
                        "recovery_attempts": 0,
                        # > 0 makes the first run of a code workflow replay the copied steps
                        "run_count": 0 if chain else 1,
                        "deadline_ms": deadline_ms,
                        "queue": src["queue"] if queue is None else queue,
                        "wake_at_ms": None,
                        "parent_workflow_id": None,
                        "awaited": 0,
                        "created_at_ms": now,
                        "updated_at_ms": now,
                        "started_at_ms": None,
                        "completed_at_ms": None,
                    }
                )
            )
            for row in conn.execute(select(steps).where(steps.c.workflow_id == source_id)):
                values = {**row._mapping, "workflow_id": new_id, "executor_id": None}
                if values["step_id"] >= start_step:
                    if not chain:
                        continue
                    values.update(
                        status=StepState.PENDING, output=None, error=None, attempts=0,
                        due_at_ms=None, started_at_ms=None, completed_at_ms=None,
                        task_id=str(uuid.uuid4()),
                    )  # fmt: skip
                conn.execute(steps.insert().values(values))
            if wait_in is not None:
                route_chain(conn, new_id, ChainRoute(wait_in.queue, wait_in), now)

        self._write("fork_workflow", run)

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
        stmt = select(workflows)
        if where is not None:
            stmt = stmt.where(*self._matching(where))
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            stmt = stmt.where(workflows.c.status.in_(statuses))
        if name is not None:
            stmt = stmt.where(workflows.c.name == name)
        if workflow_ids is not None:
            stmt = stmt.where(workflows.c.workflow_id.in_(list(workflow_ids)))
        if parent_workflow_id is not None:
            stmt = stmt.where(workflows.c.parent_workflow_id == parent_workflow_id)
        order = workflows.c.created_at_ms.desc() if newest_first else workflows.c.created_at_ms
        stmt = stmt.order_by(order, workflows.c.workflow_id).offset(offset)
        if limit is not None:
            stmt = stmt.limit(limit)

        def run(conn: Connection) -> list[WorkflowRecord]:
            return [WorkflowRecord(**r) for r in conn.execute(stmt).mappings()]

        return self._read("list_workflows", run)

    # steps --------------------------------------------------------------
    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        """Every recorded step of a workflow with its attempt errors, keyed by step id."""
        s_stmt = select(steps).where(steps.c.workflow_id == workflow_id).order_by(steps.c.step_id)
        e_stmt = (
            select(step_errors)
            .where(step_errors.c.workflow_id == workflow_id)
            .order_by(step_errors.c.step_id, step_errors.c.attempt)
        )

        def run(conn: Connection) -> dict[int, StepRecord]:
            errors: dict[int, list[str]] = {}
            names: dict[int, str] = {}
            for e in conn.execute(e_stmt).mappings():
                errors.setdefault(e["step_id"], []).append(e["error"])
                names[e["step_id"]] = e["name"]
            out: dict[int, StepRecord] = {}
            for r in conn.execute(s_stmt).mappings():
                out[r["step_id"]] = StepRecord(
                    **r, attempt_errors=tuple(errors.get(r["step_id"], ()))
                )
            for step_id, errs in errors.items():
                if step_id not in out:  # attempts failed, step not finished yet
                    out[step_id] = StepRecord(
                        workflow_id=workflow_id,
                        step_id=step_id,
                        name=names[step_id],
                        status=StepState.RETRYING,
                        attempts=len(errs),
                        attempt_errors=tuple(errs),
                    )
            return out

        return self._read("load_steps", run)

    def record_step(self, record: StepRecord) -> bool:
        """Checkpoint a finished step; False when one is already recorded (a duplicate run)."""
        stmt, params = self._step_insert(self.step_values(record))
        return self._hot("record_step", stmt, params).first() is not None

    def record_step_error(
        self, workflow_id: str, step_id: int, attempt: int, name: str, error: str
    ) -> None:
        self._autocommit(
            "record_step_error",
            lambda c: self.insert_attempt_error(c, workflow_id, step_id, attempt, name, error),
        )

    def insert_checkpoint(self, conn: Connection, record: StepRecord) -> bool:
        """Inside a caller's transaction: insert a step checkpoint unless one exists."""
        stmt, params = self._step_insert(self.step_values(record))
        return conn.execute(stmt, params).first() is not None

    def run_transaction_step(
        self,
        body: Callable[[Session], T],
        finish: Callable[[Connection, T], bool],
        isolation_level: str | None = None,
        start: Callable[[Connection], bool] | None = None,
    ) -> tuple[bool, T | None]:
        """Run ``body`` and ``finish`` (its checkpoint) in one database transaction.

        ``start(tx)``, when given, runs first in it (a chain step's lease); returning False
        ends the transaction there, the body not run. Serialization failures and deadlocks
        are retried from the start. When ``start`` or ``finish`` returns False the body's
        effects are rolled back and (False, None) is returned.
        """

        def attempt() -> tuple[bool, T | None]:
            with self.engine.connect() as conn:
                if isolation_level and self.dialect == "postgresql":
                    conn = conn.execution_options(isolation_level=isolation_level)
                try:
                    with conn.begin(), Session(bind=conn) as session:
                        if start is not None and not start(conn):
                            raise _AlreadyRecorded
                        result = body(session)
                        session.flush()
                        if not finish(conn, result):
                            raise _AlreadyRecorded
                except _AlreadyRecorded:
                    return False, None
                return True, result

        return with_retries(
            attempt,
            timeout=self.retry_timeout,
            what="transaction step",
            retry_on=lambda e: is_serialization_failure(e) or is_transient(e),
        )

    # executors ----------------------------------------------------------
    def register_executor(self, record: ExecutorRecord) -> None:
        values = dict(record.__dict__)
        stmt = self._insert(executors).values(**values)
        stmt = stmt.on_conflict_do_update(
            index_elements=["executor_id"],
            set_={
                "last_heartbeat_ms": values["last_heartbeat_ms"],
                "status": ExecutorState.RUNNING,
            },
        )
        self._autocommit("register_executor", lambda c: c.execute(stmt))

    def heartbeat(self, executor_id: str) -> None:
        """One attempt, no retry: the caller beats again on its next tick."""
        stmt = (
            update(executors)
            .where(executors.c.executor_id == executor_id)
            .values(last_heartbeat_ms=self.clock.now_ms())
        )
        with self.engine.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").execute(stmt)

    def stop_executor(self, executor_id: str) -> None:
        """A clean shutdown: mark the executor gone and release what it owns."""

        def run(conn: Connection) -> None:
            conn.execute(
                update(executors)
                .where(executors.c.executor_id == executor_id)
                .values(status=ExecutorState.STOPPED, last_heartbeat_ms=self.clock.now_ms())
            )

        self._autocommit("stop_executor", run)

    def get_executor(self, executor_id: str) -> ExecutorRecord | None:
        stmt = select(executors).where(executors.c.executor_id == executor_id)

        def run(conn: Connection) -> ExecutorRecord | None:
            row = conn.execute(stmt).mappings().first()
            return ExecutorRecord(**row) if row is not None else None

        return self._read("get_executor", run)
