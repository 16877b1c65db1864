"""Celery-style signals celery-durable sends, so users can alert on them."""

from __future__ import annotations

from celery.utils.dispatch import Signal

#: A chain step's output was committed; the next step is due (sent before it is published).
step_checkpointed = Signal(name="step_checkpointed", providing_args={"workflow_id", "step_id"})
#: A step attempt failed and another is scheduled.
step_retrying = Signal(
    name="step_retrying", providing_args={"workflow_id", "step_id", "attempt", "delay", "exc"}
)
#: A step failed on its last attempt (or with a dont_retry_on error).
step_retries_exhausted = Signal(
    name="step_retries_exhausted", providing_args={"workflow_id", "step_id", "exc"}
)
#: The sweep or resume_workflow re-enqueued a workflow.
workflow_recovered = Signal(
    name="workflow_recovered", providing_args={"workflow_id", "recovery_attempts"}
)
#: A workflow exceeded max_recovery_attempts and will never run again.
workflow_dead_lettered = Signal(
    name="workflow_dead_lettered", providing_args={"workflow_id", "recovery_attempts"}
)
