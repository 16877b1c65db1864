"""Starting, claiming, running and finishing workflows (no SQL, no Celery)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..annotations import Annotations
from ..errors import ConflictingWorkflowError, WorkflowCancelledError, WorkflowTimeoutError
from ..types import (
    TERMINAL_STATUSES,
    RunOutcome,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from .context import ProcessDeath, SuspendWorkflow, WorkflowContext, workflow_context
from .runtime import Runtime, log
from .tracing import current_trace_context, workflow_span

# past the deadline by this much, the watch cancels a run that did not notice it itself
DEADLINE_SLACK = 0.05


@dataclass(frozen=True)
class StartRequest:
    """What is needed to record a new workflow."""

    workflow_id: str
    name: str
    args: Sequence[Any] = ()
    kwargs: Mapping[str, Any] | None = None
    kind: str = WorkflowKind.WORKFLOW
    queue: str | None = None
    max_recovery_attempts: int | None = None
    timeout: float | None = None
    parent_workflow_id: str | None = None
    parent_deadline_ms: int | None = None  # a child ends by its parent's deadline too

    def deadline_ms(self, now: int) -> int | None:
        own = now + int(self.timeout * 1000) if self.timeout else None
        known = [d for d in (own, self.parent_deadline_ms) if d is not None]
        return min(known) if known else None


@dataclass(frozen=True)
class Outcome:
    """How one run ended (see ``RunOutcome``), with its value or error, the delay of a
    suspension, and the workflow's row."""

    state: RunOutcome
    value: Any = None
    error: BaseException | None = None
    delay: float | None = None  # a suspension's countdown (None: no message to send)
    record: WorkflowRecord | None = None


def encode_inputs(runtime: Runtime, request: StartRequest) -> str:
    """Serialize the inputs; raises SerializationError before anything is written."""
    return runtime.serializer.dumps(
        {"args": list(request.args), "kwargs": dict(request.kwargs or {})},
        what=f"the inputs of workflow {request.name!r}",
    )


def decode_inputs(
    runtime: Runtime, record: WorkflowRecord
) -> tuple[tuple[Any, ...], dict[str, Any]]:
    data = runtime.serializer.loads(
        record.inputs, what=f"inputs of workflow {record.workflow_id!r}"
    )
    if not isinstance(data, dict):
        data = {}
    return tuple(data.get("args") or ()), dict(data.get("kwargs") or {})


def record_start(
    runtime: Runtime, request: StartRequest, *, executor_id: str | None = None
) -> tuple[WorkflowRecord, bool]:
    """Write the workflow row (ENQUEUED, or PENDING owned by ``executor_id``).

    Returns the row and whether this call created it. An existing id under another
    name raises ConflictingWorkflowError; an existing one of the same name is returned.
    """
    record = build_record(runtime, request, executor_id)
    for _ in range(3):  # an existing row may be deleted meanwhile (its publish failed)
        if runtime.store.insert_workflow(record):
            return record, True
        existing = runtime.store.get_workflow(request.workflow_id)
        if existing is not None:
            if existing.name != request.name:
                raise ConflictingWorkflowError(request.workflow_id, existing.name, request.name)
            return existing, False
    raise ConflictingWorkflowError(
        request.workflow_id, "(a workflow started and deleted meanwhile)", request.name
    )


def build_record(
    runtime: Runtime, request: StartRequest, executor_id: str | None = None
) -> WorkflowRecord:
    """The new row of a workflow: ENQUEUED, or PENDING owned by ``executor_id``."""
    inputs = encode_inputs(runtime, request)
    now = runtime.clock.now_ms()
    return WorkflowRecord(
        workflow_id=request.workflow_id,
        name=request.name,
        status=WorkflowState.PENDING if executor_id else WorkflowState.ENQUEUED,
        kind=request.kind,
        inputs=inputs,
        executor_id=executor_id,
        queue=request.queue,
        max_recovery_attempts=request.max_recovery_attempts,
        run_count=1 if executor_id else 0,
        deadline_ms=request.deadline_ms(now),
        created_at_ms=now,
        updated_at_ms=now,
        started_at_ms=now if executor_id else None,
        parent_workflow_id=request.parent_workflow_id,
        trace_context=current_trace_context(),
    )


def execute(
    runtime: Runtime,
    workflow_id: str,
    name: str,
    fn: Callable[..., Any],
    *,
    can_suspend: bool,
    claimed: WorkflowRecord | None = None,
    codec: Annotations | None = None,
) -> Outcome:
    """Claim ``workflow_id`` (recorded as ``name``) for this executor and run ``fn`` on its
    stored inputs (annotated ones loaded back into their types by ``codec``). A run that
    ends without finishing the workflow gives up ownership."""
    executor_id = runtime.executor_id()
    record = claimed or runtime.store.claim_workflow(
        workflow_id, name, executor_id, runtime.stale_before_ms
    )
    if record is None:
        current = runtime.store.get_workflow(workflow_id)
        return Outcome(RunOutcome.SKIPPED, record=current)
    ctx = WorkflowContext(
        workflow_id=workflow_id,
        name=record.name,
        executor_id=executor_id,
        deadline_ms=record.deadline_ms,
        can_suspend=can_suspend,
        run=record.run_count,
        confirmed_ms=runtime.clock.now_ms(),
    )
    watch = _watch_deadline(runtime, ctx, record.parent_workflow_id)
    try:
        outcome = _run(runtime, ctx, record, fn, codec)
    finally:
        if watch is not None:
            watch.cancel()
    if outcome.state in (RunOutcome.SUCCESS, RunOutcome.ERROR):
        wake_parent(runtime, record.parent_workflow_id)
    return outcome


def _watch_deadline(
    runtime: Runtime, ctx: WorkflowContext, parent_id: str | None
) -> threading.Timer | None:
    """At the deadline, end the run's workflow CANCELLED even while a step body runs (the
    body goes on, but its output is not recorded: checkpoints check the deadline)."""
    if ctx.deadline_ms is None:
        return None

    def expire() -> None:
        error = runtime.serializer.dumps_exception(WorkflowTimeoutError(ctx.workflow_id))
        try:
            if runtime.store.set_status(
                ctx.workflow_id,
                WorkflowState.CANCELLED,
                only_from=[WorkflowState.PENDING],
                error=error,
                executor_id=ctx.executor_id,
                keep_owner=True,  # the run still inside its body gives it up when it ends
            ):
                wake_parent(runtime, parent_id)
        except Exception as exc:  # the run itself, or the sweep, cancels it then
            log.warning("workflow %s: could not cancel at its deadline: %s", ctx.workflow_id, exc)

    delay = max(0.0, (ctx.deadline_ms - runtime.clock.now_ms()) / 1000) + DEADLINE_SLACK
    timer = threading.Timer(delay, expire)
    timer.daemon = True
    timer.start()
    return timer


def _run(
    runtime: Runtime,
    ctx: WorkflowContext,
    record: WorkflowRecord,
    fn: Callable[..., Any],
    codec: Annotations | None,
) -> Outcome:
    workflow_id = ctx.workflow_id
    try:
        value = _run_body(runtime, ctx, record, fn, codec)
    except SuspendWorkflow as suspend:
        delay = _suspend(runtime, ctx, suspend)
        return Outcome(RunOutcome.SUSPENDED, delay=delay, record=record)
    except WorkflowCancelledError as exc:  # cancelled (or taken over) while it ran
        _give_up(runtime, ctx)
        return Outcome(RunOutcome.ERROR, error=exc, record=record)
    except WorkflowTimeoutError as exc:
        error = runtime.serializer.dumps_exception(exc)
        runtime.store.set_status(
            workflow_id, WorkflowState.CANCELLED, only_from=[WorkflowState.PENDING], error=error
        )
        _give_up(runtime, ctx)  # the sweep may have cancelled it first, keeping the owner
        return Outcome(RunOutcome.ERROR, error=exc, record=record)
    except Exception as exc:
        _finish(runtime, ctx, WorkflowState.ERROR, error=runtime.serializer.dumps_exception(exc))
        return Outcome(RunOutcome.ERROR, error=exc, record=record)
    except ProcessDeath:
        raise
    except BaseException:  # interrupted (KeyboardInterrupt, SystemExit): others take over
        _give_up(runtime, ctx)
        raise
    try:
        result = value if codec is None else codec.dump_result(value)
        output = runtime.serializer.dumps(result, what=f"the result of workflow {record.name!r}")
    except Exception as exc:
        _finish(runtime, ctx, WorkflowState.ERROR, error=runtime.serializer.dumps_exception(exc))
        return Outcome(RunOutcome.ERROR, error=exc, record=record)
    _finish(runtime, ctx, WorkflowState.SUCCESS, output=output)
    return Outcome(RunOutcome.SUCCESS, value=value, record=record)


def _suspend(runtime: Runtime, ctx: WorkflowContext, suspend: SuspendWorkflow) -> float | None:
    """Give the workflow up until its retry is due or its children have ended; returns
    the countdown of the message that brings it back (None: the children's end will),
    never later than its deadline, when a delivery takes it to cancel it."""
    now = runtime.clock.now_ms()
    to_deadline = None if ctx.deadline_ms is None else max(0.0, (ctx.deadline_ms - now) / 1000)
    if suspend.parked:  # runtime/messages.py: woken by a send, or at its timeout
        return suspend.delay if to_deadline is None else min(suspend.delay, to_deadline)
    if not suspend.children:
        wake_at = now + int(suspend.delay * 1000)
        runtime.store.suspend_workflow(ctx.workflow_id, ctx.executor_id, wake_at)
        return suspend.delay if to_deadline is None else min(suspend.delay, to_deadline)
    if runtime.store.suspend_for_children(ctx.workflow_id, ctx.executor_id, suspend.children):
        wake_parent(runtime, ctx.workflow_id)  # the last child may have ended meanwhile
    return to_deadline


def wake_parent(runtime: Runtime, parent_id: str | None) -> None:
    """A child ended: if its parent waits for it (and no other child it awaits still
    runs), make the parent due and send its message."""
    if parent_id is None or not runtime.store.wake_parent(parent_id):
        return
    parent = runtime.store.get_workflow(parent_id)
    if parent is not None and runtime.publish is not None:
        try:
            runtime.publish(parent)
        except Exception as exc:  # due and ENQUEUED: the sweep sends it again
            log.warning("could not wake workflow %s: %s", parent_id, exc)


def _run_body(
    runtime: Runtime,
    ctx: WorkflowContext,
    record: WorkflowRecord,
    fn: Callable[..., Any],
    codec: Annotations | None,
) -> Any:
    token = workflow_context.set(ctx)
    try:
        with workflow_span(ctx.workflow_id, record.name, record.run_count, record.trace_context):
            # a corrupted row ends the workflow ERROR here instead of failing every delivery
            args, kwargs = decode_inputs(runtime, record)
            if codec is not None:
                args, kwargs = codec.load_args(args, kwargs)
            if record.run_count > 1:
                ctx.replay = runtime.store.load_steps(ctx.workflow_id)
            if ctx.deadline_ms is not None and runtime.clock.now_ms() > ctx.deadline_ms:
                raise WorkflowTimeoutError(ctx.workflow_id)
            value = fn(*args, **kwargs)
            if ctx.deadline_ms is not None and runtime.clock.now_ms() > ctx.deadline_ms:
                raise WorkflowTimeoutError(ctx.workflow_id)  # a timeout cancels, even at the end
            return value
    finally:
        workflow_context.reset(token)


def _finish(runtime: Runtime, ctx: WorkflowContext, status: str, **values: str) -> None:
    if not runtime.store.finish_workflow(ctx.workflow_id, ctx.executor_id, status, **values):
        log.warning("workflow %s: no longer owned when it ended %s", ctx.workflow_id, status)
        _give_up(runtime, ctx)


def _give_up(runtime: Runtime, ctx: WorkflowContext) -> None:
    """Release this run's ownership (if it still has it), so a resume or the sweep can
    hand the workflow on; never masks the error that ended the run."""
    try:
        runtime.store.release_workflow(ctx.workflow_id, ctx.executor_id, ctx.run)
    except Exception as exc:  # the owner stays recorded: the sweep frees it once it is gone
        log.warning("workflow %s: could not give up ownership: %s", ctx.workflow_id, exc)


def run_direct(
    runtime: Runtime,
    request: StartRequest,
    fn: Callable[..., Any],
    codec: Annotations | None = None,
) -> Any:
    """Run a workflow in this process (a direct call); an existing id is awaited instead."""
    from .handle import WorkflowHandle  # local: handle imports this module's helpers

    executor_id = runtime.executor_id()
    record, created = record_start(runtime, request, executor_id=executor_id)
    claimed: WorkflowRecord | None = record if created else None
    if not created and record.status not in TERMINAL_STATUSES:
        claimed = runtime.store.claim_workflow(
            request.workflow_id, request.name, executor_id, runtime.stale_before_ms
        )
    handle = WorkflowHandle(runtime, request.workflow_id, codec)
    if claimed is None:
        return handle.wait_result()
    outcome = execute(
        runtime,
        request.workflow_id,
        request.name,
        fn,
        can_suspend=False,
        claimed=claimed,
        codec=codec,
    )
    if outcome.state == RunOutcome.SUCCESS:
        return outcome.value
    if outcome.state == RunOutcome.ERROR and outcome.error is not None:
        raise outcome.error
    return handle.wait_result()
