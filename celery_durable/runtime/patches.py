"""Safe code upgrades: ``durable.patch(name)`` and ``durable.deprecate_patch(name)``.

A run reaching ``patch`` for the first time records a marker step (``durable.patch:name``)
and takes the new path (True). A run replaying past that point finds there the step the
old code recorded instead: ``patch`` then takes no step id and returns False, so the old
path replays as it ran, without ``NonDeterministicWorkflowError``. Once no run recorded
before the patch is left, ``deprecate_patch`` replaces it: it skips a recorded marker and
records nothing; once no run with a marker is left, it can go too.
"""

from __future__ import annotations

from ..types import StepRecord, StepState
from .context import WorkflowContext, current_workflow
from .runtime import Runtime
from .steps import check_running, recorded_elsewhere

PATCH_STEP = "durable.patch:"  # + the patch's name


def _context(what: str) -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None or ctx.in_step:
        raise RuntimeError(f"durable.{what} is only available in a workflow, outside its steps")
    return ctx


def patch(runtime: Runtime, name: str) -> bool:
    """True on the new path (marker recorded, or replayed), False on a run recorded
    before the patch existed."""
    ctx = _context("patch")
    marker = PATCH_STEP + name
    step_id = ctx.next_step
    recorded = ctx.replay.get(step_id)
    if recorded is not None:
        if recorded.name != marker:
            return False  # this run passed here under the old code
        ctx.next_step_id()
        return True
    check_running(runtime, ctx)
    now = runtime.clock.now_ms()
    record = StepRecord(
        workflow_id=ctx.workflow_id,
        step_id=step_id,
        name=marker,
        status=StepState.SUCCESS,
        output="true",
        attempts=1,
        started_at_ms=now,
        completed_at_ms=now,
    )
    if not runtime.store.record_step(record):  # another run of it recorded this step
        stored = runtime.store.get_step(ctx.workflow_id, step_id)
        if stored is None:
            recorded_elsewhere(runtime, ctx, step_id)  # raises: cancelled or timed out
        if stored is None or stored.name != marker:
            return False
    ctx.confirmed_ms = now
    ctx.next_step_id()
    return True


def deprecate_patch(runtime: Runtime, name: str) -> bool:
    """Always True (the new path); a marker recorded by ``patch`` is skipped."""
    ctx = _context("deprecate_patch")
    recorded = ctx.replay.get(ctx.next_step)
    if recorded is not None and recorded.name == PATCH_STEP + name:
        ctx.next_step_id()
    return True
