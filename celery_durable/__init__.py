"""celery-durable: durable workflows for Celery, checkpointed in Postgres."""

from .annotations import pydantic_args_validator
from .errors import (
    AwaitedWorkflowCancelled,
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
    ConfigurationError,
    ConflictingWorkflowError,
    CorruptedRowError,
    DatabaseUnavailableError,
    DuplicateWorkflowError,
    DurableError,
    MaxRecoveryAttemptsExceeded,
    MaxStepRetriesExceeded,
    NonDeterministicWorkflowError,
    NonExistentWorkflow,
    RemoteError,
    SerializationError,
    UnknownWorkflowError,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from .integration.durable import Durable
from .integration.signals import (
    step_checkpointed,
    step_retries_exhausted,
    step_retrying,
    workflow_dead_lettered,
    workflow_recovered,
)
from .policy import RetryPolicy
from .runtime.enqueue_options import SetEnqueueOptions
from .runtime.handle import WorkflowHandle
from .runtime.options import SetWorkflowID, SetWorkflowTimeout
from .types import ResumeOutcome, StepInfo, StepStatus, WorkflowStatus, WorkflowStatusString

__version__ = "0.1.0"

__all__ = [
    "AwaitedWorkflowCancelled",
    "AwaitedWorkflowMaxRecoveryAttemptsExceeded",
    "ConfigurationError",
    "ConflictingWorkflowError",
    "CorruptedRowError",
    "DatabaseUnavailableError",
    "DuplicateWorkflowError",
    "Durable",
    "DurableError",
    "MaxRecoveryAttemptsExceeded",
    "MaxStepRetriesExceeded",
    "NonDeterministicWorkflowError",
    "NonExistentWorkflow",
    "RemoteError",
    "ResumeOutcome",
    "RetryPolicy",
    "SerializationError",
    "SetEnqueueOptions",
    "SetWorkflowID",
    "SetWorkflowTimeout",
    "StepInfo",
    "StepStatus",
    "UnknownWorkflowError",
    "WorkflowCancelledError",
    "WorkflowHandle",
    "WorkflowStatus",
    "WorkflowStatusString",
    "WorkflowTimeoutError",
    "__version__",
    "pydantic_args_validator",
    "step_checkpointed",
    "step_retries_exhausted",
    "step_retrying",
    "workflow_dead_lettered",
    "workflow_recovered",
]
