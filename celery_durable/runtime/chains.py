"""Durable chains: record every step up front, run one leased step at a time (no Celery here)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..annotations import Annotations
from ..errors import ConflictingWorkflowError, WorkflowTimeoutError
from ..flowtypes import ChainRoute, QueueSpec
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
from .chain_queues import enqueue_chain, stamped
from .context import WorkflowContext, sql_session, step_scope
from .enqueue_options import EnqueueOptions
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


def chain_rows(
    workflow_id: str,
    name: str,
    inputs: str,
    specs: Sequence[ChainStepSpec],
    signatures: Sequence[str],
    now: int,
    *,
    max_recovery_attempts: int | None,
    deadline_ms: int | None,
    parent_workflow_id: str | None = None,
) -> tuple[WorkflowRecord, list[StepRecord]]:
    """A workflow of kind ``chain`` (a chain, or a canvas) as recorded at its start: its row,
    ENQUEUED in its first step's queue, and its steps, PENDING, with their encoded
    ``signatures``."""
    record = WorkflowRecord(
        workflow_id=workflow_id,
        name=name,
        status=WorkflowState.ENQUEUED,
        kind=WorkflowKind.CHAIN,
        inputs=inputs,
        queue=specs[0].queue,
        max_recovery_attempts=max_recovery_attempts,
        deadline_ms=deadline_ms,
        created_at_ms=now,
        updated_at_ms=now,
        trace_context=current_trace_context(),
        parent_workflow_id=parent_workflow_id,
    )
    steps = [
        StepRecord(
            workflow_id=workflow_id,
            step_id=i,
            name=spec.name,
            status=StepState.PENDING,
            attempts=0,
            signature=signature,
            task_id=spec.task_id,
        )
        for i, (spec, signature) in enumerate(zip(specs, signatures, strict=True))
    ]
    return record, steps


def record_chain(
    runtime: Runtime,
    workflow_id: str,
    specs: Sequence[ChainStepSpec],
    *,
    max_recovery_attempts: int | None = None,
    timeout: float | None = None,
    wait_in: QueueSpec | None = None,
    enqueue: EnqueueOptions | None = None,
) -> tuple[WorkflowRecord, bool]:
    """Store the chain and its ordered step signatures before anything is published.
    ``wait_in``: the first step's durable queue, where it waits for admission (with
    ``enqueue``'s priority, deduplication id and delay); what the recording admitted is
    published (chain_queues.py)."""
    ser = runtime.serializer
    name = f"chain:{specs[0].name}"
    encoded = [
        ser.dumps(s.signature, what=f"the arguments of chain step {s.name!r}") for s in specs
    ]
    now = runtime.clock.now_ms()
    record, steps = chain_rows(
        workflow_id, name, encoded[0], specs, encoded, now,
        max_recovery_attempts=max_recovery_attempts,
        deadline_ms=now + int(timeout * 1000) if timeout else None,
    )  # fmt: skip
    if wait_in is not None:
        return enqueue_chain(runtime, record, steps, wait_in, enqueue or EnqueueOptions())
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
    route: ChainRoute | None = None,
) -> ChainStepResult:
    """Lease the step, run one attempt, and commit its output (the next step is then due).
    With ``codec`` an annotated output is stored, and handed on, as JSON-able data; a
    ``route`` moves the chain into or out of a durable queue with the checkpoint."""
    if codec is not None:
        body = fn
        fn = lambda *a, **kw: codec.dump_result(body(*a, **kw))  # noqa: E731
    executor_id = runtime.executor_id()
    ctx = WorkflowContext(workflow_id, name, executor_id, in_step=True)
    if transaction:
        run = _LeasedTransaction(runtime, ctx, step_id, fn, args, kwargs, policy, last)
        run.route = route
        return run(isolation_level)
    claimed = runtime.store.claim_chain_step(
        workflow_id, step_id, name, executor_id, runtime.stale_before_ms
    )
    if claimed is None:
        return _not_claimed(runtime, workflow_id, step_id, name)
    attempt = claimed.attempts
    lease = claimed.lease_id or ""
    with step_scope(StepStatus(step_id, attempt, policy.max_attempts), name, workflow=ctx):
        try:
            value = fn(*args, **kwargs)
            output = runtime.serializer.dumps(value, what=f"the output of step {name!r}")
            committed = runtime.store.finish_chain_step(
                workflow_id, step_id, lease, output, attempt + 1, last, stamped(runtime, route)
            )
        except Exception as exc:
            return _failed(runtime, claimed, lease, policy, attempt, exc)
    if committed:
        runtime.events.step_checkpointed(workflow_id=workflow_id, step_id=step_id, name=name)
        return ChainStepResult(ChainOutcome.SUCCESS, value=value)
    return _unclaimed(runtime, workflow_id, step_id)  # lost the lease meanwhile


class _LeasedTransaction:
    """A transaction chain step: lease, body and checkpoint in one database transaction.

    The lease is the transaction's first statement (no commit, no round trip of its own);
    its row lock holds a duplicate delivery until the commit, after which that one finds
    the step done. A body that raises rolls all of it back, the lease too: the step is
    then leased on its own to record the attempt's failure (a retry, or the end)."""

    def __init__(
        self,
        runtime: Runtime,
        ctx: WorkflowContext,
        step_id: int,
        fn: Callable[..., Any],
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        policy: RetryPolicy,
        last: bool,
    ) -> None:
        self.runtime, self.ctx, self.step_id = runtime, ctx, step_id
        self.fn, self.args, self.kwargs, self.policy, self.last = fn, args, kwargs, policy, last
        self.leased: StepRecord | None = None
        self.route: ChainRoute | None = None

    def start(self, tx: Any) -> bool:
        ctx = self.ctx
        self.leased = self.runtime.store.lease_chain_step(
            tx, ctx.workflow_id, self.step_id, ctx.name, ctx.executor_id,
            self.runtime.stale_before_ms,
        )  # fmt: skip
        return self.leased is not None

    def body(self, session: Any) -> Any:
        assert self.leased is not None
        status = StepStatus(self.step_id, self.leased.attempts, self.policy.max_attempts)
        with step_scope(status, self.ctx.name, workflow=self.ctx):
            token = sql_session.set(session)
            try:
                return self.fn(*self.args, **self.kwargs)
            finally:
                sql_session.reset(token)

    def finish(self, tx: Any, value: Any) -> bool:
        assert self.leased is not None
        output = self.runtime.serializer.dumps(value, what=f"the output of {self.ctx.name!r}")
        return self.runtime.store.complete_chain_step(
            tx, self.ctx.workflow_id, self.step_id, self.leased.lease_id or "", output,
            self.leased.attempts + 1, self.last, stamped(self.runtime, self.route),
        )  # fmt: skip

    def __call__(self, isolation_level: str | None) -> ChainStepResult:
        runtime, ctx, sid = self.runtime, self.ctx, self.step_id
        store = runtime.store
        try:
            committed, value = store.run_transaction_step(
                self.body, self.finish, isolation_level, start=self.start
            )
        except Exception as exc:  # rolled back, the lease with it
            claimed = store.claim_chain_step(
                ctx.workflow_id, sid, ctx.name, ctx.executor_id, runtime.stale_before_ms
            )
            if claimed is None:
                return _not_claimed(runtime, ctx.workflow_id, sid, ctx.name)
            return _failed(
                runtime, claimed, claimed.lease_id or "", self.policy, claimed.attempts, exc
            )
        if self.leased is None:
            return _not_claimed(runtime, ctx.workflow_id, sid, ctx.name)
        if not committed:
            return _unclaimed(runtime, ctx.workflow_id, sid)
        runtime.events.step_checkpointed(workflow_id=ctx.workflow_id, step_id=sid, name=ctx.name)
        return ChainStepResult(ChainOutcome.SUCCESS, value=value)


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


@dataclass(frozen=True)
class FailedAttempt:
    """What became of a leased step's attempt that raised: a retry scheduled (its
    ``delay``), the lease lost meanwhile (neither set), or the error that ends the step
    (``final``, with both errors serialized for the store)."""

    attempt_error: str
    delay: float | None = None
    final: BaseException | None = None
    final_text: str = ""


def attempt_failed(
    runtime: Runtime,
    claimed: StepRecord,
    lease: str,
    policy: RetryPolicy,
    attempt: int,
    exc: Exception,
) -> FailedAttempt:
    """Apply ``policy`` to a chain step's (or canvas member's) failed attempt: schedule the
    retry under the lease, or say the step has failed for good (the caller records it)."""
    ser = runtime.serializer
    wid, sid, name = claimed.workflow_id, claimed.step_id, claimed.name
    attempt_error = ser.dumps_exception(exc)

    def errors() -> list[BaseException]:  # read only when retries are exhausted
        stored = runtime.store.load_steps(wid).get(sid)
        earlier = [ser.loads_exception(e) for e in (stored.attempt_errors if stored else ())]
        return [*earlier[:attempt], exc]

    decision = policy.decide(name, exc, attempt, errors)
    if not isinstance(decision, Retry):
        final = decision.error
        return FailedAttempt(attempt_error, final=final, final_text=ser.dumps_exception(final))
    due = runtime.clock.now_ms() + int(decision.delay * 1000)
    if not runtime.store.retry_chain_step(wid, sid, lease, attempt, name, attempt_error, due):
        return FailedAttempt(attempt_error)
    runtime.events.step_retrying(
        workflow_id=wid, step_id=sid, name=name,
        attempt=attempt, delay=decision.delay, exc=exc,
    )  # fmt: skip
    return FailedAttempt(attempt_error, delay=decision.delay)


def _failed(
    runtime: Runtime,
    claimed: StepRecord,
    lease: str,
    policy: RetryPolicy,
    attempt: int,
    exc: Exception,
) -> ChainStepResult:
    wid, sid, name = claimed.workflow_id, claimed.step_id, claimed.name
    failed = attempt_failed(runtime, claimed, lease, policy, attempt, exc)
    if failed.delay is not None:
        return ChainStepResult(ChainOutcome.RETRY, error=exc, delay=failed.delay, attempt=attempt)
    if failed.final is None or not runtime.store.fail_chain_step(
        wid, sid, lease, attempt, name, failed.attempt_error, failed.final_text
    ):
        return _unclaimed(runtime, wid, sid)
    runtime.events.step_retries_exhausted(
        workflow_id=wid, step_id=sid, name=name, attempt=attempt, exc=failed.final
    )
    return ChainStepResult(ChainOutcome.ERROR, error=failed.final, attempt=attempt)


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
