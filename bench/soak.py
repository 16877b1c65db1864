"""Memory of a long-running worker: RSS after a few and after many durable workflows.

    python -m bench.soak                    # RSS after 1,000 and after 20,000 workflows
    python -m bench.soak --smoke            # after 50 and after 200

One ``celery -A bench.app worker -P prefork -c 2`` on a queue of its own runs bench.app's
wf10 (a durable workflow of 10 steps), submitted in batches of 500 that are each awaited
(``handle.get_result``) so the queue stays short. After each batch the resident memory of
the worker's main process and of each pool child is read with psutil. Target: the sum
grows by less than 20 MB between the two checkpoints.

Needs Postgres on 127.0.0.1:5432 (database durable_bench_soak, dropped at the end unless
--keep-db) and Redis on 127.0.0.1:6379. Prints a table and ``BENCH {json}`` lines.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psutil

from bench.common import (
    Group,
    bench_line,
    drop_database,
    forget_queue,
    install_cleanup,
    print_table,
    recreate_database,
    worker_cmd,
)

DB_NAME = "durable_bench_soak"
MB = 2**20


def memory(pid: int) -> dict[str, Any]:
    """RSS (and USS) of a worker's main process and of each of its pool children, in MB."""
    main = psutil.Process(pid)
    children = sorted(main.children(), key=lambda p: p.pid)

    def sizes(proc: psutil.Process) -> tuple[float, float]:
        info = proc.memory_full_info()
        return info.rss / MB, info.uss / MB

    main_rss, main_uss = sizes(main)
    kids = {p.pid: sizes(p) for p in children}
    return {
        "main_rss_mb": main_rss,
        "children_rss_mb": {pid: rss for pid, (rss, _) in kids.items()},
        "total_rss_mb": main_rss + sum(rss for rss, _ in kids.values()),
        "total_uss_mb": main_uss + sum(uss for _, uss in kids.values()),
    }


def run_batches(
    durable: Any, wf10: Any, worker: Group, checkpoints: list[int], batch: int
) -> tuple[dict[int, dict[str, Any]], list[tuple[int, float]], float, list[str]]:
    """Submit and await workflows batch by batch; read memory at each checkpoint."""
    done = 0
    snapshots: dict[int, dict[str, Any]] = {}
    series: list[tuple[int, float]] = []
    ids: list[str] = []
    t0 = time.perf_counter()
    for mark in checkpoints:
        while done < mark:
            size = min(batch, mark - done)
            handles = [durable.start_workflow(wf10, 0) for _ in range(size)]
            for handle in handles:
                result = handle.get_result(timeout=600)
                if result != 10:
                    raise RuntimeError(f"workflow {handle.workflow_id} returned {result!r}")
            ids.extend(h.workflow_id for h in handles)
            done += size
            sample = memory(worker.pid)
            series.append((done, sample["total_rss_mb"]))
            rate = done / (time.perf_counter() - t0)
            print(
                f"  {done:>7,} workflows  RSS {sample['total_rss_mb']:8.1f} MB  {rate:6.1f} wf/s",
                flush=True,
            )
        snapshots[mark] = memory(worker.pid)
    return snapshots, series, time.perf_counter() - t0, ids


def forget_results(app: Any, ids: list[str]) -> None:
    """Drop the Celery results the workflows left in the Redis result backend."""
    try:
        client = app.backend.client
        for i in range(0, len(ids), 1000):
            client.delete(*[app.backend.get_key_for_task(t) for t in ids[i : i + 1000]])
    except Exception as exc:
        print(f"  could not drop the Celery results: {exc}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--small", type=int, default=1_000, help="first checkpoint")
    parser.add_argument("--large", type=int, default=20_000, help="second checkpoint")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--smoke", action="store_true", help="50 and 200")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    small, large = (50, 200) if args.smoke else (args.small, args.large)
    if not 0 < small < large:
        parser.error("need 0 < --small < --large")

    install_cleanup()
    logs = Path(tempfile.mkdtemp(prefix="bench-soak-"))
    db_url = recreate_database(DB_NAME)
    queue = f"bench-soak-{uuid.uuid4().hex[:8]}"
    os.environ.update({"BENCH_DB_URL": db_url, "BENCH_QUEUE": queue})
    os.environ.pop("BENCH_STATS_DIR", None)
    env = dict(os.environ)
    from bench.app import app, durable, wf10

    durable.migrate()
    print(f"database {DB_NAME}, queue {queue}, worker log {logs / 'worker.log'}")
    ids: list[str] = []
    try:
        worker = Group(worker_cmd("bench.app", queue), env, logs / "worker.log")
        worker.wait_for_log("ready.")
        start = memory(worker.pid)
        snaps, series, wall, ids = run_batches(durable, wf10, worker, [small, large], args.batch)
        worker.stop()
    finally:
        Group.kill_all()
        forget_results(app, ids)
        forget_queue(app, queue)
        durable.store.dispose()
        if not args.keep_db:
            drop_database(DB_NAME)

    a, b = snaps[small], snaps[large]
    kids_a, kids_b = a["children_rss_mb"], b["children_rss_mb"]
    same_children = sorted(kids_a) == sorted(kids_b)
    rows = [
        ("RSS at start (idle), total", f"{start['total_rss_mb']:.1f} MB"),
        (f"RSS after {small:,}, total", f"{a['total_rss_mb']:.1f} MB"),
        (f"RSS after {large:,}, total", f"{b['total_rss_mb']:.1f} MB"),
        ("growth, total (target < 20 MB)", f"{b['total_rss_mb'] - a['total_rss_mb']:+.1f} MB"),
        ("growth, main process", f"{b['main_rss_mb'] - a['main_rss_mb']:+.1f} MB"),
    ]
    for pid in sorted(kids_b):
        before = f"{kids_a[pid]:.1f}" if pid in kids_a else "(new)"
        rows.append(
            (f"child {pid}: after {small:,} -> {large:,}", f"{before} -> {kids_b[pid]:.1f}")
        )
    rows += [
        ("growth, USS total", f"{b['total_uss_mb'] - a['total_uss_mb']:+.1f} MB"),
        ("throughput", f"{large / wall:.1f} wf/s"),
    ]
    print_table(f"worker memory, prefork -c 2, wf10 in batches of {args.batch}", rows)
    if not same_children:
        print("note: the pool children changed between the checkpoints (a child was replaced)")
    bench_line(
        {
            "bench": "soak",
            "small": small,
            "large": large,
            "rss_start_mb": start["total_rss_mb"],
            "rss_small_mb": a["total_rss_mb"],
            "rss_large_mb": b["total_rss_mb"],
            "growth_mb": b["total_rss_mb"] - a["total_rss_mb"],
            "main_growth_mb": b["main_rss_mb"] - a["main_rss_mb"],
            "children_small_mb": [round(v, 2) for _, v in sorted(kids_a.items())],
            "children_large_mb": [round(v, 2) for _, v in sorted(kids_b.items())],
            "uss_growth_mb": b["total_uss_mb"] - a["total_uss_mb"],
            "same_children": same_children,
            "workflows_per_s": large / wall,
            "series": [[n, round(v, 1)] for n, v in series],
        }
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
