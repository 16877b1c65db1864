"""Durable queues on Celery: ``durable.queue(...)``, starts routed through admission, and
the two admission triggers: right after a workflow of a queue ends (``task_postrun`` in
the process that ran it) and a periodic pass in each worker (delays, limiter windows).

Admitted workflows are published to the Celery queue of the same name, so workers
consume a durable queue as any Celery queue (``-Q payments``). A queue with
``worker_concurrency`` is admitted by each worker that consumes it, for itself, and its
workflows are published to that worker's own queue ``<name>@<executor id>``, which the
worker consumes from its start (``worker_init``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from celery import bootsteps
from celery.signals import task_postrun, worker_init

from ..flowtypes import QueueSpec, QueueStats
from ..runtime.enqueue_options import EnqueueOptions, current_enqueue_options
from ..runtime.executor import Heartbeat
from ..runtime.queues import admission_pass, admit_after_end, check_options, requeue
from ..types import WorkflowKind, WorkflowRecord

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.queues")
#: options a start takes besides the workflow's own arguments
START_OPTIONS = ("queue", "priority", "deduplication_id", "delay_seconds", "timeout_seconds")


class DurableQueue:
    """A declared durable queue (``durable.queue``): pass it, or its name, as ``queue=``."""

    def __init__(self, spec: QueueSpec) -> None:
        self.spec = spec

    @property
    def name(self) -> str:
        return self.spec.name

    def __repr__(self) -> str:
        return f"DurableQueue({self.spec!r})"


def declare(durable: Durable, spec: QueueSpec) -> DurableQueue:
    """Register ``spec`` on ``durable`` (the same name twice must mean the same limits)."""
    if spec.concurrency is not None and spec.concurrency < 1:
        raise ValueError("concurrency must be >= 1 or None")
    if spec.worker_concurrency is not None and spec.worker_concurrency < 1:
        raise ValueError("worker_concurrency must be >= 1 or None")
    if spec.limiter is not None:
        limit, period = spec.limiter
        if limit < 1 or period <= 0:
            raise ValueError("limiter is (starts >= 1, period_seconds > 0)")
    known = durable_queues(durable)
    found = known.get(spec.name)
    if found is not None and found.spec != spec:
        raise ValueError(f"durable queue {spec.name!r} is already declared as {found.spec}")
    known[spec.name] = found or DurableQueue(spec)
    return known[spec.name]


def durable_queues(durable: Durable) -> dict[str, DurableQueue]:
    found: dict[str, DurableQueue] | None = durable.__dict__.get("_durable_queues")
    if found is None:
        found = durable.__dict__["_durable_queues"] = {}
    return found


@dataclass(frozen=True)
class FlowStart:
    """How a start enters flow control: its durable queue (None: a plain start) and options."""

    spec: QueueSpec | None
    options: EnqueueOptions


def take_start_options(kwargs: dict[str, Any]) -> dict[str, Any]:
    """``start_workflow``'s own options, taken out of the workflow's keyword arguments."""
    return {k: kwargs.pop(k) for k in START_OPTIONS if k in kwargs}


def take_flow_options(durable: Durable, options: dict[str, Any]) -> FlowStart:
    """Take flow-control options out of ``apply_async``'s ``options`` (merged over an
    enclosing ``SetEnqueueOptions``). Celery's own ``priority`` stays for a queue that is
    not durable; deduplication needs a durable queue."""
    queue = options.get("queue")
    if isinstance(queue, DurableQueue):
        queue = options["queue"] = queue.name
    given = EnqueueOptions(
        queue=queue if isinstance(queue, str) else None,
        deduplication_id=options.pop("deduplication_id", None),
        delay_seconds=options.pop("delay_seconds", None),
        timeout_seconds=options.pop("timeout_seconds", None),
    )
    chosen = current_enqueue_options().merged(given)
    found = durable_queues(durable).get(chosen.queue) if chosen.queue else None
    if found is None:
        if chosen.deduplication_id is not None:
            raise ValueError("deduplication_id needs a durable queue (durable.queue(...))")
        return FlowStart(None, chosen)
    options["queue"] = found.name
    priority = options.pop("priority", None)
    chosen = chosen if priority is None else chosen.merged(EnqueueOptions(priority=priority))
    check_options(found.spec, chosen)
    return FlowStart(found.spec, chosen)


def queue_stats(durable: Durable) -> list[QueueStats]:
    store = durable.store
    return [store.queue_stats(q.spec) for q in durable_queues(durable).values()]


# admission triggers ---------------------------------------------------------
def private_queue(name: str, executor_id: str) -> str:
    """The Celery queue of one worker's admissions in a ``worker_concurrency`` queue."""
    return f"{name}@{executor_id}"


def served(durable: Durable) -> set[str]:
    """The ``worker_concurrency`` queues this worker consumes (it admits for itself)."""
    found: set[str] | None = durable.__dict__.get("_served_queues")
    if found is None:
        found = durable.__dict__["_served_queues"] = set()
    return found


def _on_worker_init(sender: Any = None, **_: Any) -> None:
    """Consume this worker's own queue of every ``worker_concurrency`` queue it consumes."""
    app: Any = getattr(sender, "app", None)
    durable: Durable | None = getattr(app, "durable", None)
    if durable is None:
        return
    consumed = app.amqp.queues.consume_from  # None: every queue declared
    for q in durable_queues(durable).values():
        if q.spec.worker_concurrency is None or (consumed is not None and q.name not in consumed):
            continue
        served(durable).add(q.name)
        app.amqp.queues.select_add(private_queue(q.name, durable.attach_worker_executor()))


def publisher(durable: Durable) -> Any:
    """``runtime.publish`` for admitted workflows: a worker's own admissions in a
    ``worker_concurrency`` queue go to its own queue."""

    def publish(record: WorkflowRecord) -> None:
        found = durable_queues(durable).get(record.queue or "")
        executor_id = durable.worker_executor_id
        if found is not None and found.spec.worker_concurrency and executor_id:
            queue = private_queue(found.name, executor_id)
            if record.kind == WorkflowKind.CHAIN:  # a chain step admitted (chain_queues.py)
                durable.republish.open_step(record.workflow_id, queue=queue)
                return
            record = replace(record, queue=queue)
        durable.republish(record)

    return publish


def recovery_publisher(durable: Durable) -> Callable[[WorkflowRecord], None]:
    """How recovery sends a workflow (or chain step) on: as it was sent, except in a queue
    with ``worker_concurrency``, where it waits for admission again. The worker that
    admitted it (to its own queue, counting it as its own) is gone, or lost the process;
    sent to the shared queue, any worker would run it whatever it runs already."""

    def publish(record: WorkflowRecord) -> None:
        found = durable_queues(durable).get(record.queue or "")
        if found is None or found.spec.worker_concurrency is None:
            durable.republish(record)
            return
        requeue(durable.runtime, record.workflow_id, found.spec)

    return publish


def _on_task_postrun(sender: Any = None, **_: Any) -> None:
    """A workflow (or chain step) of a durable queue ran (ended, or gave its slot back):
    admit the next."""
    durable: Durable | None = getattr(getattr(sender, "app", None), "durable", None)
    if durable is None or getattr(sender, "durable_kind", None) is None:
        return
    info = getattr(sender.request, "delivery_info", None) or {}
    name = str(info.get("routing_key") or "")
    executor_id = durable.worker_executor_id
    if executor_id and name.endswith(f"@{executor_id}"):
        name = name[: -len(executor_id) - 1]
    found = durable_queues(durable).get(name)
    if found is None:
        return
    wc = found.spec.worker_concurrency is not None
    if wc and found.name not in served(durable):
        return
    try:  # a read first: with nothing waiting, no lock is taken
        if durable.store.queue_due(found.name):
            owner = executor_id if wc else None
            admit_after_end(durable.runtime, found.spec, owner, publisher(durable))
    except Exception as exc:  # the periodic pass admits it a moment later
        log.warning("admission in queue %s failed: %s", found.name, exc)


class DurableAdmission(bootsteps.StartStopStep):  # type: ignore[misc]
    """Each worker's periodic admission pass (a thread, every
    ``durable_admission_interval``), for delays, limiter windows and cancellations."""

    label = "DurableAdmission"

    def __init__(self, worker: Any, **kwargs: Any) -> None:
        super().__init__(worker, **kwargs)
        self.thread: Heartbeat | None = None

    def start(self, worker: Any) -> None:
        durable: Durable | None = getattr(worker.app, "durable", None)
        if durable is None or not durable_queues(durable):
            return

        def admission() -> None:
            mine = served(durable)
            specs = [
                q.spec
                for q in durable_queues(durable).values()
                if q.spec.worker_concurrency is None or q.name in mine
            ]
            admission_pass(durable.runtime, specs, durable.worker_executor_id, publisher(durable))

        interval = durable.settings.admission_interval
        self.thread = Heartbeat(admission, interval, name="durable-admission").start()

    def stop(self, worker: Any) -> None:
        if self.thread is not None:
            self.thread.stop()


def install_queues(durable: Durable) -> None:
    durable.app.steps["worker"].add(DurableAdmission)
    task_postrun.connect(_on_task_postrun, weak=False, dispatch_uid="celery_durable.admission")
    worker_init.connect(_on_worker_init, weak=False, dispatch_uid="celery_durable.own_queues")
