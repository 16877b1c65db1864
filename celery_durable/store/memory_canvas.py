"""``MemoryStore``'s durable canvases: the SQL ``CanvasQueries`` in Python (one call is
atomic under the store's lock, as the SQL completion is under the workflow's row lock)."""

from __future__ import annotations

from ..types import ACTIVE_STATUSES, StepState, WorkflowState
from .canvas import FinalOutput
from .memory_tables import MemoryTables


class MemoryCanvas(MemoryTables):
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
        now = self.clock.now_ms()
        with self.atomic() as tx:
            s = tx.step(workflow_id, step_id)
            if s is None or s.status != StepState.RUNNING or s.lease_id != lease_id:
                return False, None
            tx.put_step(
                s, status=StepState.SUCCESS, output=output, attempts=attempts,
                executor_id=None, completed_at_ms=now,
            )  # fmt: skip
            w = tx.workflow(workflow_id)
            if w is None or w.status not in ACTIVE_STATUSES:
                return True, None
            rows = [tx.step(workflow_id, i) for i in stage]
            if any(r is None or r.status != StepState.SUCCESS for r in rows):
                return True, None
            outputs = [r.output or "" for r in rows if r is not None]
            if final is not None:
                tx.put_workflow(
                    w, status=WorkflowState.SUCCESS, output=final(outputs), error=None,
                    executor_id=None, updated_at_ms=now, completed_at_ms=now,
                )  # fmt: skip
            return True, outputs

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
        now = self.clock.now_ms()
        with self.atomic() as tx:
            s = tx.step(workflow_id, step_id)
            if s is None or s.status != StepState.RUNNING or s.lease_id != lease_id:
                return False, False
            tx.put_step(
                s, status=StepState.ERROR, error=final_error, attempts=attempt + 1,
                executor_id=None, lease_id=None, completed_at_ms=now,
            )  # fmt: skip
            tx.add_error(workflow_id, step_id, attempt, name, attempt_error)
            w = tx.workflow(workflow_id)
            if w is None or w.status not in ACTIVE_STATUSES:
                return True, False
            tx.put_workflow(
                w, status=WorkflowState.ERROR, error=final_error, executor_id=None,
                updated_at_ms=now, completed_at_ms=now,
            )  # fmt: skip
            return True, True
