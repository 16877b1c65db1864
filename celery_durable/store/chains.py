"""SQL for durable chains: steps recorded up front, leased, completed with the next one due."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    and_,
    bindparam,
    exists,
    func,
    literal,
    or_,
    select,
    update,
)

from ..flowtypes import WAIT_FOR_ADMISSION_MS, ChainRoute
from ..types import ExecutorState, StepRecord, StepState, WorkflowRecord, WorkflowState
from .base import StoreBase
from .hot import HotTransaction
from .queues import route_chain
from .statements import INSERT_STEP, INSERT_WORKFLOW, ended_values, one_of
from .tables import executors, steps, workflows


class ChainQueries(StoreBase):
    """Chain steps: PENDING -> RUNNING (leased) -> SUCCESS | RETRYING (due later) | ERROR."""

    def insert_chain(self, workflow: WorkflowRecord, chain_steps: Sequence[StepRecord]) -> bool:
        """Record a chain and all its steps in one transaction; False when the id exists."""
        rows = [self.step_values(s) for s in chain_steps]

        def run(tx: HotTransaction) -> bool:
            if tx.execute(INSERT_WORKFLOW[self.dialect], workflow.__dict__).first() is None:
                return False
            tx.execute_many(INSERT_STEP, rows)
            return True

        return self._hot_tx("insert_chain", run)

    def get_step(self, workflow_id: str, step_id: int) -> StepRecord | None:
        stmt = select(steps).where(steps.c.workflow_id == workflow_id, steps.c.step_id == step_id)

        def run(conn: Connection) -> StepRecord | None:
            row = conn.execute(stmt).mappings().first()
            return StepRecord(**row) if row is not None else None

        return self._read("get_step", run)

    def claim_chain_step(
        self, workflow_id: str, step_id: int, name: str, executor_id: str, stale_before_ms: int
    ) -> StepRecord | None:
        """Lease a step to ``executor_id`` unless a live executor holds it, it has ended, its
        chain has ended or passed its deadline, or it was recorded under another ``name``.

        Also marks an ENQUEUED workflow PENDING. Returns the leased step (its name,
        attempts so far and lease id), or None.
        """
        params = self._lease_params(workflow_id, step_id, name, executor_id, stale_before_ms)
        # Relaxed commits: a lease lost in a database crash only frees the step again (its
        # completion, a durable commit, checks the lease), and any later durable commit
        # flushes this one to disk with it.
        row = self._hot("claim_chain_step", _CLAIM, params, async_commit=True).first()
        if row is None:
            return None
        if row["workflow_status"] == WorkflowState.ENQUEUED:  # first step, or after recovery
            self._hot("claim_chain_step", _MARK_RUNNING, params, async_commit=True)
        return _leased(params, row)

    def lease_chain_step(
        self,
        tx: Connection,
        workflow_id: str,
        step_id: int,
        name: str,
        executor_id: str,
        stale_before_ms: int,
    ) -> StepRecord | None:
        """``claim_chain_step`` inside ``run_transaction_step``'s transaction ``tx``: the
        lease commits with the step's checkpoint (no commit of its own), and its row lock
        keeps a duplicate delivery waiting until then (which then finds the step done)."""
        params = self._lease_params(workflow_id, step_id, name, executor_id, stale_before_ms)
        row = tx.execute(_CLAIM, params).mappings().first()
        if row is None:
            return None
        if row["workflow_status"] == WorkflowState.ENQUEUED:
            tx.execute(_MARK_RUNNING, params)
        return _leased(params, row)

    def _lease_params(
        self, workflow_id: str, step_id: int, name: str, executor_id: str, stale_before_ms: int
    ) -> dict[str, Any]:
        return {
            "wid": workflow_id,
            "sid": step_id,
            "task_name": name,
            "executor": executor_id,
            "lease": uuid.uuid4().hex,
            "stale": stale_before_ms,
            "now": self.clock.now_ms(),
        }

    def complete_chain_step(
        self,
        conn: Connection,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        last: bool,
        route: ChainRoute | None = None,
    ) -> bool:
        """In the caller's transaction: checkpoint the output; the last step ends the chain;
        a ``route`` moves the chain into or out of a durable queue (queues.py)."""
        now = self.clock.now_ms()
        params = _complete_params(workflow_id, step_id, lease_id, output, attempts, now)
        if not _complete(conn.execute, params, last):
            return False
        if route is not None and not last:
            route_chain(conn, workflow_id, route, now)
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
        """Checkpoint the output under this delivery's lease (hot path); False if lost. A
        ``route`` (a durable queue involved) takes a transaction of its own, off the hot path."""
        if route is not None and not last:
            return self._write(
                "finish_chain_step",
                lambda conn: self.complete_chain_step(
                    conn, workflow_id, step_id, lease_id, output, attempts, last, route
                ),
            )
        params = _complete_params(
            workflow_id, step_id, lease_id, output, attempts, self.clock.now_ms()
        )
        if not last:
            return self._hot("finish_chain_step", _COMPLETE, params).rowcount == 1
        return self._hot_tx("finish_chain_step", lambda tx: _complete(tx.execute, params, last))

    def _end_workflow(self, conn: Connection, workflow_id: str, now: int, **values: Any) -> None:
        """The chain ends (its last step committed, or a step failed for good), if active."""
        params = {"wid": workflow_id, "now": now, "output": None, "error": None, **values}
        conn.execute(_END_CHAIN, params)

    def _end_lease(
        self, conn: Connection, workflow_id: str, step_id: int, lease: str, **values: Any
    ) -> bool:
        """Update the step this delivery leased (and release it); False if it lost the lease."""
        result = conn.execute(
            update(steps)
            .where(
                steps.c.workflow_id == workflow_id,
                steps.c.step_id == step_id,
                steps.c.status == StepState.RUNNING,
                steps.c.lease_id == lease,
            )
            .values(executor_id=None, lease_id=None, **values)
        )
        return result.rowcount == 1

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
        """Record a failed attempt and release the lease until ``due_at_ms``."""

        def run(conn: Connection) -> bool:
            if not self._end_lease(
                conn, workflow_id, step_id, lease_id,
                status=StepState.RETRYING, attempts=attempt + 1, due_at_ms=due_at_ms,
            ):  # fmt: skip
                return False  # a stale delivery: its error must not stand for the attempt's
            self.insert_attempt_error(conn, workflow_id, step_id, attempt, name, error)
            return True

        return self._write("retry_chain_step", run)

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
        """Record the last failed attempt; the step and the chain end ERROR."""
        now = self.clock.now_ms()

        def run(conn: Connection) -> bool:
            if not self._end_lease(
                conn, workflow_id, step_id, lease_id,
                status=StepState.ERROR, error=final_error, attempts=attempt + 1,
                completed_at_ms=now,
            ):  # fmt: skip
                return False
            self.insert_attempt_error(conn, workflow_id, step_id, attempt, name, attempt_error)
            self._end_workflow(
                conn, workflow_id, now, status=WorkflowState.ERROR, error=final_error
            )
            return True

        return self._write("fail_chain_step", run)

    def first_open_step(self, workflow_id: str) -> tuple[StepRecord, StepRecord | None] | None:
        """The first chain step not yet SUCCESS, with the step before it (for its output)."""
        stmt = select(steps).where(steps.c.workflow_id == workflow_id).order_by(steps.c.step_id)

        def run(conn: Connection) -> tuple[StepRecord, StepRecord | None] | None:
            previous: StepRecord | None = None
            for row in conn.execute(stmt).mappings():
                record = StepRecord(**row)
                if record.status != StepState.SUCCESS:
                    return record, previous
                previous = record
            return None

        return self._read("first_open_step", run)


def _leased(params: dict[str, Any], row: Any) -> StepRecord:
    return StepRecord(
        workflow_id=params["wid"],
        step_id=params["sid"],
        name=row["name"],
        status=StepState.RUNNING,
        attempts=row["attempts"],
        executor_id=params["executor"],
        lease_id=params["lease"],
    )


def _complete_params(
    workflow_id: str, step_id: int, lease_id: str, output: str, attempts: int, now: int
) -> dict[str, Any]:
    return {
        "wid": workflow_id,
        "sid": step_id,
        "lease": lease_id,
        "output": output,
        "attempts": attempts,
        "now": now,
    }


def _complete(
    execute: Callable[[Any, dict[str, Any]], Any], params: dict[str, Any], last: bool
) -> bool:
    """Checkpoint the output if the lease still holds; the last step also ends the chain.
    ``execute`` is a SQLAlchemy connection's or a hot-path transaction's."""
    if execute(_COMPLETE, params).rowcount != 1:
        return False
    if last:
        execute(_END_CHAIN, {**params, "status": WorkflowState.SUCCESS, "error": None})
    return True


def _build_statements() -> tuple[Any, Any, Any, Any]:
    """The hot-path statements, built once (see hot.py)."""
    wid: Any = bindparam("wid")
    sid: Any = bindparam("sid")
    live = select(executors.c.executor_id).where(
        executors.c.last_heartbeat_ms >= bindparam("stale"),
        executors.c.status == ExecutorState.RUNNING,
    )
    # no step starts once its chain has ended or passed its deadline, nor while it waits
    # for admission in a durable queue
    workflow_active = exists().where(
        workflows.c.workflow_id == wid,
        one_of(workflows.c.status, WorkflowState.ENQUEUED, WorkflowState.PENDING),
        or_(workflows.c.deadline_ms.is_(None), workflows.c.deadline_ms >= bindparam("now")),
        or_(
            workflows.c.wake_at_ms.is_(None),
            workflows.c.wake_at_ms != literal(WAIT_FOR_ADMISSION_MS, BigInteger),
        ),
    )
    claim = (
        update(steps)
        .where(
            steps.c.workflow_id == wid,
            steps.c.step_id == sid,
            # a message runs only as the step it names (see integration/chains.py)
            steps.c.name == bindparam("task_name"),
            or_(
                one_of(steps.c.status, StepState.PENDING, StepState.RETRYING),
                and_(
                    steps.c.status == StepState.RUNNING,
                    or_(steps.c.executor_id.is_(None), steps.c.executor_id.not_in(live)),
                ),
            ),
            workflow_active,
        )
        .values(
            status=StepState.RUNNING,
            executor_id=bindparam("executor"),
            lease_id=bindparam("lease"),
            started_at_ms=func.coalesce(steps.c.started_at_ms, bindparam("now")),
            due_at_ms=None,
        )
        .returning(
            steps.c.name,
            steps.c.attempts,
            select(workflows.c.status)
            .where(workflows.c.workflow_id == wid)
            .scalar_subquery()
            .label("workflow_status"),
        )
    )
    mark_running = (
        update(workflows)
        .where(workflows.c.workflow_id == wid, workflows.c.status == WorkflowState.ENQUEUED)
        .values(
            status=WorkflowState.PENDING,
            started_at_ms=func.coalesce(workflows.c.started_at_ms, bindparam("now")),
            updated_at_ms=bindparam("now"),
        )
    )
    complete = (
        update(steps)
        .where(
            steps.c.workflow_id == wid,
            steps.c.step_id == sid,
            steps.c.status == StepState.RUNNING,
            steps.c.lease_id == bindparam("lease"),
        )
        .values(
            status=StepState.SUCCESS,
            output=bindparam("output"),
            attempts=bindparam("attempts"),
            executor_id=None,
            completed_at_ms=bindparam("now"),
        )
    )
    end_chain = (
        update(workflows)
        .where(
            workflows.c.workflow_id == wid,
            one_of(workflows.c.status, WorkflowState.ENQUEUED, WorkflowState.PENDING),
        )
        .values(**ended_values())
    )
    return claim, mark_running, complete, end_chain


_CLAIM, _MARK_RUNNING, _COMPLETE, _END_CHAIN = _build_statements()
HOT_STATEMENTS = (_CLAIM, _MARK_RUNNING, _COMPLETE, _END_CHAIN)
