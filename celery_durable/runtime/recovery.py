"""The recovery sweep: re-enqueue stalled workflows, dead-letter those over their limit."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import MaxRecoveryAttemptsExceeded, WorkflowTimeoutError
from ..types import RecoveryAction, WorkflowRecord
from .core import Runtime, log


@dataclass
class RecoveryReport:
    """What one sweep did: ids re-enqueued, dead-lettered, and cancelled by their deadline."""

    recovered: list[str] = field(default_factory=list)
    dead_lettered: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    publish_failed: list[str] = field(default_factory=list)


Publisher = Callable[[WorkflowRecord], None]
Notifier = Callable[[RecoveryAction, WorkflowRecord], None]


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
    notify: Notifier,
    report: RecoveryReport,
) -> None:
    if action == RecoveryAction.DEAD_LETTERED:
        report.dead_lettered.append(record.workflow_id)
        log.error(
            "%s", MaxRecoveryAttemptsExceeded(record.workflow_id, record.max_recovery_attempts or 0)
        )
        notify(action, record)
        return
    try:
        publish(record)
    except Exception as exc:  # stays ENQUEUED: the next sweep publishes it again
        log.warning("could not re-publish workflow %s: %s", record.workflow_id, exc)
        report.publish_failed.append(record.workflow_id)
        return
    report.recovered.append(record.workflow_id)
    notify(action, record)


def sweep(
    runtime: Runtime,
    publish: Publisher,
    notify: Notifier,
    *,
    enqueue_timeout: float,
    batch_size: int = 500,
    max_batches: int = 20,
) -> RecoveryReport:
    """One run: cancel expired workflows, then move stalled ones on, batch by batch."""
    report = RecoveryReport()
    now = runtime.clock.now_ms()

    def timeout_error(workflow_id: str) -> str:
        return runtime.serializer.dumps_exception(WorkflowTimeoutError(workflow_id))

    report.cancelled = runtime.store.cancel_expired(now, batch_size * max_batches, timeout_error)
    lost_before = now - int(enqueue_timeout * 1000)
    for _ in range(max_batches):
        found = runtime.store.claim_stalled(
            runtime.stale_before_ms, lost_before, batch_size, _dead_letter_error(runtime)
        )
        for record, action in found:
            _follow_up(runtime, record, action, publish, notify, report)
        if len(found) < batch_size:
            break
    return report


def recover_lost(
    runtime: Runtime, workflow_id: str, executor_id: str, publish: Publisher, notify: Notifier
) -> RecoveryReport:
    """Recover the run of ``workflow_id`` whose process died under the live worker
    ``executor_id`` (lost, or killed at its time limit): a crash, counting an attempt."""
    report = RecoveryReport()
    found = runtime.store.recover_lost(workflow_id, executor_id, _dead_letter_error(runtime))
    if found is not None:
        _follow_up(runtime, found[0], found[1], publish, notify, report)
    return report
