"""Every exception type celery-durable raises."""

from __future__ import annotations

from collections.abc import Sequence


class DurableError(Exception):
    """Base class of every celery-durable error."""


class MaxStepRetriesExceeded(DurableError):
    """A step failed on every attempt; ``errors`` holds each attempt's exception, in order."""

    def __init__(
        self, step_name: str, max_retries: int, errors: Sequence[BaseException] = ()
    ) -> None:
        self.step_name = step_name
        self.max_retries = max_retries
        self.errors = list(errors)
        last = f": {type(self.errors[-1]).__name__}: {self.errors[-1]}" if self.errors else ""
        super().__init__(
            f"step {step_name!r} failed after {max_retries} retries "
            f"({len(self.errors)} attempts){last}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, list[BaseException]]]:
        return (type(self), (self.step_name, self.max_retries, self.errors))


class NonExistentWorkflow(DurableError):
    """No workflow has this id."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"no workflow with id {workflow_id!r}")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.workflow_id,))


class ConflictingWorkflowError(DurableError):
    """A workflow id is already used by a workflow of another name."""

    def __init__(self, workflow_id: str, existing_name: str, requested_name: str) -> None:
        self.workflow_id = workflow_id
        self.existing_name = existing_name
        self.requested_name = requested_name
        super().__init__(
            f"workflow id {workflow_id!r} already belongs to workflow {existing_name!r}; "
            f"cannot start {requested_name!r} under it"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.workflow_id, self.existing_name, self.requested_name))


class NonDeterministicWorkflowError(DurableError):
    """A replayed workflow called a different step than the one recorded at that position."""

    def __init__(self, workflow_id: str, step_id: int, recorded: str, called: str) -> None:
        self.workflow_id = workflow_id
        self.step_id = step_id
        self.recorded = recorded
        self.called = called
        super().__init__(
            f"workflow {workflow_id!r} is not deterministic: step {step_id} was recorded as "
            f"{recorded!r} but the code now calls {called!r}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int, str, str]]:
        return (type(self), (self.workflow_id, self.step_id, self.recorded, self.called))


class SerializationError(DurableError, TypeError):
    """A value cannot be stored with the configured serializer."""


class UnknownWorkflowError(DurableError):
    """A workflow name is not registered in this process."""

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"workflow {name!r} is not registered in this process")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.name,))


class RemoteError(DurableError):
    """An exception whose type could not be rebuilt here; keeps its type name and message."""

    def __init__(self, type_name: str, message: str) -> None:
        self.type_name = type_name
        self.message = message
        super().__init__(f"{type_name}: {message}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.type_name, self.message))


class AwaitedWorkflowCancelled(DurableError):
    """The awaited workflow was cancelled (or its timeout passed)."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} was cancelled")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.workflow_id,))


class AwaitedWorkflowMaxRecoveryAttemptsExceeded(DurableError):
    """The awaited workflow exceeded its max_recovery_attempts and will never run again."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} exceeded its maximum recovery attempts")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.workflow_id,))


class MaxRecoveryAttemptsExceeded(DurableError):
    """Raised where a workflow is found over its max_recovery_attempts."""

    def __init__(self, workflow_id: str, max_recovery_attempts: int) -> None:
        self.workflow_id = workflow_id
        self.max_recovery_attempts = max_recovery_attempts
        super().__init__(
            f"workflow {workflow_id!r} exceeded max_recovery_attempts={max_recovery_attempts}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, int]]:
        return (type(self), (self.workflow_id, self.max_recovery_attempts))


class WorkflowTimeoutError(DurableError):
    """The workflow's deadline passed; it is cancelled."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} passed its deadline")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.workflow_id,))


class WorkflowCancelledError(DurableError):
    """Raised inside a workflow that was cancelled while it ran."""

    def __init__(self, workflow_id: str) -> None:
        self.workflow_id = workflow_id
        super().__init__(f"workflow {workflow_id!r} was cancelled")

    def __reduce__(self) -> tuple[type, tuple[str]]:
        return (type(self), (self.workflow_id,))


class DatabaseUnavailableError(DurableError):
    """The durable database stayed unreachable for longer than the configured retry time."""


class ConfigurationError(DurableError, ValueError):
    """A durable_* setting or decorator option is invalid."""


class CorruptedRowError(DurableError):
    """A stored row could not be decoded."""

    def __init__(self, what: str, detail: str) -> None:
        self.what = what
        self.detail = detail
        super().__init__(f"stored {what} cannot be decoded: {detail}")

    def __reduce__(self) -> tuple[type, tuple[str, str]]:
        return (type(self), (self.what, self.detail))


class UnsupportedCanvasError(DurableError, TypeError):
    """A canvas of durable steps whose shape is not durable yet (e.g. a chain inside a group
    member, a chord inside a chord's header): raised at start, before anything is written."""


class DuplicateWorkflowError(DurableError):
    """A workflow was started in a durable queue with a deduplication id that an active
    workflow of that queue holds; ``workflow_id`` is that active workflow's id."""

    def __init__(self, deduplication_id: str, workflow_id: str, queue: str = "") -> None:
        self.deduplication_id = deduplication_id
        self.workflow_id = workflow_id
        self.queue = queue
        super().__init__(
            f"deduplication id {deduplication_id!r} is held by active workflow "
            f"{workflow_id!r} in queue {queue!r}"
        )

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.deduplication_id, self.workflow_id, self.queue))
