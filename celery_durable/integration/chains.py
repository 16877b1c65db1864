"""Celery chains made durable: recording at start, running a step, re-publishing from the store."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from celery import Task, chain, signature
from celery.canvas import Signature, maybe_signature
from celery.exceptions import Ignore
from kombu.entity import Queue

from ..errors import ConflictingWorkflowError
from ..runtime.chains import (
    ChainStepSpec,
    next_link_looks_lost,
    open_step,
    record_chain,
    run_chain_step,
)
from ..runtime.options import current_timeout, take_workflow_id
from ..types import ChainOutcome, WorkflowKind
from .signals import step_checkpointed, step_retries_exhausted, step_retrying

if TYPE_CHECKING:
    from ..runtime.handle import WorkflowHandle
    from .durable import Durable
    from .tasks import DurableTask

log = logging.getLogger("celery_durable.chains")
DURABLE_HEADER = "durable_workflow"
STEP_HEADER = "durable_step"
STEP_KINDS = (WorkflowKind.STEP, WorkflowKind.TRANSACTION)
# per-signature options that are not kept in the stored signature: they are set on publish
_TRANSIENT = ("chain", "headers", "task_id", "root_id", "parent_id")


def durable_headers(workflow_id: str, step_id: int | None = None) -> dict[str, Any]:
    headers: dict[str, Any] = {DURABLE_HEADER: workflow_id}
    if step_id is not None:
        headers[STEP_HEADER] = step_id
    return headers


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
    task: DurableTask, args: Any, kwargs: Any, task_id: str | None, options: dict[str, Any]
) -> Any:
    """Record a chain whose first link is ``task`` (as Celery's chain publishes it), then send it.

    ``options["chain"]`` holds the later links, last first, as Celery passes them.
    A chain with a non-durable link (or a group) is sent as a plain Celery chain.
    """
    # Celery's chain passes copies it made for this call: used as they are, not cloned again
    links: list[Signature] = [
        maybe_signature(s, app=task.app) for s in options.pop("chain", None) or []
    ]
    later = list(reversed(links))
    first_id = task_id or options.get("root_id") or take_workflow_id() or str(uuid.uuid4())
    workflow_id = options.get("root_id") or first_id
    first = task.signature(args, kwargs, {**options, "task_id": first_id})
    if not all(_is_durable_step(task.app, s) for s in later):
        return Task.apply_async(task, args, kwargs, task_id=first_id, chain=links, **options)
    for i, sig in enumerate(later, start=1):
        sig.options["headers"] = {
            **(sig.options.get("headers") or {}),
            **durable_headers(workflow_id, i),
        }
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
    _record, created = record_chain(
        runtime,
        workflow_id,
        specs,
        max_recovery_attempts=task.durable.default_max_recovery_attempts,
        timeout=current_timeout(),
    )
    if not created:
        return task.AsyncResult(first_id)
    headers = {**(options.pop("headers", None) or {}), **durable_headers(workflow_id, 0)}
    options.setdefault("root_id", workflow_id)
    try:
        return Task.apply_async(
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
                max_recovery_attempts=task.durable.default_max_recovery_attempts,
            )  # fmt: skip
        except ConflictingWorkflowError as exc:
            log.error("refused a message for %s[%s]: %s", task.name, request.id, exc)
            raise Ignore() from None
    step_id = int(step_id)
    last = not request.chain
    outcome = run_chain_step(
        runtime, workflow_id, step_id, task.name, task.run, tuple(args), dict(kwargs),
        policy=task.durable_policy, last=last,
        transaction=task.durable_kind == WorkflowKind.TRANSACTION,
        isolation_level=task.durable_isolation_level,
    )  # fmt: skip
    if outcome.outcome == ChainOutcome.SUCCESS:
        step_checkpointed.send(sender=task, workflow_id=workflow_id, step_id=step_id)
        return outcome.value
    if (
        outcome.outcome == ChainOutcome.DONE
        and not last
        and next_link_looks_lost(runtime, workflow_id, step_id)
    ):
        return outcome.value  # Celery sends the next link again
    if outcome.outcome == ChainOutcome.RETRY:
        step_retrying.send(
            sender=task, workflow_id=workflow_id, step_id=step_id,
            attempt=outcome.attempt, delay=outcome.delay, exc=outcome.error,
        )  # fmt: skip
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
        step_retries_exhausted.send(
            sender=task, workflow_id=workflow_id, step_id=step_id, exc=outcome.error
        )
        raise outcome.error
    raise Ignore()


def publish_open_step(durable: Durable, workflow_id: str) -> bool:
    """Send the first unfinished step of a recorded chain again, built from the store alone.

    A step leased by a live worker keeps its lease (the new message backs off). Every link
    keeps its recorded task id, so the AsyncResults Celery handed out at start still resolve.
    """
    found = open_step(durable.runtime, workflow_id)
    if found is None:
        return False
    step, prev_output, rest = found
    stored = dict(durable.runtime.serializer.loads(step.signature))
    options = dict(stored.get("options") or {})
    args = list(stored.get("args") or [])
    if step.step_id > 0 and not stored.get("immutable"):
        args = [prev_output, *args]
    links = []
    for offset, (data, task_id) in enumerate(rest, start=step.step_id + 1):
        sig = signature(data, app=durable.app)
        sig.options["headers"] = durable_headers(workflow_id, offset)
        if task_id:
            sig.options["task_id"] = task_id
        links.append(sig)
    options["declare"] = declare_for(durable.app, stored["task"], options)
    durable.app.send_task(
        stored["task"], args, stored.get("kwargs") or {},
        task_id=step.task_id, root_id=workflow_id,
        chain=list(reversed(links)) or None,
        headers=durable_headers(workflow_id, step.step_id), **options,
    )  # fmt: skip
    return True


def declare_for(app: Any, name: str, options: dict[str, Any]) -> list[Queue]:
    """The queue a publish goes to, so it is declared again (Redis may have lost its binding)."""
    queue = options.get("queue")
    if queue is None:
        route = app.amqp.router.route(dict(options), name, (), {})
        queue = route.get("queue")
    if isinstance(queue, Queue):
        return [queue]
    if isinstance(queue, str):
        known = app.amqp.queues
        return [known[queue] if queue in known else Queue(queue)]  # type: ignore[no-untyped-call]
    return []


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
