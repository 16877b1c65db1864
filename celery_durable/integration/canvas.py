"""Celery canvases (groups, chords, groups inside chains) of durable steps, made durable.

The canvas is flattened into stages (``runtime/canvas.py``), recorded whole, then its first
stage is published: every member a message of its own, with the ``durable_canvas`` header
naming its stage. No Celery chord machinery is used (no counters, no ``chord_unlock``, no
result backend): the member whose checkpoint completes a stage publishes the next one.
A member that is itself a chain or a chord is flattened the same way into a ``Nested``
member, run as a child canvas (``runtime/nested.py``); a group inside a group is unrolled
into it, as Celery does. A canvas with any task that is not a durable step keeps Celery's
own behaviour.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeAlias

from celery.canvas import Signature, _chain, _chord, group, maybe_signature
from celery.exceptions import Ignore

from ..errors import UnsupportedCanvasError
from ..runtime.canvas import MemberResult, Stage, open_stage, record_canvas, run_member
from ..runtime.chains import ChainStepSpec
from ..runtime.nested import advance, discard, dispatch, nested_spec
from ..runtime.options import current_timeout, take_workflow_id
from ..types import ChainOutcome
from .chains import _is_durable_step, _stored
from .publisher import (
    CANVAS_HEADER,
    DURABLE_HEADER,
    STEP_HEADER,
    durable_headers,
    send_dispatch,
    send_errbacks,
)

if TYPE_CHECKING:
    from ..runtime.handle import WorkflowHandle
    from .durable import Durable
    from .tasks import DurableTask

log = logging.getLogger("celery_durable.canvas")
#: Celery's group and chord plumbing: a durable canvas's signatures are stored without it
_CELERY_CANVAS_OPTIONS = ("chord", "group_id", "group_index", "reply_to")


@dataclass(frozen=True)
class Nested:
    """A member that is a canvas of its own (a chain, a chord), flattened into stages."""

    stages: list[FlatStage]


#: one member of a stage: a single task, or a nested canvas
Member: TypeAlias = Signature | Nested
#: a stage as flattened: its members, and whether it is a group
FlatStage = tuple[list[Member], bool]


def _header(app: Any, sig: Any) -> list[Any]:
    """A chord's header tasks (Celery keeps a list, or a group)."""
    header = maybe_signature(sig.tasks, app=app) if isinstance(sig.tasks, dict) else sig.tasks
    return list(header.tasks if isinstance(header, group) else header)


def _leaves(app: Any, sig: Any) -> list[Any]:
    sig = maybe_signature(sig, app=app)
    if isinstance(sig, _chord):
        return [*(x for t in _header(app, sig) for x in _leaves(app, t)), *_leaves(app, sig.body)]
    if isinstance(sig, (_chain, group)):
        return [x for t in sig.tasks for x in _leaves(app, t)]
    return [sig]


def members(app: Any, tasks: Any, where: str) -> list[Member]:
    """A group's (or a chord header's) members: a group inside is unrolled into it (as
    Celery runs it), a chain or a chord becomes a nested member."""
    found: list[Member] = []
    for task in tasks:
        sig = task if isinstance(task, Nested) else maybe_signature(task, app=app)
        if isinstance(sig, group):
            found.extend(members(app, sig.tasks, where))
        elif isinstance(sig, (_chain, _chord)):
            stages = _flatten(app, sig)
            one_task = len(stages) == 1 and not stages[0][1] and len(stages[0][0]) == 1
            found.append(stages[0][0][0] if one_task else Nested(stages))
        else:
            found.append(sig)  # a single task, or a nested canvas already flattened
    if not found:
        raise UnsupportedCanvasError(f"an empty group ({where}) cannot be made durable")
    return found


def _flatten(app: Any, sig: Any) -> list[FlatStage]:
    sig = maybe_signature(sig, app=app)
    if isinstance(sig, _chain):
        return [stage for t in sig.tasks for stage in _flatten(app, t)]
    if isinstance(sig, _chord):
        header = members(app, _header(app, sig), "chord's header")
        return [(header, True), *_flatten(app, sig.body)]
    if isinstance(sig, group):
        return [(members(app, sig.tasks, "group"), True)]
    return [([sig], False)]


def canvas_stages(app: Any, sigs: Sequence[Any]) -> list[FlatStage] | None:
    """The stages of a canvas made only of durable steps (``sigs`` run one after the other);
    None when a task is not a durable step (Celery's own behaviour then); raises
    ``UnsupportedCanvasError`` for a shape it cannot run (an empty group)."""
    if not all(_is_durable_step(app, leaf) for s in sigs for leaf in _leaves(app, s)):
        return None
    return [stage for s in sigs for stage in _flatten(app, s)]


def start_canvas(
    durable: Durable,
    stages: list[FlatStage],
    workflow_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> tuple[str, list[str]]:
    """Record the canvas, then publish its first stage; returns the workflow id. An id
    that exists publishes nothing. Returns the workflow id and the last stage's task ids.
    Errbacks (``link_error``: given here, or on any member, where Celery puts a chord's or
    a chain's) are the canvas's, each kept once and sent once if it fails."""
    runtime = durable.runtime
    options = dict(options or {})
    errbacks = [dict(e) for e in _as_list(options.pop("link_error", None))]
    specs = _specs(stages, options.get("queue"), errbacks)
    workflow_id = workflow_id or take_workflow_id() or specs[0][0].task_id
    _layout, created = record_canvas(
        runtime, workflow_id, specs, [g for _, g in stages],
        max_recovery_attempts=runtime.settings.default_max_recovery_attempts,
        timeout=current_timeout(), errbacks=errbacks,
    )  # fmt: skip
    last_ids = [spec.task_id for spec in specs[-1]]
    if not created:
        return workflow_id, last_ids
    record = runtime.store.get_workflow(workflow_id)
    found = open_stage(runtime, record) if record is not None else None
    try:
        if found is not None:
            out = dispatch(runtime, workflow_id, found)
            send_dispatch(durable.app, runtime, durable.send_task, out, declare=False)
    except BaseException:
        discard(runtime, workflow_id)
        raise
    return workflow_id, last_ids


def _specs(
    stages: list[FlatStage], queue: str | None, errbacks: list[dict[str, Any]]
) -> list[list[ChainStepSpec]]:
    """Each member as recorded (a nested one with its own stages inside); the members'
    errbacks join the canvas's (a chain's is on every task: kept once)."""
    specs: list[list[ChainStepSpec]] = []
    for sigs, _group in stages:
        row = []
        for sig in sigs:
            if isinstance(sig, Nested):
                inner = _specs(sig.stages, queue, errbacks)
                row.append(nested_spec(inner, [g for _, g in sig.stages], str(uuid.uuid4())))
                continue
            stored = _stored(sig)
            for key in _CELERY_CANVAS_OPTIONS:
                stored["options"].pop(key, None)
            for errback in _as_list(stored["options"].pop("link_error", None)):
                if dict(errback) not in errbacks:
                    errbacks.append(dict(errback))
            if queue and not stored["options"].get("queue"):
                stored["options"]["queue"] = queue
            task_id = sig.options.get("task_id") or str(uuid.uuid4())
            row.append(ChainStepSpec(sig.task, task_id, stored, stored["options"].get("queue")))
        specs.append(row)
    return specs


def _as_list(value: Any) -> list[Any]:
    if value is None:
        return []
    return list(value) if isinstance(value, (list, tuple)) else [value]


def run_member_on_worker(task: DurableTask, request: Any, args: Any, kwargs: Any) -> Any:
    """Run one delivery of a canvas member; publish the next stage if it completed this one."""
    durable = task.durable
    runtime = durable.runtime
    workflow_id = getattr(request, DURABLE_HEADER)
    step_id = int(getattr(request, STEP_HEADER))
    stage = Stage.from_header(getattr(request, CANVAS_HEADER))
    codec = task.durable_annotations
    args, kwargs = codec.load_args(tuple(args), dict(kwargs))
    outcome: MemberResult = run_member(
        runtime, workflow_id, step_id, stage, task.name, task.run, args, kwargs,
        policy=task.durable_policy, codec=codec,
    )  # fmt: skip
    if outcome.outcome == ChainOutcome.SUCCESS:
        if outcome.stage_done or outcome.ended:  # the next stage, or a nested canvas's parent
            _advance(durable, workflow_id, request.id)
        return outcome.value
    if outcome.outcome == ChainOutcome.RETRY:
        headers = {**durable_headers(workflow_id, step_id), CANVAS_HEADER: stage.header()}
        sig = task.signature_from_request(
            request, args, kwargs, countdown=outcome.delay, headers=headers
        )
        sig.apply_async()
    if outcome.outcome == ChainOutcome.ERROR and outcome.error is not None:
        if outcome.ended:
            send_errbacks(
                runtime, durable.send_task, runtime.store.get_workflow(workflow_id), request.id
            )
            _advance(durable, workflow_id, request.id)
        raise outcome.error
    if outcome.outcome == ChainOutcome.REFUSED:
        log.error(
            "refused a message for %s[%s]: member %s of canvas %r is recorded as another task",
            task.name, request.id, step_id, workflow_id,
        )  # fmt: skip
    raise Ignore()


def _advance(durable: Durable, workflow_id: str, task_id: str) -> None:
    """Send what this delivery's decision opened: the next stage, or (its canvas ended) the
    parent's, when a nested canvas's end completes its parent's stage."""
    runtime = durable.runtime
    record = runtime.store.get_workflow(workflow_id)
    if record is not None:
        out = advance(runtime, record, task_id)
        send_dispatch(durable.app, runtime, durable.send_task, out, declare=False)


class DurableCanvas:
    """``durable.group(...)``, ``durable.chord(...)``: a canvas of durable steps, recorded
    whole at start. ``start()`` returns the workflow's handle."""

    def __init__(self, durable: Durable, sig: Signature) -> None:
        stages = canvas_stages(durable.app, [sig])
        if stages is None:
            raise TypeError(f"durable canvases are made of durable steps only, got {sig!r}")
        self.durable = durable
        self.sig = sig
        self.stages = stages

    def start(self, workflow_id: str | None = None, **options: Any) -> WorkflowHandle:
        from ..runtime.handle import WorkflowHandle

        workflow_id = workflow_id or take_workflow_id() or str(uuid.uuid4())
        started, _ = start_canvas(self.durable, self._fresh(), workflow_id, options)
        return WorkflowHandle(self.durable.runtime, started)

    def apply_async(self, **options: Any) -> Any:
        """Start it (the workflow id is its first member's task id, unless ``task_id`` or
        ``SetWorkflowID`` says otherwise); returns the Celery result of its last stage: the
        callback's ``AsyncResult``, or a group's ``GroupResult``."""
        workflow_id = options.pop("task_id", None)
        _, last_ids = start_canvas(self.durable, self._fresh(), workflow_id, options)
        app = self.durable.app
        if self.stages[-1][1]:
            return app.GroupResult(str(uuid.uuid4()), [app.AsyncResult(i) for i in last_ids])
        return app.AsyncResult(last_ids[0])

    def _fresh(self) -> list[FlatStage]:
        """The stages with new task ids: each start is a canvas of its own."""
        return _fresh(self.stages)

    def delay(self) -> Any:
        return self.apply_async()


def _fresh(stages: list[FlatStage]) -> list[FlatStage]:
    def member(m: Member) -> Member:
        if isinstance(m, Nested):
            return Nested(_fresh(m.stages))
        return m.clone(task_id=str(uuid.uuid4()))

    return [([member(m) for m in sigs], g) for sigs, g in stages]
