"""``/metrics`` after a mixed run (successes, an error, retries, a recovery, a dead letter)
parses with prometheus_client's parser, and its numbers match the store."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from celery import Celery
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from celery_durable import Durable
from celery_durable.dashboard import DurableCollector, create_app
from celery_durable.testing import DurableTestKit
from celery_durable.types import WorkflowFilter, WorkflowRecord

app = Celery("metrics_run")
durable = Durable(app)
ATTEMPTS: dict[str, int] = {}


class Broken(Exception):
    pass


@durable.step()
def first(x: int) -> int:
    return x + 1


@durable.step(retries=2, interval_seconds=0.5)
def flaky(x: int) -> int:
    ATTEMPTS[str(x)] = ATTEMPTS.get(str(x), 0) + 1
    if ATTEMPTS[str(x)] == 1:
        raise Broken("first attempt fails")
    return x


@durable.step()
def broken(x: int) -> int:
    raise Broken(f"always {x}")


@durable.workflow()
def good(x: int) -> int:
    return flaky(first(x))


@durable.workflow()
def bad(x: int) -> int:
    return broken(first(x))


@durable.workflow(max_recovery_attempts=0)
def fragile(x: int) -> int:
    return first(x)


@pytest.fixture
def kit() -> Iterator[DurableTestKit]:
    ATTEMPTS.clear()
    with DurableTestKit(durable) as running:
        yield running


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, by name and labels."""
    found = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            found[s.name, tuple(sorted(s.labels.items()))] = s.value
    return found


def test_metrics_match_the_store_after_a_mixed_run(kit: DurableTestKit) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(DurableCollector(durable, lag=0))  # read rows up to now
    generate_latest(registry)  # the first scrape: counters count from here on

    durable.start_workflow(good, 1)
    durable.start_workflow(good, 2)
    durable.start_workflow(bad, 3)
    with kit.crash_after(first, times=2):
        recovered = durable.start_workflow(good, 4).workflow_id
        dead = durable.start_workflow(fragile, 5).workflow_id
    kit.recover()  # good(4) replays to SUCCESS; fragile(5) is over its limit: dead letter
    kit.clock.advance(1)
    found = samples(generate_latest(registry).decode())

    store = durable.store
    by_status = store.count_by_status(WorkflowFilter())
    assert by_status == {"SUCCESS": 3, "ERROR": 1, "MAX_RECOVERY_ATTEMPTS_EXCEEDED": 1}
    ended_total = [v for (n, _), v in found.items() if n == "durable_workflows_ended_total"]
    assert sum(ended_total) == sum(by_status.values())
    assert not [n for (n, _) in found if n == "durable_active_workflows"]  # none active

    def ended(name: str, status: str) -> float:
        return found["durable_workflows_ended_total", (("name", name), ("status", status))]

    assert ended(good.name, "SUCCESS") == 3
    assert ended(bad.name, "ERROR") == 1
    assert ended(fragile.name, "MAX_RECOVERY_ATTEMPTS_EXCEEDED") == 1
    assert found["durable_dead_letters_total", (("name", fragile.name),)] == 1
    assert store.get_workflow(recovered).recovery_attempts == 1  # type: ignore[union-attr]
    assert found["durable_workflow_recoveries_total", (("name", good.name),)] == 1
    assert store.get_workflow(dead).status == "MAX_RECOVERY_ATTEMPTS_EXCEEDED"  # type: ignore[union-attr]
    # flaky: each of 3 runs failed once then succeeded; broken: one attempt, failed
    assert found["durable_step_attempts_total", (("step", flaky.name),)] == 6
    assert found["durable_step_failed_attempts_total", (("step", flaky.name),)] == 3
    assert found["durable_step_failed_attempts_total", (("step", broken.name),)] == 1
    steps_ended = sum(len(store.load_steps(w.workflow_id)) for w in store.list_workflows())
    step_counts = [v for (n, _), v in found.items() if n == "durable_step_duration_seconds_count"]
    assert sum(step_counts) == steps_ended
    assert found["durable_workflow_duration_seconds_count", (("name", good.name),)] == 3
    assert found["durable_stalled_workflows", ()] == 0
    assert found["durable_oldest_enqueued_age_seconds", ()] == 0
    assert found["durable_executors", (("state", "live"),)] == 1


def test_the_dashboard_serves_metrics(serve: Any, kit: DurableTestKit) -> None:
    url = serve(create_app(durable))
    durable.start_workflow(good, 7)
    response = httpx.get(url + "/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert found["durable_stalled_workflows", ()] == 0
    enqueued = durable.store.insert_workflow(
        WorkflowRecord("queued-1", good.name, "ENQUEUED", created_at_ms=1, updated_at_ms=1)
    )
    assert enqueued
    found = samples(httpx.get(url + "/metrics").text)
    assert found["durable_active_workflows", (("name", good.name), ("status", "ENQUEUED"))] == 1
    assert found["durable_stalled_workflows", ()] == 1  # its message is long overdue
