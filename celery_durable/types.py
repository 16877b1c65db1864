"""Plain data shared by every layer: statuses and the records the store hands back."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, NamedTuple


class WorkflowStatusString(StrEnum):
    ENQUEUED = "ENQUEUED"
    PENDING = "PENDING"
    SUCCESS = "SUCCESS"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    MAX_RECOVERY_ATTEMPTS_EXCEEDED = "MAX_RECOVERY_ATTEMPTS_EXCEEDED"


TERMINAL_STATUSES = frozenset(
    {
        WorkflowStatusString.SUCCESS,
        WorkflowStatusString.ERROR,
        WorkflowStatusString.CANCELLED,
        WorkflowStatusString.MAX_RECOVERY_ATTEMPTS_EXCEEDED,
    }
)
ACTIVE_STATUSES = frozenset({WorkflowStatusString.ENQUEUED, WorkflowStatusString.PENDING})


class ResumeOutcome(StrEnum):
    """What ``resume_workflow`` did."""

    RESUMED = "RESUMED"  # re-enqueued from its first incomplete step
    RUNNING = "RUNNING"  # left alone: a live executor still runs it (or a step of it)
    FINISHED = "FINISHED"  # left alone: it ended SUCCESS or ERROR


class StepStatus(NamedTuple):
    """What ``durable.step_status`` gives inside a step; ``current_attempt`` counts from 0."""

    step_id: int
    current_attempt: int
    max_attempts: int


def now_ms() -> int:
    return int(datetime.now(UTC).timestamp() * 1000)


def ms_to_datetime(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True)
class WorkflowRecord:
    """One row of the workflows table, values still encoded."""

    workflow_id: str
    name: str
    status: str
    kind: str = "workflow"
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
