"""Durable canvases: groups and chords recorded whole at start, each member a leased step,
the next stage due exactly once (no Celery here).

A canvas is a sequence of stages; a stage is one task (a chain link) or a group of members.
``chord([a, b], cb)`` is [group(a, b), cb]; ``chain(a, group(b, c), d)`` is [a, group(b, c),
d]. Every member is a step row (consecutive ids, stage by stage) of a workflow of kind
``chain`` named ``canvas:<first task>``, whose ``inputs`` hold the layout; so the chain
machinery (leases, retries, the sweep's stall conditions, resume) applies to members as is.
The member whose checkpoint completes its stage (decided under the workflow's row lock,
``store.finish_member``) gets the stage's outputs and publishes the next stage.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..annotations import Annotations
from ..errors import ConflictingWorkflowError
from ..policy import RetryPolicy
from ..types import (
    NESTED_STEP,
    ChainOutcome,
    StepRecord,
    StepState,
    StepStatus,
    WorkflowKind,
    WorkflowRecord,
)
from .chains import ChainStepSpec, _not_claimed, _unclaimed, attempt_failed, chain_rows
from .context import WorkflowContext, step_scope
from .runtime import Runtime

CANVAS_PREFIX = "canvas:"


@dataclass(frozen=True)
class Stage:
    """A stage's members are the steps ``first .. first + size - 1``. A group's output is
    the list of its members' outputs (even of one member); a task stage's is its own."""

    index: int
    first: int
    size: int
    group: bool
    last: bool

    @property
    def step_ids(self) -> range:
        return range(self.first, self.first + self.size)

    def header(self) -> list[int]:
        """As the ``durable_canvas`` message header carries it."""
        return [self.index, self.first, self.size, int(self.group), int(self.last)]

    @classmethod
    def from_header(cls, value: Sequence[int]) -> Stage:
        index, first, size, group, last = (int(v) for v in value)
        return cls(index, first, size, bool(group), bool(last))


@dataclass(frozen=True)
class Layout:
    stages: tuple[Stage, ...]

    @classmethod
    def build(cls, sizes: Sequence[int], groups: Sequence[bool]) -> Layout:
        stages, first = [], 0
        for i, (size, group) in enumerate(zip(sizes, groups, strict=True)):
            stages.append(Stage(i, first, size, group, i == len(sizes) - 1))
            first += size
        return cls(tuple(stages))

    def to_data(self) -> dict[str, Any]:
        return {"canvas": [[s.size, int(s.group)] for s in self.stages]}

    @classmethod
    def from_data(cls, data: Any) -> Layout:
        pairs = data["canvas"]
        return cls.build([int(p[0]) for p in pairs], [bool(p[1]) for p in pairs])

    def position(self, step_id: int) -> tuple[int, int]:
        """(stage, member) of a step id."""
        for stage in self.stages:
            if step_id in stage.step_ids:
                return stage.index, step_id - stage.first
        raise KeyError(step_id)


def is_canvas(record: WorkflowRecord) -> bool:
    return record.kind == WorkflowKind.CHAIN and record.name.startswith(CANVAS_PREFIX)


def load_layout(runtime: Runtime, record: WorkflowRecord) -> Layout | None:
    if not is_canvas(record):
        return None
    return Layout.from_data(runtime.serializer.loads(record.inputs, what="a canvas layout"))


def load_errbacks(runtime: Runtime, record: WorkflowRecord) -> list[dict[str, Any]]:
    """The canvas's errbacks (Celery signatures as dicts), sent once if it fails."""
    if not is_canvas(record):
        return []
    data = runtime.serializer.loads(record.inputs, what="a canvas layout")
    return [dict(e) for e in data.get("errbacks") or []]


def member_of(runtime: Runtime, record: WorkflowRecord) -> tuple[str, int] | None:
    """The parent canvas and step of a nested child canvas (runtime/nested.py), or None."""
    if not is_canvas(record) or record.parent_workflow_id is None:
        return None
    data = runtime.serializer.loads(record.inputs, what="a canvas layout")
    found = data.get("member_of")
    return (str(found[0]), int(found[1])) if found else None


def _given_input(runtime: Runtime, record: WorkflowRecord) -> tuple[bool, Any]:
    """A nested child's first stage takes what its parent's stage was given."""
    data = runtime.serializer.loads(record.inputs, what="a canvas layout")
    given = data.get("input")
    return (True, given[0]) if given else (False, None)


def record_canvas(
    runtime: Runtime,
    workflow_id: str,
    stages: Sequence[Sequence[ChainStepSpec]],
    groups: Sequence[bool],
    *,
    max_recovery_attempts: int | None = None,
    timeout: float | None = None,
    errbacks: Sequence[dict[str, Any]] = (),
    child: ChildCanvas | None = None,
) -> tuple[Layout, bool]:
    """Store the whole canvas (every member's signature, the layout) before any publish.
    Returns the layout and whether this call created it (False: the id exists). A nested
    member's canvas is recorded as ``child`` of its parent's step."""
    ser = runtime.serializer
    specs = [spec for stage in stages for spec in stage]
    layout = Layout.build([len(s) for s in stages], groups)
    name = f"{CANVAS_PREFIX}{_first_task(specs[0])}"
    now = runtime.clock.now_ms()
    data: dict[str, Any] = {**layout.to_data(), "errbacks": list(errbacks)}
    deadline_ms = now + int(timeout * 1000) if timeout else None
    if child is not None:
        data["member_of"] = [child.parent_id, child.step_id]
        if child.has_input:
            data["input"] = [child.input]
        deadline_ms = child.deadline_ms
    signatures = [
        ser.dumps(spec.signature, what=f"the arguments of member {spec.name!r}") for spec in specs
    ]
    record, steps = chain_rows(
        workflow_id, name, ser.dumps(data, what="a canvas's input"), specs, signatures, now,
        max_recovery_attempts=max_recovery_attempts, deadline_ms=deadline_ms,
        parent_workflow_id=child.parent_id if child is not None else None,
    )  # fmt: skip
    if runtime.store.insert_chain(record, steps):
        return layout, True
    existing = runtime.store.get_workflow(workflow_id)
    if existing is not None and existing.name != name:
        raise ConflictingWorkflowError(workflow_id, existing.name, name)
    return layout, False


def _first_task(spec: ChainStepSpec) -> str:
    """The name of a canvas's first task, inside a nested first member too."""
    while spec.name == NESTED_STEP:
        spec = ChainStepSpec(**spec.signature["canvas"][0][0])
    return spec.name


@dataclass(frozen=True)
class ChildCanvas:
    """Where a nested member's canvas hangs: its parent's step, the input that stage was
    given (if any), and the parent's deadline."""

    parent_id: str
    step_id: int
    has_input: bool = False
    input: Any = None
    deadline_ms: int | None = None


@dataclass(frozen=True)
class MemberResult:
    """How one delivery of a member ended. ``next_input`` is set (with ``stage_done``) for
    the delivery whose checkpoint completed a stage that is not the last: it publishes the
    next stage with it. ``ended`` marks the delivery that ended the canvas: a failure (its
    errbacks once), or the last stage's completion; either ends a nested member's step."""

    outcome: ChainOutcome
    value: Any = None
    error: BaseException | None = None
    delay: float = 0.0
    stage_done: bool = False
    next_input: Any = None
    ended: bool = False


def stage_output(runtime: Runtime, stage: Stage, outputs: Sequence[str]) -> Any:
    """What a stage hands on: its members' outputs in member order (a group), or its one."""
    values = [runtime.serializer.loads(o, what="a member's output") for o in outputs]
    return values if stage.group else values[0]


def run_member(
    runtime: Runtime,
    workflow_id: str,
    step_id: int,
    stage: Stage,
    name: str,
    fn: Callable[..., Any],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
    *,
    policy: RetryPolicy,
    codec: Annotations | None = None,
) -> MemberResult:
    """Lease the member, run one attempt, checkpoint it: two write transactions."""
    if codec is not None:
        body = fn
        fn = lambda *a, **kw: codec.dump_result(body(*a, **kw))  # noqa: E731
    executor_id = runtime.executor_id()
    store = runtime.store
    claimed = store.claim_chain_step(
        workflow_id, step_id, name, executor_id, runtime.stale_before_ms
    )
    if claimed is None:
        found = _not_claimed(runtime, workflow_id, step_id, name)
        return MemberResult(found.outcome, value=found.value)
    attempt, lease = claimed.attempts, claimed.lease_id or ""
    ctx = WorkflowContext(workflow_id, name, executor_id, in_step=True)
    ser = runtime.serializer

    def final(outputs: list[str]) -> str:
        return ser.dumps(stage_output(runtime, stage, outputs))

    with step_scope(StepStatus(step_id, attempt, policy.max_attempts), name, workflow=ctx):
        try:
            value = fn(*args, **kwargs)
            output = ser.dumps(value, what=f"the output of step {name!r}")
            committed, outputs = store.finish_member(
                workflow_id, step_id, lease, output, attempt + 1, stage.step_ids,
                final if stage.last else None,
            )  # fmt: skip
        except Exception as exc:
            return _member_failed(runtime, claimed, lease, policy, attempt, exc)
    if not committed:
        found = _unclaimed(runtime, workflow_id, step_id)
        return MemberResult(found.outcome, value=found.value)
    runtime.events.step_checkpointed(workflow_id=workflow_id, step_id=step_id, name=name)
    if outputs is None or stage.last:
        return MemberResult(ChainOutcome.SUCCESS, value=value, ended=outputs is not None)
    return MemberResult(
        ChainOutcome.SUCCESS, value=value, stage_done=True,
        next_input=stage_output(runtime, stage, outputs),
    )  # fmt: skip


def _member_failed(
    runtime: Runtime,
    claimed: StepRecord,
    lease: str,
    policy: RetryPolicy,
    attempt: int,
    exc: Exception,
) -> MemberResult:
    wid, sid, name = claimed.workflow_id, claimed.step_id, claimed.name
    failed = attempt_failed(runtime, claimed, lease, policy, attempt, exc)
    if failed.delay is not None:
        return MemberResult(ChainOutcome.RETRY, error=exc, delay=failed.delay)
    if failed.final is None:
        return MemberResult(_unclaimed(runtime, wid, sid).outcome)
    held, ended = runtime.store.fail_member(
        wid, sid, lease, attempt, name, failed.attempt_error, failed.final_text
    )
    if not held:
        return MemberResult(_unclaimed(runtime, wid, sid).outcome)
    runtime.events.step_retries_exhausted(
        workflow_id=wid, step_id=sid, name=name, attempt=attempt, exc=failed.final
    )
    return MemberResult(ChainOutcome.ERROR, error=failed.final, ended=ended)


@dataclass(frozen=True)
class OpenStage:
    """The first stage of a canvas not finished: its members still to run (with their
    stored signatures) and the input they take (the previous stage's output)."""

    stage: Stage
    members: list[tuple[StepRecord, dict[str, Any]]]
    input: Any
    has_input: bool


def open_stage(runtime: Runtime, record: WorkflowRecord) -> OpenStage | None:
    """What recovery re-publishes for a canvas: its first unfinished stage's open members."""
    layout = load_layout(runtime, record)
    if layout is None:
        return None
    rows = runtime.store.load_steps(record.workflow_id)
    ser = runtime.serializer
    previous: Stage | None = None
    for stage in layout.stages:
        members = [rows[i] for i in stage.step_ids]
        open_members = [m for m in members if m.status != StepState.SUCCESS]
        if open_members:
            has_input, given = _given_input(runtime, record)
            if previous is not None:
                outputs = [rows[i].output or "" for i in previous.step_ids]
                has_input, given = True, stage_output(runtime, previous, outputs)
            return OpenStage(
                stage, [(m, dict(ser.loads(m.signature))) for m in open_members], given, has_input
            )
        previous = stage
    return None
