"""Plain data shared by every layer: statuses and the records the store hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple


class WorkflowState(StrEnum):
    """A workflow's status (also a chain's), as stored."""

    ENQUEUED = "ENQUEUED"  # recorded and published (or waiting out a long retry)
    PENDING = "PENDING"  # running, owned by an executor
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"  # cancel_workflow, or its deadline passed
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"  # never runs again


#: The public name of ``WorkflowState`` (``from celery_durable import WorkflowStatusString``).
WorkflowStatusString = WorkflowState

TERMINAL_STATUSES = frozenset(
    {
        WorkflowState.SUCCESS,
        WorkflowState.ERROR,
        WorkflowState.CANCELLED,
        WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    }
)
ACTIVE_STATUSES = frozenset({WorkflowState.ENQUEUED, WorkflowState.PENDING})
FINISHED_STATUSES = frozenset({WorkflowState.SUCCESS, WorkflowState.ERROR})
#: ``wake_at_ms`` of a workflow waiting for its children: never due by itself, woken by
#: the end of the last child it awaits (or past its deadline, to be cancelled)
WAIT_FOR_CHILDREN_MS = 1 << 62


class StepState(StrEnum):
    """A step's status, as stored. Code workflow steps are written only when they end
    (SUCCESS or ERROR); chain steps go PENDING -> RUNNING (leased) -> SUCCESS, RETRYING
    (due again later) or ERROR."""

    PENDING = "PENDING"
    RUNNING = "RUNNING"
    RETRYING = "RETRYING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"


#: a canvas member that is itself a canvas (a chain, a chord): one step of its parent, run as
#: the child canvas ``nested_canvas_id(parent, step)`` (runtime/nested.py)
NESTED_STEP = "durable.canvas"
NESTED_ID_SEPARATOR = ":"


def nested_canvas_id(parent_id: str, step_id: int) -> str:
    """The child canvas of a nested member: found again from its parent's step alone."""
    return f"{parent_id}{NESTED_ID_SEPARATOR}{step_id}"


ENDED_STEPS = frozenset({StepState.SUCCESS, StepState.ERROR})
OPEN_STEPS = frozenset({StepState.PENDING, StepState.RUNNING, StepState.RETRYING})


class ExecutorState(StrEnum):
    """An executor (a worker, or a process making direct calls), as stored."""

    RUNNING = "RUNNING"  # alive while its heartbeat is younger than the executor timeout
    STOPPED = "STOPPED"  # shut down cleanly: what it owned is recovered at once


class WorkflowKind(StrEnum):
    """What a workflow row runs: a code workflow, a step or transaction started on its
    own, or a durable chain of steps."""

    WORKFLOW = "workflow"
    STEP = "step"
    TRANSACTION = "transaction"
    CHAIN = "chain"


class RunOutcome(StrEnum):
    """How one run of a code workflow ended (``runtime.workflows.execute``)."""

    SUCCESS = "success"  # finished; its output is stored
    ERROR = "error"  # ended with an error (stored), or cancelled while it ran
    SUSPENDED = "suspended"  # gave its slot back until a scheduled retry
    SKIPPED = "skipped"  # not claimed: someone live runs it, it ended, or it is not ours


class ChainOutcome(StrEnum):
    """How one delivery of a chain step ended (``runtime.chains.run_chain_step``)."""

    SUCCESS = "success"  # ran and committed: the next step is due
    DONE = "done"  # had already finished: the stored output is returned
    RETRY = "retry"  # failed; to run again after a delay
    ERROR = "error"  # failed for good: the chain ended ERROR
    BUSY = "busy"  # leased by a live executor, or the chain has ended
    EXPIRED = "expired"  # the chain passed its deadline: now CANCELLED
    REFUSED = "refused"  # the step is recorded under another task name
    MISSING = "missing"  # no such step


class RecoveryAction(StrEnum):
    """What the sweep did with a stalled workflow."""

    RECOVERED = "recovered"  # re-enqueued (and re-published)
    DEAD_LETTERED = "dead_lettered"  # over max_recovery_attempts: never runs again


class ResumeOutcome(StrEnum):
    """What ``resume_workflow`` did."""

    RESUMED = "RESUMED"  # re-enqueued from its first incomplete step
    RUNNING = "RUNNING"  # left alone: a live executor still runs it (or a step of it)
    FINISHED = "FINISHED"  # left alone: it ended SUCCESS


class StepStatus(NamedTuple):
    """What ``durable.step_status`` gives inside a step; ``current_attempt`` counts from 0."""

    step_id: int
    current_attempt: int
    max_attempts: int


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class WorkflowRecord:
    """One row of the workflows table, values still encoded."""

    workflow_id: str
    name: str
    status: str
    kind: str = WorkflowKind.WORKFLOW
    inputs: str | None = None
    output: str | None = None
    error: str | None = None
    executor_id: str | None = None
    queue: str | None = None
    recovery_attempts: int = 0
    max_recovery_attempts: int | None = None
    run_count: int = 0
    deadline_ms: int | None = None
    wake_at_ms: int | None = None
    created_at_ms: int = 0
    updated_at_ms: int = 0
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    parent_workflow_id: str | None = None
    awaited: int = 0
    trace_context: str | None = None  # the starter's, for tracing (migration 0004)


@dataclass(frozen=True)
class StepRecord:
    """One row of the steps table plus its attempt errors (encoded), in attempt order."""

    workflow_id: str
    step_id: int
    name: str
    status: str
    output: str | None = None
    error: str | None = None
    attempts: int = 0
    started_at_ms: int | None = None
    completed_at_ms: int | None = None
    signature: str | None = None
    task_id: str | None = None
    executor_id: str | None = None
    lease_id: str | None = None
    due_at_ms: int | None = None
    attempt_errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class ExecutorRecord:
    executor_id: str
    hostname: str
    pid: int
    started_at_ms: int
    last_heartbeat_ms: int
    status: str


@dataclass(frozen=True)
class WorkflowStatus:
    """A workflow as the management API reports it, values decoded."""

    workflow_id: str
    name: str
    status: str
    kind: str
    input: Any
    output: Any
    error: BaseException | None
    executor_id: str | None
    queue: str | None
    recovery_attempts: int
    max_recovery_attempts: int | None
    created_at: datetime | None
    updated_at: datetime | None
    started_at: datetime | None
    completed_at: datetime | None
    deadline: datetime | None
    parent_workflow_id: str | None = None


@dataclass(frozen=True)
class StepInfo:
    """A step as ``list_workflow_steps`` reports it, values decoded."""

    workflow_id: str
    step_id: int
    name: str
    status: str
    attempts: int
    output: Any
    error: BaseException | None
    errors: list[BaseException] = field(default_factory=list)
    started_at: datetime | None = None
    completed_at: datetime | None = None
    # a canvas member's position: its stage (0-based) and its place in that stage's group
    stage: int | None = None
    member: int | None = None
    # earlier runs of this step, set aside when resume_workflow retried it: oldest first,
    # each with its own status, error and attempt errors
    history: tuple[StepInfo, ...] = ()


# operations: what the dashboard, metrics and retention ask of the store -------------
@dataclass(frozen=True)
class WorkflowFilter:
    """Which workflows a listing, a count or a bulk action covers; every field narrows.

    ``executor_id`` matches only active workflows (a finished one has no owner), a code
    workflow it owns or a chain with a step it leases. Times are epoch milliseconds,
    ``created_after_ms`` inclusive and ``created_before_ms`` exclusive.
    """

    statuses: tuple[str, ...] = ()
    name: str | None = None
    queue: str | None = None
    created_after_ms: int | None = None
    created_before_ms: int | None = None
    id_prefix: str | None = None
    parent_workflow_id: str | None = None
    executor_id: str | None = None


class PageCursor(NamedTuple):
    """Where a keyset page ends: the last row's time and id (listings are newest first by
    ``created_at_ms``; the metrics feed is oldest first by ``completed_at_ms``)."""

    at_ms: int
    workflow_id: str


@dataclass(frozen=True)
class ExecutorWork:
    """An executor and the active workflows it runs (owned code workflows, and chains
    with a step it leases)."""

    executor: ExecutorRecord
    workflow_ids: tuple[str, ...] = ()


@dataclass(frozen=True)
class ActivityBucket:
    """What happened in one time bucket starting at ``start_ms``: workflows created,
    ended SUCCESS, ended ERROR, and step attempts that failed (each one retried or final)."""

    start_ms: int
    started: int = 0
    succeeded: int = 0
    failed: int = 0
    retries: int = 0


@dataclass(frozen=True)
class EndedWorkflow:
    """A workflow that ended, with its steps (no attempt errors): what metrics count."""

    workflow: WorkflowRecord
    steps: tuple[StepRecord, ...] = ()
