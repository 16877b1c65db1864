"""The recovery sweep: re-enqueue stalled workflows, dead-letter those over their limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MaxRecoveryAttemptsExceeded, WorkflowTimeoutError
from ..types import RecoveryAction, WorkflowKind, WorkflowRecord
from .runtime import Runtime, log
from .workflows import wake_parent


@dataclass
class RecoveryReport:
    """What one sweep did: ids re-enqueued, dead-lettered, and cancelled by their deadline."""

    recovered: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    publish_failed: list[str] = field(default_factory=list)


#: sends a recorded workflow's message again (integration: by task name, from the store)
Publisher = Callable[[WorkflowRecord], None]


def _dead_letter_error(runtime: Runtime) -> Callable[[WorkflowRecord], str]:
    def error(record: WorkflowRecord) -> str:
        exc = MaxRecoveryAttemptsExceeded(record.workflow_id, record.max_recovery_attempts or 0)
        return runtime.serializer.dumps_exception(exc)

    return error


def _follow_up(
    runtime: Runtime,
    record: WorkflowRecord,
    action: RecoveryAction,
    publish: Publisher,
    report: RecoveryReport,
) -> None:
    attempts = record.recovery_attempts + 1
    if action == RecoveryAction.DEAD_LETTERED:
        report.dead_lettered.append(record.workflow_id)
        log.error(
            "%s", MaxRecoveryAttemptsExceeded(record.workflow_id, record.max_recovery_attempts or 0)
        )
        runtime.events.workflow_dead_lettered(
            workflow_id=record.workflow_id, recovery_attempts=attempts
        )
        wake_parent(runtime, record.parent_workflow_id)
        return
    try:
        publish(record)
    except Exception as exc:  # stays ENQUEUED: the next sweep publishes it again
        log.warning("could not re-publish workflow %s: %s", record.workflow_id, exc)
        report.publish_failed.append(record.workflow_id)
        return
    report.recovered.append(record.workflow_id)
    runtime.events.workflow_recovered(workflow_id=record.workflow_id, recovery_attempts=attempts)


def sweep(
    runtime: Runtime,
    publish: Publisher,
    *,
    batch_size: int = 500,
    max_batches: int = 20,
) -> RecoveryReport:
    """One run: cancel expired workflows, then move stalled ones on, batch by batch."""
    report = RecoveryReport()
    now = runtime.clock.now_ms()

    def timeout_error(workflow_id: str) -> str:
        return runtime.serializer.dumps_exception(WorkflowTimeoutError(workflow_id))

    report.cancelled = runtime.store.cancel_expired(now, batch_size * max_batches, timeout_error)
    lost_before = now - int(runtime.settings.enqueue_timeout * 1000)
    for _ in range(max_batches):
        found = runtime.store.claim_stalled(
            runtime.stale_before_ms, lost_before, batch_size, _dead_letter_error(runtime)
        )
        for record, action in found:
            _follow_up(runtime, record, action, publish, report)
        if len(found) < batch_size:
            break
    return report


def recover_lost(
    runtime: Runtime, task_id: str, kind: WorkflowKind, executor_id: str, publish: Publisher
) -> RecoveryReport:
    """Recover the run of the task ``task_id`` (a workflow's, or a chain step's) whose
    process died under the live worker ``executor_id`` (lost, or killed at its time limit):
    a crash of that run, counting a recovery attempt."""
    report = RecoveryReport()
    workflow_id: str | None = task_id
    if kind != WorkflowKind.WORKFLOW:
        step = runtime.store.find_step_by_task_id(task_id)
        workflow_id = step.workflow_id if step is not None else None
    if workflow_id is None:
        return report
    found = runtime.store.recover_lost(workflow_id, executor_id, _dead_letter_error(runtime))
    if found is not None:
        _follow_up(runtime, found[0], found[1], publish, report)
    return report
