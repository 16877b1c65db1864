"""SQL for child workflows: a parent waiting for its children with its slot given back,
and the end of a child waking that parent."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Connection, exists, select, update

from ..types import ACTIVE_STATUSES, WAIT_FOR_CHILDREN_MS, WorkflowState
from .base import StoreBase
from .statements import give_up_ownership
from .tables import workflows


class ChildQueries(StoreBase):
    """``awaited`` marks the children a suspended parent waits for (migration 0003)."""

    def suspend_for_children(
        self, workflow_id: str, executor_id: str, child_ids: Sequence[str]
    ) -> bool:
        """The owner gives the workflow up until ``child_ids`` have ended: they are marked
        awaited (only those, of its children), and it waits ENQUEUED, not due by itself
        (``wake_at_ms`` is ``WAIT_FOR_CHILDREN_MS``). False when it no longer owns it."""
        now = self.clock.now_ms()
        children = workflows.c.parent_workflow_id == workflow_id

        def run(conn: Connection) -> bool:
            parked = conn.execute(
                give_up_ownership(workflow_id, executor_id, WAIT_FOR_CHILDREN_MS, now)
            )
            if parked.rowcount != 1:
                return False
            conn.execute(update(workflows).where(children).values(awaited=0))
            conn.execute(
                update(workflows)
                .where(children, workflows.c.workflow_id.in_(list(child_ids)))
                .values(awaited=1)
            )
            return True

        return self._write("suspend_for_children", run)

    def wake_parent(self, parent_id: str) -> bool:
        """Make a parent waiting for its children due again once none of the children it
        awaits is still running; True when this call did (the caller then publishes it).

        The parent's row is locked first, so two children ending at once cannot both see
        the other still running and leave it asleep."""
        now = self.clock.now_ms()
        lock = (
            select(workflows.c.workflow_id)
            .where(
                workflows.c.workflow_id == parent_id,
                workflows.c.status == WorkflowState.ENQUEUED,
                workflows.c.wake_at_ms == WAIT_FOR_CHILDREN_MS,
            )
            .with_for_update()
        )
        running = exists().where(
            workflows.c.parent_workflow_id == parent_id,
            workflows.c.awaited == 1,
            workflows.c.status.in_(list(ACTIVE_STATUSES)),
        )

        def run(conn: Connection) -> bool:
            if conn.execute(lock).first() is None:
                return False
            if conn.execute(select(running)).scalar():
                return False
            conn.execute(
                update(workflows)
                .where(workflows.c.workflow_id == parent_id)
                .values(wake_at_ms=None, updated_at_ms=now)
            )
            return True

        return self._write("wake_parent", run)
