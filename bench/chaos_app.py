"""The Celery app of the chaos run (``python -m bench.chaos``): durable workflows and chains
whose step bodies count every execution of themselves.

Configured from the environment (CHAOS_DB_URL, CHAOS_BROKER, CHAOS_QUEUE), so the run's
client and its workers build the same app. Every step body first records one effect row
(workflow, step, attempt, pid, start time), committed at once and outside the step's
checkpoint; a transaction step also inserts a row inside its transaction, so a body that
committed twice shows. ``KINDS`` are the workflow shapes the run mixes, with the status
and output each must end with.

Messages are acknowledged late and Redis gives an unacknowledged message to another
worker after 3 s, so a workflow running longer than that is delivered twice while its
steps run; workers log each redelivered message they receive (``chaos-redelivered``).
"""

from __future__ import annotations

import logging
import os
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from celery import Celery, chain
from celery.signals import task_received
from sqlalchemy import text

from celery_durable import Durable, SetWorkflowID
from celery_durable.store.engine import with_retries

QUEUE = os.environ.get("CHAOS_QUEUE", "chaos")
SWEEP_QUEUE = f"{QUEUE}.sweep"
VISIBILITY_TIMEOUT = 3.0
OVERRUN_LIMIT = 2.0  # the hard time limit of chaos.overrun, which its first run overshoots
REDELIVERED = "chaos-redelivered"
LOG_FORMAT = "[%(created).3f %(levelname)s/%(processName)s %(process)d] %(message)s"

app = Celery("chaos")
app.conf.update(
    broker_url=os.environ.get("CHAOS_BROKER", "redis://127.0.0.1:6379/0"),
    task_default_queue=QUEUE,
    task_acks_late=True,
    worker_prefetch_multiplier=1,
    broker_transport_options={
        "visibility_timeout": VISIBILITY_TIMEOUT,
        # look for expired unacknowledged messages every second, not every 100 s
        "unacked_restore_interval": 1,
        "unacked_restore_throttle": 1,
    },
    broker_connection_retry_on_startup=True,
    broker_connection_max_retries=None,  # Redis restarts: retry, never give up
    worker_log_format=LOG_FORMAT,  # epoch seconds and pid: the verdict reads the logs
    worker_task_log_format=LOG_FORMAT,
    durable_database_url=os.environ.get("CHAOS_DB_URL"),
    durable_recovery_interval=1.0,
    durable_executor_timeout=3.0,
    durable_heartbeat_interval=0.5,
    durable_enqueue_timeout=5.0,
    durable_recovery_queue=SWEEP_QUEUE,
    # faults must never dead-letter a workflow here: a crash loop would show as lost work
    durable_default_max_recovery_attempts=1000,
)
durable = Durable(app)
log = logging.getLogger("bench.chaos")

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS chaos_effects (
    effect_id TEXT PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    step_id INTEGER NOT NULL,
    step TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    pid INTEGER NOT NULL,
    started_at DOUBLE PRECISION NOT NULL,
    planned_failure BOOLEAN NOT NULL
)
"""
# no unique key: a transaction body committed twice must show as two rows, not an error
COMMITS_DDL = """
CREATE TABLE IF NOT EXISTS chaos_commits (
    id BIGSERIAL PRIMARY KEY,
    workflow_id TEXT NOT NULL,
    step_id INTEGER NOT NULL
)
"""


class Declined(Exception):
    """A business error: never retried, ends its workflow ERROR."""


def create_tables() -> None:
    with durable.store.engine.begin() as conn:
        conn.execute(text(EFFECTS_DDL))
        conn.execute(text(COMMITS_DDL))


def _write(what: str, sql: str, params: dict[str, object]) -> None:
    """Commit one statement, retrying while the database is restarting or cut off."""

    def run() -> None:
        with durable.store.engine.begin() as conn:
            conn.execute(text(sql), params)

    with_retries(run, timeout=120, what=what)


def record_effect(step: str, *, planned_failure: bool = False) -> None:
    """Count this execution of the running step (a retried insert keeps one row)."""
    status = durable.step_status
    assert status is not None, "record_effect runs inside a step"
    _write(
        "chaos effect",
        "INSERT INTO chaos_effects VALUES (:e, :w, :s, :n, :a, :p, :t, :f)"
        " ON CONFLICT (effect_id) DO NOTHING",
        {
            "e": uuid.uuid4().hex, "w": durable.workflow_id, "s": status.step_id, "n": step,
            "a": status.current_attempt, "p": os.getpid(), "t": time.time(), "f": planned_failure,
        },
    )  # fmt: skip


def pause(low: float = 0.05, high: float = 0.3) -> None:
    """Sleep a time fixed by the workflow and step (the same on every run of the step)."""
    status = durable.step_status
    key = f"{durable.workflow_id}/{status.step_id if status else -1}"
    time.sleep(random.Random(key).uniform(low, high))


def ran_before() -> bool:
    status = durable.step_status
    assert status is not None
    query = text("SELECT 1 FROM chaos_effects WHERE workflow_id = :w AND step_id = :s LIMIT 1")
    params = {"w": durable.workflow_id, "s": status.step_id}

    def run() -> bool:
        with durable.store.engine.connect() as conn:
            return conn.execute(query, params).first() is not None

    return with_retries(run, timeout=120, what="chaos effects read")


@durable.step(name="chaos.work")
def work(x: int) -> int:
    record_effect("work")
    pause()
    return x + 1


@durable.step(name="chaos.linger")
def linger(x: int) -> int:
    """A longer step: a workflow of a dozen (about 6 s) outlives the visibility timeout, and a
    warm shutdown that catches one early outlasts the executor timeout while it drains."""
    record_effect("linger")
    pause(0.35, 0.55)
    return x + 1


@durable.step(name="chaos.flaky", retries=2, interval_seconds=0.2)
def flaky(x: int) -> int:
    """Fails its first attempt, succeeds on the retry."""
    status = durable.step_status
    first = status is not None and status.current_attempt == 0
    record_effect("flaky", planned_failure=first)
    pause()
    if first:
        raise ConnectionError("chaos: the first attempt fails")
    return x + 1


@durable.step(name="chaos.declined", retries=3, dont_retry_on=Declined)
def declined(x: int) -> int:
    record_effect("declined", planned_failure=True)
    raise Declined(f"chaos: payment of {x} declined")


@durable.transaction(name="chaos.book")
def book(x: int) -> int:
    """Inserts its commit row in the step's own transaction, then lingers in it, so a kill
    or a terminated backend lands inside the transaction."""
    record_effect("book")
    status = durable.step_status
    durable.sql_session.execute(
        text("INSERT INTO chaos_commits (workflow_id, step_id) VALUES (:w, :s)"),
        {"w": durable.workflow_id, "s": status.step_id if status else -1},
    )
    pause()
    return x + 1


@durable.step(name="chaos.overrun", time_limit=OVERRUN_LIMIT)
def overrun(x: int) -> int:
    """Its first run outlasts the hard time limit: Celery kills the pool process."""
    first = not ran_before()
    record_effect("overrun")
    if first:
        time.sleep(OVERRUN_LIMIT * 3)
    pause()
    return x + 1


SHAPES: dict[str, list[Callable[[int], int]]] = {
    "short": [work, book, work, work],
    "long": [work, book, *[linger] * 12],
    "flaky": [work, flaky, book, work],
    "declined": [work, book, declined],
}


@durable.workflow(name="chaos.order")
def order(x: int, shape: str) -> int:
    for step in SHAPES[shape]:
        x = step(x)
    return x


@dataclass(frozen=True)
class Kind:
    """One workflow shape of the mix: how it starts, and how it must end."""

    name: str
    weight: float  # share of the run's workflows (0: only where the run places it)
    steps: int  # each adds 1: a SUCCESS ends with output x + steps
    start: Callable[[str, int], object]
    declined: bool = False  # must end ERROR with Declined

    def expected_output(self, x: int) -> int | None:
        return None if self.declined else x + self.steps


def _code(shape: str) -> Callable[[str, int], object]:
    def start(workflow_id: str, x: int) -> object:
        with SetWorkflowID(workflow_id):
            return durable.start_workflow(order, x, shape)

    return start


def _durable_chain(middle: Callable[[int], int]) -> Callable[[str, int], object]:
    def start(workflow_id: str, x: int) -> object:
        links = (work.s(x), work.s(), middle.s(), work.s(), work.s())  # type: ignore[attr-defined]
        return durable.chain(*links).start(workflow_id=workflow_id)

    return start


def _celery_chain(workflow_id: str, x: int) -> object:
    """A plain Celery chain of durable steps: its workflow id is the first task's id."""
    first = work.s(x).set(task_id=workflow_id)  # type: ignore[attr-defined]
    return chain(first, flaky.s(), work.s(), book.s(), work.s()).apply_async()  # type: ignore[attr-defined]


KINDS = {
    k.name: k
    for k in (
        Kind("workflow", 0.22, 4, _code("short")),
        Kind("workflow_long", 0.08, 14, _code("long")),
        Kind("workflow_flaky", 0.12, 4, _code("flaky")),
        Kind("workflow_declined", 0.06, 2, _code("declined"), declined=True),
        Kind("durable_chain", 0.22, 5, _durable_chain(book)),
        Kind("celery_chain", 0.24, 5, _celery_chain),
        Kind("chain_declined", 0.06, 2, _durable_chain(declined), declined=True),
        Kind("chain_overrun", 0.0, 5, _durable_chain(overrun)),
    )
}


@task_received.connect
def _note_redelivery(request: object = None, **_: object) -> None:
    """In the worker's main process: log every message Redis handed out a second time."""
    info = getattr(request, "delivery_info", None) or {}
    if info.get("redelivered"):
        log.warning("%s %s", REDELIVERED, getattr(request, "id", "?"))
