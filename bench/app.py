"""The benchmark's Celery app: plain tasks, durable steps and a durable workflow.

Every process counts the SQL statements and commits it sends (SQLAlchemy engine events)
and writes them to $BENCH_STATS_DIR/<pid>.json when it shuts down.
"""

from __future__ import annotations

import atexit
import json
import os
from pathlib import Path
from typing import Any

from celery import Celery
from celery.signals import worker_process_shutdown, worker_shutdown
from sqlalchemy import event
from sqlalchemy.engine import Engine

from celery_durable import Durable

COUNTS = {"statements": 0, "commits": 0}


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
    COUNTS["statements"] += 1
    autocommit = conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT"
    if autocommit and statement.lstrip()[:6].upper() in ("INSERT", "UPDATE", "DELETE"):
        COUNTS["commits"] += 1  # a write outside a transaction is a transaction of its own


@event.listens_for(Engine, "commit")
def _count_commit(*_: Any) -> None:
    COUNTS["commits"] += 1


_HOT_TX = {"open": False}


def _count_hot(statement: str) -> None:
    """The store's hot path sends SQL on the driver connection: count it the same way."""
    word = statement.split(None, 1)[0].upper()
    if word == "BEGIN":
        _HOT_TX["open"] = True
    elif word in ("COMMIT", "ROLLBACK"):
        _HOT_TX["open"] = False
        if word == "COMMIT":
            COUNTS["commits"] += 1
    elif word != "SET":  # the relaxed connection's one-time session setting
        COUNTS["statements"] += 1
        if not _HOT_TX["open"] and word in ("INSERT", "UPDATE", "DELETE"):
            COUNTS["commits"] += 1


def dump_counts(*_: Any, **__: Any) -> None:
    folder = os.environ.get("BENCH_STATS_DIR")
    if folder:
        Path(folder, f"{os.getpid()}.json").write_text(json.dumps(COUNTS))


worker_process_shutdown.connect(dump_counts, weak=False)
worker_shutdown.connect(dump_counts, weak=False)
atexit.register(dump_counts)

app = Celery("bench")
app.conf.broker_url = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/2")
app.conf.result_backend = os.environ.get("BENCH_BACKEND", "redis://127.0.0.1:6379/3")
app.conf.task_default_queue = os.environ.get("BENCH_QUEUE", "bench")
app.conf.result_expires = 600  # results are read within the run; keep Redis small between runs
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
app.conf.durable_database_url = os.environ.get("BENCH_DB_URL")
app.conf.durable_recovery_interval = float(os.environ.get("BENCH_RECOVERY_INTERVAL", "0"))
# 0: durable results are also written to the Redis backend (the lever bench.run measures)
app.conf.durable_store_results = os.environ.get("BENCH_STORE_RESULTS", "1") != "0"
durable = Durable(app)
durable.runtime.store.hot.on_statement = _count_hot


@app.task(name="bench.inc")
def inc(x: int) -> int:
    return x + 1


@durable.step(name="bench.dinc")
def dinc(x: int) -> int:
    return x + 1


@durable.transaction(name="bench.dtx")
def dtx(x: int) -> int:
    return x + 1


@app.task(name="bench.total")
def total(values: list[int]) -> int:
    return sum(values)


@durable.step(name="bench.dtotal")
def dtotal(values: list[int]) -> int:
    return sum(values)


@durable.workflow(name="bench.wf10")
def wf10(x: int) -> int:
    for _ in range(10):
        x = dinc(x)
    return x
