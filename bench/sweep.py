"""Cost of the recovery sweep on a large history, and time from a worker SIGKILL to resumed work.

    python -m bench.sweep                       # 1,000,000 finished, 1,000 stalled, 100 killed
    python -m bench.sweep --smoke               # 1,000 finished, 10 stalled, 5 killed
    python -m bench.sweep --parts c --sweep-queue   # only part c, the sweep on its own queue

(a) S stalled code workflows alone (in a second database, durable_bench_sweep_alone): time
    one ``durable.recover()`` (it re-publishes each, which is most of its cost).
(b) The same S among F finished workflows (half code workflows, half chains, 3 steps each):
    time it again. The ratio b/a shows whether the sweep's cost follows the active rows
    (target: < 3) or the history. The timed sweeps of (a) and (b) alternate, --repeats times
    each (median), so a change of machine load hits both. Also prints EXPLAIN ANALYZE of the
    sweep's query.
(c) N durable workflows (bench/recovery_app.py: 5 steps of 0.2 s) on a prefork worker of
    2 processes; its process group is SIGKILLed half way; a new worker and ``celery beat``
    start at once. Times from the kill to the in-flight workflows being re-enqueued, claimed
    again and finished, and to all N finished.

Needs Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379 (db 4). Database:
durable_bench_sweep (dropped at the end unless --keep-db). Prints tables and ``BENCH {json}``.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import Engine, text

from bench.common import (
    Group,
    bench_line,
    drop_database,
    forget_queue,
    install_cleanup,
    print_table,
    purge_queue,
    recreate_database,
    worker_cmd,
)
from celery_durable import Durable

DB_NAME = "durable_bench_sweep"
ALONE_DB_NAME = "durable_bench_sweep_alone"
BROKER = os.environ.get("BENCH_SWEEP_BROKER", "redis://127.0.0.1:6379/4")
GONE_EXECUTOR = "bench-gone-executor"
CHUNK = 100_000
STEPS_PER_FINISHED = 3
CONCURRENCY = 2

INSERT_STALLED = """
INSERT INTO durable_workflows (workflow_id, name, kind, status, inputs, executor_id,
    recovery_attempts, max_recovery_attempts, run_count, created_at_ms, updated_at_ms,
    started_at_ms)
SELECT 'stalled-' || i, 'bench.stalled', 'workflow', 'PENDING', '{"args": [], "kwargs": {}}',
    :gone, 0, 100, 1, :t + i, :t + i, :t + i
FROM generate_series(1, CAST(:n AS bigint)) AS i
"""

RESET_STALLED = """
UPDATE durable_workflows SET status = 'PENDING', executor_id = :gone, recovery_attempts = 0,
    wake_at_ms = NULL, updated_at_ms = :t, completed_at_ms = NULL
WHERE name = 'bench.stalled'
"""

INSERT_FINISHED = """
INSERT INTO durable_workflows (workflow_id, name, kind, status, inputs, output, executor_id,
    recovery_attempts, max_recovery_attempts, run_count, created_at_ms, updated_at_ms,
    started_at_ms, completed_at_ms)
SELECT 'done-' || i,
    CASE WHEN i % 2 = 0 THEN 'bench.finished_chain' ELSE 'bench.finished' END,
    CASE WHEN i % 2 = 0 THEN 'chain' ELSE 'workflow' END,
    'SUCCESS', '{"args": [' || i || '], "kwargs": {}}', '3', NULL,
    0, 100, 1, :t + i, :t + i + 40, :t + i + 1, :t + i + 40
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS i
"""

INSERT_FINISHED_STEPS = """
INSERT INTO durable_steps (workflow_id, step_id, name, status, output, attempts,
    started_at_ms, completed_at_ms, task_id)
SELECT 'done-' || i, k, 'bench.step', 'SUCCESS', (k + 1)::text, 1,
    :t + i + 10 * k, :t + i + 10 * k + 5,
    CASE WHEN i % 2 = 0 THEN md5(i::text || '-' || k::text) END
FROM generate_series(CAST(:lo AS bigint), CAST(:hi AS bigint)) AS i,
    generate_series(0, CAST(:k AS integer) - 1) AS k
"""


def maintenance(engine: Engine, sql: str) -> None:
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql(sql)


def insert_finished(engine: Engine, total: int) -> float:
    t0 = time.perf_counter()
    base = int(time.time() * 1000) - 30 * 86_400_000
    for lo in range(1, total + 1, CHUNK):
        hi = min(lo + CHUNK - 1, total)
        with engine.begin() as conn:
            conn.execute(text(INSERT_FINISHED), {"lo": lo, "hi": hi, "t": base})
            conn.execute(
                text(INSERT_FINISHED_STEPS),
                {"lo": lo, "hi": hi, "t": base, "k": STEPS_PER_FINISHED},
            )
        print(f"  inserted {hi:,} / {total:,} finished workflows", flush=True)
    return time.perf_counter() - t0


def insert_stalled(engine: Engine, n: int) -> None:
    with engine.begin() as conn:
        conn.execute(text(INSERT_STALLED), {"n": n, "gone": GONE_EXECUTOR, "t": old_ms()})


def old_ms() -> int:
    return int(time.time() * 1000) - 600_000  # ten minutes ago


def explain_sweep(durable: Durable) -> tuple[float | None, str]:
    """EXPLAIN ANALYZE of the sweep's SELECT (as RecoveryQueries.claim_stalled builds it)."""
    try:
        from sqlalchemy import select

        from celery_durable.store.tables import workflows

        store: Any = durable.store
        lost_before = int(time.time() * 1000) - int(durable.settings.enqueue_timeout * 1000)
        stmt = (
            select(workflows)
            .where(store._stalled(durable.runtime.stale_before_ms, lost_before))
            .order_by(workflows.c.updated_at_ms)
            .limit(durable.settings.recovery_batch_size)
            .with_for_update(skip_locked=True, of=workflows)
        )
        sql = str(
            stmt.compile(dialect=store.engine.dialect, compile_kwargs={"literal_binds": True})
        )
        with store.engine.connect() as conn:
            plan = [r[0] for r in conn.exec_driver_sql("EXPLAIN (ANALYZE, BUFFERS) " + sql)]
            conn.rollback()  # the FOR UPDATE locks
    except Exception as exc:  # the library's internals moved: the plan is optional
        return None, f"(no plan: {type(exc).__name__}: {exc})"
    found = re.search(r"Execution Time: ([\d.]+) ms", plan[-1])
    return (float(found.group(1)) if found else None), "\n".join(plan)


def clocked(obj: Any, name: str, spent: list[float]) -> None:
    """Wrap the instance's method ``name`` so the time spent in it adds up in ``spent``."""
    method = getattr(obj, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        t0 = time.perf_counter()
        try:
            return method(*args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - t0

    setattr(obj, name, timed)


def timed_recover(durable: Durable, queue: str, stalled: int) -> tuple[float, float]:
    """Make the stalled rows stalled again, then time one ``durable.recover()``.

    Returns the whole time and the part spent in the store's claim_stalled (the SELECT ...
    FOR UPDATE and each row's UPDATE); the rest is mostly re-publishing, one by one.
    """
    engine = durable.store.engine
    with engine.begin() as conn:
        conn.execute(text(RESET_STALLED), {"gone": GONE_EXECUTOR, "t": old_ms()})
    maintenance(engine, "VACUUM ANALYZE")
    claim = [0.0]
    clocked(durable.store, "claim_stalled", claim)
    t0 = time.perf_counter()
    try:
        report = durable.recover()
    finally:
        elapsed = time.perf_counter() - t0
        del durable.store.claim_stalled  # back to the class's method
    if len(report.recovered) != stalled:
        raise RuntimeError(
            f"recover() re-enqueued {len(report.recovered)} of {stalled} stalled workflows "
            f"({len(report.publish_failed)} publish failures)"
        )
    published = purge_queue(durable.app, queue)
    if published < stalled:
        print(f"  warning: {published} messages in {queue}, expected {stalled}")
    return elapsed, claim[0]


def make_durable(db_url: str, queue: str) -> Durable:
    app = Celery("bench_sweep", broker=BROKER)
    app.conf.task_default_queue = queue
    app.conf.broker_connection_retry_on_startup = True
    app.conf.durable_recovery_interval = 0
    durable = Durable(app, database_url=db_url)
    durable.migrate()
    return durable


def sweep_parts(
    history: Durable, queue: str, finished: int, stalled: int, repeats: int, show_plan: bool
) -> dict[str, Any]:
    """(a) in a database of its own, (b) in ``history``'s; the timed sweeps alternate."""
    alone = make_durable(recreate_database(ALONE_DB_NAME), queue)
    try:
        print(f"(a) {stalled:,} stalled workflows alone (database {ALONE_DB_NAME})", flush=True)
        insert_stalled(alone.store.engine, stalled)
        print(f"(b) {stalled:,} stalled among {finished:,} finished workflows", flush=True)
        engine = history.store.engine
        load_s = insert_finished(engine, finished)
        insert_stalled(engine, stalled)
        t0 = time.perf_counter()
        maintenance(engine, "VACUUM ANALYZE")
        load_s += time.perf_counter() - t0
        for durable in (alone, history):  # the database pool and the broker connection are warm
            durable.app.send_task("bench.warmup", queue=queue)
            purge_queue(durable.app, queue)
        times: dict[str, list[float]] = {"a": [], "b": []}
        claims: dict[str, list[float]] = {"a": [], "b": []}
        for r in range(repeats):  # interleaved, so a change in machine load hits both alike
            order = [("a", alone), ("b", history)]
            for case, durable in order if r % 2 == 0 else order[::-1]:
                total, claim = timed_recover(durable, queue, stalled)
                times[case].append(total)
                claims[case].append(claim)
                print(f"  run {r + 1} ({case}): {total:.3f} s, claim {claim:.3f} s", flush=True)
        plans = {}
        for case, durable in (("a", alone), ("b", history)):
            with durable.store.engine.begin() as conn:
                conn.execute(text(RESET_STALLED), {"gone": GONE_EXECUTOR, "t": old_ms()})
            plans[case] = explain_sweep(durable)
    finally:
        alone.store.dispose()
        drop_database(ALONE_DB_NAME)
    if show_plan:
        print(f"\nEXPLAIN ANALYZE of the sweep query, (a) {stalled:,} stalled alone:")
        print(plans["a"][1])
    print(f"\nEXPLAIN ANALYZE of the sweep query, (b) among {finished:,} finished:")
    print(plans["b"][1])

    a, b = statistics.median(times["a"]), statistics.median(times["b"])
    with engine.connect() as conn:
        sizes = conn.execute(
            text(
                "SELECT pg_total_relation_size('durable_workflows'), "
                "pg_total_relation_size('durable_steps')"
            )
        ).one()
    record = {
        "bench": "sweep",
        "finished": finished,
        "stalled": stalled,
        "repeats": repeats,
        "recover_alone_s": a,
        "recover_with_history_s": b,
        "ratio": b / a,
        "recover_alone_runs_s": [round(t, 4) for t in times["a"]],
        "recover_with_history_runs_s": [round(t, 4) for t in times["b"]],
        "claim_alone_s": statistics.median(claims["a"]),
        "claim_with_history_s": statistics.median(claims["b"]),
        "ms_per_stalled_alone": a * 1000 / stalled,
        "ms_per_stalled_with_history": b * 1000 / stalled,
        "query_alone_ms": plans["a"][0],
        "query_with_history_ms": plans["b"][0],
        "history_load_s": load_s,
        "workflows_table_mb": sizes[0] / 2**20,
        "steps_table_mb": sizes[1] / 2**20,
    }
    with engine.begin() as conn:  # part (c) shares the history, not these
        conn.execute(text("DELETE FROM durable_workflows WHERE name = 'bench.stalled'"))
    return record


def poll_rows(engine: Engine) -> dict[str, tuple[str, str | None, int]]:
    with engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT workflow_id, status, executor_id, recovery_attempts "
                "FROM durable_workflows WHERE name = 'bench.recovery.wf5'"
            )
        ).all()
    return {r[0]: (r[1], r[2], r[3]) for r in rows}


def failed(rows: dict[str, tuple[str, str | None, int]], worker: Group) -> None:
    """Stop at once when a workflow ended in anything but SUCCESS."""
    bad = {w: v[0] for w, v in rows.items() if v[0] not in ("ENQUEUED", "PENDING", "SUCCESS")}
    if bad:
        tail = worker.log.read_text(errors="replace")[-3000:]
        raise RuntimeError(f"{len(bad)} workflows failed: {bad}\nworker log ends:\n{tail}")


def kill_part(db_url: str, n: int, sweep_queue: bool, logs: Path) -> dict[str, Any]:
    queue = f"bench-recovery-{uuid.uuid4().hex[:8]}"
    own = f"{queue}-sweep" if sweep_queue else ""
    os.environ.update(
        {"BENCH_DB_URL": db_url, "BENCH_QUEUE": queue, "BENCH_BROKER": BROKER,
         "BENCH_SWEEP_QUEUE": own}
    )  # fmt: skip
    env = dict(os.environ)
    import bench.recovery_app as rapp

    engine = rapp.durable.store.engine
    queues = f"{queue},{own}" if own else queue
    try:
        first = Group(
            worker_cmd("bench.recovery_app", queues, CONCURRENCY), env, logs / "worker1.log"
        )
        first.wait_for_log("ready.")
        print(f"(c) {n} workflows of {rapp.STEPS} x {rapp.STEP_SECONDS}s steps", flush=True)
        handles = [rapp.durable.start_workflow(rapp.wf5, i) for i in range(n)]
        t_start = time.monotonic()
        half_at = None
        while True:  # half done, and both pool processes inside a workflow (if they get there)
            rows = poll_rows(engine)
            failed(rows, first)
            done = sum(1 for s, _, _ in rows.values() if s == "SUCCESS")
            running = sum(1 for s, _, _ in rows.values() if s == "PENDING")
            if done >= max(1, n // 2):
                half_at = half_at or time.monotonic()
                if running >= CONCURRENCY or (running and time.monotonic() - half_at > 3):
                    break
            if time.monotonic() - t_start > 300:
                raise RuntimeError("the first worker made no progress in 300 s")
            time.sleep(0.02)
        first.kill()
        t_kill = time.monotonic()
        # with its own queue the sweep gets its own small worker, as deployed in production:
        # a busy worker's pool slots and prefetched backlog would otherwise delay it
        second = Group(
            worker_cmd("bench.recovery_app", queue, CONCURRENCY), env, logs / "worker2.log"
        )
        if own:
            sweeper = Group(worker_cmd("bench.recovery_app", own, 1), env, logs / "sweeper.log")
        beat = Group(
            [sys.executable, "-m", "celery", "-A", "bench.recovery_app", "beat", "-l", "info",
             "-s", str(logs / "beat-schedule")],
            env, logs / "beat.log",
        )  # fmt: skip
        at_kill = poll_rows(engine)
        affected = {w: v for w, v in at_kill.items() if v[0] == "PENDING"}
        dead = {v[1] for v in affected.values()}
        counts = {s: sum(1 for v in at_kill.values() if v[0] == s) for s in ("SUCCESS", "ENQUEUED")}
        times: dict[str, dict[str, float]] = {"reenqueued": {}, "claimed": {}, "success": {}}
        ready_s = None
        all_success_s = None
        while all_success_s is None:
            now = time.monotonic() - t_kill
            if now > 600:
                raise RuntimeError(f"not all workflows finished 600 s after the kill: {rows}")
            rows = poll_rows(engine)
            failed(rows, second)
            for wid, (status, executor, attempts) in rows.items():
                if wid not in affected:
                    continue
                if attempts > affected[wid][2]:
                    times["reenqueued"].setdefault(wid, now)
                if status in ("PENDING", "SUCCESS") and executor not in dead:
                    times["claimed"].setdefault(wid, now)
                if status == "SUCCESS":
                    times["success"].setdefault(wid, now)
            if ready_s is None and "ready." in second.log.read_text(errors="replace"):
                ready_s = now
            if all(v[0] == "SUCCESS" for v in rows.values()):
                all_success_s = now
            time.sleep(0.05)
        results = [h.get_result(timeout=60) for h in handles]
        if results != [i + rapp.STEPS for i in range(n)]:
            raise RuntimeError(f"wrong results after recovery: {results}")
        final = poll_rows(engine)
        second.stop()
        if own:
            sweeper.stop()
        beat.stop()
    finally:
        forget_queue(rapp.app, queue)
        if own:
            forget_queue(rapp.app, own)
        rapp.durable.store.dispose()

    def last(kind: str) -> float | None:
        got = times[kind]
        return max(got.values()) if len(got) == len(affected) and got else None

    attempts = [v[2] for v in final.values()]
    return {
        "bench": "kill_to_resume",
        "workflows": n,
        "sweep_queue": bool(own),
        "success_at_kill": counts["SUCCESS"],
        "in_flight_at_kill": len(affected),
        "enqueued_at_kill": counts["ENQUEUED"],
        "worker_ready_s": ready_s,
        "first_reenqueued_s": min(times["reenqueued"].values(), default=None),
        "last_reenqueued_s": last("reenqueued"),
        "last_claimed_s": last("claimed"),
        "last_in_flight_success_s": last("success"),
        "all_success_s": all_success_s,
        "recovery_attempts_total": sum(attempts),
        "recovery_attempts_max": max(attempts),
        "workflows_recovered": sum(1 for a in attempts if a),
    }


def fmt(value: Any, unit: str = "") -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.3f}{unit}"
    return f"{value:,}{unit}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--finished", type=int, default=1_000_000)
    parser.add_argument("--stalled", type=int, default=1_000)
    parser.add_argument("--workflows", type=int, default=100, help="workflows in part (c)")
    parser.add_argument("--repeats", type=int, default=3, help="timed sweeps per case (median)")
    parser.add_argument("--parts", default="abc", help="'ab' (sweep cost), 'c' (kill), or 'abc'")
    parser.add_argument("--sweep-queue", action="store_true", help="(c): sweep on its own queue")
    parser.add_argument("--smoke", action="store_true", help="1,000 / 10 / 5")
    parser.add_argument("--keep-db", action="store_true")
    parser.add_argument("--plans", action="store_true", help="also print the plan of case (a)")
    args = parser.parse_args()
    finished, stalled, n = (
        (1_000, 10, 5) if args.smoke else (args.finished, args.stalled, args.workflows)
    )

    install_cleanup()
    logs = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    db_url = recreate_database(DB_NAME)
    queue = f"bench-sweep-{uuid.uuid4().hex[:8]}"
    durable = make_durable(db_url, queue)
    print(f"database {DB_NAME}, logs in {logs}")
    try:
        if "a" in args.parts or "b" in args.parts:
            rec = sweep_parts(durable, queue, finished, stalled, args.repeats, args.plans)
            print_table(
                f"recovery sweep: {stalled:,} stalled, median of {args.repeats}",
                [
                    ("(a) recover(), stalled alone", fmt(rec["recover_alone_s"], " s")),
                    (f"(b) recover(), + {finished:,} finished",
                     fmt(rec["recover_with_history_s"], " s")),
                    ("ratio b / a (target < 3)", fmt(rec["ratio"])),
                    ("(a) of which claim_stalled", fmt(rec["claim_alone_s"], " s")),
                    ("(b) of which claim_stalled", fmt(rec["claim_with_history_s"], " s")),
                    ("ms per stalled workflow (a)", fmt(rec["ms_per_stalled_alone"])),
                    ("ms per stalled workflow (b)", fmt(rec["ms_per_stalled_with_history"])),
                    ("sweep query, EXPLAIN ANALYZE (a)", fmt(rec["query_alone_ms"], " ms")),
                    ("sweep query, EXPLAIN ANALYZE (b)", fmt(rec["query_with_history_ms"], " ms")),
                    ("history load time", fmt(rec["history_load_s"], " s")),
                    ("workflows table + indexes", fmt(rec["workflows_table_mb"], " MB")),
                    ("steps table + indexes", fmt(rec["steps_table_mb"], " MB")),
                ],
            )  # fmt: skip
            bench_line(rec)
        if "c" in args.parts:
            rec = kill_part(db_url, n, args.sweep_queue, logs)
            print_table(
                f"kill to resume: {n} workflows, prefork -c 2 SIGKILLed half way"
                + (" (sweep on its own queue)" if rec["sweep_queue"] else ""),
                [
                    ("finished before the kill", fmt(rec["success_at_kill"])),
                    ("in flight at the kill", fmt(rec["in_flight_at_kill"])),
                    ("still queued at the kill", fmt(rec["enqueued_at_kill"])),
                    ("kill -> new worker ready", fmt(rec["worker_ready_s"], " s")),
                    ("kill -> first in-flight re-enqueued", fmt(rec["first_reenqueued_s"], " s")),
                    ("kill -> last in-flight re-enqueued", fmt(rec["last_reenqueued_s"], " s")),
                    ("kill -> last in-flight claimed again", fmt(rec["last_claimed_s"], " s")),
                    ("kill -> last in-flight SUCCESS", fmt(rec["last_in_flight_success_s"], " s")),
                    ("kill -> all SUCCESS", fmt(rec["all_success_s"], " s")),
                    ("recovery attempts, sum over all", fmt(rec["recovery_attempts_total"])),
                    ("recovery attempts, max", fmt(rec["recovery_attempts_max"])),
                    ("workflows with >= 1 recovery", fmt(rec["workflows_recovered"])),
                ],
            )  # fmt: skip
            bench_line(rec)
    finally:
        Group.kill_all()
        forget_queue(durable.app, queue)
        durable.store.dispose()
        if not args.keep_db:
            drop_database(DB_NAME)
    return 0


if __name__ == "__main__":
    sys.exit(main())
