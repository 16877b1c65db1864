"""OpenTelemetry spans (the SDK's in-memory exporter): one per workflow run and per step
attempt, under the span current when the run starts (the Celery task's, when
opentelemetry-instrumentation-celery is active); a recovered run continues the trace its
workflow was started in."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from celery import Celery
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from celery_durable import Durable
from celery_durable.testing import DurableTestKit

app = Celery("tracing")
durable = Durable(app)
EXPORTER = InMemorySpanExporter()


class Refused(Exception):
    pass


@durable.step()
def one(x: int) -> int:
    return x + 1


@durable.step()
def two(x: int) -> int:
    return x * 2


@durable.step(retries=1, interval_seconds=0.01)
def three(x: int) -> int:
    if x < 0:
        raise Refused(f"negative {x}")
    return x - 1


@durable.workflow()
def three_steps(x: int) -> int:
    return three(two(one(x)))


@pytest.fixture(scope="module")
def tracer(tracer_provider: TracerProvider) -> trace.Tracer:
    tracer_provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    return tracer_provider.get_tracer("tests")


@pytest.fixture
def kit(tracer: trace.Tracer) -> Iterator[DurableTestKit]:
    EXPORTER.clear()
    with DurableTestKit(durable) as running:
        yield running


def spans(kind: str, workflow_id: str) -> list[ReadableSpan]:
    return [
        s
        for s in EXPORTER.get_finished_spans()
        if s.name.startswith(kind + " ")
        and (s.attributes or {}).get("durable.workflow_id") == workflow_id
    ]


def test_a_workflow_run_and_each_step_attempt_get_a_span(
    kit: DurableTestKit, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("celery.run/three_steps") as task:
        wid = durable.start_workflow(three_steps, 1).workflow_id
    (run,) = spans("workflow", wid)
    steps = spans("step", wid)
    assert run.parent is not None and run.parent.span_id == task.get_span_context().span_id
    assert run.context.trace_id == task.get_span_context().trace_id
    assert [s.attributes["durable.step"] for s in steps] == [one.name, two.name, three.name]  # type: ignore[index]
    assert [s.attributes["durable.step_id"] for s in steps] == [0, 1, 2]  # type: ignore[index]
    assert {s.attributes["durable.attempt"] for s in steps} == {0}  # type: ignore[index]
    assert all(s.parent is not None and s.parent.span_id == run.context.span_id for s in steps)
    assert run.attributes["durable.status"] == "SUCCESS"  # type: ignore[index]


def test_errors_are_recorded_on_the_attempt_and_the_run(
    kit: DurableTestKit, tracer: trace.Tracer
) -> None:
    wid = durable.start_workflow(three_steps, -5).workflow_id
    failed = [s for s in spans("step", wid) if s.attributes["durable.step"] == three.name]  # type: ignore[index]
    assert [s.attributes["durable.attempt"] for s in failed] == [0, 1]  # type: ignore[index]
    for attempt in failed:
        assert attempt.status.status_code == StatusCode.ERROR
        assert attempt.events[0].name == "exception"
        assert "negative" in str(attempt.events[0].attributes["exception.message"])  # type: ignore[index]
    (run,) = spans("workflow", wid)
    assert run.status.status_code == StatusCode.ERROR
    assert run.attributes["durable.status"] == "ERROR"  # type: ignore[index]


def test_a_recovered_run_continues_the_original_trace(
    kit: DurableTestKit, tracer: trace.Tracer
) -> None:
    with tracer.start_as_current_span("caller") as caller, kit.crash_after(two):
        wid = durable.start_workflow(three_steps, 1).workflow_id
    with tracer.start_as_current_span("recovery sweep") as sweep:
        kit.recover()
    assert durable.retrieve_workflow(wid).get_result() == 3
    first, second = spans("workflow", wid)
    original = caller.get_span_context().trace_id
    assert first.context.trace_id == second.context.trace_id == original
    assert second.attributes["durable.run"] == 2  # type: ignore[index]
    assert [link.context.span_id for link in second.links] == [sweep.get_span_context().span_id]
    assert first.attributes["durable.status"] == "INTERRUPTED"  # type: ignore[index]
    assert {s.context.trace_id for s in spans("step", wid)} == {original}
