"""Three `celery worker -c 4` processes shared by the flow-control tests (they
consume the session queue and every shared durable queue of tests/apps/flow_app.py), and
readers of what the workflows noted from inside.

The app is imported inside the fixtures: this conftest may load before the root one has
put the session's database in the environment."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.conftest import WorkerProcess

APP = "tests.apps.flow_app"

Run = tuple[str, str, str, float, float | None]  # workflow id, key, worker, started, ended


@pytest.fixture(scope="package")
def shared_workers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[WorkerProcess]]:
    from tests.apps.flow_app import SHARED_QUEUES, ensure_flow_tables

    ensure_flow_tables()
    logs: Path = tmp_path_factory.mktemp("flow-workers")
    procs = [WorkerProcess(APP, logs, queues=SHARED_QUEUES, concurrency=4) for _ in range(3)]
    try:
        with ThreadPoolExecutor(len(procs)) as pool:  # side by side: a third of the wait
            list(pool.map(lambda proc: proc.start(), procs))
        yield procs
    finally:
        for proc in procs:  # warm shutdowns side by side
            if proc.alive:
                proc.terminate()
        for proc in procs:
            proc.stop(timeout=10)


def runs(keys_like: str) -> list[Run]:
    """The runs noted by ``timed`` whose key starts with ``keys_like``, by start time."""
    from tests.apps.flow_app import durable

    query = text(
        "SELECT workflow_id, key, worker, started, ended FROM test_flow_runs"
        " WHERE key LIKE :k ORDER BY started"
    )
    with durable.store.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(query, {"k": keys_like + "%"})]  # type: ignore[misc]


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an end at t closes before a start at t)."""
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    best = current = 0
    for _, delta in events:
        current += delta
        best = max(best, current)
    return best


def sweep_until_finished(ids: list[str], timeout: float = 40) -> None:
    """Run the recovery sweep here (the flow app's beat does not) until every workflow of
    ``ids`` ended SUCCESS."""
    from tests.apps.flow_app import durable
    from tests.conftest import wait_for

    def done() -> bool:
        durable.recover()
        return all(
            (status := durable.get_workflow_status(i)) is not None and status.status == "SUCCESS"
            for i in ids
        )

    wait_for(done, timeout=timeout, interval=0.5)
