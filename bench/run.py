"""Throughput of durable chains and workflows against plain Celery (and DBOS), side by side.

    python -m bench.run                 # 200 chains/workflows of 10 steps, 3 interleaved rounds
    python -m bench.run --smoke         # 5 of each, 1 round: checks every mode still works

The fan-out rows run chords of ``FANOUT`` trivial members plus a callback (n / 10 of them,
at least 2): durable (``durable.chord``) against plain Celery's chord on the Redis result
backend; their ratio is against the plain chord's rate. The mix rows run chains of one task,
a group of 8 and a callback (10 steps), durable against plain; ratio against plain_mix
(not in ``--smoke`` unless asked for with ``--modes durable_mix``).

Needs Postgres on 127.0.0.1:5432 and Redis on 127.0.0.1:6379. Prints a table and one
``BENCH {json}`` line per row.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from bench.common import ROOT, recreate_database, worker_cmd

STEPS = 10
FANOUT = 100  # members of each chord in the fan-out rows (plus one callback)


def cpu_seconds(procs: list[psutil.Process]) -> float:
    """User + system CPU seconds of ``procs`` (those that have exited count nothing)."""
    total = 0.0
    for proc in procs:
        try:
            times = proc.cpu_times()
            total += times.user + times.system
        except psutil.Error:
            pass
    return total


def postgres_cpu() -> float:
    return cpu_seconds(
        [p for p in psutil.process_iter(["name"]) if (p.info["name"] or "").startswith("postgres")]
    )


def tree_cpu(pid: int) -> float:
    try:
        root = psutil.Process(pid)
        return cpu_seconds([root, *root.children(recursive=True)])
    except psutil.Error:
        return 0.0


def read_counts(folder: Path) -> dict[str, int]:
    total = {"statements": 0, "commits": 0}
    for path in folder.glob("*.json"):
        data = json.loads(path.read_text())
        for key in total:
            total[key] += int(data.get(key, 0))
        path.unlink()
    return total


class Worker:
    """One `celery worker --pool=prefork --concurrency=2` for a measured run."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        cmd = worker_cmd("bench.app", env["BENCH_QUEUE"], concurrency=2, loglevel="warning")
        self.log = log
        self.proc = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        time.sleep(1.0)
        deadline = time.monotonic() + 30
        while len(psutil.Process(self.proc.pid).children()) < 2:
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError(f"bench worker did not start:\n{log.read_text()}")
            time.sleep(0.1)
        time.sleep(1.0)

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


def measure(
    mode: str,
    n: int,
    env: dict[str, str],
    stats: Path,
    logs: Path,
    run: Callable[[], None],
    steps_each: int = STEPS,
) -> dict[str, Any]:
    worker = Worker(env, logs / f"{mode}.log")
    read_counts(stats)  # forget start-up statements (migrations, executor registration)
    import bench.app as bench_app

    client_before = dict(bench_app.COUNTS)
    pg0, w0, c0 = postgres_cpu(), tree_cpu(worker.proc.pid), time.process_time()
    t0 = time.perf_counter()
    run()
    wall = time.perf_counter() - t0
    cpu = (time.process_time() - c0) + (tree_cpu(worker.proc.pid) - w0) + (postgres_cpu() - pg0)
    worker.stop()
    counts = read_counts(stats)
    for key in counts:
        counts[key] += bench_app.COUNTS[key] - client_before[key]
    steps = n * steps_each
    return {
        "mode": mode,
        "wall_s": wall,
        "workflows_per_s": n / wall,
        "steps_per_s": steps / wall,
        "cpu_ms_per_step": cpu * 1000 / steps,
        "statements_per_step": counts["statements"] / steps,
        "transactions_per_step": counts["commits"] / steps,
    }


def run_dbos(n: int, url: str) -> dict[str, Any] | None:
    try:
        import dbos  # noqa: F401
    except ImportError:
        print("dbos is not installed (pip install -e '.[bench]'): skipping the DBOS row")
        return None
    pg0 = postgres_cpu()
    out = subprocess.run(
        [sys.executable, "-m", "bench.dbos_mode", str(n), url],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"DBOS mode failed:\n{out.stdout}\n{out.stderr}")
    data = json.loads(out.stdout.strip().splitlines()[-1])
    steps = n * STEPS
    cpu = data["cpu_client"] + (postgres_cpu() - pg0)
    return {
        "mode": "dbos",
        "wall_s": data["wall"],
        "workflows_per_s": n / data["wall"],
        "steps_per_s": steps / data["wall"],
        "cpu_ms_per_step": cpu * 1000 / steps,
        "statements_per_step": data["statements"] / steps,
        "transactions_per_step": data["commits"] / steps,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=200, help="chains/workflows per mode")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions")
    parser.add_argument("--smoke", action="store_true", help="5 of each, one round")
    parser.add_argument("--no-dbos", action="store_true")
    parser.add_argument("--modes", help="comma-separated modes to run (plain always runs)")
    args = parser.parse_args()
    n, rounds = (5, 1) if args.smoke else (args.n, args.rounds)

    db_url = recreate_database("durable_bench")
    stats = Path(tempfile.mkdtemp(prefix="bench-stats-"))
    logs = Path(tempfile.mkdtemp(prefix="bench-logs-"))
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    os.environ.update({"BENCH_DB_URL": db_url, "BENCH_QUEUE": queue, "BENCH_STATS_DIR": str(stats)})
    env = dict(os.environ)
    from celery import chain, chord, group

    from bench.app import dinc, dtotal, dtx, durable, inc, total, wf10

    durable.migrate()

    def plain() -> None:
        results = [
            chain(inc.s(0), *[inc.s() for _ in range(STEPS - 1)]).apply_async() for _ in range(n)
        ]
        assert [r.get(timeout=300) for r in results] == [STEPS] * n

    def durable_chain() -> None:
        handles = [
            durable.chain(dinc.s(0), *[dinc.s() for _ in range(STEPS - 1)]).start()
            for _ in range(n)
        ]
        assert [h.get_result(timeout=300) for h in handles] == [STEPS] * n

    def durable_workflow() -> None:
        handles = [durable.start_workflow(wf10, 0) for _ in range(n)]
        assert [h.get_result(timeout=300) for h in handles] == [STEPS] * n

    def durable_tx_chain() -> None:
        handles = [
            durable.chain(dtx.s(0), *[dtx.s() for _ in range(STEPS - 1)]).start() for _ in range(n)
        ]
        assert [h.get_result(timeout=300) for h in handles] == [STEPS] * n

    chords = max(2, n // 10)
    expected_sum = sum(i + 1 for i in range(FANOUT))

    def plain_chord() -> None:
        results = [
            chord([inc.s(i) for i in range(FANOUT)], total.s()).apply_async() for _ in range(chords)
        ]
        assert [r.get(timeout=300) for r in results] == [expected_sum] * chords

    def durable_chord() -> None:
        handles = [
            durable.chord([dinc.s(i) for i in range(FANOUT)], dtotal.s()).start()
            for _ in range(chords)
        ]
        assert [h.get_result(timeout=300) for h in handles] == [expected_sum] * chords

    all_modes = {
        "plain": (plain, {}),
        "durable_chain": (durable_chain, {}),
        # the same chains with their results also written to Redis (durable_store_results off)
        "durable_chain_redis": (durable_chain, {"BENCH_STORE_RESULTS": "0"}),
        "durable_tx_chain": (durable_tx_chain, {}),
        "durable_workflow": (durable_workflow, {}),
    }
    mix_members = STEPS - 2  # chain(one, group(8 members), callback): 10 steps each

    def plain_mix() -> None:
        results = [
            chain(inc.s(0), group([inc.s() for _ in range(mix_members)]), total.s()).apply_async()
            for _ in range(n)
        ]
        assert [r.get(timeout=300) for r in results] == [2 * mix_members] * n

    def durable_mix() -> None:
        handles = [
            durable.chain(
                dinc.s(0), group([dinc.s() for _ in range(mix_members)]), dtotal.s()
            ).start()
            for _ in range(n)
        ]
        assert [h.get_result(timeout=300) for h in handles] == [2 * mix_members] * n

    fanout_modes = {"plain_chord": plain_chord, "durable_chord": durable_chord}
    mix_modes = {"plain_mix": (plain_mix, {}), "durable_mix": (durable_mix, {})}
    # the smoke run (CI) leaves the mix rows out: two more worker starts for a shape the
    # fan-out rows already exercise
    every = [*all_modes, *fanout_modes] + ([] if args.smoke else [*mix_modes])
    chosen = args.modes.split(",") if args.modes else every
    modes = {m: all_modes[m] for m in ["plain", *chosen] if m in all_modes}
    if "durable_mix" in chosen:
        modes.update(mix_modes)
    fanouts = {m: fanout_modes[m] for m in ["plain_chord", *chosen] if m in fanout_modes}
    rows: dict[str, list[dict[str, Any]]] = {m: [] for m in [*modes, *fanouts, "dbos"]}
    dbos_url = None if args.no_dbos else recreate_database("durable_bench_dbos")
    for _ in range(rounds):
        for mode, (fn, extra) in modes.items():
            rows[mode].append(measure(mode, n, {**env, **extra}, stats, logs, fn))
        if len(fanouts) > 1:
            for mode, run in fanouts.items():
                rows[mode].append(measure(mode, chords, env, stats, logs, run, FANOUT + 1))
        if dbos_url is not None:
            row = run_dbos(n, dbos_url)
            if row is None:
                dbos_url = None
            else:
                rows["dbos"].append(row)

    for mode, mode_rows in rows.items():  # each round's ratio against that round's plain run
        baseline = rows["plain"]
        if mode in fanout_modes:
            baseline = rows["plain_chord"]
        elif mode in mix_modes:
            baseline = rows["plain_mix"]
        for row, plain_row in zip(mode_rows, baseline, strict=False):
            row["ratio_to_plain"] = row["steps_per_s"] / plain_row["steps_per_s"]
    table = [median_row(r) for r in rows.values() if r]
    print_table(table, n, rounds)
    return 0


def median_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {"mode": rows[0]["mode"]}
    for key in rows[0]:
        if key != "mode":
            out[key] = statistics.median(r[key] for r in rows)
    out["ratio_per_round"] = [round(r["ratio_to_plain"], 3) for r in rows]
    return out


def print_table(table: list[dict[str, Any]], n: int, rounds: int) -> None:
    cols = [
        ("mode", "{:<20}"), ("wall_s", "{:>8.2f}"), ("workflows_per_s", "{:>12.1f}"),
        ("steps_per_s", "{:>10.1f}"), ("cpu_ms_per_step", "{:>11.2f}"),
        ("statements_per_step", "{:>10.2f}"), ("transactions_per_step", "{:>9.2f}"),
        ("ratio_to_plain", "{:>8.2f}"),
    ]  # fmt: skip
    heads = [
        "mode",
        "wall s",
        "workflows/s",
        "steps/s",
        "CPU ms/step",
        "stmts/step",
        "tx/step",
        "ratio",
    ]
    print(f"\n{n} chains/workflows x {STEPS} steps, median of {rounds} interleaved rounds")
    widths = [len(fmt.format(0 if k != "mode" else "x")) for k, fmt in cols]
    print(
        " ".join(
            h.rjust(w) if i else h.ljust(w)
            for i, (h, w) in enumerate(zip(heads, widths, strict=True))
        )
    )
    for row in table:
        print(" ".join(fmt.format(row[k]) for k, fmt in cols))
    print("ratio to plain, round by round:")
    for row in table[1:]:
        print(f"  {row['mode']:<20}", " ".join(f"{r:.2f}" for r in row["ratio_per_round"]))
    for row in table:
        print(
            "BENCH "
            + json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in row.items()})
        )


if __name__ == "__main__":
    sys.exit(main())
