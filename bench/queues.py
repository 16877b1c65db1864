"""Durable queue throughput: N workflows through a queue with ``concurrency=8`` against
the same N started straight onto a Celery queue, on one ``celery worker -c 8``, with the
largest number running at once sampled from the store every 10 ms.

    python -m bench.queues [N] [ROUNDS]

Per mode: the N starts are made first, from one client thread with no worker running
(start cost per workflow); then a worker starts and the run is timed in the store, from
the first workflow's start to the last one's end (the queue's admissions happen then, as
slots free). Modes alternate round by round; medians.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.common import Group, install_cleanup, recreate_database, worker_cmd
from celery_durable import SetWorkflowID

DB = "durable_bench_flow"


def sample_running(url: str, queue: str, stop: threading.Event, out: list[int]) -> None:
    engine = create_engine(url)
    query = text("SELECT count(*) FROM durable_workflows WHERE queue = :q AND status = 'PENDING'")
    with engine.connect() as conn:
        while not stop.is_set():
            out.append(int(conn.execute(query, {"q": queue}).scalar_one()))
            conn.commit()
            time.sleep(0.01)
    engine.dispose()


def run_mode(app_module: Any, queued: bool, n: int, url: str, logs: Path) -> dict[str, float]:
    """Start ``n`` workflows with no worker running (the start cost), then start one
    worker and time the run from the first workflow's start to the last one's end."""
    durable, one = app_module.durable, app_module.one
    queue = app_module.QUEUED if queued else app_module.PLAIN
    tag = f"{'q' if queued else 'p'}-{time.time_ns()}"
    t0 = time.monotonic()
    for i in range(n):
        with SetWorkflowID(f"{tag}-{i}"):
            durable.start_workflow(one, i, queue=app_module.queue if queued else queue)
    start_ms = (time.monotonic() - t0) / n * 1000
    stop, seen = threading.Event(), []
    sampler = threading.Thread(target=sample_running, args=(url, queue, stop, seen))
    sampler.start()
    worker = Group(worker_cmd("bench.queue_app", queue, 8), dict(os.environ),
                   logs / f"{tag}.log")  # fmt: skip
    engine = create_engine(url)
    done = text(
        "SELECT count(*) FROM durable_workflows WHERE workflow_id LIKE :t AND status = 'SUCCESS'"
    )
    try:
        worker.wait_for_log("ready.", timeout=60)
        with engine.connect() as conn:
            while int(conn.execute(done, {"t": tag + "%"}).scalar_one()) < n:
                conn.commit()
                time.sleep(0.05)
            span = conn.execute(
                text(
                    "SELECT (max(completed_at_ms) - min(started_at_ms)) / 1000.0"
                    " FROM durable_workflows WHERE workflow_id LIKE :t"
                ),
                {"t": tag + "%"},
            ).scalar_one()
    finally:
        worker.stop()
        engine.dispose()
        stop.set()
        sampler.join()
    wall = float(span)
    return {"wall": wall, "rate": n / wall, "start_ms": start_ms, "max_running": max(seen or [0])}


def main() -> int:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 2
    install_cleanup()
    url = recreate_database(DB)
    os.environ.update({"BENCH_DB_URL": url, "BENCH_QUEUE": f"bench-flow-{os.getpid()}"})
    import bench.queue_app as app_module

    app_module.durable.migrate()
    logs = Path(tempfile.mkdtemp(prefix="bench-flow-"))
    results: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for _ in range(rounds):
        for queued in (False, True):
            r = run_mode(app_module, queued, n, url, logs)
            results[queued].append(r)
            label = "queue c=8" if queued else "no queue "
            print(label, {k: round(v, 2) for k, v in r.items()}, flush=True)
    print()
    print("| mode | workflows | start ms/workflow | run s | workflows/s | largest running |")
    print("|---|---:|---:|---:|---:|---:|")
    for queued in (False, True):
        rs = results[queued]
        print(
            f"| {'durable queue, concurrency=8' if queued else 'no queue'} | {n} | "
            f"{statistics.median(r['start_ms'] for r in rs):.2f} | "
            f"{statistics.median(r['wall'] for r in rs):.2f} | "
            f"{statistics.median(r['rate'] for r in rs):.1f} | "
            f"{max(r['max_running'] for r in rs):.0f} |"
        )
    ratios = [q["rate"] / p["rate"] for q, p in zip(results[True], results[False], strict=True)]
    print(f"\nqueue / no queue, round by round: {', '.join(f'{x:.2f}' for x in ratios)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
