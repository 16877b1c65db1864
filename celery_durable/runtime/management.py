"""Management: find, list, cancel, resume and fork workflows (no SQL, no Celery).

Publishing a recorded workflow's message is the caller's (``Publisher``, given by the
integration layer): these functions decide and record, then hand over what to send.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from ..errors import NonExistentWorkflow, UnknownWorkflowError
from ..flowtypes import QueueSpec
from ..types import (
    ACTIVE_STATUSES,
    ResumeOutcome,
    StepInfo,
    WorkflowFilter,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
    WorkflowStatus,
)
from .canvas import is_canvas, load_layout
from .chain_queues import step_entry
from .handle import WorkflowHandle, to_status, to_step_info
from .nested import cancel_children, resume_children
from .queues import admit
from .recovery import Publisher
from .runtime import Runtime
from .workflows import wake_parent

log = logging.getLogger("celery_durable.management")


def existing(runtime: Runtime, workflow_id: str) -> WorkflowRecord:
    record = runtime.store.get_workflow(workflow_id)
    if record is None:
        raise NonExistentWorkflow(workflow_id)
    return record


def retrieve(runtime: Runtime, workflow_id: str) -> WorkflowHandle:
    """A handle by workflow id, or by the task id of any step of a durable chain (a plain
    chain's ``apply_async()`` returns the last link's result)."""
    if runtime.store.get_workflow(workflow_id) is None:
        step = runtime.store.find_step_by_task_id(workflow_id)
        if step is None:
            raise NonExistentWorkflow(workflow_id)
        workflow_id = step.workflow_id
    return WorkflowHandle(runtime, workflow_id)


def get_status(runtime: Runtime, workflow_id: str) -> WorkflowStatus | None:
    record = runtime.store.get_workflow(workflow_id)
    return to_status(runtime, record) if record is not None else None


def list_workflows(
    runtime: Runtime,
    *,
    status: str | Sequence[str] | None = None,
    name: str | None = None,
    limit: int | None = 100,
    offset: int = 0,
    newest_first: bool = True,
    workflow_ids: Sequence[str] | None = None,
    parent_workflow_id: str | None = None,
    where: WorkflowFilter | None = None,
) -> list[WorkflowStatus]:
    records = runtime.store.list_workflows(
        status=status,
        name=name,
        limit=limit,
        offset=offset,
        newest_first=newest_first,
        workflow_ids=workflow_ids,
        parent_workflow_id=parent_workflow_id,
        where=where,
    )
    return [to_status(runtime, r) for r in records]


def list_steps(runtime: Runtime, workflow_id: str) -> list[StepInfo]:
    """Steps in order, each with its earlier runs set aside by resume (``history``); a
    canvas's with their position (stage, member)."""
    steps = runtime.store.load_steps(workflow_id)
    history = runtime.store.load_step_history(workflow_id) if steps else {}
    infos = [
        replace(
            to_step_info(runtime, steps[k]),
            history=tuple(to_step_info(runtime, r) for r in history.get(k, ())),
        )
        for k in sorted(steps)
    ]
    record = runtime.store.get_workflow(workflow_id) if infos else None
    layout = load_layout(runtime, record) if record is not None else None
    if layout is None:
        return infos
    positions = [layout.position(i.step_id) for i in infos]
    return [replace(i, stage=p[0], member=p[1]) for i, p in zip(infos, positions, strict=True)]


def resume(
    runtime: Runtime,
    workflow_id: str,
    publish: Publisher,
    queue: str | None = None,
    durable_queue: Callable[[str], QueueSpec | None] | None = None,
) -> ResumeOutcome:
    """Re-enqueue from the first incomplete step (on ``queue``, if given) unless it finished
    or a live executor runs it (see ``DurableStore.resume_workflow``); publishes and
    reports what it resumed. A workflow that had ended, resumed in a durable queue (its
    own, or ``queue``: ``durable_queue`` finds a name's spec), waits there for admission
    as a start does: it held no slot, and taking one at once could exceed the queue's
    bounds. One that is still active holds its slot already and is sent at once."""
    spec = _queue_to_wait_in(runtime, workflow_id, queue, durable_queue)
    wait_in = step_entry(runtime, workflow_id, spec, 0) if spec is not None else None
    found = runtime.store.resume_workflow(
        workflow_id, runtime.stale_before_ms, queue=queue, wait_in=wait_in
    )
    if found is None:
        raise NonExistentWorkflow(workflow_id)
    record, outcome = found
    if outcome is ResumeOutcome.RESUMED:
        if is_canvas(record):  # a failed nested member's child canvas resumes with it
            resume_children(runtime, workflow_id)
        if spec is not None and record.status not in ACTIVE_STATUSES:
            if spec.worker_concurrency is None:  # else each worker's own pass admits
                admit(runtime, spec)
        else:
            publish(record if queue is None else replace(record, queue=queue))
        attempts = record.recovery_attempts + 1 if record.status in ACTIVE_STATUSES else 1
        runtime.events.workflow_recovered(workflow_id=workflow_id, recovery_attempts=attempts)
    elif outcome is ResumeOutcome.RUNNING:
        log.info(
            "workflow %s not resumed: a live worker runs it (recovered if that worker dies)",
            workflow_id,
        )
    return outcome


def _queue_to_wait_in(
    runtime: Runtime,
    workflow_id: str,
    queue: str | None,
    durable_queue: Callable[[str], QueueSpec | None] | None,
) -> QueueSpec | None:
    if durable_queue is None:
        return None
    record = runtime.store.get_workflow(workflow_id)
    if record is None or record.status in ACTIVE_STATUSES:
        return None
    name = queue or record.queue
    return durable_queue(name) if name else None


def cancel(runtime: Runtime, workflow_id: str) -> None:
    """End an unfinished workflow CANCELLED. Its owner is kept: a run inside a step body
    finishes that body, records nothing, and gives the workflow up."""
    record = existing(runtime, workflow_id)
    if runtime.store.set_status(
        workflow_id, WorkflowState.CANCELLED, only_from=list(ACTIVE_STATUSES), keep_owner=True
    ):
        if is_canvas(record):
            cancel_children(runtime, workflow_id)
        wake_parent(runtime, record.parent_workflow_id)


def fork(
    runtime: Runtime,
    workflow_id: str,
    start_step: int,
    publish: Publisher,
    *,
    timeout_seconds: float | None = None,
    queue: str | None = None,
    durable_queue: Callable[[str], QueueSpec | None] | None = None,
) -> str:
    """Copy a workflow under a new id reusing its first ``start_step`` step outputs, with
    its own timeout (from now) and queue (None: the source's); publishes the copy (in a
    durable queue: it waits for admission, as a start) and returns its id."""
    source = existing(runtime, workflow_id)
    new_id = str(uuid.uuid4())
    deadline = None
    if timeout_seconds is not None:
        deadline = runtime.clock.now_ms() + int(timeout_seconds * 1000)
    name = queue or source.queue
    spec = durable_queue(name) if durable_queue is not None and name else None
    runtime.store.fork_workflow(
        workflow_id, new_id, start_step, deadline_ms=deadline, queue=queue,
        wait_in=step_entry(runtime, new_id, spec, 0) if spec is not None else None,
    )  # fmt: skip
    if spec is None:
        publish(existing(runtime, new_id))
    elif spec.worker_concurrency is None:  # else each worker's own pass admits
        admit(runtime, spec)
    return new_id


def fail_unknown(runtime: Runtime, workflow_id: str, name: str, step_id: int | None) -> None:
    """A worker got a message for a task it does not have: the workflow it names ends ERROR
    (instead of being re-sent forever), unless that is recorded under another name."""
    record = runtime.store.get_workflow(workflow_id)
    if record is None:
        return
    if record.kind == WorkflowKind.CHAIN:
        step = runtime.store.get_step(workflow_id, step_id or 0)
        if step is None or step.name != name:
            return
    elif record.name != name:
        return
    error = runtime.serializer.dumps_exception(UnknownWorkflowError(name))
    if runtime.store.set_status(
        workflow_id, WorkflowState.ERROR, only_from=list(ACTIVE_STATUSES), error=error
    ):
        wake_parent(runtime, record.parent_workflow_id)
