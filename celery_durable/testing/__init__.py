"""Test your own workflows' recovery in milliseconds: ``celery_durable.testing``.

``DurableTestKit(durable)`` points your ``Durable`` at a fresh in-memory store and runs
its messages in this process as they are sent, in order, with no broker and no worker:
``durable.start_workflow(...)`` returns once the workflow (and any chain, retry or
re-publish it causes) has run. Time is a ``SkippingClock``: ``durable.sleep``, retry
waits and countdowns move it forward at once. ``kit.crash_after(step)`` kills "the
process" right after that step's checkpoint (its workflow stays as a killed worker
leaves it), and ``kit.recover()`` lets the executor timeout pass and runs the recovery
sweep, which replays the workflow from its first incomplete step.

With pytest, the ``durable_testkit`` fixture (this package's plugin, loaded when
celery-durable is installed, inert unless a test asks for it) makes one and undoes it
after the test. See the README's "Testing your workflows".
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from celery.app.trace import build_tracer

from ..clock import Clock
from ..integration.durable import Durable
from ..runtime.context import ProcessDeath
from ..runtime.events import Events
from ..runtime.recovery import RecoveryReport
from ..store.interface import DurableStore
from ..store.memory import MemoryStore
from ..types import ExecutorRecord, ExecutorState

__all__ = ["DurableTestKit", "SimulatedCrash", "SkippingClock"]


class SimulatedCrash(ProcessDeath):
    """The process running the workflow died here (``DurableTestKit.crash_after``)."""


class SkippingClock(Clock):
    """Time that moves only forward and only when told: ``sleep`` advances it at once."""

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._monotonic = 0.0
        self._lock = threading.Lock()
        self.on_advance: Callable[[], None] | None = None
        self.skipped = 0.0  # every second it was moved forward, for tests to check

    def time(self) -> float:
        return self._now

    def monotonic(self) -> float:
        return self._monotonic

    def sleep(self, seconds: float) -> None:
        self.advance(seconds)

    def advance(self, seconds: float) -> None:
        if seconds <= 0:
            return
        with self._lock:
            self._now += seconds
            self._monotonic += seconds
            self.skipped += seconds
        if self.on_advance is not None:
            self.on_advance()


@dataclass(order=True)
class _Message:
    eta: float
    seq: int
    name: str = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)
    kwargs: dict[str, Any] = field(compare=False)
    options: dict[str, Any] = field(compare=False)


class _CrashPoints(Events):
    """The runtime's events, passed on, raising SimulatedCrash at an armed checkpoint."""

    def __init__(self, inner: Events, kit: DurableTestKit) -> None:
        self.inner = inner
        self.kit = kit

    def step_checkpointed(self, **kwargs: Any) -> None:
        self.inner.step_checkpointed(**kwargs)
        self.kit._checkpointed(kwargs["name"], kwargs["workflow_id"])

    def step_retrying(self, **kwargs: Any) -> None:
        self.inner.step_retrying(**kwargs)

    def step_retries_exhausted(self, **kwargs: Any) -> None:
        self.inner.step_retries_exhausted(**kwargs)

    def workflow_recovered(self, **kwargs: Any) -> None:
        self.inner.workflow_recovered(**kwargs)

    def workflow_dead_lettered(self, **kwargs: Any) -> None:
        self.inner.workflow_dead_lettered(**kwargs)


class DurableTestKit:
    """A ``Durable`` on an in-memory store, its messages run in this process (see module)."""

    def __init__(
        self,
        durable: Durable,
        *,
        store: DurableStore | None = None,
        clock: SkippingClock | None = None,
    ) -> None:
        self.durable = durable
        self.clock = clock or SkippingClock()
        self.store = store or MemoryStore(clock=self.clock)
        self.crashed: list[str] = []  # workflow ids whose process "died", in order
        self._queue: list[_Message] = []
        self._seq = itertools.count()
        self._running = False
        self._armed: dict[str, int] = {}
        self._held: dict[str, list[_Message]] = {}
        self._previous: tuple[DurableStore | None, dict[str, Any]] | None = None
        self._executor_id = ""

    # set-up -------------------------------------------------------------
    def start(self) -> DurableTestKit:
        self._previous = self.durable.rebind(self.store)
        runtime = self.durable.runtime
        runtime.events = _CrashPoints(runtime.events, self)
        self._new_process()
        self.clock.on_advance = self._beat
        self.durable.dispatcher = self._dispatch
        return self

    def stop(self) -> None:
        self.durable.dispatcher = None
        self.clock.on_advance = None
        if self._previous is not None:
            self.durable.rebind(*self._previous)
            self._previous = None

    def __enter__(self) -> DurableTestKit:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # running ------------------------------------------------------------
    def _dispatch(self, name: str, args: Any, kwargs: Any, options: dict[str, Any]) -> Any:
        options = dict(options)
        options.setdefault("task_id", str(uuid.uuid4()))
        eta = self.clock.time() + float(options.get("countdown") or 0)
        if isinstance(options.get("eta"), datetime):
            eta = max(eta, options["eta"].timestamp())
        message = _Message(
            eta, next(self._seq), name, tuple(args or ()), dict(kwargs or {}), options
        )
        if name in self._held:
            self._held[name].append(message)
            return self.durable.app.AsyncResult(options["task_id"])
        heapq.heappush(self._queue, message)
        self.run()
        return self.durable.app.AsyncResult(options["task_id"])

    def run(self) -> int:
        """Run every queued message, earliest first (moving the clock to each one's time);
        returns how many ran. Messages sent meanwhile run in the same loop."""
        if self._running:
            return 0
        self._running = True
        ran = 0
        try:
            while self._queue:
                message = heapq.heappop(self._queue)
                self.clock.advance(message.eta - self.clock.time())
                self._execute(message)
                ran += 1
        finally:
            self._running = False
        return ran

    def _execute(self, message: _Message) -> None:
        app = self.durable.app
        task = app.tasks[message.name]
        options = message.options
        headers = dict(options.get("headers") or {})
        task_id = options["task_id"]
        request = {
            **headers,
            "id": task_id,
            "task": message.name,
            "root_id": options.get("root_id") or task_id,
            "parent_id": options.get("parent_id"),
            "chain": list(options.get("chain") or []),
            "headers": headers,
            "retries": 0,
            "callbacks": options.get("link"),
            "errbacks": options.get("link_error"),
            "delivery_info": {"routing_key": options.get("queue"), "is_eager": False},
            "hostname": "durable-testkit",
        }
        tracer = build_tracer(message.name, task, eager=True, propagate=False, app=app)
        try:
            tracer(task_id, message.args, message.kwargs, request)
        except SimulatedCrash:
            self._new_process()  # the worker died; the next message finds another

    @contextmanager
    def hold(self, task: Any) -> Iterator[None]:
        """Within the block, keep the messages of ``task`` (a task, or its name) aside, as if
        no worker took them yet; they run when the block ends."""
        name = task if isinstance(task, str) else task.name
        self._held[name] = []
        try:
            yield
        finally:
            for message in self._held.pop(name):
                heapq.heappush(self._queue, message)
            self.run()

    # crashes and recovery -----------------------------------------------
    @contextmanager
    def crash_after(self, step: Any, times: int = 1) -> Iterator[None]:
        """Within the block, "kill the process" right after ``step``'s checkpoint commits
        (a step task, or its name), ``times`` times: its workflow is left as a SIGKILLed
        worker leaves it, for ``recover()`` to replay."""
        name = step if isinstance(step, str) else step.name
        self._armed[name] = self._armed.get(name, 0) + times
        try:
            yield
        finally:
            self._armed.pop(name, None)

    def _checkpointed(self, name: str, workflow_id: str) -> None:
        if self._armed.get(name, 0) > 0:
            self._armed[name] -= 1
            self.crashed.append(workflow_id)
            raise SimulatedCrash(f"simulated crash after step {name!r} of {workflow_id!r}")

    def recover(self) -> RecoveryReport:
        """Let the executor timeout and the enqueue timeout pass, then run one recovery
        sweep: it re-enqueues what the crashes left, and its messages run here at once."""
        settings = self.durable.settings
        self.clock.advance(max(settings.executor_timeout, settings.enqueue_timeout) + 1.0)
        return self.durable.recover()

    def _new_process(self) -> None:
        """A fresh executor for what runs next; the previous one is gone (stopped)."""
        runtime = self.durable.runtime
        if self._executor_id:
            self.store.stop_executor(self._executor_id)
        self._executor_id = f"durable-testkit-{uuid.uuid4().hex[:12]}"
        now = self.clock.now_ms()
        self.store.register_executor(
            ExecutorRecord(self._executor_id, "durable-testkit", 0, now, now, ExecutorState.RUNNING)
        )
        runtime.set_executor(self._executor_id)

    def _beat(self) -> None:
        if self._executor_id:
            self.store.heartbeat(self._executor_id)
