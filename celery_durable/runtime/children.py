"""Child workflows: started and awaited inside a workflow, each recorded as a step of the
parent, so a replay never starts a second child and gets the same results at once.

A child started in a workflow gets the id ``<parent id>-<step id>`` (unless SetWorkflowID
names one) and its parent's deadline (the earlier of it and its own timeout). A child in a
durable queue is inserted waiting for admission with its queue entry in one store call,
insert-or-existing by that id, so a replay finds it and adds no second entry.

Waiting for children polls the store briefly; past ``durable_max_inline_retry_wait`` a
parent running on a worker gives its slot back (``SuspendWorkflow(children=...)``)
until the last child it awaits ends and wakes it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from ..errors import (
    AwaitedWorkflowCancelled,
    AwaitedWorkflowMaxRecoveryAttemptsExceeded,
    NonExistentWorkflow,
)
from ..flowtypes import QueueSpec
from ..types import ACTIVE_STATUSES, StepRecord, StepState, WorkflowRecord, WorkflowState
from .context import SuspendWorkflow, WorkflowContext, current_workflow
from .enqueue_options import NO_OPTIONS, EnqueueOptions
from .queues import enqueue
from .runtime import Runtime
from .steps import check_running, recorded_elsewhere, replayed, wait
from .workflows import StartRequest, record_start

START_STEP = "durable.start:"  # + the child's name
AWAIT_STEP = "durable.get_result"
GATHER_STEP = "durable.gather"
#: an awaited child's outcome as recorded in its parent: {"output": text} or {"error": text}
ChildOutcome = dict[str, str | None]


def start_child(
    runtime: Runtime,
    ctx: WorkflowContext,
    name: str,
    workflow_id: str | None,
    request: Callable[[str], StartRequest],
    publish: Callable[[StartRequest], None],
    queue: QueueSpec | None = None,
    options: EnqueueOptions = NO_OPTIONS,
) -> str:
    """Start the workflow ``name`` as a child of the running one (once: a replay returns
    the recorded id); ``request(id)`` describes it, ``publish`` sends its message. In a
    durable ``queue`` it waits for admission (with ``options``), and admission sends it."""
    step_id = ctx.next_step_id()
    step_name = START_STEP + name
    record = replayed(ctx, step_id, step_name)
    if record is not None and record.status == StepState.SUCCESS:
        return str(runtime.serializer.loads(record.output, what="a child's id"))
    check_running(runtime, ctx)
    child_id = workflow_id or f"{ctx.workflow_id}-{step_id}"
    child = replace(
        request(child_id), parent_workflow_id=ctx.workflow_id, parent_deadline_ms=ctx.deadline_ms
    )
    if queue is not None:  # after a crash before the checkpoint: found, not entered twice
        enqueue(runtime, child, queue, options)
        return str(_checkpoint(runtime, ctx, step_id, step_name, child_id))
    _, created = record_start(runtime, child)
    if created:  # after a crash between the publish and the checkpoint: already sent
        try:
            publish(child)
        except BaseException:
            runtime.store.delete_workflow(child_id)
            raise
    return str(_checkpoint(runtime, ctx, step_id, step_name, child_id))


def await_children(
    runtime: Runtime, ctx: WorkflowContext, workflow_ids: Sequence[str], step_name: str
) -> list[ChildOutcome]:
    """Wait for every child to end (one recorded step for all); their outcomes in order."""
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, step_name)
    if record is not None and record.status == StepState.SUCCESS:
        recorded: list[ChildOutcome] = runtime.serializer.loads(record.output)
        return recorded
    check_running(runtime, ctx)
    ended = _wait_until_ended(runtime, ctx, workflow_ids)
    outcomes = [outcome_of(runtime, ended[i]) for i in workflow_ids]
    stored: list[ChildOutcome] = _checkpoint(runtime, ctx, step_id, step_name, outcomes)
    return stored


def results(runtime: Runtime, outcomes: Sequence[ChildOutcome]) -> list[Any]:
    """The children's results in order; the first error in order is raised."""
    for outcome in outcomes:
        if outcome.get("error") is not None:
            raise runtime.serializer.loads_exception(str(outcome["error"]))
    return [runtime.serializer.loads(o.get("output"), what="a child's output") for o in outcomes]


def gather(runtime: Runtime, workflow_ids: Sequence[str], timeout: float | None = None) -> Any:
    """The results of several workflows in order, once all have ended; the first error in
    order is raised. Inside a workflow: one recorded step, one suspension at most."""
    ctx = current_workflow()
    if ctx is not None and not ctx.in_step:
        return results(runtime, await_children(runtime, ctx, workflow_ids, GATHER_STEP))
    clock = runtime.clock
    until = None if timeout is None else clock.monotonic() + timeout
    pause = 0.01
    while len(ended := poll_ended(runtime, workflow_ids)) < len(set(workflow_ids)):
        if until is not None and clock.monotonic() >= until:
            raise TimeoutError(f"{len(ended)} of {len(workflow_ids)} workflows ended in time")
        clock.sleep(pause)
        pause = min(pause * 2, runtime.settings.poll_interval)
    return results(runtime, [outcome_of(runtime, ended[i]) for i in workflow_ids])


def poll_ended(runtime: Runtime, workflow_ids: Sequence[str]) -> dict[str, WorkflowRecord]:
    """The children that have ended, by id (an unknown id raises NonExistentWorkflow)."""
    rows = runtime.store.list_workflows(workflow_ids=list(workflow_ids), limit=None)
    found = {r.workflow_id: r for r in rows}
    for workflow_id in workflow_ids:
        if workflow_id not in found:
            raise NonExistentWorkflow(workflow_id)
    return {i: r for i, r in found.items() if r.status not in ACTIVE_STATUSES}


def _wait_until_ended(
    runtime: Runtime, ctx: WorkflowContext, workflow_ids: Sequence[str]
) -> dict[str, WorkflowRecord]:
    clock = runtime.clock
    inline_until = clock.monotonic() + runtime.settings.max_inline_retry_wait
    pause = 0.01
    while True:
        ended = poll_ended(runtime, workflow_ids)
        if len(ended) == len(set(workflow_ids)):
            return ended
        if ctx.can_suspend and clock.monotonic() >= inline_until:
            running = tuple(i for i in workflow_ids if i not in ended)
            raise SuspendWorkflow(children=running)
        wait(runtime, ctx, pause)  # stops at the deadline, or when this run is cancelled
        pause = min(pause * 2, runtime.settings.poll_interval)


def outcome_of(runtime: Runtime, record: WorkflowRecord) -> ChildOutcome:
    if record.status == WorkflowState.SUCCESS:
        return {"output": record.output}
    error: Exception
    if record.status == WorkflowState.CANCELLED:
        error = AwaitedWorkflowCancelled(record.workflow_id)
    elif record.status == WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
        error = AwaitedWorkflowMaxRecoveryAttemptsExceeded(record.workflow_id)
    else:
        return {"error": record.error or runtime.serializer.dumps_exception(RuntimeError())}
    return {"error": runtime.serializer.dumps_exception(error)}


def _checkpoint(runtime: Runtime, ctx: WorkflowContext, step_id: int, name: str, value: Any) -> Any:
    """Record the step's value; returns the value that counts (another run's, if it
    recorded this step first)."""
    now = runtime.clock.now_ms()
    recorded = runtime.store.record_step(
        StepRecord(
            workflow_id=ctx.workflow_id,
            step_id=step_id,
            name=name,
            status=StepState.SUCCESS,
            output=runtime.serializer.dumps(value, what=f"step {name!r}"),
            attempts=1,
            started_at_ms=now,
            completed_at_ms=now,
        )
    )
    if not recorded:
        return recorded_elsewhere(runtime, ctx, step_id)
    ctx.confirmed_ms = now
    return value
