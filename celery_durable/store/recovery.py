"""SQL for the recovery sweep: find stalled workflows, re-enqueue or dead-letter each once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, and_, exists, or_, select, update

from ..types import StepRecord, WorkflowRecord, WorkflowStatusString, now_ms
from .base import StoreBase
from .tables import executors, steps, workflows

S = WorkflowStatusString
RECOVERED = "recovered"
DEAD_LETTERED = "dead_lettered"


class RecoveryQueries(StoreBase):
    """Stalled = owner gone, or message lost (due for longer than the enqueue timeout)."""

    def _live(self, stale_before_ms: int) -> Any:
        return select(executors.c.executor_id).where(
            executors.c.last_heartbeat_ms >= stale_before_ms, executors.c.status == "RUNNING"
        )

    def _stalled(self, stale_before_ms: int, lost_before_ms: int) -> Any:
        w = workflows
        s = steps.alias("s")
        p = steps.alias("p")
        live = self._live(stale_before_ms)
        owner_gone = or_(w.c.executor_id.is_(None), w.c.executor_id.not_in(live))
        code = and_(
            w.c.kind != "chain",
            or_(
                and_(w.c.status == S.PENDING, owner_gone),
                and_(
                    w.c.status == S.ENQUEUED,
                    w.c.updated_at_ms < lost_before_ms,
                    or_(w.c.wake_at_ms.is_(None), w.c.wake_at_ms < lost_before_ms),
                ),
            ),
        )
        step_owner_gone = exists().where(
            s.c.workflow_id == w.c.workflow_id,
            s.c.status == "RUNNING",
            or_(s.c.executor_id.is_(None), s.c.executor_id.not_in(live)),
        )
        retry_lost = exists().where(
            s.c.workflow_id == w.c.workflow_id,
            s.c.status == "RETRYING",
            s.c.due_at_ms < lost_before_ms,
        )
        next_lost = exists(
            select(s.c.step_id)
            .select_from(
                s.join(p, and_(p.c.workflow_id == s.c.workflow_id, p.c.step_id == s.c.step_id - 1))
            )
            .where(
                s.c.workflow_id == w.c.workflow_id,
                s.c.status == "PENDING",
                p.c.status == "SUCCESS",
                p.c.completed_at_ms < lost_before_ms,
            )
        )
        first_lost = exists().where(
            s.c.workflow_id == w.c.workflow_id, s.c.step_id == 0, s.c.status == "PENDING"
        )
        chain = and_(
            w.c.kind == "chain",
            or_(
                step_owner_gone,
                and_(w.c.updated_at_ms < lost_before_ms, or_(retry_lost, next_lost, first_lost)),
            ),
        )
        return and_(w.c.status.in_([S.ENQUEUED, S.PENDING]), or_(code, chain))

    def claim_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int, error: Any
    ) -> list[tuple[WorkflowRecord, str]]:
        """Lock up to ``limit`` stalled workflows (skipping rows others hold) and move each on.

        Under its limit a workflow becomes ENQUEUED with one more recovery attempt (a chain's
        running step is released); over it, it ends MAX_RECOVERY_ATTEMPTS_EXCEEDED with
        ``error(record)`` as its error. Returns each row as it was, with what was done.
        """
        stmt = (
            select(workflows)
            .where(self._stalled(stale_before_ms, lost_before_ms))
            .order_by(workflows.c.updated_at_ms)
            .limit(limit)
            .with_for_update(skip_locked=True, of=workflows)
        )

        def run(conn: Connection) -> list[tuple[WorkflowRecord, str]]:
            found = [WorkflowRecord(**r) for r in conn.execute(stmt).mappings()]
            return [(r, self._move_on(conn, r, error, stale_before_ms)) for r in found]

        return self._write("claim_stalled", run)

    def recover_workflow(self, workflow_id: str, error: Any) -> tuple[WorkflowRecord, str] | None:
        """Treat an active workflow as crashed now (its process died under a live worker)."""
        stmt = (
            select(workflows)
            .where(
                workflows.c.workflow_id == workflow_id,
                workflows.c.status.in_([S.ENQUEUED, S.PENDING]),
            )
            .with_for_update()
        )

        def run(conn: Connection) -> tuple[WorkflowRecord, str] | None:
            row = conn.execute(stmt).mappings().first()
            if row is None:
                return None
            record = WorkflowRecord(**row)
            return record, self._move_on(conn, record, error, None)

        return self._write("recover_workflow", run)

    def _move_on(
        self, conn: Connection, record: WorkflowRecord, error: Any, stale_before_ms: int | None
    ) -> str:
        """Dead-letter or re-enqueue a locked workflow. A chain step is released only if its
        executor is gone (``stale_before_ms``), or always when that is None (its process died):
        a step a live worker claimed since the sweep looked stays leased."""
        now = now_ms()
        limit = record.max_recovery_attempts
        where = workflows.c.workflow_id == record.workflow_id
        # only a crash counts a recovery attempt (its owner died while it ran): re-sending a
        # message that is lost or still queued behind a backlog must not dead-letter it
        counts = self._crashed(conn, record, stale_before_ms)
        if counts and limit is not None and record.recovery_attempts + 1 > limit:
            conn.execute(
                update(workflows)
                .where(where)
                .values(
                    status=S.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
                    error=error(record),
                    executor_id=None,
                    updated_at_ms=now,
                    completed_at_ms=now,
                )
            )
            return DEAD_LETTERED
        conn.execute(
            update(workflows)
            .where(where)
            .values(
                status=S.ENQUEUED,
                executor_id=None,
                recovery_attempts=workflows.c.recovery_attempts + int(counts),
                wake_at_ms=None,
                updated_at_ms=now,
            )
        )
        if record.kind == "chain":
            release = update(steps).where(
                steps.c.workflow_id == record.workflow_id, steps.c.status == "RUNNING"
            )
            if stale_before_ms is not None:
                release = release.where(
                    or_(
                        steps.c.executor_id.is_(None),
                        steps.c.executor_id.not_in(self._live(stale_before_ms)),
                    )
                )
            conn.execute(release.values(status="PENDING", executor_id=None, lease_id=None))
        return RECOVERED

    def _crashed(self, conn: Connection, record: WorkflowRecord, stale: int | None) -> bool:
        """Was it running under an owner that is gone? (None: its process died just now.)"""
        if stale is None:
            return True
        if record.kind != "chain":
            return record.status == S.PENDING
        dead_step = select(steps.c.step_id).where(
            steps.c.workflow_id == record.workflow_id,
            steps.c.status == "RUNNING",
            or_(steps.c.executor_id.is_(None), steps.c.executor_id.not_in(self._live(stale))),
        )
        return conn.execute(dead_step.limit(1)).first() is not None

    def cancel_expired(self, now: int, limit: int, error: Any) -> list[str]:
        """End active workflows whose deadline passed as CANCELLED."""
        stmt = (
            select(workflows.c.workflow_id)
            .where(
                workflows.c.status.in_([S.ENQUEUED, S.PENDING]),
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
                        status=S.CANCELLED,
                        error=error(wid),
                        executor_id=None,
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
