"""``MemoryStore``'s side of child workflows (see store/children.py for the SQL)."""

from __future__ import annotations

from collections.abc import Sequence

from ..types import WAIT_FOR_CHILDREN_MS, WorkflowState
from .memory_tables import MemoryTables


class MemoryChildren(MemoryTables):
    def suspend_for_children(
        self, workflow_id: str, executor_id: str, child_ids: Sequence[str]
    ) -> bool:
        with self.atomic() as tx:
            w = self._workflows.get(workflow_id)
            if w is None or w.status != WorkflowState.PENDING or w.executor_id != executor_id:
                return False
            tx.put_workflow(
                w,
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                wake_at_ms=WAIT_FOR_CHILDREN_MS,
                updated_at_ms=self.clock.now_ms(),
            )
            for child in list(self._workflows.values()):
                if child.parent_workflow_id == workflow_id:
                    tx.put_workflow(child, awaited=int(child.workflow_id in child_ids))
            return True

    def wake_parent(self, parent_id: str) -> bool:
        with self.atomic() as tx:
            w = self._workflows.get(parent_id)
            if w is None or w.status != WorkflowState.ENQUEUED:
                return False
            if w.wake_at_ms != WAIT_FOR_CHILDREN_MS or self._awaits_running(parent_id):
                return False
            tx.put_workflow(w, wake_at_ms=None, updated_at_ms=self.clock.now_ms())
            return True
