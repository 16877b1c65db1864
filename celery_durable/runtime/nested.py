"""Nested canvases: a chain or a chord in a member's place (issue 11), run as a child canvas.

A member that is itself a canvas (``group(chain(a, b), c)``, ``chord([chord(...), c], cb)``)
is one step of its parent, named ``NESTED_STEP``, whose signature holds the whole nested
canvas: so the outer canvas is recorded whole, before anything is published. When its
stage opens, the step records its child canvas, ``nested_canvas_id(parent, step)``, linked
to its parent, and stays PENDING while the child runs. The delivery that ends the child
completes the parent's step with the child's output (or fails it with the child's error)
through the decision every member goes through (``finish_member``/``fail_member``, under
the parent's row lock), so the parent's next stage is published once and its errbacks are
sent once. Deeper nesting is the same step one level down.

Recovery needs no state of its own: re-opening the parent's stage (the sweep, resume) finds
the child by its id. A child that has ended finishes the step (a crash between the child's
end and the step's completion); a running one has its own open stage sent again.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from ..types import (
    ACTIVE_STATUSES,
    NESTED_STEP,
    ResumeOutcome,
    StepRecord,
    StepState,
    WorkflowRecord,
    WorkflowState,
    nested_canvas_id,
)
from .canvas import (
    ChildCanvas,
    OpenStage,
    load_layout,
    member_of,
    open_stage,
    record_canvas,
    stage_output,
)
from .chains import ChainStepSpec
from .children import outcome_of
from .runtime import Runtime


def nested_spec(
    stages: Sequence[Sequence[ChainStepSpec]], groups: Sequence[bool], task_id: str
) -> ChainStepSpec:
    """A nested canvas as one member of its parent: its stages are kept in the signature."""
    data = {"canvas": [[asdict(s) for s in stage] for stage in stages], "groups": list(groups)}
    return ChainStepSpec(NESTED_STEP, task_id, data, stages[0][0].queue)


def is_nested(step: StepRecord) -> bool:
    return step.name == NESTED_STEP


@dataclass
class Dispatch:
    """What the caller sends after a decision: the task members of the stages that opened
    (by workflow id), and the canvases that ended ERROR here, each with the task id its
    errbacks name."""

    stages: list[tuple[str, OpenStage]] = field(default_factory=list)
    failed: list[tuple[WorkflowRecord, str]] = field(default_factory=list)


def dispatch(
    runtime: Runtime, workflow_id: str, found: OpenStage, out: Dispatch | None = None
) -> Dispatch:
    """An open stage's members to send: a task as it is; a nested member starts its child
    canvas (whose first stage is dispatched in turn), or is finished from it if it ended."""
    out = out if out is not None else Dispatch()
    tasks = [(step, data) for step, data in found.members if not is_nested(step)]
    if tasks:
        out.stages.append((workflow_id, replace(found, members=tasks)))
    for step, data in found.members:
        if is_nested(step):
            _open_child(runtime, workflow_id, found, step, data, out)
    return out


def advance(
    runtime: Runtime, record: WorkflowRecord, failed_task_id: str = "", out: Dispatch | None = None
) -> Dispatch:
    """After a member's decision: an active canvas's open stage; an ended one's parent step
    finished from it (``failed_task_id``: the task its parent's errbacks name)."""
    out = out if out is not None else Dispatch()
    if record.status in ACTIVE_STATUSES:
        found = open_stage(runtime, record)
        if found is not None:
            dispatch(runtime, record.workflow_id, found, out)
    else:
        child_ended(runtime, record, out, failed_task_id)
    return out


def _open_child(
    runtime: Runtime,
    workflow_id: str,
    found: OpenStage,
    step: StepRecord,
    data: dict[str, Any],
    out: Dispatch,
) -> None:
    child_id = nested_canvas_id(workflow_id, step.step_id)
    store = runtime.store
    child = store.get_workflow(child_id)
    if child is None:
        parent = store.get_workflow(workflow_id)
        if parent is None or parent.status not in ACTIVE_STATUSES:
            return
        stages = [[ChainStepSpec(**spec) for spec in stage] for stage in data["canvas"]]
        if store.find_step_by_task_id(stages[0][0].task_id) is not None:
            # a fork's copy of the member: its task ids are its source's child's
            stages = [[replace(s, task_id=str(uuid.uuid4())) for s in row] for row in stages]
        link = ChildCanvas(
            workflow_id, step.step_id, found.has_input, found.input, parent.deadline_ms
        )
        record_canvas(
            runtime, child_id, stages, [bool(g) for g in data["groups"]],
            max_recovery_attempts=parent.max_recovery_attempts, child=link,
        )  # fmt: skip
        child = store.get_workflow(child_id)
    if child is not None:
        advance(runtime, child, step.task_id or "", out)


def child_ended(
    runtime: Runtime, child: WorkflowRecord, out: Dispatch, failed_task_id: str = ""
) -> None:
    """A child canvas ended: its parent's step is finished with the child's output, or fails
    with its error, as any member's completion; a parent that ends so passes it up."""
    link = member_of(runtime, child)
    store = runtime.store
    parent = store.get_workflow(link[0]) if link is not None else None
    layout = load_layout(runtime, parent) if parent is not None else None
    if link is None or parent is None or layout is None:
        return
    parent_id, step_id = link
    stage = layout.stages[layout.position(step_id)[0]]
    claimed = store.claim_chain_step(
        parent_id, step_id, NESTED_STEP, runtime.executor_id(), runtime.stale_before_ms
    )
    if claimed is None:  # finished already, finishing under a live lease, or the parent ended
        return
    lease, ser = claimed.lease_id or "", runtime.serializer
    if child.status != WorkflowState.SUCCESS:
        error = str(outcome_of(runtime, child)["error"])
        held, ended = store.fail_member(
            parent_id, step_id, lease, claimed.attempts, NESTED_STEP, error, error
        )
        if held and ended and (record := store.get_workflow(parent_id)) is not None:
            out.failed.append((record, failed_task_id))
            child_ended(runtime, record, out, failed_task_id)
        return

    def final(outputs: list[str]) -> str:
        return ser.dumps(stage_output(runtime, stage, outputs))

    committed, outputs = store.finish_member(
        parent_id, step_id, lease, child.output or ser.dumps(None), claimed.attempts + 1,
        stage.step_ids, final if stage.last else None,
    )  # fmt: skip
    if not committed:
        return
    runtime.events.step_checkpointed(workflow_id=parent_id, step_id=step_id, name=NESTED_STEP)
    if outputs is not None and (record := store.get_workflow(parent_id)) is not None:
        advance(runtime, record, failed_task_id, out)


def discard(runtime: Runtime, workflow_id: str) -> None:
    """Delete a canvas whose first publish failed, with the child canvases it started."""
    for step in runtime.store.load_steps(workflow_id).values():
        if is_nested(step):
            discard(runtime, nested_canvas_id(workflow_id, step.step_id))
    runtime.store.delete_workflow(workflow_id)


def resume_children(runtime: Runtime, workflow_id: str) -> None:
    """A resumed canvas's nested members whose child failed (or was cancelled) resume that
    child too, from its own failed step, before the parent is sent again."""
    store = runtime.store
    for step in store.load_steps(workflow_id).values():
        if not is_nested(step) or step.status == StepState.SUCCESS:
            continue
        child_id = nested_canvas_id(workflow_id, step.step_id)
        child = store.get_workflow(child_id)
        if child is None or child.status in ACTIVE_STATUSES:
            continue
        if child.status == WorkflowState.SUCCESS:
            continue
        found = store.resume_workflow(child_id, runtime.stale_before_ms)
        if found is not None and found[1] is ResumeOutcome.RESUMED:
            resume_children(runtime, child_id)


def cancel_children(runtime: Runtime, workflow_id: str) -> None:
    """A cancelled canvas's running child canvases are cancelled with it."""
    store = runtime.store
    for step in store.load_steps(workflow_id).values():
        if is_nested(step) and step.status != StepState.SUCCESS:
            child_id = nested_canvas_id(workflow_id, step.step_id)
            if store.set_status(
                child_id,
                WorkflowState.CANCELLED,
                only_from=list(ACTIVE_STATUSES),
                keep_owner=True,
            ):
                cancel_children(runtime, child_id)
