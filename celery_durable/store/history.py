"""SQL for a step's earlier runs: set aside (record and attempt errors) when
``resume_workflow`` retries a failed step afresh, so the operator still sees why it failed."""

from __future__ import annotations

import json

from sqlalchemy import Connection, delete, func, insert, select

from ..types import StepRecord
from .base import StoreBase
from .tables import step_errors, step_history, steps


def set_aside_step(conn: Connection, workflow_id: str, step_id: int, now: int) -> None:
    """Copy the step's record and attempt errors into its history (the next run number),
    then drop its attempt errors: the step's next run numbers its attempts from 0 again."""
    row = (
        conn.execute(
            select(steps).where(steps.c.workflow_id == workflow_id, steps.c.step_id == step_id)
        )
        .mappings()
        .first()
    )
    mine = (step_errors.c.workflow_id == workflow_id) & (step_errors.c.step_id == step_id)
    errors = [
        e
        for (e,) in conn.execute(
            select(step_errors.c.error).where(mine).order_by(step_errors.c.attempt)
        )
    ]
    if row is None:
        return
    runs = select(func.coalesce(func.max(step_history.c.run), 0)).where(
        step_history.c.workflow_id == workflow_id, step_history.c.step_id == step_id
    )
    run = int(conn.execute(runs).scalar() or 0) + 1
    conn.execute(
        insert(step_history).values(
            workflow_id=workflow_id, step_id=step_id, run=run, name=row["name"],
            status=row["status"], error=row["error"], attempts=row["attempts"],
            attempt_errors=json.dumps(errors), started_at_ms=row["started_at_ms"],
            completed_at_ms=row["completed_at_ms"], set_aside_at_ms=now,
        )
    )  # fmt: skip
    conn.execute(delete(step_errors).where(mine))


class HistoryQueries(StoreBase):
    def load_step_history(self, workflow_id: str) -> dict[int, list[StepRecord]]:
        """Each step's earlier runs (set aside by resume), oldest first."""
        stmt = (
            select(step_history)
            .where(step_history.c.workflow_id == workflow_id)
            .order_by(step_history.c.step_id, step_history.c.run)
        )

        def run(conn: Connection) -> dict[int, list[StepRecord]]:
            out: dict[int, list[StepRecord]] = {}
            for r in conn.execute(stmt).mappings():
                out.setdefault(r["step_id"], []).append(
                    StepRecord(
                        workflow_id=workflow_id, step_id=r["step_id"], name=r["name"],
                        status=r["status"], error=r["error"], attempts=r["attempts"],
                        started_at_ms=r["started_at_ms"], completed_at_ms=r["completed_at_ms"],
                        attempt_errors=tuple(json.loads(r["attempt_errors"])),
                    )
                )  # fmt: skip
            return out

        return self._read("load_step_history", run)
