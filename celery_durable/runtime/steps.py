"""Step execution: replay from checkpoints, DBOS-style retries, transaction steps, sleep."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..annotations import Annotations
from ..errors import (
    NonDeterministicWorkflowError,
    WorkflowCancelledError,
    WorkflowTimeoutError,
)
from ..policy import Fail, RetryPolicy
from ..types import ENDED_STEPS, StepRecord, StepState, StepStatus, WorkflowState
from .context import (
    SuspendWorkflow,
    WorkflowContext,
    current_workflow,
    sql_session,
    step_scope,
)
from .runtime import Runtime

Codec = Annotations | None  # a step's annotated output through JSON (annotations.py)
ONE_ATTEMPT = RetryPolicy()

SLEEP_STEP = "durable.sleep"
# a checkpoint this recent stands for a status check before the next step (check_running)
CONFIRMED_FOR_MS = 100
# how often a sleep or a retry wait looks whether its workflow was cancelled
CANCEL_POLL_SECONDS = 1.0


def replayed(ctx: WorkflowContext, step_id: int, name: str) -> StepRecord | None:
    record = ctx.replay.get(step_id)
    if record is not None and record.name != name:
        raise NonDeterministicWorkflowError(ctx.workflow_id, step_id, record.name, name)
    return record


def _stored_result(runtime: Runtime, record: StepRecord, codec: Codec = None) -> Any:
    if record.status == StepState.ERROR:
        raise runtime.serializer.loads_exception(record.error or "{}")
    value = runtime.serializer.loads(record.output, what=f"output of step {record.name!r}")
    return value if codec is None else codec.load_result(value)


def _encoded_output(runtime: Runtime, name: str, result: Any, codec: Codec) -> str:
    value = result if codec is None else codec.dump_result(result)
    return runtime.serializer.dumps(value, what=f"the output of step {name!r}")


def check_running(runtime: Runtime, ctx: WorkflowContext) -> None:
    """Before a step body starts (and while waiting): raise if the workflow passed its
    deadline, or was cancelled or taken over since the store last confirmed this run.

    The checkpoint of the step before confirms it (its INSERT requires the workflow to be
    PENDING), so steps that follow one another read nothing: the status is read only when
    more than ``CONFIRMED_FOR_MS`` passed since (a sleep, a retry wait, slow workflow code).
    """
    now = runtime.clock.now_ms()
    if ctx.deadline_ms is not None and now > ctx.deadline_ms:
        raise WorkflowTimeoutError(ctx.workflow_id)
    if now - ctx.confirmed_ms <= CONFIRMED_FOR_MS:
        return
    record = runtime.store.get_workflow(ctx.workflow_id)
    if (
        record is None
        or record.status != WorkflowState.PENDING
        or record.executor_id != ctx.executor_id
    ):
        raise WorkflowCancelledError(ctx.workflow_id)
    ctx.confirmed_ms = now


def wait(runtime: Runtime, ctx: WorkflowContext | None, seconds: float) -> None:
    """Sleep ``seconds``; inside a workflow, stop at its deadline or when it is cancelled
    (checked every ``CANCEL_POLL_SECONDS``)."""
    until = runtime.clock.monotonic() + seconds
    while True:
        remaining = until - runtime.clock.monotonic()
        if ctx is None:
            if remaining > 0:
                runtime.clock.sleep(remaining)
            return
        check_running(runtime, ctx)
        if remaining <= 0:
            return
        pause = min(remaining, CANCEL_POLL_SECONDS)
        if ctx.deadline_ms is not None:  # wake at the deadline, not a poll later
            pause = min(pause, max(0.0, (ctx.deadline_ms - runtime.clock.now_ms()) / 1000 + 0.001))
        runtime.clock.sleep(pause)


def _call(
    ctx: WorkflowContext | None,
    status: StepStatus,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> Any:
    with step_scope(status, name):
        if ctx is not None:
            ctx.in_step = True
        try:
            return fn(*args, **kwargs)
        finally:
            if ctx is not None:
                ctx.in_step = False


def run_step(
    runtime: Runtime,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    codec: Codec = None,
) -> Any:
    """Run a step: checkpointed inside a workflow, plain (with retries) outside one.
    ``codec`` carries an annotated output through JSON (see annotations.py)."""
    ctx = current_workflow()
    if ctx is not None and ctx.in_step:
        ctx = None  # nested in a step: the outer step is the unit of replay
    step_id, prior = _begin(runtime, ctx, name)
    if isinstance(prior, _Stored):
        return _stored_result(runtime, prior.record, codec)

    def attempt(status: StepStatus) -> Any:
        return _call(ctx, status, name, fn, args, kwargs)

    def done(result: Any, attempts: int, started: int) -> Any:
        if ctx is None:
            return result
        return _checkpoint_output(runtime, ctx, step_id, name, result, attempts, started, codec)

    return _run_attempts(runtime, ctx, step_id, name, policy, prior, attempt, done)


class _Stored:
    """A replayed step that ended: its recorded outcome stands."""

    def __init__(self, record: StepRecord) -> None:
        self.record = record


def _begin(
    runtime: Runtime, ctx: WorkflowContext | None, name: str
) -> tuple[int, list[BaseException] | _Stored]:
    """The step's id in its workflow (-1 outside one), and its earlier attempts' errors
    (a replay after a long retry wait), or its recorded outcome if it ended."""
    if ctx is None:
        return -1, []
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, name)
    if record is not None and record.status in ENDED_STEPS:
        return step_id, _Stored(record)
    errors = [
        runtime.serializer.loads_exception(e) for e in (record.attempt_errors if record else ())
    ]
    return step_id, errors


def _run_attempts(
    runtime: Runtime,
    ctx: WorkflowContext | None,
    step_id: int,
    name: str,
    policy: RetryPolicy,
    errors: list[BaseException],
    attempt_fn: Callable[[StepStatus], Any],
    done: Callable[[Any, int, int], Any],
) -> Any:
    """Attempts by ``policy`` until one succeeds (``done(result, attempts, started)`` then
    gives the step's value) or the policy ends the step, raising its error."""
    attempt = len(errors)
    started = runtime.clock.now_ms()
    while True:
        if ctx is not None:
            check_running(runtime, ctx)
        try:
            result = attempt_fn(StepStatus(step_id, attempt, policy.max_attempts))
        except Exception as exc:
            errors.append(exc)
            if ctx is not None:
                runtime.store.record_step_error(
                    ctx.workflow_id, step_id, attempt, name, runtime.serializer.dumps_exception(exc)
                )
            decision = policy.decide(name, exc, attempt, lambda: errors)
            if isinstance(decision, Fail):
                if ctx is not None:
                    _checkpoint_error(
                        runtime, ctx, step_id, name, decision.error, attempt + 1, started
                    )
                    runtime.events.step_retries_exhausted(
                        workflow_id=ctx.workflow_id, step_id=step_id, name=name,
                        attempt=attempt, exc=decision.error,
                    )  # fmt: skip
                if decision.error is exc:
                    raise
                raise decision.error from exc
            delay = decision.delay
            if ctx is not None:
                runtime.events.step_retrying(
                    workflow_id=ctx.workflow_id, step_id=step_id, name=name,
                    attempt=attempt, delay=delay, exc=exc,
                )  # fmt: skip
            attempt += 1
            if (
                ctx is not None
                and ctx.can_suspend
                and delay > runtime.settings.max_inline_retry_wait
            ):
                raise SuspendWorkflow(delay) from None
            wait(runtime, ctx, delay)
            continue
        return done(result, attempt + 1, started)


def _checkpoint_output(
    runtime: Runtime,
    ctx: WorkflowContext,
    step_id: int,
    name: str,
    result: Any,
    attempts: int,
    started: int,
    codec: Codec,
) -> Any:
    output = _encoded_output(runtime, name, result, codec)
    record = StepRecord(
        workflow_id=ctx.workflow_id,
        step_id=step_id,
        name=name,
        status=StepState.SUCCESS,
        output=output,
        attempts=attempts,
        started_at_ms=started,
        completed_at_ms=runtime.clock.now_ms(),
    )
    if runtime.store.record_step(record):
        ctx.confirmed_ms = record.completed_at_ms or 0
        runtime.events.step_checkpointed(workflow_id=ctx.workflow_id, step_id=step_id, name=name)
        return result
    return recorded_elsewhere(runtime, ctx, step_id, codec)


def recorded_elsewhere(
    runtime: Runtime, ctx: WorkflowContext, step_id: int, codec: Codec = None
) -> Any:
    """The checkpoint was refused: another run recorded this step first (its output is the
    one that counts), or the workflow passed its deadline or was cancelled meanwhile."""
    stored = runtime.store.load_steps(ctx.workflow_id).get(step_id)
    if stored is None or stored.status not in ENDED_STEPS:
        if ctx.deadline_ms is not None and runtime.clock.now_ms() > ctx.deadline_ms:
            raise WorkflowTimeoutError(ctx.workflow_id)
        raise WorkflowCancelledError(ctx.workflow_id)
    return _stored_result(runtime, stored, codec)


def _checkpoint_error(
    runtime: Runtime,
    ctx: WorkflowContext,
    step_id: int,
    name: str,
    exc: BaseException,
    attempts: int,
    started: int,
) -> None:
    runtime.store.record_step(
        StepRecord(
            workflow_id=ctx.workflow_id,
            step_id=step_id,
            name=name,
            status=StepState.ERROR,
            error=runtime.serializer.dumps_exception(exc),
            attempts=attempts,
            started_at_ms=started,
            completed_at_ms=runtime.clock.now_ms(),
        )
    )


def run_transaction(
    runtime: Runtime,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    isolation_level: str | None,
    codec: Codec = None,
    policy: RetryPolicy = ONE_ATTEMPT,
) -> Any:
    """Run ``fn`` with ``durable.sql_session``; its checkpoint commits with its statements.
    An attempt that raises rolls back, and ``policy`` decides what follows, as for a step."""
    ctx = current_workflow()
    if ctx is not None and ctx.in_step:
        ctx = None  # nested in a step: the outer step is the unit of replay
    step_id, prior = _begin(runtime, ctx, name)
    if isinstance(prior, _Stored):
        return _stored_result(runtime, prior.record, codec)

    def attempt(status: StepStatus) -> tuple[bool, Any]:
        started = runtime.clock.now_ms()

        def body(session: Any) -> Any:
            token = sql_session.set(session)
            try:
                return _call(ctx, status, name, fn, args, kwargs)
            finally:
                sql_session.reset(token)

        def checkpoint(conn: Any, result: Any) -> bool:
            if ctx is None:
                return True
            record = StepRecord(
                workflow_id=ctx.workflow_id,
                step_id=step_id,
                name=name,
                status=StepState.SUCCESS,
                output=_encoded_output(runtime, name, result, codec),
                attempts=status.current_attempt + 1,
                started_at_ms=started,
                completed_at_ms=runtime.clock.now_ms(),
            )
            return runtime.store.insert_checkpoint(conn, record)

        return runtime.store.run_transaction_step(body, checkpoint, isolation_level)

    def done(outcome: tuple[bool, Any], attempts: int, started: int) -> Any:
        committed, result = outcome
        if ctx is None:
            return result
        if committed:
            ctx.confirmed_ms = runtime.clock.now_ms()
            runtime.events.step_checkpointed(
                workflow_id=ctx.workflow_id, step_id=step_id, name=name
            )
            return result
        return recorded_elsewhere(runtime, ctx, step_id, codec)

    return _run_attempts(runtime, ctx, step_id, name, policy, prior, attempt, done)


def durable_sleep(runtime: Runtime, seconds: float) -> None:
    """Sleep whose wake-up time is recorded: a replay sleeps only what is left. Ends early,
    raising, when the workflow is cancelled or passes its deadline."""
    ctx = current_workflow()
    if ctx is None or ctx.in_step:
        runtime.clock.sleep(seconds)
        return
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, SLEEP_STEP)
    if record is not None and record.status == StepState.SUCCESS:
        wake_at = float(runtime.serializer.loads(record.output))
    else:
        check_running(runtime, ctx)
        wake_at = runtime.clock.time() + seconds
        now = runtime.clock.now_ms()
        recorded = runtime.store.record_step(
            StepRecord(
                workflow_id=ctx.workflow_id,
                step_id=step_id,
                name=SLEEP_STEP,
                status=StepState.SUCCESS,
                output=runtime.serializer.dumps(wake_at),
                started_at_ms=now,
                completed_at_ms=now,
                attempts=1,
            )
        )
        if recorded:
            ctx.confirmed_ms = now
        else:
            wake_at = float(recorded_elsewhere(runtime, ctx, step_id))
    wait(runtime, ctx, wake_at - runtime.clock.time())
