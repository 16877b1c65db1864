"""SQL for the recovery sweep: find stalled workflows, re-enqueue or dead-letter each once."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, String, and_, cast, delete, exists, func, or_, select, update

from ..flowtypes import WAIT_FOR_ADMISSION_MS, ChainRoute, QueueEntry
from ..types import (
    ACTIVE_STATUSES,
    NESTED_ID_SEPARATOR,
    NESTED_STEP,
    TERMINAL_STATUSES,
    WAIT_FOR_CHILDREN_MS,
    ExecutorState,
    RecoveryAction,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from .base import StoreBase
from .history import set_aside_step
from .queues import route_chain
from .tables import executors, step_errors, steps, workflows

CHAIN = WorkflowKind.CHAIN

# chain steps a resume puts back to PENDING: leased (by a dead executor), or due later
_LEASED_OR_DUE = (StepState.RUNNING, StepState.RETRYING)


Gone = Callable[[Any], Any]  # an executor id column -> "that executor is gone" (SQL)


def _owned_by(executor_id: str) -> Gone:
    return lambda column: column == executor_id


class RecoveryQueries(StoreBase):
    """Stalled = owner gone, or message lost (due for longer than the enqueue timeout)."""

    def _live(self, stale_before_ms: int) -> Any:
        return select(executors.c.executor_id).where(
            executors.c.last_heartbeat_ms >= stale_before_ms,
            executors.c.status == ExecutorState.RUNNING,
        )

    def _dead(self, stale_before_ms: int) -> Gone:
        live = self._live(stale_before_ms)
        return lambda column: or_(column.is_(None), column.not_in(live))

    def _running_under(self, gone: Gone, w: Any = workflows) -> Any:
        """Condition on workflow rows ``w``: running under an executor that is ``gone``
        (a code workflow PENDING under it, or a chain with a step RUNNING under it)."""
        s = steps.alias("r")
        step_gone = exists().where(
            s.c.workflow_id == w.c.workflow_id,
            s.c.status == StepState.RUNNING,
            gone(s.c.executor_id),
        )
        return or_(
            and_(w.c.kind != CHAIN, w.c.status == WorkflowState.PENDING, gone(w.c.executor_id)),
            and_(w.c.kind == CHAIN, w.c.status.in_(list(ACTIVE_STATUSES)), step_gone),
        )

    def _stalled(self, stale_before_ms: int, lost_before_ms: int) -> Any:
        w = workflows
        s = steps.alias("s")
        p = steps.alias("p")
        c = workflows.alias("c")
        awaited = and_(c.c.parent_workflow_id == w.c.workflow_id, c.c.awaited == 1)
        children_ended = and_(  # a wake-up lost: the children it waits for have all ended
            w.c.wake_at_ms == WAIT_FOR_CHILDREN_MS,
            exists().where(awaited),
            ~exists().where(awaited, c.c.status.in_(list(ACTIVE_STATUSES))),
        )
        code_lost = and_(
            w.c.kind != CHAIN,
            w.c.status == WorkflowState.ENQUEUED,
            w.c.updated_at_ms < lost_before_ms,
            or_(w.c.wake_at_ms.is_(None), w.c.wake_at_ms < lost_before_ms, children_ended),
        )
        k = workflows.alias("k")
        child_of_s = and_(  # the child canvas of a nested member (runtime/nested.py)
            s.c.name == NESTED_STEP,
            k.c.workflow_id == s.c.workflow_id + NESTED_ID_SEPARATOR + cast(s.c.step_id, String),
        )
        child_runs = exists().where(child_of_s, k.c.status.in_(list(ACTIVE_STATUSES)))
        child_ended = exists().where(  # its end did not reach the parent (a crash between)
            s.c.workflow_id == w.c.workflow_id,
            s.c.status == StepState.PENDING,
            child_of_s,
            k.c.status.in_(list(TERMINAL_STATUSES)),
            k.c.updated_at_ms < lost_before_ms,
        )
        retry_lost = exists().where(
            s.c.workflow_id == w.c.workflow_id,
            s.c.status == StepState.RETRYING,
            s.c.due_at_ms < lost_before_ms,
        )
        next_lost = exists(
            select(s.c.step_id)
            .select_from(
                s.join(p, and_(p.c.workflow_id == s.c.workflow_id, p.c.step_id == s.c.step_id - 1))
            )
            .where(
                s.c.workflow_id == w.c.workflow_id,
                s.c.status == StepState.PENDING,
                p.c.status == StepState.SUCCESS,
                p.c.completed_at_ms < lost_before_ms,
                ~child_runs,  # a nested member waits for its child, which has its own sweep
            )
        )
        first_lost = exists().where(
            s.c.workflow_id == w.c.workflow_id,
            s.c.step_id == 0,
            s.c.status == StepState.PENDING,
            ~child_runs,
        )
        chain_lost = and_(
            w.c.kind == CHAIN,
            w.c.updated_at_ms < lost_before_ms,
            # a step waiting for admission in a durable queue has no message to lose
            or_(w.c.wake_at_ms.is_(None), w.c.wake_at_ms != WAIT_FOR_ADMISSION_MS),
            or_(retry_lost, next_lost, first_lost, child_ended),
        )
        return and_(
            w.c.status.in_(list(ACTIVE_STATUSES)),
            or_(self._running_under(self._dead(stale_before_ms)), code_lost, chain_lost),
        )

    def claim_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int, error: Any
    ) -> list[tuple[WorkflowRecord, RecoveryAction]]:
        """Lock up to ``limit`` stalled workflows (skipping rows others hold) and move each on.

        Under its limit a workflow becomes ENQUEUED (a chain's step held by a gone executor
        is released); over it, it ends MAX_RECOVERY_ATTEMPTS_EXCEEDED with ``error(record)``
        as its error. Returns each row as it was, with what was done.
        """
        stmt = (
            select(workflows)
            .where(self._stalled(stale_before_ms, lost_before_ms))
            .order_by(workflows.c.updated_at_ms)
            .limit(limit)
            .with_for_update(skip_locked=True, of=workflows)
        )
        gone = self._dead(stale_before_ms)

        def run(conn: Connection) -> list[tuple[WorkflowRecord, RecoveryAction]]:
            found = [WorkflowRecord(**r) for r in conn.execute(stmt).mappings()]
            return [(r, self._recover_or_dead_letter(conn, r, error, gone)) for r in found]

        return self._write("claim_stalled", run)

    def recover_lost(
        self, workflow_id: str, executor_id: str, error: Any
    ) -> tuple[WorkflowRecord, RecoveryAction] | None:
        """A pool process of the live worker ``executor_id`` died (lost, or killed at its
        time limit) while it ran this workflow: treat that run as crashed now.

        Only the run that died is taken: a code workflow still PENDING under this executor,
        or a chain step still RUNNING under it (a later delivery elsewhere keeps its claim;
        Celery reports one death more than once, and the second report finds nothing).
        """
        gone = _owned_by(executor_id)
        stmt = (
            select(workflows)
            .where(workflows.c.workflow_id == workflow_id, self._running_under(gone))
            .with_for_update(of=workflows)
        )

        ended_run = (  # a cancelled run of that process: over now, its owner goes
            update(workflows)
            .where(
                workflows.c.workflow_id == workflow_id,
                workflows.c.executor_id == executor_id,
                workflows.c.status.in_(list(TERMINAL_STATUSES)),
            )
            .values(executor_id=None)
        )

        def run(conn: Connection) -> tuple[WorkflowRecord, RecoveryAction] | None:
            conn.execute(ended_run)
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            record = WorkflowRecord(**row)
            return record, self._recover_or_dead_letter(conn, record, error, gone)

        return self._write("recover_lost", run)

    def _recover_or_dead_letter(
        self, conn: Connection, record: WorkflowRecord, error: Any, gone: Gone
    ) -> RecoveryAction:
        """Dead-letter or re-enqueue a locked workflow. Only a chain step whose executor is
        ``gone`` is released: a step a live worker claimed since the sweep looked stays
        leased."""
        now = self.clock.now_ms()
        limit = record.max_recovery_attempts
        where = workflows.c.workflow_id == record.workflow_id
        # only a crash counts a recovery attempt (its owner died while it ran): re-sending a
        # message that is lost or still queued behind a backlog must not dead-letter it
        crashed = select(workflows.c.workflow_id).where(where, self._running_under(gone))
        counts = conn.execute(crashed).first() is not None
        if counts and limit is not None and record.recovery_attempts + 1 > limit:
            conn.execute(
                update(workflows)
                .where(where)
                .values(
                    status=WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
                    error=error(record),
                    executor_id=None,
                    updated_at_ms=now,
                    completed_at_ms=now,
                )
            )
            return RecoveryAction.DEAD_LETTERED
        conn.execute(
            update(workflows)
            .where(where)
            .values(
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                recovery_attempts=workflows.c.recovery_attempts + int(counts),
                wake_at_ms=None,
                updated_at_ms=now,
            )
        )
        if record.kind == CHAIN:
            conn.execute(
                update(steps)
                .where(
                    steps.c.workflow_id == record.workflow_id,
                    steps.c.status == StepState.RUNNING,
                    gone(steps.c.executor_id),
                )
                .values(status=StepState.PENDING, executor_id=None, lease_id=None)
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
        """Re-enqueue a workflow from its first incomplete step, unless it succeeded or a
        live executor still runs it (or, for a chain, one of its steps).

        Counts one recovery attempt; a cancelled, failed or dead-lettered workflow starts its
        count anew, without its deadline (a failed one retries its failed step). A chain's
        running or retrying step is put back to PENDING. Returns the row as it was and what
        was done; None for an unknown id.
        """
        stmt = select(workflows).where(workflows.c.workflow_id == workflow_id).with_for_update()

        def run(conn: Connection) -> tuple[WorkflowRecord, ResumeOutcome] | None:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            record = WorkflowRecord(**row)
            if record.status == WorkflowState.SUCCESS:
                return record, ResumeOutcome.FINISHED
            if self._owner_live(conn, record, stale_before_ms):
                return record, ResumeOutcome.RUNNING
            values: dict[str, Any] = {"recovery_attempts": workflows.c.recovery_attempts + 1}
            if record.status not in ACTIVE_STATUSES:  # an operator's fresh start
                values = {"recovery_attempts": 1, "deadline_ms": None, "error": None}
            if queue is not None:
                values["queue"] = queue
            conn.execute(
                update(workflows)
                .where(workflows.c.workflow_id == workflow_id)
                .values(
                    status=WorkflowState.ENQUEUED,
                    executor_id=None,
                    wake_at_ms=None,
                    completed_at_ms=None,
                    updated_at_ms=self.clock.now_ms(),
                    **values,
                )
            )
            conn.execute(
                update(steps)
                .where(steps.c.workflow_id == workflow_id, steps.c.status.in_(_LEASED_OR_DUE))
                .values(status=StepState.PENDING, executor_id=None, lease_id=None, due_at_ms=None)
            )
            if record.status == WorkflowState.ERROR:
                self._reopen_failed_step(conn, record)
            if wait_in is not None and record.status not in ACTIVE_STATUSES:
                now = self.clock.now_ms()  # it held no slot: it waits for one
                route_chain(conn, workflow_id, ChainRoute(wait_in.queue, wait_in), now)
            return record, ResumeOutcome.RESUMED

        return self._write("resume_workflow", run)

    def _reopen_failed_step(self, conn: Connection, record: WorkflowRecord) -> None:
        """An ERROR workflow resumed retries its failed step (the last recorded ERROR) with
        a fresh attempt budget: its record and attempt errors are set aside in its history
        (store/history.py); a chain's step goes back to PENDING, a code workflow's record
        (and anything after it) is dropped so the replay runs it again."""
        wid = record.workflow_id
        found = select(func.max(steps.c.step_id)).where(
            steps.c.workflow_id == wid, steps.c.status == StepState.ERROR
        )
        failed = conn.execute(found).scalar()
        if failed is None:  # the workflow's own code raised: its replay runs it again
            return
        set_aside_step(conn, wid, failed, self.clock.now_ms())  # kept in its history
        errors = delete(step_errors).where(
            step_errors.c.workflow_id == wid, step_errors.c.step_id > failed
        )
        conn.execute(errors)
        if record.kind == CHAIN:
            conn.execute(
                update(steps)
                .where(steps.c.workflow_id == wid, steps.c.step_id == failed)
                .values(
                    status=StepState.PENDING, error=None, attempts=0, executor_id=None,
                    lease_id=None, due_at_ms=None, started_at_ms=None, completed_at_ms=None,
                )
            )  # fmt: skip
        else:
            conn.execute(delete(steps).where(steps.c.workflow_id == wid, steps.c.step_id >= failed))

    def _owner_live(self, conn: Connection, record: WorkflowRecord, stale: int) -> bool:
        """Does a live executor still run it: the workflow (code) or a step (chain)?"""
        live = self._live(stale)
        if record.kind != CHAIN:
            if record.executor_id is None:
                return False
            found = live.where(executors.c.executor_id == record.executor_id)
            return conn.execute(found).first() is not None
        running = select(steps.c.step_id).where(
            steps.c.workflow_id == record.workflow_id,
            steps.c.status == StepState.RUNNING,
            steps.c.executor_id.in_(live),
        )
        return conn.execute(running.limit(1)).first() is not None

    def cancel_expired(self, now: int, limit: int, error: Any) -> list[str]:
        """End active workflows whose deadline passed as CANCELLED."""
        stmt = (
            select(workflows.c.workflow_id)
            .where(
                workflows.c.status.in_([WorkflowState.ENQUEUED, WorkflowState.PENDING]),
                workflows.c.deadline_ms.is_not(None),
                workflows.c.deadline_ms < now,
            )
            .limit(limit)
            .with_for_update(skip_locked=True)
        )

        def run(conn: Connection) -> list[str]:
            ids = [r[0] for r in conn.execute(stmt)]
            for wid in ids:
                conn.execute(
                    update(workflows)
                    .where(workflows.c.workflow_id == wid)
                    .values(
                        # the owner is kept: a run inside a step body gives it up at its
                        # next checkpoint, and resume_workflow waits for that
                        status=WorkflowState.CANCELLED,
                        error=error(wid),
                        updated_at_ms=now,
                        completed_at_ms=now,
                    )
                )
            return ids

        return self._write("cancel_expired", run)

    def find_step_by_task_id(self, task_id: str) -> StepRecord | None:
        stmt = select(steps).where(steps.c.task_id == task_id).limit(1)

        def run(conn: Connection) -> StepRecord | None:
            row = conn.execute(stmt).mappings().first()
            return StepRecord(**row) if row is not None else None

        return self._read("find_step_by_task_id", run)
