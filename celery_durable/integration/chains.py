"""Celery chains made durable: recording at start, running a step, re-publishing from the store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import Task, chain
from celery.canvas import Signature, maybe_signature
from celery.exceptions import Ignore

from ..errors import ConflictingWorkflowError
from ..runtime.chains import (
    ChainStepSpec,
    next_link_looks_lost,
    record_chain,
    run_chain_step,
)
from ..runtime.enqueue_options import EnqueueOptions
from ..runtime.options import current_timeout, take_workflow_id
from ..types import ChainOutcome, WorkflowKind
from .chain_queues import admit_routed, mark_links, route_after
from .publisher import DURABLE_HEADER, STEP_HEADER, durable_headers, send

if TYPE_CHECKING:
    from ..runtime.handle import WorkflowHandle
    from .durable import Durable
    from .tasks import DurableTask

log = logging.getLogger("celery_durable.chains")
STEP_KINDS = (WorkflowKind.STEP, WorkflowKind.TRANSACTION)
# per-signature options that are not kept in the stored signature: they are set on publish,
# or are objects of the publishing call (a group passes its producer to every member)
_TRANSIENT = (
    "chain", "headers", "task_id", "root_id", "parent_id",
    "producer", "connection", "publisher", "router", "result_cls", "add_to_parent",
)  # fmt: skip


def _is_durable_step(app: Any, sig: Any) -> bool:
    task = app.tasks.get(sig.get("task")) if isinstance(sig, dict) else None
    kind = getattr(task, "durable_kind", None)
    return getattr(sig, "subtask_type", None) is None and kind in STEP_KINDS


def _stored(sig: Signature) -> dict[str, Any]:
    data = dict(sig)
    data["options"] = {k: v for k, v in (sig.options or {}).items() if k not in _TRANSIENT}
    data.pop("subtask_type", None)
    return data


def start_chain(
    task: DurableTask,
    args: Any,
    kwargs: Any,
    task_id: str | None,
    options: dict[str, Any],
    enqueue: EnqueueOptions | None = None,
) -> Any:
    """Record a chain whose first link is ``task`` (as Celery's chain publishes it), then send it.

    ``options["chain"]`` holds the later links, last first, as Celery passes them.
    A chain with a non-durable link (or a group) is sent as a plain Celery chain. A first
    link routed to a durable queue waits there for admission (with ``enqueue``'s priority,
    deduplication id and delay), which publishes it (chain_queues.py); its timeout counts
    from the start, as a workflow's.
    """
    # Celery's chain passes copies it made for this call: used as they are, not cloned again
    links: list[Signature] = [
        maybe_signature(s, app=task.app) for s in options.pop("chain", None) or []
    ]
    later = list(reversed(links))
    first_id = task_id or options.get("root_id") or take_workflow_id() or str(uuid.uuid4())
    workflow_id = options.get("root_id") or first_id
    first = task.signature(args, kwargs, {**options, "task_id": first_id})
    chords = task.durable.pending_chords
    if not links and chords.holds(options.get("group_id")):
        return chords.add(task, first)  # a plain chord's header member
    if links and chords.holds(links[0].options.get("group_id")):  # a chain in a chord's header
        return chords.add(task, chain(first, *later), last=links[0])
    place = task.durable.pending_groups.place(options, links)
    if place is not None:  # a plain group's member: held until the group is applied whole
        # the group's producer is released by then: the member sends with its own
        alone = {**{k: v for k, v in options.items() if k != "producer"}, "chain": links}
        task.durable.pending_groups.hold(
            place,
            chain(first, *later) if links else first,
            lambda: start_chain(task, args, kwargs, first_id, alone, enqueue),
        )
        return task.AsyncResult(first_id)
    if not all(_is_durable_step(task.app, s) for s in later):
        from .canvas import canvas_stages, start_canvas  # a group or chord inside the chain

        stages = canvas_stages(task.app, [first, *later])
        if stages is None:  # a task that is not a durable step: Celery's own chain
            return Task.apply_async(task, args, kwargs, task_id=first_id, chain=links, **options)
        start_canvas(task.durable, stages, workflow_id)
        return task.AsyncResult(first_id)
    for i, sig in enumerate(later, start=1):
        sig.options["headers"] = {
            **(sig.options.get("headers") or {}),
            **durable_headers(workflow_id, i),
        }
    queues = mark_links(task.durable, [first, *later])  # (all None: no durable queue)
    specs = [
        ChainStepSpec(
            s.task,
            s.options.get("task_id") or str(uuid.uuid4()),
            _stored(s),
            s.options.get("queue"),
        )
        for s in [first, *later]
    ]
    for spec, sig in zip(specs, [first, *later], strict=True):
        sig.options["task_id"] = spec.task_id
    runtime = task.durable.runtime
    wait_in = queues[0].spec if queues[0] is not None else None
    enqueue = enqueue or EnqueueOptions()
    if wait_in is None and enqueue.deduplication_id is not None:
        raise ValueError("deduplication_id needs the chain's first step in a durable queue")
    if wait_in is None and enqueue.delay_seconds is not None:
        options.setdefault("countdown", enqueue.delay_seconds)
    _record, created = record_chain(
        runtime,
        workflow_id,
        specs,
        max_recovery_attempts=runtime.settings.default_max_recovery_attempts,
        timeout=enqueue.timeout_seconds or current_timeout(),
        wait_in=wait_in,
        enqueue=enqueue,
    )
    if not created or wait_in is not None:
        return task.AsyncResult(first_id)
    headers = {**(options.pop("headers", None) or {}), **durable_headers(workflow_id, 0)}
    options.setdefault("root_id", workflow_id)
    try:
        return send(
            task, args, kwargs, task_id=first_id, chain=links or None, headers=headers, **options
        )
    except BaseException:
        runtime.store.delete_workflow(workflow_id)
        raise


def run_step_on_worker(task: DurableTask, request: Any, args: Any, kwargs: Any) -> Any:
    """Run one delivery of a chain step; returning lets Celery publish the next link."""
    workflow_id = getattr(request, DURABLE_HEADER, None)
    step_id = getattr(request, STEP_HEADER, None)
    runtime = task.durable.runtime
    if workflow_id is None or step_id is None:
        # sent without being recorded (send_task, a mixed chain): record it as a chain of one
        workflow_id, step_id = request.id, 0
        spec = ChainStepSpec(task.name, request.id, _stored(task.signature(args, kwargs)))
        try:
            record_chain(
                runtime, workflow_id, [spec],
                max_recovery_attempts=runtime.settings.default_max_recovery_attempts,
            )  # fmt: skip
        except ConflictingWorkflowError as exc:
            log.error("refused a message for %s[%s]: %s", task.name, request.id, exc)
            raise Ignore() from None
    step_id = int(step_id)
    last = not request.chain
    route = route_after(task.durable, request, workflow_id)
    codec = task.durable_annotations  # arguments from JSON back into their annotated types
    args, kwargs = codec.load_args(tuple(args), dict(kwargs))
    outcome = run_chain_step(
        runtime, workflow_id, step_id, task.name, task.run, args, kwargs,
        policy=task.durable_policy, last=last,
        transaction=task.durable_kind == WorkflowKind.TRANSACTION,
        isolation_level=task.durable_isolation_level, codec=codec, route=route,
    )  # fmt: skip
    if outcome.outcome == ChainOutcome.SUCCESS:
        if route is not None:
            admit_routed(task.durable, route, request)
        return outcome.value
    if (
        outcome.outcome == ChainOutcome.DONE
        and not last
        and (route is None or route.entry is None)  # (else admission sends it)
        and next_link_looks_lost(runtime, workflow_id, step_id)
    ):
        return outcome.value  # Celery sends the next link again
    if outcome.outcome == ChainOutcome.RETRY:
        sig = task.signature_from_request(
            request, args, kwargs, countdown=outcome.delay,
            headers=durable_headers(workflow_id, step_id),
        )  # fmt: skip
        sig.apply_async()
    if outcome.outcome == ChainOutcome.REFUSED:
        log.error(
            "refused a message for %s[%s]: step %s of workflow %r is recorded as another task",
            task.name, request.id, step_id, workflow_id,
        )  # fmt: skip
    if outcome.outcome == ChainOutcome.EXPIRED:
        log.info("workflow %s passed its deadline: cancelled before step %s", workflow_id, step_id)
    if outcome.outcome == ChainOutcome.ERROR and outcome.error is not None:
        raise outcome.error
    raise Ignore()


class DurableChain:
    """``durable.chain(sig1, sig2, ...)``: a Celery chain of durable steps, recorded at start."""

    def __init__(self, durable: Durable, signatures: Sequence[Signature]) -> None:
        if not signatures:
            raise ValueError("durable.chain needs at least one signature")
        for sig in signatures:
            if not _is_durable_step(durable.app, sig):
                raise TypeError(
                    f"durable.chain links must be durable steps or transactions, got {sig!r}"
                )
        self.durable = durable
        self.signatures = list(signatures)  # Celery's chain copies them when it runs

    def start(self, workflow_id: str | None = None, **options: Any) -> WorkflowHandle:
        """Record the chain, publish its first step, and return the workflow's handle."""
        from ..runtime.handle import WorkflowHandle

        workflow_id = workflow_id or take_workflow_id() or str(uuid.uuid4())
        first = self.signatures[0].clone()
        first.set(task_id=workflow_id)
        chain(first, *self.signatures[1:]).apply_async(**options)
        return WorkflowHandle(self.durable.runtime, workflow_id)

    def apply_async(self, *args: Any, **options: Any) -> Any:
        """As Celery's ``chain.apply_async``: returns the last link's AsyncResult."""
        return chain(*self.signatures).apply_async(*args, **options)
