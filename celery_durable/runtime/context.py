"""What the running workflow and step know about themselves (contextvars)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from ..types import StepRecord, StepStatus
from .tracing import step_span


@dataclass
class WorkflowContext:
    """The workflow running in this context: its id, replay records and step counter."""

    workflow_id: str
    name: str
    executor_id: str
    replay: dict[int, StepRecord] = field(default_factory=dict)
    deadline_ms: int | None = None
    can_suspend: bool = False
    next_step: int = 0
    in_step: bool = False
    run: int = 0  # the claim's run_count: fences this run's release of ownership
    # when the store last confirmed the workflow still runs here (claim, checkpoint)
    confirmed_ms: int = 0

    def next_step_id(self) -> int:
        step_id = self.next_step
        self.next_step += 1
        return step_id


class SuspendWorkflow(BaseException):
    """Raised to give the worker slot back during a long wait: a retry ``delay`` seconds
    away, or the end of ``children``; never seen by user code. ``parked``: the store gave
    the workflow up already (a wait for a message or an event, at most ``delay``)."""

    def __init__(
        self, delay: float = 0.0, children: tuple[str, ...] = (), parked: bool = False
    ) -> None:
        super().__init__(delay, children)
        self.delay = delay
        self.children = children
        self.parked = parked


class ProcessDeath(BaseException):
    """Stands for the death of this process at the point it is raised (subclassed by
    ``celery_durable.testing``'s crash points): a run it ends keeps its ownership, as a
    killed worker's would, for recovery to find."""


workflow_context: ContextVar[WorkflowContext | None] = ContextVar("durable_workflow", default=None)
step_status: ContextVar[StepStatus | None] = ContextVar("durable_step_status", default=None)
step_name: ContextVar[str | None] = ContextVar("durable_step_name", default=None)
sql_session: ContextVar[Any] = ContextVar("durable_sql_session", default=None)


@contextmanager
def step_scope(
    status: StepStatus, name: str, workflow: WorkflowContext | None = None
) -> Iterator[None]:
    """While one attempt of a step runs: ``durable.step_status``, the step's name, its span
    and, given ``workflow``, the workflow it belongs to."""
    tokens = (step_status.set(status), step_name.set(name))
    outer = workflow_context.set(workflow) if workflow is not None else None
    owner = workflow_context.get()
    try:
        with step_span(
            owner.workflow_id if owner else None, status.step_id, name, status.current_attempt
        ):
            yield
    finally:
        if outer is not None:
            workflow_context.reset(outer)
        step_name.reset(tokens[1])
        step_status.reset(tokens[0])


def current_workflow() -> WorkflowContext | None:
    return workflow_context.get()
