"""The Celery Task base class behind @durable.workflow, @durable.step and @durable.transaction."""

from __future__ import annotations

import logging
import uuid
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.exceptions import Ignore

from ..annotations import Annotations
from ..policy import RetryPolicy
from ..runtime.children import start_child
from ..runtime.context import WorkflowContext, current_workflow
from ..runtime.options import current_timeout, take_workflow_id
from ..runtime.queues import enqueue
from ..runtime.steps import run_step, run_transaction
from ..runtime.workflows import StartRequest, execute, record_start, run_direct
from ..types import RunOutcome, WorkflowKind
from .canvas import run_member_on_worker
from .chains import run_step_on_worker, start_chain
from .publisher import CANVAS_HEADER, DURABLE_HEADER, send
from .queues import FlowStart, take_flow_options

if TYPE_CHECKING:
    from .durable import Durable

log = logging.getLogger("celery_durable.tasks")


class DurableTask(Task):  # type: ignore[misc]
    """A Celery task whose executions are recorded in the durable store.

    Called directly it runs durably in this process (a step inside a workflow is
    checkpointed); ``.delay()``/``.apply_async()`` record the workflow, then publish it.
    """

    durable: Durable
    durable_kind: WorkflowKind = WorkflowKind.WORKFLOW
    durable_policy: RetryPolicy = RetryPolicy()
    durable_isolation_level: str | None = None
    durable_max_recovery_attempts: int | None = None
    durable_validate_args: bool = False

    # arguments and results ----------------------------------------------
    @property
    def durable_annotations(self) -> Annotations:
        """The function's type hints (read once): validation, and annotated values through
        JSON as their own types."""
        found: Annotations | None = self.__dict__.get("_durable_annotations")
        if found is None:
            found = self.__dict__["_durable_annotations"] = Annotations(self.run)
        return found

    def durable_inputs(self, args: Any, kwargs: Any) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """In the caller: the arguments validated (``validate_args``), then as JSON-able
        data; invalid ones raise ``pydantic.ValidationError`` before anything is written."""
        args, kwargs = tuple(args or ()), dict(kwargs or {})
        annotations = self.durable_annotations
        if self.durable_validate_args:
            args, kwargs = annotations.validate(args, kwargs)
        return annotations.dump_args(args, kwargs)

    def start_request(
        self, workflow_id: str, args: Any, kwargs: Any, queue: str | None = None
    ) -> StartRequest:
        return StartRequest(
            workflow_id=workflow_id,
            name=self.name,
            args=tuple(args or ()),
            kwargs=dict(kwargs or {}),
            kind=self.durable_kind,
            queue=queue,
            max_recovery_attempts=(
                self.durable.runtime.settings.default_max_recovery_attempts
                if self.durable_max_recovery_attempts == -1
                else self.durable_max_recovery_attempts
            ),
            timeout=current_timeout(),
        )

    # calling ------------------------------------------------------------
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        request = self.request_stack.top
        if request is None or request.called_directly:
            return self._call_directly(args, kwargs)
        return self._run_on_worker(request, args, kwargs)

    def _call_directly(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        runtime = self.durable.runtime
        codec = self.durable_annotations
        if self.durable_validate_args:
            args, kwargs = codec.validate(args, kwargs)
        if self.durable_kind == WorkflowKind.STEP:
            policy = self.durable_policy
            return run_step(runtime, self.name, self.run, args, kwargs, policy, codec)
        if self.durable_kind == WorkflowKind.TRANSACTION:
            isolation, policy = self.durable_isolation_level, self.durable_policy
            return run_transaction(
                runtime, self.name, self.run, args, kwargs, isolation, codec, policy
            )
        workflow_id = take_workflow_id()
        parent = current_workflow()
        stored_args, stored_kwargs = codec.dump_args(args, kwargs)
        request = self.start_request(workflow_id or str(uuid.uuid4()), stored_args, stored_kwargs)
        if parent is not None and not parent.in_step:
            # a child run here: its id follows from the parent's, so a replay finds it
            child_id = workflow_id or f"{parent.workflow_id}-{parent.next_step_id()}"
            request = replace(
                request,
                workflow_id=child_id,
                parent_workflow_id=parent.workflow_id,
                parent_deadline_ms=parent.deadline_ms,
            )
        return run_direct(runtime, request, self.run, codec)

    def _run_on_worker(self, request: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if self.durable_kind != WorkflowKind.WORKFLOW:
            if getattr(request, CANVAS_HEADER, None) is not None:
                return run_member_on_worker(self, request, args, kwargs)
            return run_step_on_worker(self, request, args, kwargs)
        runtime = self.durable.runtime
        workflow_id: str = request.id
        codec = self.durable_annotations
        outcome = execute(runtime, workflow_id, self.name, self.run, can_suspend=True, codec=codec)
        if outcome.state == RunOutcome.SKIPPED and outcome.record is None:
            # published without a row (send_task, apply()): record it, then run it
            record_start(runtime, self.start_request(workflow_id, args, kwargs))
            outcome = execute(
                runtime, workflow_id, self.name, self.run, can_suspend=True, codec=codec
            )
        if (
            outcome.state == RunOutcome.SKIPPED
            and outcome.record
            and outcome.record.name != self.name
        ):
            # a message runs only as what it names: never another workflow's record
            log.error(
                "refused a message for %s[%s]: workflow %r is recorded as %r",
                self.name, workflow_id, workflow_id, outcome.record.name,
            )  # fmt: skip
        if outcome.state == RunOutcome.SUCCESS:
            return codec.dump_result(outcome.value)  # Celery's result backend takes JSON
        if outcome.state == RunOutcome.ERROR and outcome.error is not None:
            raise outcome.error
        if outcome.state == RunOutcome.SUSPENDED and outcome.delay is not None:
            queue = outcome.record.queue if outcome.record else None
            self.publish(workflow_id, args, kwargs, countdown=outcome.delay, queue=queue)
        # suspended, or a duplicate delivery of a workflow someone else runs or ran
        raise Ignore()

    # publishing ---------------------------------------------------------
    def publish(self, workflow_id: str, args: Any, kwargs: Any, **options: Any) -> Any:
        """Send this workflow's message as Celery would, without recording anything."""
        headers = dict(options.pop("headers", None) or {})
        headers[DURABLE_HEADER] = workflow_id
        if options.get("queue") is None:
            options.pop("queue", None)
        return send(self, args, kwargs, task_id=workflow_id, headers=headers, **options)

    def apply_async(
        self,
        args: Any = None,
        kwargs: Any = None,
        task_id: str | None = None,
        **options: Any,
    ) -> Any:
        """Record the workflow (ENQUEUED), then publish it; an existing id publishes nothing.

        A step or transaction starts a durable chain (of one, or the chain Celery passes).
        A message for a workflow already recorded (a chain link, a retry) is only sent.
        """
        if DURABLE_HEADER in (options.get("headers") or {}):
            return send(self, args, kwargs, task_id=task_id, **options)
        flow = take_flow_options(self.durable, options)  # durable queues (queues.py)
        args, kwargs = self.durable_inputs(args, kwargs)
        parent = current_workflow()
        if parent is not None and not parent.in_step:
            return self._start_child(parent, args, kwargs, task_id, options, flow)
        if self.durable_kind != WorkflowKind.WORKFLOW:
            return start_chain(self, args, kwargs, task_id, options, flow.options)
        runtime = self.durable.runtime
        workflow_id = task_id or take_workflow_id() or str(uuid.uuid4())
        request = self.start_request(workflow_id, args, kwargs, queue=options.get("queue"))
        if flow.spec is not None:  # waits in the store until admitted
            enqueue(runtime, request, flow.spec, flow.options)
            return self.AsyncResult(workflow_id)
        if flow.options.timeout_seconds is not None:
            request = replace(request, timeout=flow.options.timeout_seconds)
        if flow.options.delay_seconds is not None:
            options.setdefault("countdown", flow.options.delay_seconds)
        _record, created = record_start(runtime, request)
        if not created:
            return self.AsyncResult(workflow_id)
        try:
            return self.publish(workflow_id, args, kwargs, **options)
        except BaseException:
            runtime.store.delete_workflow(workflow_id)
            raise

    def _start_child(
        self,
        parent: WorkflowContext,
        args: Any,
        kwargs: Any,
        task_id: str | None,
        options: Any,
        flow: FlowStart,
    ) -> Any:
        """Inside a workflow: start this workflow as its child, recorded as its step (in a
        durable queue: waiting for admission, as a top-level start would)."""
        if self.durable_kind != WorkflowKind.WORKFLOW:
            raise TypeError(
                f"{self.name} is a durable step: inside a workflow, call it to run it as a "
                "checkpointed step; start_workflow/delay/apply_async start child workflows"
            )
        queue = options.get("queue")
        timeout = flow.options.timeout_seconds
        if flow.spec is None and flow.options.delay_seconds is not None:
            options.setdefault("countdown", flow.options.delay_seconds)

        def request(workflow_id: str) -> StartRequest:
            found = self.start_request(workflow_id, args, kwargs, queue=queue)
            return found if timeout is None else replace(found, timeout=timeout)

        child_id = start_child(
            self.durable.runtime,
            parent,
            self.name,
            task_id or take_workflow_id(),
            request,
            lambda request: self.publish(request.workflow_id, args, kwargs, **options),
            flow.spec,
            flow.options,
        )
        return self.AsyncResult(child_id)
