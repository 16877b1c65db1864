"""OpenTelemetry on real workers, with ``opentelemetry-instrumentation-celery`` in the
caller and in every pool process: a workflow's spans sit under the Celery task's span, and
a run recovered on another worker after a SIGKILL continues the trace its caller started.
The workers' spans are read from the file each process appends them to."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import TracerProvider

from tests.apps import traced_app as ta
from tests.apps.common import read_effects
from tests.conftest import WorkerProcess
from tests.recovery.helpers import BeatProcess

APP = "tests.apps.traced_app"
durable = ta.durable


@pytest.fixture
def tracer(tracer_provider: TracerProvider) -> Iterator[trace.Tracer]:
    """The caller's tracer, with Celery's publishing instrumented in this process."""
    instrumentor = CeleryInstrumentor()
    instrumentor.instrument(tracer_provider=tracer_provider)
    yield tracer_provider.get_tracer("tests")
    instrumentor.uninstrument()


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    return tmp_path / "spans.jsonl"


def worker_spans(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def of(spans: list[dict[str, Any]], kind: str, workflow_id: str) -> list[dict[str, Any]]:
    return [
        s
        for s in spans
        if s["name"].startswith(kind + " ")
        and s["attributes"].get("durable.workflow_id") == workflow_id
    ]


def test_workflow_and_step_spans_sit_under_the_celery_task_span(
    worker: Callable[..., WorkerProcess], tracer: trace.Tracer, spans_file: Path
) -> None:
    ta.setup()
    worker(APP, env={"DURABLE_TEST_SPANS": str(spans_file)})
    with tracer.start_as_current_span("caller") as caller:
        handle = durable.start_workflow(ta.traced, 1)
    assert handle.get_result(timeout=30) == 3
    original = f"{caller.get_span_context().trace_id:032x}"

    spans = worker_spans(spans_file)
    (run,) = of(spans, "workflow", handle.workflow_id)
    (task,) = [s for s in spans if s["span_id"] == run["parent_id"]]
    assert task["name"] == f"run/{ta.traced.name}"  # the Celery task's span
    assert task["trace_id"] == run["trace_id"] == original
    steps = of(spans, "step", handle.workflow_id)
    assert [s["attributes"]["durable.step"] for s in steps] == [
        ta.t_one.name, ta.t_two.name, ta.t_three.name,
    ]  # fmt: skip
    assert {s["parent_id"] for s in steps} == {run["span_id"]}
    assert {s["trace_id"] for s in steps} == {original}


def test_a_run_recovered_on_another_worker_continues_the_callers_trace(
    worker: Callable[..., WorkerProcess],
    beat: Callable[..., BeatProcess],
    flags: Path,
    tracer: trace.Tracer,
    spans_file: Path,
) -> None:
    ta.setup()
    env = {"DURABLE_TEST_SPANS": str(spans_file)}
    (flags / "traced_after_two").touch()
    first = worker(APP, env=env)
    with tracer.start_as_current_span("caller") as caller:
        handle = durable.start_workflow(ta.traced, 1)
    assert first.wait_exit(timeout=60) == -9  # SIGKILLed with two steps recorded
    original = f"{caller.get_span_context().trace_id:032x}"
    killed = {s["pid"] for s in worker_spans(spans_file)}

    worker(APP, env=env)
    beat(APP)
    assert handle.get_result(timeout=60) == 3

    spans = worker_spans(spans_file)
    (recovered,) = of(spans, "workflow", handle.workflow_id)  # the killed run's never ended
    assert recovered["pid"] not in killed
    assert recovered["attributes"]["durable.run"] == 2
    assert recovered["trace_id"] == original  # the caller's trace, continued
    (task,) = [s for s in spans if s["span_id"] in recovered["links"]]
    assert task["name"] == f"run/{ta.traced.name}"  # linked to the sweep's delivery
    steps = of(spans, "step", handle.workflow_id)
    assert [s["attributes"]["durable.step"] for s in steps] == [
        ta.t_one.name, ta.t_two.name, ta.t_three.name,
    ]  # fmt: skip
    assert {s["trace_id"] for s in steps} == {original}
    assert steps[2]["parent_id"] == recovered["span_id"]
    assert dict(read_effects(durable, handle.workflow_id)) == {
        "t_one": 1, "t_two": 1, "t_three": 1,
    }  # fmt: skip
