"""The Celery app of the durable-queue benchmark (bench/queues.py): one durable workflow
of one step that sleeps 10 ms (``BENCH_STEP_SECONDS``), started either through a durable queue with
``concurrency=8`` or straight onto a Celery queue."""

from __future__ import annotations

import os
import time

from celery import Celery

from celery_durable import Durable

QUEUED = os.environ.get("BENCH_QUEUE", "bench-flow") + "-q8"
PLAIN = os.environ.get("BENCH_QUEUE", "bench-flow") + "-plain"
STEP_SECONDS = float(os.environ.get("BENCH_STEP_SECONDS", "0.01"))

app = Celery("bench_flow")
app.conf.broker_url = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/4")
app.conf.task_default_queue = PLAIN
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
app.conf.durable_database_url = os.environ.get("BENCH_DB_URL")
app.conf.durable_recovery_interval = None
durable = Durable(app)
queue = durable.queue(QUEUED, concurrency=8)


@durable.step(name="bench.flow.nap")
def nap(x: int) -> int:
    time.sleep(STEP_SECONDS)
    return x + 1


@durable.workflow(name="bench.flow.one")
def one(x: int) -> int:
    return nap(x)  # type: ignore[no-any-return]
