"""Celery results of durable tasks, answered from the durable store.

The store already holds every durable step's output and every workflow's end, durably;
writing them to the result backend as well cost a Redis SET and PUBLISH per step. The
app's backend is wrapped: durable tasks' results are written nowhere else, and read from
the store by ``AsyncResult(id).get()``, ``.state``, ``chain(...).apply_async().get()``,
with or without a configured backend. Everything else (other tasks' results, groups,
chords) goes to the configured backend as before.
"""

from __future__ import annotations

import threading
import weakref
from collections import OrderedDict
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from celery import states
from celery.backends.base import DisabledBackend
from celery.canvas import maybe_signature
from celery.exceptions import TimeoutError as CeleryTimeoutError

from ..errors import AwaitedWorkflowCancelled, AwaitedWorkflowMaxRecoveryAttemptsExceeded
from ..types import StepState, WorkflowKind, WorkflowState

if TYPE_CHECKING:
    from .durable import Durable

_WORKFLOW_STATES = {
    WorkflowState.ENQUEUED: states.PENDING,
    WorkflowState.PENDING: states.STARTED,
    WorkflowState.SUCCESS: states.SUCCESS,
    WorkflowState.ERROR: states.FAILURE,
    WorkflowState.CANCELLED: states.REVOKED,
    WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED: states.FAILURE,
}
_STEP_STATES = {
    StepState.PENDING: states.PENDING,
    StepState.RUNNING: states.STARTED,
    StepState.RETRYING: states.RETRY,
    StepState.SUCCESS: states.SUCCESS,
    StepState.ERROR: states.FAILURE,
}
_NOT_DURABLE_CACHE = 10_000  # ids known not to be durable tasks' (they never become so)


#: each app's DurableResults by the app's name, for unpickling
_BY_APP_NAME: weakref.WeakValueDictionary[str | None, DurableResults] = (
    weakref.WeakValueDictionary()
)


def _unpickle_results(main: str | None) -> Any:
    found = _BY_APP_NAME.get(main)
    if found is not None:
        return found
    from celery import current_app

    return current_app.backend


class DurableResults:
    """The app's result backend, with durable tasks' results kept in the durable store.

    Attributes it does not define are the configured backend's (one per thread, as Celery
    keeps backends that are not thread-safe)."""

    thread_safe = True

    def __init__(self, durable: Durable) -> None:
        self._durable = durable
        self._local = threading.local()
        self._not_durable: OrderedDict[str, None] = OrderedDict()
        # callbacks of Celery's own chords that are durable steps: unknown to the store
        # until Celery starts them, and never in the configured backend
        self._durable_later: OrderedDict[str, None] = OrderedDict()
        _BY_APP_NAME[durable.app.main] = self

    def __reduce__(self) -> tuple[Any, ...]:
        """A pickled ``AsyncResult``/``GroupResult`` carries its backend: unpickled, it is
        this process's ``DurableResults`` of an app of the same name (else the current
        app's backend), as Celery's own backends come back through their app."""
        return _unpickle_results, (self._durable.app.main,)

    @property
    def fallback(self) -> Any:
        """The backend the app is configured with (``DisabledBackend`` when none)."""
        backend = getattr(self._local, "backend", None)
        if backend is None:
            backend = self._local.backend = self._durable.app._get_backend()
        return backend

    def __getattr__(self, name: str) -> Any:
        return getattr(self.fallback, name)

    # writes: none for durable tasks ---------------------------------------
    def _durable_request(self, request: Any) -> bool:
        if not self._durable.settings.store_results:
            return False
        name = getattr(request, "task", None) or getattr(request, "name", None)
        task = self._durable.app.tasks.get(name) if isinstance(name, str) else None
        return getattr(task, "durable_kind", None) is not None

    def store_result(
        self, task_id: str, result: Any, state: str, traceback: Any = None,
        request: Any = None, **kw: Any,
    ) -> Any:  # fmt: skip
        if self._durable_request(request):
            return result
        return self.fallback.store_result(task_id, result, state, traceback, request, **kw)

    def mark_as_done(
        self, task_id: str, result: Any, request: Any = None, store_result: bool = True,
        state: str = states.SUCCESS,
    ) -> Any:  # fmt: skip
        store = store_result and not self._durable_request(request)
        return self.fallback.mark_as_done(task_id, result, request, store, state)

    def mark_as_failure(
        self, task_id: str, exc: Any, traceback: Any = None, request: Any = None,
        store_result: bool = True, call_errbacks: bool = True, state: str = states.FAILURE,
    ) -> Any:  # fmt: skip
        store = store_result and not self._durable_request(request)  # errbacks still run
        return self.fallback.mark_as_failure(
            task_id, exc, traceback, request, store, call_errbacks, state
        )

    def mark_as_retry(
        self, task_id: str, exc: Any, traceback: Any = None, request: Any = None,
        store_result: bool = True, state: str = states.RETRY,
    ) -> Any:  # fmt: skip
        if self._durable_request(request):
            return None
        return self.fallback.mark_as_retry(task_id, exc, traceback, request, store_result, state)

    def mark_as_revoked(
        self, task_id: str, reason: str = "", request: Any = None, store_result: bool = True,
        state: str = states.REVOKED,
    ) -> Any:  # fmt: skip
        store = store_result and not self._durable_request(request)
        return self.fallback.mark_as_revoked(task_id, reason, request, store, state)

    # chords of durable steps: a durable canvas (plain_chords.py) ----------
    def apply_chord(self, header_result_args: Any, body: Any, **kw: Any) -> Any:
        if self._durable.settings.store_results and self._durable.pending_chords.open(
            header_result_args, body, **kw
        ):
            return None
        return self.apply_celery_chord(header_result_args, body, **kw)

    def apply_celery_chord(self, header_result_args: Any, body: Any, **kw: Any) -> Any:
        """Celery's own chord, set up in the configured backend. A callback that is a durable
        step is recorded only when Celery starts it: its id is read from the store until
        then (it writes no result anywhere else)."""
        sig = maybe_signature(body, app=self._durable.app)
        task = self._durable.app.tasks.get(getattr(sig, "task", None) or "")
        durable_step = getattr(task, "durable_kind", None) is not None
        if durable_step and getattr(sig, "subtask_type", None) is None and sig.id:
            self._durable_later[sig.id] = None
            if len(self._durable_later) > _NOT_DURABLE_CACHE:
                self._durable_later.popitem(last=False)
        return self.fallback.apply_chord(header_result_args, body, **kw)

    def ensure_chords_allowed(self) -> None:
        """A chord of durable steps needs no result backend; any other chord still fails
        without one, at ``apply_chord`` (the configured backend's)."""
        if not self._durable.settings.store_results:
            self.fallback.ensure_chords_allowed()

    def set_chord_size(self, group_id: str, chord_size: int) -> Any:
        if self._durable.pending_chords.sized(group_id):
            return None  # held as a durable chord, or Celery's counter set up already
        return self.fallback.set_chord_size(group_id, chord_size)

    # reads: from the store for durable ids -------------------------------
    def _meta(self, task_id: str) -> dict[str, Any] | None:
        """The result meta of a durable task id (a chain step's, or a workflow's), or None."""
        if task_id in self._not_durable or not self._durable.settings.store_results:
            return None
        if self._answered_elsewhere(task_id):
            self._remember_not_durable(task_id)
            return None
        store = self._durable.runtime.store
        step = store.find_step_by_task_id(task_id)
        record = store.get_workflow(task_id) if step is None else None
        if record is not None and record.kind == WorkflowKind.CHAIN:
            step = store.find_step_by_task_id(task_id)  # recorded between the two reads
        if step is not None:
            return _meta(task_id, _STEP_STATES[StepState(step.status)], step.output, step.error)
        if record is None and task_id in self._durable_later:
            return None  # not started yet: asked again
        if record is None or record.kind == WorkflowKind.CHAIN:
            self._remember_not_durable(task_id)
            return None
        meta = _meta(task_id, _WORKFLOW_STATES[WorkflowState(record.status)], record.output, None)
        if record.status == WorkflowState.ERROR:
            meta["error_text"] = record.error
        elif record.status == WorkflowState.CANCELLED:
            meta["exception"] = AwaitedWorkflowCancelled(task_id)
        elif record.status == WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED:
            meta["exception"] = AwaitedWorkflowMaxRecoveryAttemptsExceeded(task_id)
        return meta

    def _answered_elsewhere(self, task_id: str) -> bool:
        """Whether the configured backend holds a result for the id. Durable tasks write
        none there, so such an id is another task's: one backend read (cached by Celery
        once ready) instead of two store reads for every other task's result."""
        fallback = self.fallback
        if isinstance(fallback, DisabledBackend):
            return False
        return bool(fallback.get_task_meta(task_id)["status"] != states.PENDING)

    def _remember_not_durable(self, task_id: str) -> None:
        self._not_durable[task_id] = None
        if len(self._not_durable) > _NOT_DURABLE_CACHE:
            self._not_durable.popitem(last=False)

    def _decoded(self, meta: dict[str, Any]) -> dict[str, Any]:
        serializer = self._durable.runtime.serializer
        error = meta.pop("exception", None)
        text = meta.pop("error_text", None)
        if error is None and text is not None:
            error = serializer.loads_exception(text)
        if meta["status"] == states.SUCCESS:
            meta["result"] = serializer.loads(meta.pop("output"), what="a task's result")
        else:
            meta.pop("output", None)
            meta["result"] = error
        return meta

    def get_task_meta(self, task_id: str, cache: bool = True) -> Any:
        meta = self._meta(task_id)
        if meta is None:
            return self.fallback.get_task_meta(task_id, cache=cache)
        return self._decoded(meta)

    def get_state(self, task_id: str) -> Any:
        return self.get_task_meta(task_id)["status"]

    get_status = get_state

    def get_result(self, task_id: str) -> Any:
        return self.get_task_meta(task_id)["result"]

    def _elsewhere(self, task_id: str) -> bool:
        """Whether the id's result is the configured backend's to give (not the store's)."""
        return self._meta(task_id) is None and task_id not in self._durable_later

    def wait_for_pending(self, result: Any, timeout: float | None = None, **kw: Any) -> Any:
        if self._elsewhere(result.id):
            return self.fallback.wait_for_pending(result, timeout=timeout, **kw)
        meta = self.wait_for(result.id, timeout=timeout, interval=kw.get("interval", 0.5))
        result._maybe_set_cache(meta)
        return result.maybe_throw(propagate=kw.get("propagate", True), callback=kw.get("callback"))

    def wait_for(self, task_id: str, timeout: float | None = None, **kw: Any) -> Any:
        """Poll the store (as the durable handles do: 10 ms, doubling up to ``interval``)."""
        if self._elsewhere(task_id):
            return self._wait_in_fallback(task_id, timeout, kw.get("interval"))
        clock = self._durable.runtime.clock
        until = None if timeout is None else clock.monotonic() + timeout
        pause, interval = 0.01, float(kw.get("interval") or 0.5)
        while True:
            meta = self.get_task_meta(task_id)
            if meta["status"] in states.READY_STATES:
                return meta
            if until is not None and clock.monotonic() >= until:
                raise CeleryTimeoutError("The operation timed out.")
            clock.sleep(pause if until is None else min(pause, max(0.0, until - clock.monotonic())))
            pause = min(pause * 2, interval)

    def _wait_in_fallback(self, task_id: str, timeout: float | None, interval: Any) -> Any:
        """Another task's result, from the configured backend: a polling one waits as it
        does; an asynchronous one (Redis, RPC: no ``wait_for``) through its result."""
        fallback = self.fallback
        if hasattr(fallback, "wait_for"):
            return fallback.wait_for(task_id, timeout=timeout, interval=interval or 0.5)
        result = self._durable.app.AsyncResult(task_id, backend=fallback)
        result.get(timeout=timeout, interval=interval or 0.5, propagate=False)
        return fallback.get_task_meta(task_id)

    def iter_native(self, result: Any, timeout: float | None = None, **kw: Any) -> Any:
        """``GroupResult.get()``: members that are durable tasks are read from the store, one
        by one; a group of other tasks only is joined by the configured backend."""
        ids = [r.id for r in result.results]
        if all(self._elsewhere(task_id) for task_id in ids):
            yield from self.fallback.iter_native(result, timeout=timeout, **kw)
            return
        for task_id in ids:
            yield task_id, self.wait_for(task_id, timeout=timeout, interval=kw.get("interval"))

    def forget(self, task_id: str) -> None:
        if self._meta(task_id) is None:
            self.fallback.forget(task_id)


def _meta(task_id: str, status: str, output: str | None, error: str | None) -> dict[str, Any]:
    return {
        "task_id": task_id,
        "status": status,
        "output": output,
        "error_text": error,
        "traceback": None,
        "children": [],
        "date_done": datetime.now(UTC) if status in states.READY_STATES else None,
    }
