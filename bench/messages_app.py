"""The Celery app of ``python -m bench.messages``: a workflow that waits for one message
(parked, without a worker slot) and stamps the time it received it."""

from __future__ import annotations

import os
import time

from celery import Celery

from celery_durable import Durable

app = Celery("bench_messages")
app.conf.broker_url = os.environ.get("BENCH_BROKER", "redis://127.0.0.1:6379/2")
app.conf.result_backend = os.environ.get("BENCH_BACKEND", "redis://127.0.0.1:6379/3")
app.conf.task_default_queue = os.environ.get("BENCH_QUEUE", "bench-messages")
app.conf.result_expires = 600
app.conf.worker_hijack_root_logger = False
app.conf.broker_connection_retry_on_startup = True
app.conf.durable_database_url = os.environ.get("BENCH_DB_URL")
app.conf.durable_recovery_interval = 0  # no sweep: every wake-up measured is the send's
# any wait longer than this parks the workflow; BENCH_INLINE_WAIT=600 keeps it in its slot
app.conf.durable_max_inline_retry_wait = float(os.environ.get("BENCH_INLINE_WAIT", "1.0"))
durable = Durable(app)


@durable.step(name="bench.received_at")
def received_at() -> float:
    return time.time()


@durable.workflow(name="bench.wait_for_ping")
def wait_for_ping() -> float | None:
    if durable.recv("ping", timeout_seconds=300) is None:
        return None
    return received_at()  # type: ignore[no-any-return]
