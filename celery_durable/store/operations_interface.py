"""What operating celery-durable asks of a store, beside running workflows: listings and
counts for the dashboard and metrics, bulk cancellation, and retention deletes.

Part of ``DurableStore`` (store/interface.py); the SQL store implements it in
store/operations.py, ``MemoryStore`` in store/memory_operations.py, and
tests/store/test_contract_operations.py holds both to the same cases. Every query here
must stay cheap on a long history: each is served by an index (migration 0004), or reads
only active workflows (a small, indexed set).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from ..types import (
    ActivityBucket,
    EndedWorkflow,
    ExecutorWork,
    PageCursor,
    WorkflowFilter,
    WorkflowRecord,
)


class OperationsStore(Protocol):
    def count_by_status(self, where: WorkflowFilter, cap: int | None = None) -> dict[str, int]:
        """How many workflows match, per status (statuses with none are left out). With
        ``cap``, a status with more than ``cap`` counts ``cap + 1`` ("more than cap"): each
        count then reads at most that many index entries, however long the history."""
        ...

    def list_page(
        self, where: WorkflowFilter, *, limit: int, after: PageCursor | None = None
    ) -> list[WorkflowRecord]:
        """Up to ``limit`` matching workflows, newest first by (created_at_ms, workflow_id),
        strictly after ``after`` in that order (keyset paging: no OFFSET)."""
        ...

    def count_active_by_name(self) -> list[tuple[str, str, int]]:
        """(name, status, count) of ENQUEUED and PENDING workflows."""
        ...

    def list_executors(self, heartbeat_after_ms: int) -> list[ExecutorWork]:
        """Executors that beat at or after ``heartbeat_after_ms``, plus any older one that
        still owns active work, each with the active workflows it runs; newest beat first."""
        ...

    def count_stalled(self, stale_before_ms: int, lost_before_ms: int) -> int:
        """How many workflows the sweep would take now (see ``claim_stalled``)."""
        ...

    def list_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int
    ) -> list[WorkflowRecord]:
        """Those workflows (read only, nothing locked), longest untouched first."""
        ...

    def oldest_enqueued_ms(self, now_ms: int) -> int | None:
        """Since when the longest-waiting ENQUEUED workflow has been due (its last update,
        or its wake-up time when later); one waiting for a future wake-up is not due yet."""
        ...

    def activity(self, since_ms: int, bucket_ms: int) -> list[ActivityBucket]:
        """Per bucket of ``bucket_ms`` (starts aligned to multiples of it) from ``since_ms``:
        workflows created, ended SUCCESS, ended ERROR, and failed step attempts. Only
        buckets where something happened, in time order."""
        ...

    def ended_after(self, after: PageCursor, until_ms: int, limit: int) -> list[EndedWorkflow]:
        """Workflows that ended after ``after`` (by completed_at_ms, then id) and before
        ``until_ms``, oldest first, with their steps: the metrics feed."""
        ...

    def failed_attempts_between(self, since_ms: int, until_ms: int) -> dict[str, int]:
        """Failed step attempts recorded in [since_ms, until_ms), per step name."""
        ...

    def cancel_workflows(self, workflow_ids: Sequence[str]) -> list[str]:
        """End those of ``workflow_ids`` still active as CANCELLED (owners kept, as
        ``set_status(..., keep_owner=True)``); returns the ids cancelled."""
        ...

    def count_deletable(self, statuses: Sequence[str], before_ms: int | None) -> int:
        """How many workflows ``delete_ended`` would delete, in all batches."""
        ...

    def delete_ended(
        self,
        statuses: Sequence[str],
        limit: int,
        *,
        before_ms: int | None = None,
        workflow_ids: Sequence[str] | None = None,
    ) -> list[str]:
        """Delete up to ``limit`` workflows that ended in one of ``statuses`` (before
        ``before_ms`` when given; among ``workflow_ids`` when given), with their steps and
        attempt errors, in one short transaction. Never an active workflow, a child whose
        parent is still active, or a parent with a child still active. Rows another
        deletion holds are skipped. Returns the ids deleted."""
        ...

    def delete_stale_executors(self, before_ms: int) -> int:
        """Forget executors silent since before ``before_ms`` that own no active work."""
        ...
