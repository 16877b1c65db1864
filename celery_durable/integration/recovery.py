"""Recovery on Celery: re-publishing from the store, the beat sweep, lost pool processes."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery.exceptions import TimeLimitExceeded, WorkerLostError
from celery.signals import task_failure

from ..runtime.recovery import RecoveryReport, recover_lost, sweep
from ..types import RecoveryAction, WorkflowKind
from .queues import recovery_publisher
from .settings import read_settings

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.recovery")
SWEEP_TASK = "celery_durable.recover"


def run_sweep(durable: Durable) -> RecoveryReport:
    report = sweep(
        durable.runtime,
        recovery_publisher(durable),
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
    def recover() -> dict[str, int]:  # RecoveryAction values as keys
        report = durable.recover()
        return {
            RecoveryAction.RECOVERED: len(report.recovered),
            RecoveryAction.DEAD_LETTERED: len(report.dead_lettered),
        }

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
    recover_lost(
        durable.runtime,
        task_id,
        WorkflowKind(kind),
        durable.worker_executor_id,
        recovery_publisher(durable),
    )


def connect_recovery_signals() -> None:
    task_failure.connect(_on_task_failure, weak=False, dispatch_uid="celery_durable.lost_child")
