"""SQL for durable canvases (groups, chords): a member's checkpoint that also decides, under
the workflow's row lock, whether its stage is complete.

A canvas is stored as a chain whose stages may hold several members (steps with
consecutive ids); the runtime keeps the layout. Members of a stage commit concurrently: each
completion locks the workflow row first, so completions run one after another and exactly
one of them sees every member of its stage done. That one alone publishes the next stage
(or ends the canvas), in the transaction of its own checkpoint: no counter to drift, no
polling, and a crash before the publish leaves a state the sweep recognizes (a PENDING
step after a finished one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, bindparam, func, select, update

from ..types import ACTIVE_STATUSES, StepState, WorkflowState
from .base import StoreBase
from .chains import _COMPLETE, _END_CHAIN
from .hot import HotTransaction
from .statements import one_of
from .tables import steps, workflows

#: the canvas's output from its last stage's outputs (encoded), given by the runtime
FinalOutput = Callable[[list[str]], str]


class CanvasQueries(StoreBase):
    """Member checkpoints and failures of durable canvases."""

    def finish_member(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        stage: range,
        final: FinalOutput | None,
    ) -> tuple[bool, list[str] | None]:
        """Checkpoint a member under its lease (hot path, one durable commit). Returns
        (committed, outputs): ``outputs`` (the stage's members' outputs in member order)
        only to the completion that finished the stage of an active canvas; with ``final``
        that completion also ends it SUCCESS."""
        now = self.clock.now_ms()
        params = {
            "wid": workflow_id, "sid": step_id, "lease": lease_id, "output": output,
            "attempts": attempts, "now": now, "first": stage[0], "last": stage[-1],
        }  # fmt: skip

        def run(tx: HotTransaction) -> tuple[bool, list[str] | None]:
            found = tx.execute(_LOCK, params).first()  # completions run one after another
            if tx.execute(_COMPLETE, params).rowcount != 1:
                return False, None
            if found is None or found["status"] not in ACTIVE_STATUSES:
                return True, None  # failed or cancelled meanwhile: the output is kept
            counted = tx.execute(_DONE, params).first()
            if counted is None or counted["done"] != len(stage):  # a count: no outputs read
                return True, None
            outputs = [o or "" for (o,) in tx.execute(_OUTPUTS, params).rows]
            if final is not None:
                ended = {**params, "status": WorkflowState.SUCCESS, "error": None}
                tx.execute(_END_CHAIN, {**ended, "output": final(outputs)})
            return True, outputs

        return self._hot_tx("finish_member", run)

    def fail_member(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        attempt: int,
        name: str,
        attempt_error: str,
        final_error: str,
    ) -> tuple[bool, bool]:
        """Record a member's last failed attempt: it ends ERROR, and the canvas with it if
        still active. Returns (the lease held, this call ended the canvas): only the
        failure that ended it calls the canvas's errbacks."""
        now = self.clock.now_ms()
        end = (
            update(workflows)
            .where(
                workflows.c.workflow_id == workflow_id,
                workflows.c.status.in_(list(ACTIVE_STATUSES)),
            )
            .values(
                status=WorkflowState.ERROR, error=final_error, executor_id=None,
                updated_at_ms=now, completed_at_ms=now,
            )
        )  # fmt: skip

        failed = (
            update(steps)
            .where(
                steps.c.workflow_id == workflow_id,
                steps.c.step_id == step_id,
                steps.c.status == StepState.RUNNING,
                steps.c.lease_id == lease_id,
            )
            .values(
                status=StepState.ERROR, error=final_error, attempts=attempt + 1,
                executor_id=None, lease_id=None, completed_at_ms=now,
            )
        )  # fmt: skip

        def run(conn: Connection) -> tuple[bool, bool]:
            if conn.execute(failed).rowcount != 1:
                return False, False
            self.insert_attempt_error(conn, workflow_id, step_id, attempt, name, attempt_error)
            return True, conn.execute(end).rowcount == 1

        return self._write("fail_member", run)


def _build_statements() -> tuple[Any, Any, Any]:
    """The member checkpoint's statements, built once (see hot.py)."""
    wid: Any = bindparam("wid")
    lock = select(workflows.c.status).where(workflows.c.workflow_id == wid).with_for_update()
    in_stage = (
        steps.c.workflow_id == wid,
        steps.c.step_id >= bindparam("first"),
        steps.c.step_id <= bindparam("last"),
    )
    done = select(func.count().label("done")).where(
        *in_stage, one_of(steps.c.status, StepState.SUCCESS)
    )
    outputs = select(steps.c.output).where(*in_stage).order_by(steps.c.step_id)
    return lock, done, outputs


_LOCK, _DONE, _OUTPUTS = _build_statements()
HOT_STATEMENTS = (_LOCK, _DONE, _OUTPUTS)
