"""WorkflowHandle: status and result of a workflow, read from the store."""

from __future__ import annotations

from typing import Any

from ..annotations import Annotations
from ..errors import (
    AwaitedWorkflowCancelled,
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
    NonExistentWorkflow,
)
from ..types import (
    StepInfo,
    StepRecord,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
    ms_to_datetime,
)
from .children import AWAIT_STEP, await_children, results
from .context import current_workflow
from .runtime import Runtime


def to_status(runtime: Runtime, record: WorkflowRecord) -> WorkflowStatus:
    """Decode a workflow row for people and scripts; undecodable values become errors."""
    ser = runtime.serializer
    inputs: Any = None
    output: Any = None
    error: BaseException | None = None
    try:
        inputs = ser.loads(record.inputs, what="inputs")
        output = ser.loads(record.output, what="output")
        error = ser.loads_exception(record.error) if record.error else None
    except Exception as exc:  # a corrupted row is reported, not fatal to listing
        error = exc
    return WorkflowStatus(
        workflow_id=record.workflow_id,
        name=record.name,
        status=record.status,
        kind=record.kind,
        input=inputs,
        output=output,
        error=error,
        executor_id=record.executor_id,
        queue=record.queue,
        recovery_attempts=record.recovery_attempts,
        max_recovery_attempts=record.max_recovery_attempts,
        created_at=ms_to_datetime(record.created_at_ms),
        updated_at=ms_to_datetime(record.updated_at_ms),
        started_at=ms_to_datetime(record.started_at_ms),
        completed_at=ms_to_datetime(record.completed_at_ms),
        deadline=ms_to_datetime(record.deadline_ms),
        parent_workflow_id=record.parent_workflow_id,
    )


def to_step_info(runtime: Runtime, record: StepRecord) -> StepInfo:
    ser = runtime.serializer
    output: Any = None
    error: BaseException | None = None
    errors: list[BaseException] = []
    try:
        output = ser.loads(record.output, what="step output")
        error = ser.loads_exception(record.error) if record.error else None
        errors = [ser.loads_exception(e) for e in record.attempt_errors]
    except Exception as exc:
        error = exc
    return StepInfo(
        workflow_id=record.workflow_id,
        step_id=record.step_id,
        name=record.name,
        status=record.status,
        attempts=record.attempts,
        output=output,
        error=error,
        errors=errors,
        started_at=ms_to_datetime(record.started_at_ms),
        completed_at=ms_to_datetime(record.completed_at_ms),
    )


class WorkflowHandle:
    """A reference to one workflow; every call reads the store (never Celery's backend)."""

    def __init__(
        self, runtime: Runtime, workflow_id: str, codec: Annotations | None = None
    ) -> None:
        self._runtime = runtime
        self.workflow_id = workflow_id
        self._codec = codec  # the workflow's annotations: its result back in its type

    def __repr__(self) -> str:
        return f"<WorkflowHandle {self.workflow_id}>"

    def _record(self) -> WorkflowRecord:
        record = self._runtime.store.get_workflow(self.workflow_id)
        if record is None:
            raise NonExistentWorkflow(self.workflow_id)
        return record

    def get_status(self) -> WorkflowStatus:
        return to_status(self._runtime, self._record())

    def get_workflow_id(self) -> str:
        return self.workflow_id

    def get_result(self, timeout: float | None = None, poll_interval: float | None = None) -> Any:
        """Wait for the workflow to end; return its output or raise its error.

        Raises TimeoutError when ``timeout`` seconds pass first. Inside a workflow it is a
        recorded step (a replay gets the result at once), waits until the child ends
        (``timeout`` is not used: the workflow's own deadline bounds it), and on a worker
        gives the slot back while it waits long.
        """
        ctx = current_workflow()
        if ctx is not None and not ctx.in_step:
            outcomes = await_children(self._runtime, ctx, [self.workflow_id], AWAIT_STEP)
            return self._typed(results(self._runtime, outcomes)[0])
        return self.wait_result(timeout, poll_interval)

    def wait_result(self, timeout: float | None = None, poll_interval: float | None = None) -> Any:
        """``get_result`` from outside any workflow: polls the store, records nothing."""
        clock = self._runtime.clock
        deadline = None if timeout is None else clock.monotonic() + timeout
        interval = poll_interval or self._runtime.settings.poll_interval
        wait = min(0.01, interval)
        while True:
            record = self._record()
            if record.status == WorkflowState.SUCCESS:
                return self._typed(
                    self._runtime.serializer.loads(record.output, what="workflow output")
                )
            if record.status == WorkflowState.ERROR:
                raise self._runtime.serializer.loads_exception(record.error or "{}")
            if record.status == WorkflowState.CANCELLED:
                raise AwaitedWorkflowCancelled(self.workflow_id)
            if record.status == WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
                raise AwaitedWorkflowMaxRecoveryAttemptsExceeded(self.workflow_id)
            if deadline is not None and clock.monotonic() >= deadline:
                raise TimeoutError(
                    f"workflow {self.workflow_id!r} still {record.status} after {timeout}s"
                )
            clock.sleep(
                wait if deadline is None else max(0.0, min(wait, deadline - clock.monotonic()))
            )
            wait = min(wait * 2, interval)

    def _typed(self, value: Any) -> Any:
        return value if self._codec is None else self._codec.load_result(value)
