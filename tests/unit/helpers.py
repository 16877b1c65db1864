"""Helpers for in-process durable workflow tests: names, bodies, crashes, threads."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import pytest

from celery_durable import (
    Durable,
    SetWorkflowID,
)
from celery_durable import WorkflowStatusString as S


class Declined(Exception):
    """A business error (module level, so it is rebuilt from the store as itself)."""


class CardDeclined(Declined):
    pass


class Crash(BaseException):
    """Stands for the process dying mid-workflow: not an Exception, so nothing records it."""


def uid(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def close(durable: Durable) -> None:
    """Stop this Durable's heartbeat thread and close its connections."""
    durable.close()


def workflow(durable: Durable, body: Callable[..., Any], name: str | None = None) -> Any:
    """A durable workflow running ``body``, under a unique (or the given) task name."""
    return _bound(durable.workflow(name=name or uid("tests.wf")), body)


def step(durable: Durable, body: Callable[..., Any], **options: Any) -> Any:
    return _bound(durable.step(name=uid("tests.step"), **options), body)


def transaction(durable: Durable, body: Callable[..., Any], **options: Any) -> Any:
    return _bound(durable.transaction(name=uid("tests.tx"), **options), body)


def _bound(decorator: Callable[[Callable[..., Any]], Any], body: Callable[..., Any]) -> Any:
    """Decorate a plain function calling ``body``; bind the lazy Celery task at once.

    Celery binds a task on first use, and two threads using it first at the same time can
    see it registered but unbound (``request_stack`` None); tests that call from threads
    must not depend on that race.
    """

    def run(*args: Any, **kwargs: Any) -> Any:
        return body(*args, **kwargs)

    task = decorator(run)
    assert task.name
    return task


def call_as(workflow_id: str, wf: Any, *args: Any) -> Any:
    with SetWorkflowID(workflow_id):
        return wf(*args)


def crash_then_reenqueue(durable: Durable, workflow_id: str, wf: Any, *args: Any) -> None:
    """Run ``wf`` until it is interrupted (raises Crash): the run gives the workflow up,
    ENQUEUED for a re-call or the sweep to take over."""
    with pytest.raises(Crash):
        call_as(workflow_id, wf, *args)
    status = durable.get_workflow_status(workflow_id)
    assert status is not None
    assert (status.status, status.executor_id) == (S.ENQUEUED, None)


class Attempts:
    """A step body that fails ``failures`` times with ``exc_type`` and records each attempt."""

    def __init__(self, durable: Durable, failures: int, exc_type: type[Exception] = ValueError):
        self.durable = durable
        self.failures = failures
        self.exc_type = exc_type
        self.times: list[float] = []
        self.statuses: list[Any] = []

    def __call__(self) -> str:
        self.times.append(time.monotonic())
        self.statuses.append(self.durable.step_status)
        attempt = len(self.times) - 1
        if attempt < self.failures:
            raise self.exc_type(f"attempt {attempt} failed")
        return f"ok at attempt {attempt}"


class Counter:
    """A body that counts its calls and returns ``value``."""

    def __init__(self, value: Any = None) -> None:
        self.value = value
        self.calls = 0

    def __call__(self, *args: Any) -> Any:
        self.calls += 1
        return self.value


def run_in_threads(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run each call in its own thread; return results in order (re-raise the first error)."""
    results: list[Any] = [None] * len(calls)

    def target(i: int) -> None:
        try:
            results[i] = ("ok", calls[i]())
        except BaseException as exc:
            results[i] = ("error", exc)

    threads = [threading.Thread(target=target, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    for kind, value in results:
        if kind == "error":
            raise value
    return [value for _, value in results]
