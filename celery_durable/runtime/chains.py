"""Durable chains: record every step up front, run one leased step at a time (no Celery here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..annotations import Annotations
from ..errors import ConflictingWorkflowError, WorkflowTimeoutError
from ..policy import Retry, RetryPolicy
from ..types import (
    ACTIVE_STATUSES,
    ChainOutcome,
    StepRecord,
    StepState,
    StepStatus,
    WorkflowKind,
    WorkflowRecord,
    WorkflowState,
)
from .context import WorkflowContext, sql_session, step_scope
from .runtime import Runtime
from .tracing import current_trace_context


@dataclass(frozen=True)
class ChainStepSpec:
    """One link of a chain as recorded: the task name, its fixed task id, its signature."""

    name: str
    task_id: str
    signature: Any
    queue: str | None = None


@dataclass(frozen=True)
class ChainStepResult:
    """How one delivery of a chain step ended: ``outcome`` (see ``ChainOutcome``), the
    step's value (ran or stored), its error, and the delay before a retry."""

    outcome: ChainOutcome
    value: Any = None
    error: BaseException | None = None
    delay: float = 0.0
    attempt: int = 0  # the attempt that ran (0-based), for signals


def record_chain(
    runtime: Runtime,
    workflow_id: str,
    specs: Sequence[ChainStepSpec],
    *,
    max_recovery_attempts: int | None = None,
    timeout: float | None = None,
) -> tuple[WorkflowRecord, bool]:
    """Store the chain and its ordered step signatures before anything is published."""
    ser = runtime.serializer
    name = f"chain:{specs[0].name}"
    encoded = [
        ser.dumps(s.signature, what=f"the arguments of chain step {s.name!r}") for s in specs
    ]
    now = runtime.clock.now_ms()
    record = WorkflowRecord(
        workflow_id=workflow_id,
        name=name,
        status=WorkflowState.ENQUEUED,
        kind=WorkflowKind.CHAIN,
        inputs=encoded[0],
        queue=specs[0].queue,
        max_recovery_attempts=max_recovery_attempts,
        deadline_ms=now + int(timeout * 1000) if timeout else None,
        created_at_ms=now,
        updated_at_ms=now,
        trace_context=current_trace_context(),
    )
    steps = [
        StepRecord(
            workflow_id=workflow_id,
            step_id=i,
            name=spec.name,
            status=StepState.PENDING,
            attempts=0,
            signature=encoded[i],
            task_id=spec.task_id,
        )
        for i, spec in enumerate(specs)
    ]
    for _ in range(3):  # an existing row may be deleted meanwhile (its publish failed)
        if runtime.store.insert_chain(record, steps):
            return record, True
        existing = runtime.store.get_workflow(workflow_id)
        if existing is not None:
            if existing.name != name:
                raise ConflictingWorkflowError(workflow_id, existing.name, name)
            return existing, False
    raise ConflictingWorkflowError(workflow_id, "(a workflow started and deleted meanwhile)", name)


def run_chain_step(
    runtime: Runtime,
    workflow_id: str,
    step_id: int,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    policy: RetryPolicy,
    last: bool,
    transaction: bool = False,
    isolation_level: str | None = None,
    codec: Annotations | None = None,
) -> ChainStepResult:
    """Lease the step, run one attempt, and commit its output (the next step is then due).
    With ``codec`` an annotated output is stored, and handed on, as JSON-able data."""
    if codec is not None:
        body = fn
        fn = lambda *a, **kw: codec.dump_result(body(*a, **kw))  # noqa: E731
    executor_id = runtime.executor_id()
    claimed = runtime.store.claim_chain_step(
        workflow_id, step_id, name, executor_id, runtime.stale_before_ms
    )
    if claimed is None:
        return _not_claimed(runtime, workflow_id, step_id, name)
    attempt = claimed.attempts
    lease = claimed.lease_id or ""
    ser = runtime.serializer
    ctx = WorkflowContext(workflow_id, name, executor_id, in_step=True)
    with step_scope(StepStatus(step_id, attempt, policy.max_attempts), name, workflow=ctx):
        try:
            if transaction:
                committed, value = _run_transaction(
                    runtime, claimed, fn, args, kwargs, attempt, last, isolation_level
                )
            else:
                value = fn(*args, **kwargs)
                output = ser.dumps(value, what=f"the output of step {name!r}")
                committed = runtime.store.finish_chain_step(
                    workflow_id, step_id, lease, output, attempt + 1, last
                )
        except Exception as exc:
            return _failed(runtime, claimed, lease, policy, attempt, exc)
    if committed:
        runtime.events.step_checkpointed(workflow_id=workflow_id, step_id=step_id, name=name)
        return ChainStepResult(ChainOutcome.SUCCESS, value=value)
    return _unclaimed(runtime, workflow_id, step_id)  # lost the lease meanwhile


def _run_transaction(
    runtime: Runtime,
    claimed: StepRecord,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    attempt: int,
    last: bool,
    isolation_level: str | None,
) -> tuple[bool, Any]:
    lease = claimed.lease_id or ""

    def body(session: Any) -> Any:
        token = sql_session.set(session)
        try:
            return fn(*args, **kwargs)
        finally:
            sql_session.reset(token)

    def finish(conn: Any, value: Any) -> bool:
        output = runtime.serializer.dumps(value, what=f"the output of step {claimed.name!r}")
        return runtime.store.complete_chain_step(
            conn, claimed.workflow_id, claimed.step_id, lease, output, attempt + 1, last
        )

    return runtime.store.run_transaction_step(body, finish, isolation_level)


def _not_claimed(runtime: Runtime, workflow_id: str, step_id: int, name: str) -> ChainStepResult:
    """Why a delivery could not lease its step; a chain past its deadline is cancelled here
    (so a chain without a sweep still ends at its deadline)."""
    record = runtime.store.get_step(workflow_id, step_id)
    if record is not None and record.name != name:
        return ChainStepResult(ChainOutcome.REFUSED)
    workflow = runtime.store.get_workflow(workflow_id)
    if (
        record is not None
        and record.status != StepState.SUCCESS
        and workflow is not None
        and workflow.status in ACTIVE_STATUSES
        and workflow.deadline_ms is not None
        and workflow.deadline_ms < runtime.clock.now_ms()
    ):
        error = runtime.serializer.dumps_exception(WorkflowTimeoutError(workflow_id))
        runtime.store.set_status(
            workflow_id,
            WorkflowState.CANCELLED,
            only_from=list(ACTIVE_STATUSES),
            error=error,
            keep_owner=True,
        )
        return ChainStepResult(ChainOutcome.EXPIRED)
    return _unclaimed(runtime, workflow_id, step_id)


def _unclaimed(runtime: Runtime, workflow_id: str, step_id: int) -> ChainStepResult:
    record = runtime.store.get_step(workflow_id, step_id)
    if record is None:
        return ChainStepResult(ChainOutcome.MISSING)
    if record.status == StepState.SUCCESS:
        value = runtime.serializer.loads(record.output, what=f"output of step {record.name!r}")
        return ChainStepResult(ChainOutcome.DONE, value=value)
    return ChainStepResult(ChainOutcome.BUSY)


def _failed(
    runtime: Runtime,
    claimed: StepRecord,
    lease: str,
    policy: RetryPolicy,
    attempt: int,
    exc: Exception,
) -> ChainStepResult:
    ser = runtime.serializer
    wid, sid, name = claimed.workflow_id, claimed.step_id, claimed.name
    attempt_error = ser.dumps_exception(exc)

    def errors() -> list[BaseException]:  # read only when retries are exhausted
        stored = runtime.store.load_steps(wid).get(sid)
        earlier = [ser.loads_exception(e) for e in (stored.attempt_errors if stored else ())]
        return [*earlier[:attempt], exc]

    decision = policy.decide(name, exc, attempt, errors)
    if isinstance(decision, Retry):
        due = runtime.clock.now_ms() + int(decision.delay * 1000)
        if runtime.store.retry_chain_step(wid, sid, lease, attempt, name, attempt_error, due):
            runtime.events.step_retrying(
                workflow_id=wid, step_id=sid, name=name,
                attempt=attempt, delay=decision.delay, exc=exc,
            )  # fmt: skip
            return ChainStepResult(
                ChainOutcome.RETRY, error=exc, delay=decision.delay, attempt=attempt
            )
        return _unclaimed(runtime, wid, sid)
    final = ser.dumps_exception(decision.error)
    if runtime.store.fail_chain_step(wid, sid, lease, attempt, name, attempt_error, final):
        runtime.events.step_retries_exhausted(
            workflow_id=wid, step_id=sid, name=name, attempt=attempt, exc=decision.error
        )
        return ChainStepResult(ChainOutcome.ERROR, error=decision.error, attempt=attempt)
    return _unclaimed(runtime, wid, sid)


def next_link_looks_lost(runtime: Runtime, workflow_id: str, step_id: int) -> bool:
    """A finished step delivered again: was the next link never started, long enough after
    this step's commit that its message counts as lost? (Not just queued behind others.)"""
    done = runtime.store.get_step(workflow_id, step_id)
    following = runtime.store.get_step(workflow_id, step_id + 1)
    if done is None or following is None or following.status != StepState.PENDING:
        return False
    waited_ms = runtime.clock.now_ms() - (done.completed_at_ms or 0)
    return waited_ms > runtime.settings.enqueue_timeout * 1000


def open_step(
    runtime: Runtime, workflow_id: str
) -> tuple[StepRecord, Any, list[tuple[Any, str | None]]] | None:
    """The first unfinished step, the output of the one before it, and the later
    signatures with their recorded task ids."""
    found = runtime.store.first_open_step(workflow_id)
    if found is None:
        return None
    step, previous = found
    ser = runtime.serializer
    prev_output = ser.loads(previous.output) if previous is not None else None
    later = runtime.store.load_steps(workflow_id)
    rest = [
        (ser.loads(later[i].signature), later[i].task_id) for i in sorted(later) if i > step.step_id
    ]
    return step, prev_output, rest
