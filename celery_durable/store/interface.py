"""What the runtime needs of a store: ``DurableStore``, implemented by the SQL ``Store``
(Postgres, SQLite) and by ``MemoryStore``, and held to one contract test suite.

Every method is one atomic step of the durable state machine: a claim, a checkpoint, a
lease, a recovery decision. Values arrive encoded (text made by the runtime's
serializer); timestamps are epoch milliseconds from the store's ``clock``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from ..clock import Clock
from ..flowtypes import ChainRoute, QueueEntry
from ..types import (
    ExecutorRecord,
    RecoveryAction,
    ResumeOutcome,
    StepRecord,
    WorkflowFilter,
    WorkflowRecord,
)
from .messages_interface import MessagesStore
from .operations_interface import OperationsStore
from .queues_interface import QueueStore

T = TypeVar("T")
#: error text for a workflow the sweep dead-letters (or cancels), given its row
ErrorFor = Callable[[WorkflowRecord], str]


class DurableStore(OperationsStore, QueueStore, MessagesStore, Protocol):
    clock: Clock

    # lifecycle ------------------------------------------------------------
    def migrate(self, revision: str = "head") -> str | None:
        """Create or upgrade the schema; returns the revision (None: nothing to migrate)."""
        ...

    def prepare(self) -> None:
        """Get ready to serve steps (a worker calls it before forking its pool)."""
        ...

    def dispose(self) -> None:
        """Close this process's connections."""
        ...

    # workflows ------------------------------------------------------------
    def insert_workflow(self, record: WorkflowRecord) -> bool:
        """Insert unless the id exists; True when this call created it."""
        ...

    def get_workflow(self, workflow_id: str) -> WorkflowRecord | None: ...

    def claim_workflow(
        self, workflow_id: str, name: str, executor_id: str, stale_before_ms: int
    ) -> WorkflowRecord | None:
        """Make ``executor_id`` the owner (PENDING, run_count + 1) when the workflow, recorded
        as ``name``, is ENQUEUED (and not waiting out a retry) or PENDING under a gone owner."""
        ...

    def finish_workflow(
        self,
        workflow_id: str,
        executor_id: str | None,
        status: str,
        output: str | None = None,
        error: str | None = None,
    ) -> bool:
        """End a PENDING run this executor owns (any owner when None)."""
        ...

    def set_status(
        self,
        workflow_id: str,
        status: str,
        *,
        only_from: Sequence[str] | None = None,
        error: str | None = None,
        executor_id: str | None = None,
        keep_owner: bool = False,
    ) -> bool: ...

    def release_workflow(self, workflow_id: str, executor_id: str, run: int) -> bool:
        """Run ``run`` ends without finishing: no owner; PENDING becomes ENQUEUED."""
        ...

    def suspend_workflow(self, workflow_id: str, executor_id: str, wake_at_ms: int) -> bool:
        """Owner gives it up until ``wake_at_ms`` (ENQUEUED with a wake-up time)."""
        ...

    def delete_workflow(self, workflow_id: str) -> None: ...

    def fork_workflow(
        self,
        source_id: str,
        new_id: str,
        start_step: int,
        *,
        deadline_ms: int | None = None,
        queue: str | None = None,
        wait_in: QueueEntry | None = None,
    ) -> None:
        """Copy a workflow (ENQUEUED) with its steps before ``start_step``, this deadline and
        queue (None: the source's); a chain's later steps are copied PENDING with fresh task
        ids. With ``wait_in`` (its durable queue's entry) the copy waits for admission."""
        ...

    def list_workflows(
        self,
        *,
        status: str | Sequence[str] | None = None,
        name: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
        newest_first: bool = True,
        workflow_ids: Sequence[str] | None = None,
        parent_workflow_id: str | None = None,
        where: WorkflowFilter | None = None,
    ) -> list[WorkflowRecord]:
        """Matching workflows by creation time; ``where`` adds the operations filters."""
        ...

    # steps ----------------------------------------------------------------
    def load_steps(self, workflow_id: str) -> dict[int, StepRecord]:
        """Every step with its attempt errors; a step with failed attempts and no row yet is
        reported RETRYING."""
        ...

    def get_step(self, workflow_id: str, step_id: int) -> StepRecord | None: ...

    def find_step_by_task_id(self, task_id: str) -> StepRecord | None: ...

    def record_step(self, record: StepRecord) -> bool:
        """Checkpoint a step while its workflow is PENDING; the first one wins."""
        ...

    def record_step_error(
        self, workflow_id: str, step_id: int, attempt: int, name: str, error: str
    ) -> None: ...

    def run_transaction_step(
        self,
        body: Callable[[Any], T],
        finish: Callable[[Any, T], bool],
        isolation_level: str | None = None,
        start: Callable[[Any], bool] | None = None,
    ) -> tuple[bool, T | None]:
        """``start(tx)`` (if given), ``body(session)``, then ``finish(tx, result)`` in one
        transaction; ``start`` or ``finish`` returning False rolls it back: (False, None)."""
        ...

    def insert_checkpoint(self, tx: Any, record: StepRecord) -> bool:
        """``record_step`` inside ``run_transaction_step``'s transaction ``tx``."""
        ...

    # child workflows ------------------------------------------------------
    def suspend_for_children(
        self, workflow_id: str, executor_id: str, child_ids: Sequence[str]
    ) -> bool:
        """The owner gives it up until ``child_ids`` (of its children) have ended: they are
        marked awaited, it waits ENQUEUED with ``wake_at_ms = WAIT_FOR_CHILDREN_MS``."""
        ...

    def wake_parent(self, parent_id: str) -> bool:
        """A waiting parent none of whose awaited children still runs becomes due (its wake
        time cleared); True when this call did it. Serialized on the parent's row."""
        ...

    # chains ---------------------------------------------------------------
    def insert_chain(self, workflow: WorkflowRecord, chain_steps: Sequence[StepRecord]) -> bool: ...

    def claim_chain_step(
        self, workflow_id: str, step_id: int, name: str, executor_id: str, stale_before_ms: int
    ) -> StepRecord | None:
        """Lease a PENDING or RETRYING step (or one RUNNING under a gone executor) recorded
        as ``name``, while its chain is active, before its deadline and not waiting for
        admission in a durable queue."""
        ...

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
        """Checkpoint under the lease; the last step also ends the chain SUCCESS; with a
        ``route`` (not the last step) the chain's next step waits in a durable queue, or the
        chain leaves one, in the same transaction."""
        ...

    def complete_chain_step(
        self,
        tx: Any,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        last: bool,
        route: ChainRoute | None = None,
    ) -> bool:
        """``finish_chain_step`` inside ``run_transaction_step``'s transaction ``tx``."""
        ...

    def lease_chain_step(
        self,
        tx: Any,
        workflow_id: str,
        step_id: int,
        name: str,
        executor_id: str,
        stale_before_ms: int,
    ) -> StepRecord | None:
        """``claim_chain_step`` inside ``run_transaction_step``'s transaction ``tx`` (from its
        ``start``): the lease commits, or rolls back, with the step."""
        ...

    def retry_chain_step(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        attempt: int,
        name: str,
        error: str,
        due_at_ms: int,
    ) -> bool: ...

    def fail_chain_step(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        attempt: int,
        name: str,
        attempt_error: str,
        final_error: str,
    ) -> bool: ...

    # canvases (store/canvas.py) -----------------------------------------------
    def finish_member(
        self,
        workflow_id: str,
        step_id: int,
        lease_id: str,
        output: str,
        attempts: int,
        stage: range,
        final: Callable[[list[str]], str] | None,
    ) -> tuple[bool, list[str] | None]:
        """Checkpoint a canvas member under its lease, the workflow row locked; (committed,
        the stage's outputs in member order to the completion that finished the stage)."""
        ...

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
        """A member's last failure: (the lease held, this call ended the canvas ERROR)."""
        ...

    def load_step_history(self, workflow_id: str) -> dict[int, list[StepRecord]]:
        """Each step's earlier runs, set aside by ``resume_workflow`` (record and attempt
        errors), oldest first (store/history.py)."""
        ...

    def first_open_step(self, workflow_id: str) -> tuple[StepRecord, StepRecord | None] | None: ...

    # recovery -------------------------------------------------------------
    def claim_stalled(
        self, stale_before_ms: int, lost_before_ms: int, limit: int, error: ErrorFor
    ) -> list[tuple[WorkflowRecord, RecoveryAction]]: ...

    def recover_lost(
        self, workflow_id: str, executor_id: str, error: ErrorFor
    ) -> tuple[WorkflowRecord, RecoveryAction] | None: ...

    def resume_workflow(
        self,
        workflow_id: str,
        stale_before_ms: int,
        *,
        queue: str | None = None,
        wait_in: QueueEntry | None = None,
    ) -> tuple[WorkflowRecord, ResumeOutcome] | None:
        """Re-enqueue unless it finished or a live executor runs it (on ``queue`` if given).
        A workflow that had ended waits for admission with ``wait_in`` when given (its
        durable queue's new entry) instead of being due at once."""
        ...

    def cancel_expired(self, now: int, limit: int, error: Callable[[str], str]) -> list[str]: ...

    # executors ------------------------------------------------------------
    def register_executor(self, record: ExecutorRecord) -> None: ...

    def heartbeat(self, executor_id: str) -> None: ...

    def stop_executor(self, executor_id: str) -> None: ...

    def get_executor(self, executor_id: str) -> ExecutorRecord | None: ...
