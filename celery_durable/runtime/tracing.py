"""OpenTelemetry spans: one per workflow run, one per step attempt (the ``[otel]`` extra).

Without ``opentelemetry-api`` installed every function here is a no-op and nothing is
imported; with it and no SDK configured, spans are OpenTelemetry's non-recording ones.

A workflow stores its starter's trace context (``trace_context``, W3C headers as JSON).
A run's span is a child of the current span (the Celery task's, under
``opentelemetry-instrumentation-celery``) when that span belongs to the stored trace, as
on a first run; otherwise (a run re-published by the recovery sweep on another worker,
whose Celery span belongs to the sweep's trace) it continues the stored trace, linked to
the current span. Chain steps follow Celery's own context, which their messages carry.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from ..errors import WorkflowCancelledError, WorkflowTimeoutError
from ..types import WorkflowState

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import Link, Status, StatusCode
except ImportError:  # the [otel] extra is not installed: no spans, no cost
    trace = None  # type: ignore[assignment]

TRACER = "celery_durable"


def current_trace_context() -> str | None:
    """The caller's trace context, to store with a workflow it starts (None: no trace)."""
    if trace is None:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return json.dumps(carrier, sort_keys=True) if carrier else None


def _parent(stored: str | None) -> tuple[Any, list[Any]]:
    """The context to start a run's span in, and the links to give it."""
    current = trace.get_current_span().get_span_context()
    if not stored:
        return None, []
    try:
        carrier = json.loads(stored)
    except ValueError:
        return None, []
    context = propagate.extract(carrier)
    original = trace.get_current_span(context).get_span_context()
    if not original.is_valid or (current.is_valid and current.trace_id == original.trace_id):
        return None, []
    return context, [Link(current)] if current.is_valid else []


@contextmanager
def _span(name: str, attributes: dict[str, Any], stored: str | None = None) -> Iterator[None]:
    context, links = _parent(stored)
    tracer = trace.get_tracer(TRACER)
    with tracer.start_as_current_span(
        name,
        context=context,
        links=links,
        attributes=attributes,
        record_exception=False,
        set_status_on_exception=False,
    ) as span:
        try:
            yield
        except (WorkflowCancelledError, WorkflowTimeoutError) as exc:
            span.set_attribute("durable.status", WorkflowState.CANCELLED.value)
            span.record_exception(exc)
            raise
        except Exception as exc:
            span.set_attribute("durable.status", WorkflowState.ERROR.value)
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
            raise
        except BaseException as exc:  # a suspension until a retry, or the process ending
            span.set_attribute("durable.status", "INTERRUPTED")
            span.set_attribute("durable.interrupted_by", type(exc).__name__)
            raise
        span.set_attribute("durable.status", WorkflowState.SUCCESS.value)


@contextmanager
def workflow_span(
    workflow_id: str, name: str, run: int, trace_context: str | None
) -> Iterator[None]:
    """Around one run of a code workflow (the ``run``-th claim of it)."""
    if trace is None:
        yield
        return
    attributes = {"durable.workflow_id": workflow_id, "durable.workflow": name, "durable.run": run}
    with _span(f"workflow {name}", attributes, trace_context):
        yield


@contextmanager
def step_span(workflow_id: str | None, step_id: int, name: str, attempt: int) -> Iterator[None]:
    """Around one attempt of a step (0-based ``attempt``) of workflow ``workflow_id``."""
    if trace is None or workflow_id is None:
        yield
        return
    attributes = {
        "durable.workflow_id": workflow_id,
        "durable.step": name,
        "durable.step_id": step_id,
        "durable.attempt": attempt,
    }
    with _span(f"step {name}", attributes):
        yield
