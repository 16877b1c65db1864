"""Shared set-up of the test Celery apps: configuration from the environment, and the
tables where step bodies count their runs (effects) and note their attempts."""

from __future__ import annotations

import os
import time
import uuid
from collections import Counter

from celery import Celery
from sqlalchemy import text

from celery_durable import Durable, StepStatus

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS test_effects (
    effect_id VARCHAR(64) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    step VARCHAR(255) NOT NULL
)
"""

ATTEMPTS_DDL = """
CREATE TABLE IF NOT EXISTS test_attempts (
    attempt_id VARCHAR(64) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    step VARCHAR(255) NOT NULL,
    attempt INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    at FLOAT NOT NULL
)
"""


def make_app(name: str) -> tuple[Celery, Durable]:
    """A Celery app configured by the DURABLE_TEST_* variables the fixtures set."""
    app = Celery(name)
    app.conf.broker_url = os.environ.get("DURABLE_TEST_BROKER", "redis://127.0.0.1:6379/0")
    app.conf.result_backend = os.environ.get("DURABLE_TEST_BACKEND", "redis://127.0.0.1:6379/1")
    app.conf.task_default_queue = os.environ.get("DURABLE_TEST_QUEUE", "celery")
    app.conf.broker_connection_retry_on_startup = True
    app.conf.worker_hijack_root_logger = False
    app.conf.durable_database_url = os.environ.get("DURABLE_TEST_DB_URL")
    app.conf.durable_heartbeat_interval = float(os.environ.get("DURABLE_TEST_HEARTBEAT", "0.5"))
    app.conf.durable_executor_timeout = float(os.environ.get("DURABLE_TEST_EXECUTOR_TIMEOUT", "3"))
    durable = Durable(app)
    return app, durable


def ensure_tables(durable: Durable) -> None:
    """Create the effects and attempts tables (once per test database)."""
    with durable.store.engine.begin() as conn:
        conn.execute(text(EFFECTS_DDL))
        conn.execute(text(ATTEMPTS_DDL))


def record_effect(durable: Durable, step: str) -> None:
    """Count one execution of ``step`` for the running workflow (committed at once)."""
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO test_effects (effect_id, workflow_id, step) VALUES (:e, :w, :s)"),
            {"e": uuid.uuid4().hex, "w": durable.workflow_id or "-", "s": step},
        )


def record_attempt(durable: Durable, step: str) -> StepStatus:
    """Inside a step: note this attempt (number, maximum, time) and count one effect."""
    status = durable.step_status
    assert status is not None, "record_attempt runs inside a step"
    with durable.store.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO test_attempts"
                " (attempt_id, workflow_id, step, attempt, max_attempts, at)"
                " VALUES (:i, :w, :s, :a, :m, :t)"
            ),
            {
                "i": uuid.uuid4().hex,
                "w": durable.workflow_id or "-",
                "s": step,
                "a": status.current_attempt,
                "m": status.max_attempts,
                "t": time.time(),
            },
        )
    record_effect(durable, step)
    return status


def read_effects(durable: Durable, workflow_id: str) -> Counter[str]:
    """How many times each step body ran for ``workflow_id``."""
    query = text("SELECT step FROM test_effects WHERE workflow_id = :w")
    with durable.store.engine.connect() as conn:
        return Counter(step for (step,) in conn.execute(query, {"w": workflow_id}))


def read_attempts(
    durable: Durable, workflow_id: str, step: str | None = None
) -> list[tuple[int, int, float]]:
    """(attempt, max_attempts, time) of every attempt noted for the workflow, in time order."""
    query = "SELECT attempt, max_attempts, at FROM test_attempts WHERE workflow_id = :w"
    if step is not None:
        query += " AND step = :s"
    with durable.store.engine.connect() as conn:
        rows = conn.execute(text(query + " ORDER BY at"), {"w": workflow_id, "s": step})
        return [(a, m, t) for a, m, t in rows]


def crash_if_flagged(name: str) -> None:
    """SIGKILL this worker's whole process group once, when the test left a flag file."""
    flag_dir = os.environ.get("DURABLE_TEST_FLAGS")
    if not flag_dir:
        return
    path = os.path.join(flag_dir, name)
    try:
        os.remove(path)
    except FileNotFoundError:
        return
    import signal

    os.killpg(os.getpgid(0), signal.SIGKILL)
