"""Cost of operating a long history: the dashboard and /metrics on N finished workflows,
and garbage collection of them beside a throughput run.

    python -m bench.operations                 # 1,000,000 workflows (2 steps each)
    python -m bench.operations --n 20000 --smoke

Seeds a database of its own with ``--n`` workflows created over 30 days (90 % SUCCESS,
5 % ERROR with an attempt error, 2 % CANCELLED, 1 % dead-lettered, 2 % ENQUEUED), then:
1. times the dashboard's pages and ``/metrics`` over HTTP (uvicorn on loopback), median of
   ``--repeat`` after two warm-ups;
2. runs ``bench.run``'s durable workflow mode (a real worker, Redis) alone, then again
   while ``collect_garbage`` deletes every workflow older than 7 days in batches, and
   reports the slowdown and how long the deletion took.
Prints a table and ``BENCH {json}`` lines. Needs Postgres and Redis as bench.run does.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from sqlalchemy import create_engine, text

from bench.common import recreate_database

DAY_MS = 86_400_000
SEED_WORKFLOWS = """
INSERT INTO durable_workflows (workflow_id, name, kind, status, inputs, output, error,
    recovery_attempts, max_recovery_attempts, run_count, created_at_ms, updated_at_ms,
    started_at_ms, completed_at_ms, awaited)
SELECT 'wf-' || lpad(i::text, 8, '0'),
       'bench.ops.' || (i % 7),
       'workflow',
       CASE WHEN i % 100 < 90 THEN 'SUCCESS' WHEN i % 100 < 95 THEN 'ERROR'
            WHEN i % 100 < 97 THEN 'CANCELLED' WHEN i % 100 < 98
            THEN 'MAX_RECOVERY_ATTEMPTS_EXCEEDED' ELSE 'ENQUEUED' END,
       '{"args": [' || i || '], "kwargs": {}}',
       CASE WHEN i % 100 < 90 THEN '"ok"' END,
       CASE WHEN i % 100 BETWEEN 90 AND 94
            THEN '{"v": 2, "type": "builtins:ValueError", "message": "bad", '
                 || '"args": ["bad"], "attrs": {}}'
       END,
       0, 100, 1,
       CAST(:start AS bigint) + i * :spacing, CAST(:start AS bigint) + i * :spacing + 1500,
       CAST(:start AS bigint) + i * :spacing + 10,
       CASE WHEN i % 100 < 98 THEN CAST(:start AS bigint) + i * :spacing + 1500 END,
       0
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS i
"""
SEED_STEPS = """
INSERT INTO durable_steps (workflow_id, step_id, name, status, output, attempts,
    started_at_ms, completed_at_ms)
SELECT w.workflow_id, s, 'bench.ops.step' || s, 'SUCCESS', '"out"', 1,
       w.created_at_ms + 10 + s * 500, w.created_at_ms + 500 + s * 500
FROM durable_workflows w CROSS JOIN generate_series(0, 1) AS s
WHERE w.workflow_id BETWEEN 'wf-' || lpad(CAST(:lo AS text), 8, '0')
    AND 'wf-' || lpad(CAST(:hi AS text), 8, '0')
"""
SEED_ERRORS = """
INSERT INTO durable_step_errors (workflow_id, step_id, attempt, name, error, created_at_ms)
SELECT workflow_id, 1, 0, 'bench.ops.step1', error, completed_at_ms
FROM durable_workflows WHERE status = 'ERROR'
"""


def seed(url: str, n: int) -> float:
    engine = create_engine(url)
    now = int(time.time() * 1000)
    spacing = max(1, 30 * DAY_MS // n)
    start = now - n * spacing
    t0 = time.perf_counter()
    with engine.begin() as conn:
        for lo in range(0, n, 200_000):
            hi = min(n, lo + 200_000) - 1
            params = {"lo": lo, "hi": hi, "start": start, "spacing": spacing}
            conn.execute(text(SEED_WORKFLOWS), params)
            conn.execute(text(SEED_STEPS), params)
        conn.execute(text(SEED_ERRORS))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE"))
    engine.dispose()
    return time.perf_counter() - t0


class Server:
    def __init__(self, app: Any) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)
        self.url = f"http://127.0.0.1:{self.server.servers[0].sockets[0].getsockname()[1]}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


def timed(client: httpx.Client, url: str, repeat: int) -> float:
    """Median milliseconds of GET ``url`` (after two warm-ups)."""
    for _ in range(2):
        assert client.get(url).status_code == 200
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        response = client.get(url)
        times.append((time.perf_counter() - t0) * 1000)
        assert response.status_code == 200, response.text[:300]
    return statistics.median(times)


def pages(durable: Any, repeat: int) -> dict[str, float]:
    from celery_durable.dashboard import create_app

    server = Server(create_app(durable))
    out: dict[str, float] = {}
    try:
        with httpx.Client(base_url=server.url, timeout=60) as client:
            first = client.get("/").text
            after = first.split('rel="next" href="')[1].split('"')[0].replace("&amp;", "&")
            urls = {
                "list (newest 50, counts, 3 h chart)": "/",
                "list, page 2 (keyset)": "/" + after,
                "list filtered to ERROR": "/?status=ERROR",
                "list filtered by name": "/?name=bench.ops.3",
                "list filtered by id prefix": "/?id_prefix=wf-0042",
                "list filtered by creation day": "/?created_after=" + day_ago(3),
                "workflow page": "/workflows/wf-00004242",
                "executors and stalls": "/executors",
                "/metrics": "/metrics",
            }
            for label, url in urls.items():
                out[label] = timed(client, url, repeat)
    finally:
        server.stop()
    return out


def day_ago(days: int) -> str:
    from datetime import UTC, datetime, timedelta

    return (datetime.now(UTC) - timedelta(days=days)).strftime("%Y-%m-%dT%H:%M:%S")


def throughput(n: int) -> dict[str, Any]:
    """bench.run's durable workflow mode: ``n`` workflows of 10 steps on one worker."""
    from bench.app import durable, wf10
    from bench.run import measure

    stats = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))

    def run() -> None:
        handles = [durable.start_workflow(wf10, 0) for _ in range(n)]
        assert [h.get_result(timeout=600) for h in handles] == [10] * n

    return measure("durable_workflow", n, dict(os.environ), stats, logs, run)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="finished workflows seeded")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--throughput", type=int, default=200, help="workflows per run")
    parser.add_argument("--smoke", action="store_true", help="no throughput/gc part")
    parser.add_argument("--rounds", type=int, default=3, help="throughput runs each way")
    parser.add_argument("--gc-budget", type=float, default=None, help="stop gc after (s)")
    args = parser.parse_args()

    url = recreate_database("durable_bench_ops")
    os.environ.update(
        {"BENCH_DB_URL": url, "BENCH_QUEUE": f"bench-ops-{uuid.uuid4().hex[:8]}",
         "BENCH_STATS_DIR": tempfile.mkdtemp(prefix="bench-stats-")}
    )  # fmt: skip
    from bench.app import durable

    durable.migrate()
    seconds = seed(url, args.n)
    print(f"seeded {args.n:,} workflows ({2 * args.n:,} steps) in {seconds:.0f} s")
    timings = pages(durable, args.repeat)
    print(f"\n{'page':40} median ms ({args.n:,} workflows)")
    for label, ms in timings.items():
        print(f"{label:40} {ms:8.1f}")
        print("BENCH", {"bench": "operations", "page": label, "ms": round(ms, 1), "n": args.n})
    if args.smoke:
        return 0

    alone = [throughput(args.throughput) for _ in range(args.rounds)]
    report: dict[str, Any] = {}
    gc_seconds: list[float] = []

    def collect() -> None:
        t0 = time.perf_counter()
        # beat's pace (a pause per batch), for as long as the runs beside it take
        report["gc"] = durable.collect_garbage(7 * 86400, time_budget=args.gc_budget)
        gc_seconds.append(time.perf_counter() - t0)

    gc = threading.Thread(target=collect)
    gc.start()
    beside = [throughput(args.throughput) for _ in range(args.rounds)]
    beside_gc_running = gc.is_alive()
    gc.join()
    rate_alone = statistics.median(r["workflows_per_s"] for r in alone)
    rate_beside = statistics.median(r["workflows_per_s"] for r in beside)
    slowdown = 1 - rate_beside / rate_alone
    print(
        f"\nthroughput alone {rate_alone:.1f} wf/s, beside gc {rate_beside:.1f} wf/s "
        f"({slowdown:+.1%} slower; gc still running at the end: {beside_gc_running}); "
        f"gc deleted {report['gc'].deleted:,} in {report['gc'].batches:,} batches, "
        f"{gc_seconds[0]:.0f} s ({report['gc'].deleted / gc_seconds[0]:,.0f} workflows/s)"
    )
    print("BENCH", {"bench": "operations-gc", "alone": alone, "beside_gc": beside,
                    "slowdown": slowdown, "gc_deleted": report["gc"].deleted,
                    "gc_s": gc_seconds[0], "gc_running_at_end": beside_gc_running})  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
