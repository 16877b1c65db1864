"""Shared set-up of the test Celery apps: configuration from the environment, effects table."""

from __future__ import annotations

import os
import uuid

from celery import Celery
from sqlalchemy import text

from celery_durable import Durable

EFFECTS_DDL = """
CREATE TABLE IF NOT EXISTS test_effects (
    effect_id VARCHAR(64) PRIMARY KEY,
    workflow_id VARCHAR(255) NOT NULL,
    step VARCHAR(255) NOT NULL
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


def ensure_effects_table(durable: Durable) -> None:
    with durable.store.engine.begin() as conn:
        conn.execute(text(EFFECTS_DDL))


def record_effect(durable: Durable, step: str) -> None:
    """Count one execution of ``step`` for the running workflow (committed at once)."""
    with durable.store.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO test_effects (effect_id, workflow_id, step) VALUES (:e, :w, :s)"),
            {"e": uuid.uuid4().hex, "w": durable.workflow_id or "-", "s": step},
        )


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
