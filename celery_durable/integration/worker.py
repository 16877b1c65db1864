"""Worker integration: the executor heartbeat bootstep and the signal handlers."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from celery import bootsteps
from celery.signals import task_unknown, worker_init, worker_shutdown

from .chains import DURABLE_HEADER, STEP_HEADER

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.worker")


def _durable_of(app: Any) -> Durable | None:
    return getattr(app, "durable", None)


class DurableHeartbeat(bootsteps.StartStopStep):  # type: ignore[misc]
    """Starts the heartbeat of this worker's executor (a thread of the main process).

    It is stopped on ``worker_shutdown``, which Celery sends after the pool has drained,
    not in this step's ``stop``: Celery stops bootsteps in the reverse of their start
    order, which may stop this one before the pool, while tasks still run.
    """

    label = "DurableHeartbeat"

    def start(self, worker: Any) -> None:
        durable = _durable_of(worker.app)
        if durable is not None:
            durable.start_worker_heartbeat()


def _on_worker_shutdown(sender: Any = None, **_: Any) -> None:
    """The pool drained: stop beating and mark this executor gone."""
    durable = _durable_of(getattr(sender, "app", None))
    if durable is None:
        return
    try:
        durable.stop_worker_executor()
    except Exception as exc:  # shutdown goes on; the sweep finds the work by timeout
        log.warning("could not mark durable executor stopped: %s", exc)


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    app = getattr(sender, "app", None)
    durable = _durable_of(app)
    if durable is None:
        return
    durable.attach_worker_executor()
    if durable.settings.auto_migrate:
        durable.migrate()
    try:  # compiled once here, inherited by the pool's processes
        durable.runtime.store.prepare()
    except Exception as exc:  # each process compiles on first use instead
        log.warning("could not prepare the durable store's statements: %s", exc)


def _on_task_unknown(
    sender: Any = None,
    message: Any = None,
    name: str | None = None,
    id: str | None = None,
    **_: Any,
) -> None:
    """A durable workflow this worker does not know ends ERROR instead of waiting forever."""
    headers = getattr(message, "headers", None) or {}
    workflow_id = headers.get(DURABLE_HEADER) or None
    step_id = headers.get(STEP_HEADER)
    app = getattr(sender, "app", None)
    durable = _durable_of(app)
    if durable is None or workflow_id is None:
        return
    durable.fail_unknown_workflow(
        str(workflow_id), str(name), int(step_id) if step_id is not None else None
    )


def connect_signals() -> None:
    """Connect the module-level handlers once; each looks up the app's Durable."""
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="celery_durable.worker_init")
    worker_shutdown.connect(
        _on_worker_shutdown, weak=False, dispatch_uid="celery_durable.worker_shutdown"
    )
    task_unknown.connect(_on_task_unknown, weak=False, dispatch_uid="celery_durable.task_unknown")
