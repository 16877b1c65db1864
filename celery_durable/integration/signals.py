"""Celery-style signals celery-durable sends, so users can alert on them."""

from __future__ import annotations

from typing import Any

from celery.utils.dispatch import Signal

from ..runtime.events import Events

#: A step's output was committed (a chain step's: before its next step is published).
step_checkpointed = Signal(
    name="step_checkpointed", providing_args={"workflow_id", "step_id", "name"}
)
#: A step attempt (``attempt``, 0-based) failed with ``exc``; another runs after ``delay``.
step_retrying = Signal(
    name="step_retrying",
    providing_args={"workflow_id", "step_id", "name", "attempt", "delay", "exc"},
)
#: A step failed on its last attempt (or with a dont_retry_on error); ``exc`` is raised.
step_retries_exhausted = Signal(
    name="step_retries_exhausted",
    providing_args={"workflow_id", "step_id", "name", "attempt", "exc"},
)
#: The sweep or resume_workflow re-enqueued a workflow.
workflow_recovered = Signal(
    name="workflow_recovered", providing_args={"workflow_id", "recovery_attempts"}
)
#: A workflow exceeded max_recovery_attempts and will never run again.
workflow_dead_lettered = Signal(
    name="workflow_dead_lettered", providing_args={"workflow_id", "recovery_attempts"}
)


class SignalEvents(Events):
    """The runtime's events, sent as the signals above (``sender`` is the Durable)."""

    def __init__(self, sender: Any) -> None:
        self.sender = sender

    def step_checkpointed(self, **kwargs: Any) -> None:
        step_checkpointed.send(sender=self.sender, **kwargs)

    def step_retrying(self, **kwargs: Any) -> None:
        step_retrying.send(sender=self.sender, **kwargs)

    def step_retries_exhausted(self, **kwargs: Any) -> None:
        step_retries_exhausted.send(sender=self.sender, **kwargs)

    def workflow_recovered(self, **kwargs: Any) -> None:
        workflow_recovered.send(sender=self.sender, **kwargs)

    def workflow_dead_lettered(self, **kwargs: Any) -> None:
        workflow_dead_lettered.send(sender=self.sender, **kwargs)
