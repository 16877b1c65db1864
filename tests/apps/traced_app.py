"""A workflow traced by OpenTelemetry on real workers (tests/operations/test_tracing_worker.py).

Each worker pool process instruments Celery (``opentelemetry-instrumentation-celery``) and
appends every span it ends to the JSON-lines file ``DURABLE_TEST_SPANS`` at once, so a
SIGKILL loses no span that had ended. The sweep runs every second on beat; an executor is
gone after 3 s without a heartbeat.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from celery.signals import worker_process_init
from opentelemetry import trace
from opentelemetry.instrumentation.celery import CeleryInstrumentor
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from .common import crash_if_flagged, ensure_tables, make_app, record_effect

app, durable = make_app("traced_app")
app.conf.durable_recovery_interval = 1.0
app.conf.durable_enqueue_timeout = 3.0


def span_line(span: ReadableSpan) -> dict[str, Any]:
    """What the tests read of a span: names, ids (hex), attributes and links."""
    context = span.get_span_context()
    return {
        "name": span.name,
        "trace_id": f"{context.trace_id:032x}",
        "span_id": f"{context.span_id:016x}",
        "parent_id": f"{span.parent.span_id:016x}" if span.parent is not None else None,
        "attributes": dict(span.attributes or {}),
        "links": [f"{link.context.span_id:016x}" for link in span.links],
        "pid": os.getpid(),
    }


class LineExporter(SpanExporter):
    """Appends each ended span to a file, one JSON object per line."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a", encoding="utf-8") as out:
            for span in spans:
                out.write(json.dumps(span_line(span), default=str) + "\n")
        return SpanExportResult.SUCCESS


@worker_process_init.connect(weak=False)
def _trace_this_process(**_: Any) -> None:
    path = os.environ.get("DURABLE_TEST_SPANS")
    if not path:
        return
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(LineExporter(path)))
    trace.set_tracer_provider(provider)
    CeleryInstrumentor().instrument(tracer_provider=provider)


@durable.step()
def t_one(x: int) -> int:
    record_effect(durable, "t_one")
    return x + 1


@durable.step()
def t_two(x: int) -> int:
    record_effect(durable, "t_two")
    return x * 2


@durable.step()
def t_three(x: int) -> int:
    record_effect(durable, "t_three")
    return x - 1


@durable.workflow()
def traced(x: int) -> int:
    y = t_two(t_one(x))
    crash_if_flagged("traced_after_two")  # the worker dies with two steps recorded
    return t_three(y)  # type: ignore[no-any-return]


def setup() -> None:
    ensure_tables(durable)
