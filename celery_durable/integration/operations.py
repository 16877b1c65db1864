"""``Durable``'s operations API: filtered listings, bulk actions, deletion and retention
(the runtime decides in runtime/operations.py; this adapts it to the ``Durable`` object)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from ..runtime import operations
from ..runtime.recovery import Publisher
from ..runtime.runtime import Runtime
from ..types import TERMINAL_STATUSES, WorkflowFilter
from .settings import DurableSettings


def to_ms(value: datetime | float | None) -> int | None:
    """A datetime (naive means UTC) or epoch seconds, as epoch milliseconds."""
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    return int(value * 1000)


def workflow_filter(
    status: str | Sequence[str] | None = None,
    name: str | None = None,
    *,
    queue: str | None = None,
    created_after: datetime | float | None = None,
    created_before: datetime | float | None = None,
    id_prefix: str | None = None,
    parent_workflow_id: str | None = None,
    executor_id: str | None = None,
) -> WorkflowFilter:
    """The filter of ``list_workflows`` and the bulk actions, from their keyword options."""
    statuses = () if status is None else (status,) if isinstance(status, str) else tuple(status)
    return WorkflowFilter(
        statuses=statuses,
        name=name,
        queue=queue,
        created_after_ms=to_ms(created_after),
        created_before_ms=to_ms(created_before),
        id_prefix=id_prefix or None,
        parent_workflow_id=parent_workflow_id,
        executor_id=executor_id,
    )


class DurableOperations:
    """Mixed into ``Durable``: what an operator does to many workflows at once."""

    # given by Durable
    @property
    def runtime(self) -> Runtime:
        raise NotImplementedError

    @property
    def settings(self) -> DurableSettings:
        raise NotImplementedError

    @property
    def republish(self) -> Publisher:
        raise NotImplementedError

    def delete_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        """Delete ended workflows with their steps and errors (whatever their age); an
        active one, or one whose parent or child is still active, stays. Returns the ids
        deleted."""
        return operations.delete_workflows(self.runtime, workflow_ids)

    def collect_garbage(
        self,
        older_than_seconds: float,
        *,
        statuses: Sequence[str] = tuple(TERMINAL_STATUSES),
        dry_run: bool = False,
        time_budget: float | None = None,
        pause_ratio: float = 3.0,
    ) -> operations.GcReport:
        """Delete workflows that ended more than ``older_than_seconds`` ago (beat does it
        every ``durable_gc_interval`` with ``durable_retention_seconds``), pausing between
        batches ``pause_ratio`` times as long as each took (0: full speed)."""
        return operations.collect_garbage(
            self.runtime,
            older_than_seconds,
            statuses=statuses,
            batch_size=self.settings.gc_batch_size,
            dry_run=dry_run,
            time_budget=time_budget,
            pause_ratio=pause_ratio,
        )

    def cancel_workflows(self, where: WorkflowFilter, limit: int = 10_000) -> operations.BulkReport:
        """Cancel the active workflows matching ``where`` (``workflow_filter(...)``)."""
        return operations.bulk_cancel(self.runtime, where, limit=limit)

    def resume_workflows(self, where: WorkflowFilter, limit: int = 10_000) -> operations.BulkReport:
        """Resume the workflows matching ``where`` that ``resume`` would take."""
        return operations.bulk_resume(self.runtime, where, self.republish, limit=limit)
