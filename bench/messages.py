"""Wake-up latency of a message sent to a waiting workflow.

    python -m bench.messages               # 1,000 round trips, parked workflows
    python -m bench.messages --inline      # the same, workflows waiting in their slot
    python -m bench.messages --smoke       # 5 round trips

Starts workflows that ``durable.recv("ping", timeout_seconds=300)`` on one
``celery worker -P prefork -c 2``, waits until every one of a batch has parked (ENQUEUED,
slot given back), then sends each its message, ``--gap`` seconds apart so that wake-ups
do not queue behind one another, and reads back when each received it (a step stamping
``time.time()`` right after ``recv``). The latency of one round trip is that stamp minus
the time just before ``durable.send``: the send's transaction, the publish, Redis, the
worker's claim and replay, and the ``recv``'s consuming transaction. With ``--inline``
the workflows wait in their slots instead, polling the store with backoff (up to
``durable_result_poll_interval``, 0.5 s); only as many as the worker has slots.
Prints the median, the 99th percentile and the maximum, and a ``BENCH {json}`` line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
import uuid
from pathlib import Path

from bench.common import Group, forget_queue, install_cleanup, recreate_database, worker_cmd

CONCURRENCY = 2


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1000, help="round trips")
    parser.add_argument("--batch", type=int, default=50, help="workflows waiting at once")
    parser.add_argument("--gap", type=float, default=0.05, help="seconds between two sends")
    parser.add_argument("--inline", action="store_true", help="wait in the slot, not parked")
    parser.add_argument("--smoke", action="store_true", help="5 round trips")
    args = parser.parse_args()
    n = 5 if args.smoke else args.n
    batch = CONCURRENCY if args.inline else min(args.batch, n)
    install_cleanup()

    db_url = recreate_database("durable_bench_messages")
    queue = f"bench-messages-{uuid.uuid4().hex[:8]}"
    inline_wait = "600" if args.inline else "1.0"
    os.environ.update(
        {"BENCH_DB_URL": db_url, "BENCH_QUEUE": queue, "BENCH_INLINE_WAIT": inline_wait}
    )
    from bench.messages_app import app, durable, wait_for_ping

    durable.migrate()
    logs = Path(tempfile.mkdtemp(prefix="bench-messages-"))
    env = dict(os.environ)
    worker = Group(worker_cmd("bench.messages_app", queue, CONCURRENCY), env, logs / "worker.log")
    latencies: list[float] = []
    try:
        worker.wait_for_log(" ready.")
        warm_up = durable.start_workflow(wait_for_ping)  # imports and connections warm
        _wait_waiting([warm_up.workflow_id], parked=not args.inline)
        durable.send(warm_up.workflow_id, "warm-up", topic="ping")
        warm_up.get_result(timeout=60)
        while len(latencies) < n:
            count = min(batch, n - len(latencies))
            handles = [durable.start_workflow(wait_for_ping) for _ in range(count)]
            ids = [h.workflow_id for h in handles]
            _wait_waiting(ids, parked=not args.inline)
            sent: list[float] = []
            for workflow_id in ids:
                sent.append(time.time())
                durable.send(workflow_id, "ping", topic="ping")
                time.sleep(args.gap)
            for handle, at in zip(handles, sent, strict=True):
                received = handle.get_result(timeout=120)
                assert received is not None, "a recv timed out"
                latencies.append(received - at)
    finally:
        worker.stop()
        forget_queue(app, queue)
    row = {
        "bench": "messages",
        "mode": "inline" if args.inline else "parked",
        "round_trips": len(latencies),
        "median_ms": statistics.median(latencies) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000,
    }
    print(
        f"{row['mode']}: {row['round_trips']} round trips, median {row['median_ms']:.1f} ms, "
        f"p99 {row['p99_ms']:.1f} ms, max {row['max_ms']:.1f} ms"
    )
    print("BENCH " + json.dumps(row))
    return 0


def _wait_waiting(ids: list[str], *, parked: bool, timeout: float = 60) -> None:
    """Until every workflow waits in its recv: parked (ENQUEUED with a wake-up time), or
    (inline) running with its recv's deadline recorded."""
    from bench.messages_app import durable as d

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = d.store.list_workflows(workflow_ids=ids, limit=None)
        if parked:
            ready = [w for w in rows if w.status == "ENQUEUED" and w.wake_at_ms is not None]
        else:
            ready = [w for w in rows if w.status == "PENDING" and d.store.load_steps(w.workflow_id)]
        if len(ready) == len(ids):
            return
        time.sleep(0.02)
    raise TimeoutError(f"workflows not waiting in {timeout}s")


if __name__ == "__main__":
    raise SystemExit(main())
