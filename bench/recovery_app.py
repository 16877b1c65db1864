"""The Celery app of the kill-to-resume benchmark (bench/sweep.py, part c).

A durable workflow of 5 steps that each sleep 0.2 s, with fast failure detection: the
sweep runs every second on beat, an executor is gone after 3 s without a heartbeat, a
message is lost after 3 s. BENCH_SWEEP_QUEUE routes the sweep task to a queue of its own.
"""

from __future__ import annotations

import os
import time

from celery import Celery

from celery_durable import Durable

STEPS = 5
STEP_SECONDS = 0.2

app = Celery("bench_recovery")
app.conf.broker_url = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/4")
app.conf.task_default_queue = os.environ.get("BENCH_QUEUE", "bench-recovery")
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
app.conf.durable_database_url = os.environ.get("BENCH_DB_URL")
app.conf.durable_recovery_interval = 1.0
app.conf.durable_executor_timeout = 3.0
app.conf.durable_heartbeat_interval = 0.5
app.conf.durable_enqueue_timeout = 3.0
if os.environ.get("BENCH_SWEEP_QUEUE"):
    app.conf.task_routes = {"celery_durable.recover": {"queue": os.environ["BENCH_SWEEP_QUEUE"]}}
durable = Durable(app)


@durable.step(name="bench.recovery.nap")
def nap(x: int) -> int:
    time.sleep(STEP_SECONDS)
    return x + 1


@durable.workflow(name="bench.recovery.wf5")
def wf5(x: int) -> int:
    for _ in range(STEPS):
        x = nap(x)
    return x
