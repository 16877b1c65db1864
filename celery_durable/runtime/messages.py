"""Messages and events: ``durable.send``/``recv``, ``durable.set_event``/``get_event``.

Inside a workflow each is a recorded step: a replay does not send again, and gets the same
message, event value or ``None`` at once. ``recv`` and ``get_event`` take two step ids:
the first records their deadline (so a replay waits only what is left), the second their
result; a message is consumed in the transaction that records it (exactly once).

A wait longer than ``durable_max_inline_retry_wait`` on a worker parks the workflow (its
slot given back): the store records what it waits for, a send (or ``set_event``) makes it
due and the sender publishes it, and its own message, counted down to the deadline, brings
it back at the timeout; the sweep re-publishes a wake-up lost between commit and publish.
Shorter waits, and waits in a direct call, poll the store with backoff.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..errors import NonExistentWorkflow, WorkflowCancelledError
from ..store.messages_interface import (
    NO_TOPIC,
    MessageRecord,
    ParkOutcome,
    ReceiveOutcome,
    SendOutcome,
    WaitKind,
)
from ..types import StepRecord, StepState
from .context import SuspendWorkflow, WorkflowContext, current_workflow
from .runtime import Runtime, log
from .steps import check_running, recorded_elsewhere, replayed, wait

__all__ = [
    "MessageRecord",
    "get_event",
    "list_events",
    "list_messages",
    "recv",
    "send",
    "set_event",
]

SEND_STEP = "durable.send"
RECV_STEP = "durable.recv"
SET_EVENT_STEP = "durable.set_event"
GET_EVENT_STEP = "durable.get_event"
DEADLINE = ".deadline"  # + RECV_STEP or GET_EVENT_STEP: the step recording the deadline
#: ``poll()`` of a wait: (found, value)
Poll = Callable[[], tuple[bool, Any]]


def _in_workflow(what: str) -> WorkflowContext:
    ctx = current_workflow()
    if ctx is None or ctx.in_step:
        raise RuntimeError(f"durable.{what} is only available in a workflow, outside its steps")
    return ctx


def _step(
    runtime: Runtime, ctx: WorkflowContext, step_id: int, name: str, output: str
) -> StepRecord:
    now = runtime.clock.now_ms()
    return StepRecord(
        workflow_id=ctx.workflow_id,
        step_id=step_id,
        name=name,
        status=StepState.SUCCESS,
        output=output,
        attempts=1,
        started_at_ms=now,
        completed_at_ms=now,
    )


def _record(runtime: Runtime, ctx: WorkflowContext, step_id: int, name: str, output: str) -> Any:
    """Checkpoint ``output`` (serialized text); the value that counts (another run's, if
    it recorded this step first)."""
    record = _step(runtime, ctx, step_id, name, output)
    if not runtime.store.record_step(record):
        return recorded_elsewhere(runtime, ctx, step_id)
    ctx.confirmed_ms = record.completed_at_ms or 0
    return runtime.serializer.loads(output, what=f"step {name!r}")


def _wake(runtime: Runtime, workflow_ids: list[str]) -> None:
    """Publish workflows a send or an event made due (due and ENQUEUED, the sweep sends a
    lost one again)."""
    for workflow_id in workflow_ids:
        record = runtime.store.get_workflow(workflow_id)
        if record is None or runtime.publish is None:
            continue
        try:
            runtime.publish(record)
        except Exception as exc:
            log.warning("could not wake workflow %s: %s", workflow_id, exc)


def send(
    runtime: Runtime,
    workflow_id: str,
    message: Any,
    topic: str | None = None,
    idempotency_key: str | None = None,
) -> None:
    """Send ``message`` to ``workflow_id`` on ``topic``; a repeated ``idempotency_key`` is a
    no-op. Inside a workflow, a recorded step (a replay sends nothing)."""
    ctx = current_workflow()
    if ctx is not None and ctx.in_step:
        ctx = None  # nested in a step: the outer step is the unit of replay
    text = runtime.serializer.dumps(message, what="a message")
    now = runtime.clock.now_ms()
    record = MessageRecord(workflow_id, topic or NO_TOPIC, text, now, idempotency_key)
    checkpoint = None
    if ctx is not None:
        step_id = ctx.next_step_id()
        if replayed(ctx, step_id, SEND_STEP) is not None:
            return
        check_running(runtime, ctx)
        output = runtime.serializer.dumps({"to": workflow_id, "topic": topic})
        checkpoint = _step(runtime, ctx, step_id, SEND_STEP, output)
    outcome, woken = runtime.store.send_message(record, checkpoint)
    if outcome == SendOutcome.NO_WORKFLOW:
        raise NonExistentWorkflow(workflow_id)
    if ctx is not None and checkpoint is not None:
        if outcome == SendOutcome.REFUSED:
            recorded_elsewhere(runtime, ctx, checkpoint.step_id)
            return
        ctx.confirmed_ms = now
    if woken:
        _wake(runtime, [workflow_id])


def recv(runtime: Runtime, topic: str | None, timeout_seconds: float) -> Any:
    """The next message to the running workflow on ``topic`` in send order, or ``None``
    after ``timeout_seconds``; consumed once, recorded as a step."""
    ctx = _in_workflow("recv")
    key = topic or NO_TOPIC
    wake_at = _deadline(runtime, ctx, RECV_STEP + DEADLINE, timeout_seconds, topic)
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, RECV_STEP)
    if record is not None and record.status == StepState.SUCCESS:
        return runtime.serializer.loads(record.output, what="a received message")

    def poll() -> tuple[bool, Any]:
        checkpoint = _step(runtime, ctx, step_id, RECV_STEP, "null")  # output: the message
        outcome, text = runtime.store.receive_message(ctx.workflow_id, key, checkpoint)
        if outcome == ReceiveOutcome.RECEIVED:
            ctx.confirmed_ms = checkpoint.completed_at_ms or 0
            return True, runtime.serializer.loads(text, what="a received message")
        if outcome == ReceiveOutcome.REFUSED:
            return True, recorded_elsewhere(runtime, ctx, step_id)
        return False, None

    parking = (WaitKind.MESSAGE, key, ctx.workflow_id)
    return _wait(runtime, ctx, step_id, RECV_STEP, wake_at, poll, parking)


def set_event(runtime: Runtime, key: str, value: Any) -> None:
    """Set the running workflow's event ``key`` (the latest value wins); recorded."""
    ctx = _in_workflow("set_event")
    step_id = ctx.next_step_id()
    if replayed(ctx, step_id, SET_EVENT_STEP) is not None:
        return
    check_running(runtime, ctx)
    text = runtime.serializer.dumps(value, what=f"the value of event {key!r}")
    output = runtime.serializer.dumps({"key": key, "value": value})
    checkpoint = _step(runtime, ctx, step_id, SET_EVENT_STEP, output)
    recorded, woken = runtime.store.set_event(ctx.workflow_id, key, text, checkpoint)
    if not recorded:
        recorded_elsewhere(runtime, ctx, step_id)
        return
    ctx.confirmed_ms = checkpoint.completed_at_ms or 0
    _wake(runtime, woken)


def get_event(runtime: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    """The value of ``workflow_id``'s event ``key``, waiting up to ``timeout_seconds`` for
    it to be set (``None`` then). Inside a workflow, a recorded step."""
    ctx = current_workflow()
    if ctx is None or ctx.in_step:
        return _poll_event(runtime, workflow_id, key, timeout_seconds)
    wake_at = _deadline(runtime, ctx, GET_EVENT_STEP + DEADLINE, timeout_seconds, key)
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, GET_EVENT_STEP)
    if record is not None and record.status == StepState.SUCCESS:
        return runtime.serializer.loads(record.output, what="an event's value")

    def poll() -> tuple[bool, Any]:
        text = runtime.store.get_event(workflow_id, key)
        if text is None:
            return False, None
        return True, _record(runtime, ctx, step_id, GET_EVENT_STEP, text)

    parking = (WaitKind.EVENT, key, workflow_id)
    return _wait(runtime, ctx, step_id, GET_EVENT_STEP, wake_at, poll, parking)


def _poll_event(runtime: Runtime, workflow_id: str, key: str, timeout_seconds: float) -> Any:
    """Outside a workflow: read the event with backoff (10 ms doubling up to
    ``poll_interval``) until it is set or the timeout passes."""
    clock = runtime.clock
    until = clock.monotonic() + timeout_seconds
    pause = 0.01
    while True:
        text = runtime.store.get_event(workflow_id, key)
        if text is not None:
            return runtime.serializer.loads(text, what="an event's value")
        remaining = until - clock.monotonic()
        if remaining <= 0:
            return None
        clock.sleep(min(pause, remaining))
        pause = min(pause * 2, runtime.settings.poll_interval)


def _deadline(
    runtime: Runtime, ctx: WorkflowContext, name: str, timeout_seconds: float, about: Any
) -> float:
    """The wait's deadline (epoch seconds), recorded at its first run as a step."""
    step_id = ctx.next_step_id()
    record = replayed(ctx, step_id, name)
    if record is not None and record.status == StepState.SUCCESS:
        return float(runtime.serializer.loads(record.output)["until"])
    check_running(runtime, ctx)
    until = runtime.clock.time() + max(0.0, timeout_seconds)
    recorded = _record(
        runtime, ctx, step_id, name, runtime.serializer.dumps({"for": about, "until": until})
    )
    return float(recorded["until"])


def _wait(
    runtime: Runtime,
    ctx: WorkflowContext,
    step_id: int,
    name: str,
    wake_at: float,
    poll: Poll,
    parking: tuple[WaitKind, str, str],
) -> Any:
    """Poll until found or ``wake_at`` (then record ``None``); park the workflow when the
    rest of the wait is longer than ``max_inline_retry_wait`` and it runs on a worker."""
    pause = 0.01
    while True:
        found, value = poll()
        if found:
            return value
        remaining = wake_at - runtime.clock.time()
        if remaining <= 0:
            return _record(runtime, ctx, step_id, name, "null")
        if ctx.can_suspend and remaining > runtime.settings.max_inline_retry_wait:
            kind, key, target = parking
            wake_at_ms = int(wake_at * 1000)
            outcome = runtime.store.park(
                ctx.workflow_id, ctx.executor_id, wake_at_ms, kind, key, target
            )
            if outcome == ParkOutcome.PARKED:
                raise SuspendWorkflow(remaining, parked=True)
            if outcome == ParkOutcome.NOT_OWNER:
                raise WorkflowCancelledError(ctx.workflow_id)
            continue  # it arrived meanwhile
        wait(runtime, ctx, min(pause, remaining))
        pause = min(pause * 2, runtime.settings.poll_interval)


def list_messages(
    runtime: Runtime, workflow_id: str, include_consumed: bool = False
) -> list[MessageRecord]:
    """Messages waiting for a workflow (with ``include_consumed``, the received ones too),
    in send order."""
    return runtime.store.list_messages(workflow_id, include_consumed=include_consumed)


def list_events(runtime: Runtime, workflow_id: str) -> dict[str, Any]:
    """A workflow's events: key -> latest value, decoded."""
    loads = runtime.serializer.loads
    return {
        e.key: loads(e.value, what=f"event {e.key!r}")
        for e in runtime.store.list_events(workflow_id)
    }
