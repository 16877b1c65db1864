"""Prometheus metrics computed from the store, so any process with the app can serve them.

``DurableCollector(durable)`` is a ``prometheus_client`` collector: register it in a
registry (the dashboard serves its own at ``/metrics``; ``metrics_app(durable)`` is an ASGI
app of just that; ``prometheus_client.start_http_server`` serves ``REGISTRY`` once you
``REGISTRY.register(DurableCollector(durable))``).

Gauges describe the store as it is, each from an indexed query or from active workflows
alone. Counters and histograms count what ended since the collector started: every scrape
reads only the workflows that ended since the previous one (by ``completed_at_ms``,
through an index) and the attempt errors recorded since, so a scrape costs the same on a
history of millions. Rows are read up to ``lag`` seconds ago, which lets a transaction
that stamped its time just before a scrape but committed just after be counted next time.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from ..runtime import operations
from ..runtime.steps import SLEEP_STEP
from ..types import (
    EndedWorkflow,
    ExecutorState,
    PageCursor,
    WorkflowState,
)

if TYPE_CHECKING:
    from ..integration.durable import Durable

#: seconds; workflows run from milliseconds to days
BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0, 3600.0)
FEED_PAGE = 1000


@dataclass
class Histogram:
    """Cumulative bucket counts and a sum, per label value."""

    counts: dict[str, list[int]] = field(default_factory=dict)
    sums: dict[str, float] = field(default_factory=dict)

    def observe(self, label: str, seconds: float) -> None:
        counts = self.counts.setdefault(label, [0] * (len(BUCKETS) + 1))
        for i, bound in enumerate(BUCKETS):
            if seconds <= bound:
                counts[i] += 1
        counts[-1] += 1  # +Inf
        self.sums[label] = self.sums.get(label, 0.0) + seconds

    def family(self, name: str, doc: str, label: str) -> HistogramMetricFamily:
        family = HistogramMetricFamily(name, doc, labels=[label])
        for value, counts in sorted(self.counts.items()):
            buckets = [(str(b), c) for b, c in zip(BUCKETS, counts, strict=False)]
            family.add_metric([value], [*buckets, ("+Inf", counts[-1])], self.sums[value])
        return family


def _add(counter: dict[tuple[str, ...], int], key: tuple[str, ...], n: int = 1) -> None:
    counter[key] = counter.get(key, 0) + n


class DurableCollector(Collector):
    """celery-durable's metrics from the store (see the module docstring)."""

    def __init__(self, durable: Durable, *, lag: float = 2.0) -> None:
        self.durable = durable
        self.lag_ms = int(lag * 1000)
        self._lock = threading.Lock()
        self._cursor: PageCursor | None = None  # the feed's position: set on first scrape
        self._errors_since = 0  # attempt errors are counted from here on
        self.completed: dict[tuple[str, ...], int] = {}  # (name, status)
        self.recoveries: dict[tuple[str, ...], int] = {}  # (name,)
        self.step_attempts: dict[tuple[str, ...], int] = {}  # (step,)
        self.step_failures: dict[tuple[str, ...], int] = {}  # (step,)
        self.workflow_seconds = Histogram()
        self.step_seconds = Histogram()

    # the feed of what ended -------------------------------------------------
    def _catch_up(self) -> None:
        runtime = self.durable.runtime
        until = runtime.clock.now_ms() - self.lag_ms
        if self._cursor is None:  # counters count from now on, as any process's do
            self._cursor = PageCursor(until, "")
            self._errors_since = until
            return
        while True:
            ended = runtime.store.ended_after(self._cursor, until, FEED_PAGE)
            for item in ended:
                self._count(item)
            if ended:
                last = ended[-1].workflow
                self._cursor = PageCursor(last.completed_at_ms or 0, last.workflow_id)
            if len(ended) < FEED_PAGE:
                break
        # the next page starts at ``until``: a later row cannot have a smaller time
        self._cursor = max(self._cursor, PageCursor(until - 1, "\U0010ffff"))
        for step, n in runtime.store.failed_attempts_between(self._errors_since, until).items():
            _add(self.step_failures, (step,), n)
        self._errors_since = until

    def _count(self, item: EndedWorkflow) -> None:
        w = item.workflow
        _add(self.completed, (w.name, w.status))
        _add(self.recoveries, (w.name,), w.recovery_attempts)
        if w.completed_at_ms is not None:
            self.workflow_seconds.observe(w.name, (w.completed_at_ms - w.created_at_ms) / 1000)
        for s in item.steps:
            if s.name == SLEEP_STEP:
                continue
            _add(self.step_attempts, (s.name,), s.attempts)
            if s.started_at_ms is not None and s.completed_at_ms is not None:
                self.step_seconds.observe(s.name, (s.completed_at_ms - s.started_at_ms) / 1000)

    # what a scrape sees -------------------------------------------------------
    def collect(self) -> Iterator[Metric]:
        runtime = self.durable.runtime
        # no gauge of every workflow by status: counting a long history is what a scrape
        # must not do; ended ones are the counters above, active ones the gauges below.
        # The gauges' queries are independent: run side by side, a scrape waits for the
        # slowest alone (each reads only active workflows, which a backlog makes many)
        store = runtime.store
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="durable-metrics") as pool:
            by_name = pool.submit(store.count_active_by_name)
            stalled = pool.submit(operations.stalled_count, runtime)
            oldest = pool.submit(operations.oldest_enqueued_seconds, runtime)
            executors = pool.submit(self._executors)
            with self._lock:
                self._catch_up()
                yield from self._counters()
            active = GaugeMetricFamily(
                "durable_active_workflows",
                "ENQUEUED and PENDING workflows, by name and status.",
                labels=["name", "status"],
            )
            for name, status, n in by_name.result():
                active.add_metric([name, status], n)
            yield active
            yield GaugeMetricFamily(
                "durable_stalled_workflows",
                "Workflows the recovery sweep would take now (owner gone, or message lost).",
                value=stalled.result(),
            )
            yield GaugeMetricFamily(
                "durable_oldest_enqueued_age_seconds",
                "How long the longest-waiting due ENQUEUED workflow has waited (0: none).",
                value=oldest.result() or 0.0,
            )
            yield executors.result()

    def _executors(self) -> GaugeMetricFamily:
        runtime = self.durable.runtime
        since = runtime.clock.now_ms() - 3_600_000
        states = {"live": 0, "silent": 0, "stopped": 0}
        for work in runtime.store.list_executors(since):
            if work.executor.status == ExecutorState.STOPPED:
                states["stopped"] += 1
            else:
                states["live" if operations.executor_is_live(runtime, work) else "silent"] += 1
        family = GaugeMetricFamily(
            "durable_executors",
            "Executors (workers, direct callers) seen in the last hour, by state.",
            labels=["state"],
        )
        for state, n in states.items():
            family.add_metric([state], n)
        return family

    def _counters(self) -> Iterable[Metric]:
        def counter(
            name: str, doc: str, labels: list[str], values: dict[tuple[str, ...], int]
        ) -> CounterMetricFamily:
            family = CounterMetricFamily(name, doc, labels=labels)
            for key, n in sorted(values.items()):
                family.add_metric(list(key), n)
            return family

        yield counter(
            "durable_workflows_ended",
            "Workflows that ended since this collector started, by name and final status.",
            ["name", "status"],
            self.completed,
        )
        dead: dict[tuple[str, ...], int] = {
            (name,): n
            for (name, status), n in self.completed.items()
            if status == WorkflowState.MAX_RECOVERY_ATTEMPTS_EXCEEDED
        }
        yield counter(
            "durable_dead_letters",
            "Workflows that ended MAX_RECOVERY_ATTEMPTS_EXCEEDED since this collector started.",
            ["name"],
            dead,
        )
        yield counter(
            "durable_workflow_recoveries",
            "Recovery attempts of the workflows that ended since this collector started.",
            ["name"],
            self.recoveries,
        )
        yield counter(
            "durable_step_attempts",
            "Attempts of the steps of the workflows that ended since this collector started.",
            ["step"],
            self.step_attempts,
        )
        yield counter(
            "durable_step_failed_attempts",
            "Failed step attempts (each retried, or the last) since this collector started.",
            ["step"],
            self.step_failures,
        )
        yield self.workflow_seconds.family(
            "durable_workflow_duration_seconds",
            "From creation to end, of workflows that ended since this collector started.",
            "name",
        )
        yield self.step_seconds.family(
            "durable_step_duration_seconds",
            "From the first attempt's start to the checkpoint, of steps of ended workflows.",
            "step",
        )


def registry_for(durable: Durable) -> CollectorRegistry:
    """A registry of its own holding a ``DurableCollector``."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DurableCollector(durable))
    return registry
