"""Sending a recorded workflow's message again, built from the store alone.

Recovery, resume and fork decide in the runtime what to re-send; this module sends it,
by task name, so the process sending needs none of the workflow's code. Every publish
declares its queue again: after Redis loses its data, a publish to a queue whose binding
is gone is dropped silently until a consumer re-declares it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from celery import Celery, Task, signature
from kombu.entity import Queue

from ..runtime.canvas import OpenStage, is_canvas, load_errbacks, open_stage
from ..runtime.chains import open_step
from ..runtime.nested import Dispatch, dispatch
from ..runtime.runtime import Runtime
from ..types import WorkflowKind, WorkflowRecord

#: ``send_task(name, args, kwargs, **options)``, as ``Celery.send_task``
SendTask = Callable[..., Any]
DURABLE_HEADER = "durable_workflow"
STEP_HEADER = "durable_step"
CANVAS_HEADER = "durable_canvas"  # a canvas member's stage (runtime/canvas.py: Stage.header)


def durable_headers(workflow_id: str, step_id: int | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {DURABLE_HEADER: workflow_id}
    if step_id is not None:
        headers[STEP_HEADER] = step_id
    return headers


def send(task: Task, args: Any, kwargs: Any, **options: Any) -> Any:
    """Publish a durable task's message as Celery does, or hand it to the Durable's
    ``dispatcher`` when one is set (``celery_durable.testing`` runs messages in-process)."""
    dispatch = task.durable.dispatcher
    if dispatch is not None:
        return dispatch(task.name, args, kwargs, options)
    return Task.apply_async(task, args, kwargs, **options)


def declare_for(app: Celery, name: str, options: dict[str, Any]) -> list[Queue]:
    """The queue a publish goes to, so it is declared again (Redis may have lost its binding)."""
    queue = options.get("queue")
    if queue is None:
        route = app.amqp.router.route(dict(options), name, (), {})
        queue = route.get("queue")
    if isinstance(queue, Queue):
        return [queue]
    if isinstance(queue, str):
        known = app.amqp.queues
        return [known[queue] if queue in known else Queue(queue)]  # type: ignore[no-untyped-call]
    return []


def publish_stage(
    app: Celery, send_task: SendTask, workflow_id: str, found: OpenStage, *, declare: bool = True
) -> None:
    """Send the open members of a canvas's stage, each with its recorded task id and the
    previous stage's output before its own arguments (unless immutable), as Celery does.
    ``declare=False`` (a first publish, not a recovery) skips declaring the queue again."""
    for step, stored in found.members:
        options = dict(stored.get("options") or {})
        args = list(stored.get("args") or [])
        if found.has_input and not stored.get("immutable"):
            args = [found.input, *args]
        headers = {
            **durable_headers(workflow_id, step.step_id),
            CANVAS_HEADER: found.stage.header(),
        }
        if declare:
            options["declare"] = declare_for(app, stored["task"], options)
        send_task(
            stored["task"], args, stored.get("kwargs") or {},
            task_id=step.task_id, root_id=workflow_id, headers=headers, **options,
        )  # fmt: skip


def send_errbacks(
    runtime: Runtime, send_task: SendTask, record: WorkflowRecord | None, failed_task_id: str
) -> None:
    """A failed canvas's errbacks, each sent once with the failed member's task id first (as
    Celery calls an errback that takes one argument)."""
    if record is None:
        return
    for eb in load_errbacks(runtime, record):
        args = list(eb.get("args") or [])
        if not eb.get("immutable"):
            args = [failed_task_id, *args]
        options = dict(eb.get("options") or {})
        send_task(eb["task"], args, eb.get("kwargs") or {}, **options)


def send_dispatch(
    app: Celery, runtime: Runtime, send_task: SendTask, out: Dispatch, *, declare: bool = True
) -> None:
    """Send what a canvas decision opened (stages, nested ones included) or ended (errbacks)."""
    for workflow_id, found in out.stages:
        publish_stage(app, send_task, workflow_id, found, declare=declare)
    for record, failed_task_id in out.failed:
        send_errbacks(runtime, send_task, record, failed_task_id)


class Republisher:
    """``republisher(record)``: a chain's first open step, or a code workflow's message."""

    def __init__(self, app: Celery, runtime: Runtime, send_task: SendTask) -> None:
        self.app = app
        self.runtime = runtime
        self.send_task = send_task

    def __call__(self, record: WorkflowRecord, countdown: float | None = None) -> None:
        if is_canvas(record):
            found = open_stage(self.runtime, record)
            if found is not None:
                out = dispatch(self.runtime, record.workflow_id, found)
                send_dispatch(self.app, self.runtime, self.send_task, out)
        elif record.kind == WorkflowKind.CHAIN:
            self.open_step(record.workflow_id)
        else:
            self.workflow(record, countdown)

    def workflow(self, record: WorkflowRecord, countdown: float | None = None) -> None:
        """Send a code workflow's message again, with its recorded inputs and queue."""
        data = self.runtime.serializer.loads(record.inputs, what="workflow inputs") or {}
        options: dict[str, Any] = {
            "task_id": record.workflow_id,
            "headers": durable_headers(record.workflow_id),
        }
        if record.queue:
            options["queue"] = record.queue
        if countdown:
            options["countdown"] = countdown
        options["declare"] = declare_for(self.app, record.name, options)
        self.send_task(
            record.name, list(data.get("args") or []), dict(data.get("kwargs") or {}), **options
        )

    def open_step(self, workflow_id: str, queue: str | None = None) -> bool:
        """Send the first unfinished step of a recorded chain again, with the rest of the
        chain riding in its message as Celery sends it (to ``queue``, if given, instead of
        the step's own).

        A step leased by a live worker keeps its lease (the new message backs off). Every
        link keeps its recorded task id, so the AsyncResults handed out at start resolve.
        """
        found = open_step(self.runtime, workflow_id)
        if found is None:
            return False
        step, prev_output, rest = found
        stored = dict(self.runtime.serializer.loads(step.signature))
        options = dict(stored.get("options") or {})
        if queue is not None:
            options["queue"] = queue
        args = list(stored.get("args") or [])
        if step.step_id > 0 and not stored.get("immutable"):
            args = [prev_output, *args]
        links = []
        for offset, (data, task_id) in enumerate(rest, start=step.step_id + 1):
            sig = signature(data, app=self.app)
            sig.options["headers"] = durable_headers(workflow_id, offset)
            if task_id:
                sig.options["task_id"] = task_id
            links.append(sig)
        options["declare"] = declare_for(self.app, stored["task"], options)
        self.send_task(
            stored["task"], args, stored.get("kwargs") or {},
            task_id=step.task_id, root_id=workflow_id,
            chain=list(reversed(links)) or None,
            headers=durable_headers(workflow_id, step.step_id), **options,
        )  # fmt: skip
        return True
