"""Durable queues and a seconds-field schedule for the flow-control tests (issue 13).

Queue names carry the session's queue name, so parallel sessions never share them. Every
run notes its start and end (and the worker process) in ``test_flow_runs``, and each
schedule run its tick in ``test_flow_ticks``: a test reads concurrency, rates and order
from these timestamps, written from inside the workflows.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from datetime import datetime

from sqlalchemy import text

from .common import make_app

app, durable = make_app("flow_app")
app.conf.durable_enqueue_timeout = 3.0
app.conf.durable_admission_interval = 0.2
app.conf.durable_schedule_interval = 0.5
app.conf.durable_recovery_interval = None  # the tests run the sweep themselves

BASE = os.environ.get("DURABLE_TEST_QUEUE", "celery")
q3 = durable.queue(f"{BASE}-q3", concurrency=3)
rate = durable.queue(f"{BASE}-rate", limiter=(5, 2.0))
prio = durable.queue(f"{BASE}-prio", concurrency=1, priority_enabled=True)
free = durable.queue(f"{BASE}-free")
crash = durable.queue(f"{BASE}-crash", concurrency=3)
per_worker = durable.queue(f"{BASE}-wc1", worker_concurrency=1)
lossy = durable.queue(f"{BASE}-lossy", concurrency=2)  # no worker until its messages are lost
charges = durable.queue(f"{BASE}-charges", concurrency=2)  # chain steps (charge)
charges_crash = durable.queue(f"{BASE}-charges-crash", concurrency=2)  # its own workers
crash_wc = durable.queue(f"{BASE}-crash-wc", worker_concurrency=1)  # its own workers
kids = durable.queue(f"{BASE}-kids", concurrency=2)  # child workflows (fan_out's)
SCHEDULE_QUEUE = f"{BASE}-schedules"  # the schedule's checks and runs, for these workers alone
PLAIN_QUEUE = f"{BASE}-plain"  # a plain Celery queue: the chains' steps not limited
app.conf.task_routes = {
    "celery_durable.schedules": {"queue": SCHEDULE_QUEUE},
    "tests.apps.flow_app.ticked": {"queue": SCHEDULE_QUEUE},
    "tests.apps.flow_app.prep": {"queue": PLAIN_QUEUE},
    "tests.apps.flow_app.done": {"queue": PLAIN_QUEUE},
    "tests.apps.flow_app.fan_out": {"queue": PLAIN_QUEUE},
    "tests.apps.flow_app.charge": {"queue": charges.name},
}
SHARED_QUEUES = ",".join(
    [SCHEDULE_QUEUE, PLAIN_QUEUE, q3.name, rate.name, prio.name, free.name, per_worker.name,
     charges.name, kids.name]
)  # fmt: skip
SCHEDULE = f"tick-{BASE}"

RUNS_DDL = """
CREATE TABLE IF NOT EXISTS test_flow_runs (
    run_id VARCHAR(64) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    key VARCHAR(255) NOT NULL,
    worker VARCHAR(255) NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    ended DOUBLE PRECISION
)
"""
TICKS_DDL = """
CREATE TABLE IF NOT EXISTS test_flow_ticks (
    run_id VARCHAR(64) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    tick VARCHAR(64) NOT NULL,
    at DOUBLE PRECISION NOT NULL
)
"""


def ensure_flow_tables() -> None:
    with durable.store.engine.begin() as conn:
        conn.execute(text(RUNS_DDL))
        conn.execute(text(TICKS_DDL))


def note_run(key: str, seconds: float) -> None:
    """Sleep ``seconds`` between a start and an end noted in ``test_flow_runs``."""
    run_id = uuid.uuid4().hex
    with durable.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO test_flow_runs (run_id, workflow_id, key, worker, started)"
                " VALUES (:r, :w, :k, :p, :t)"
            ),
            {"r": run_id, "w": durable.workflow_id, "k": key, "t": time.time(),
             "p": f"{socket.gethostname()}:{os.getppid()}"},
        )  # fmt: skip
    time.sleep(seconds)
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("UPDATE test_flow_runs SET ended = :t WHERE run_id = :r"),
            {"r": run_id, "t": time.time()},
        )


@durable.workflow()
def timed(key: str, seconds: float) -> str:
    note_run(key, seconds)
    return key


@durable.workflow()
def fan_out(key: str, n: int, seconds: float) -> list[str]:
    """``n`` children ``timed`` in the durable queue ``kids`` (at most 2 at once), gathered."""
    handles = [durable.start_workflow(timed, f"{key}{i}", seconds, queue=kids) for i in range(n)]
    return durable.gather(handles)  # type: ignore[no-any-return]


# a chain prep -> charge -> done, routed by task_routes: prep and done to a plain queue,
# charge to the durable queue ``charges`` (at most 2 at once)
@durable.step()
def prep(key: str, seconds: float) -> str:
    note_run(f"{key}:prep", seconds)
    return key


@durable.step()
def charge(key: str, seconds: float) -> str:
    note_run(f"{key}:charge", seconds)
    return key


@durable.step()
def done(key: str, seconds: float) -> str:
    note_run(f"{key}:done", seconds)
    return key


@durable.scheduled("*/2 * * * * *", name=SCHEDULE, backfill=5)
@durable.workflow()
def ticked(tick: datetime) -> str:
    with durable.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO test_flow_ticks (run_id, workflow_id, tick, at)"
                " VALUES (:r, :w, :k, :t)"
            ),
            {"r": uuid.uuid4().hex, "w": durable.workflow_id, "k": tick.isoformat(),
             "t": time.time()},
        )  # fmt: skip
    return tick.isoformat()
