"""Recovery on Celery: re-publishing from the store, the beat sweep, lost pool processes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure

from ..runtime.recovery import RecoveryReport, recover_lost, sweep
from ..types import RecoveryAction, WorkflowKind, WorkflowRecord
from .chains import declare_for, durable_headers, publish_open_step
from .settings import read_settings
from .signals import workflow_dead_lettered, workflow_recovered

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.recovery")
SWEEP_TASK = "celery_durable.recover"


def publish_workflow(
    durable: Durable,
    workflow_id: str,
    countdown: float | None = None,
    record: WorkflowRecord | None = None,
) -> None:
    """Send a recorded code workflow's message again, by task name (no local code needed)."""
    record = record or durable.store.get_workflow(workflow_id)
    if record is None:
        return
    data = durable.runtime.serializer.loads(record.inputs, what="workflow inputs") or {}
    options: dict[str, Any] = {"task_id": workflow_id, "headers": durable_headers(workflow_id)}
    if record.queue:
        options["queue"] = record.queue
    if countdown:
        options["countdown"] = countdown
    options["declare"] = declare_for(durable.app, record.name, options)
    durable.app.send_task(
        record.name, list(data.get("args") or []), dict(data.get("kwargs") or {}), **options
    )


def republish(durable: Durable, record: WorkflowRecord, countdown: float | None = None) -> None:
    """Send a recorded workflow again: a chain's first open step, or the workflow's message."""
    if record.kind == WorkflowKind.CHAIN:
        publish_open_step(durable, record.workflow_id)
    else:
        publish_workflow(durable, record.workflow_id, countdown, record=record)


def notifier(durable: Durable) -> Any:
    def notify(action: RecoveryAction, record: WorkflowRecord) -> None:
        dead = action == RecoveryAction.DEAD_LETTERED
        signal = workflow_dead_lettered if dead else workflow_recovered
        signal.send(
            sender=durable,
            workflow_id=record.workflow_id,
            recovery_attempts=record.recovery_attempts + 1,
        )

    return notify


def run_sweep(durable: Durable) -> RecoveryReport:
    report = sweep(
        durable.runtime,
        lambda r: republish(durable, r),
        notifier(durable),
        enqueue_timeout=durable.settings.enqueue_timeout,
        batch_size=durable.settings.recovery_batch_size,
    )
    if report.recovered or report.dead_lettered or report.cancelled:
        log.info(
            "durable sweep: %d re-enqueued, %d dead-lettered, %d cancelled",
            len(report.recovered),
            len(report.dead_lettered),
            len(report.cancelled),
        )
    return report


def install_sweep(durable: Durable) -> None:
    """Register the ``celery_durable.recover`` task and add it to beat's schedule."""
    app = durable.app

    @app.task(name=SWEEP_TASK, shared=False, ignore_result=True)  # type: ignore[untyped-decorator]
    def recover() -> dict[str, int]:
        report = durable.recover()
        return {"recovered": len(report.recovered), "dead_lettered": len(report.dead_lettered)}

    def schedule(sender: Any = None, **_: Any) -> None:
        # read without caching: durable_* settings set after Durable(app) still count
        settings = read_settings(app.conf, durable.overrides)
        interval = settings.recovery_interval
        if interval:
            # a sweep queued behind a backlog for longer than its interval is stale: the
            # next one is on its way (durable_recovery_queue keeps it out of the backlog)
            options: dict[str, Any] = {"expires": interval}
            if settings.recovery_queue:
                options["queue"] = settings.recovery_queue
            app.add_periodic_task(interval, recover.s().set(**options), name=SWEEP_TASK)

    if app.configured:
        schedule()
    else:
        app.on_after_configure.connect(schedule, weak=False)


def _on_task_failure(
    sender: Any = None, task_id: str | None = None, exception: Any = None, **_: Any
) -> None:
    """A pool process died under a live worker (lost, or killed by Celery's hard time limit):
    that step crashed; recover its workflow now, counting a recovery attempt."""
    if not isinstance(exception, WorkerLostError | TimeLimitExceeded) or task_id is None:
        return
    durable: Durable | None = getattr(getattr(sender, "app", None), "durable", None)
    kind = getattr(sender, "durable_kind", None)
    if durable is None or kind is None or durable.worker_executor_id is None:
        return
    workflow_id: str | None = task_id
    if kind != WorkflowKind.WORKFLOW:
        step = durable.store.find_step_by_task_id(task_id)
        workflow_id = step.workflow_id if step is not None else None
    if workflow_id is None:
        return
    recover_lost(
        durable.runtime,
        workflow_id,
        durable.worker_executor_id,
        lambda r: republish(durable, r),
        notifier(durable),
    )


def connect_recovery_signals() -> None:
    task_failure.connect(_on_task_failure, weak=False, dispatch_uid="celery_durable.lost_child")
