"""The crash matrix: durable workflows on real workers while processes and servers fail.

    python -m bench.chaos                 # 1,000 workflows, every fault several times
    python -m bench.chaos --short         # 150 workflows, each fault at least once (< 3 min)
    python -m bench.chaos --seed 7        # the same workflow mix and fault plan again

Starts its own Postgres cluster and redis-server on free ports (never the shared ones),
3 `celery worker -P prefork -c 2` and 2 `celery beat` (bench/chaos_app.py), submits the
workflows at a steady rate, and meanwhile SIGKILLs and SIGTERMs workers (a supervisor
restarts them), restarts Redis empty, terminates every Postgres backend and restarts
Postgres; chosen chains overrun a hard time limit, and a 3 s visibility timeout with late
acks makes Redis deliver running workflows twice. Then it waits for the run to settle
and judges it (bench/chaos_verdict.py). Prints the crash matrix and ``BENCH {json}``;
exits 1 when a workflow was lost or ended wrong, a transaction body committed twice, or
a step body ran again without a kill to explain it.
"""

from __future__ import annotations

import argparse
import logging
import os
import random
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.chaos_cluster import Event, Supervisor
from bench.chaos_faults import COUNTS, Fault, Injector, Observer, plan_faults
from bench.chaos_report import print_matrix, print_totals, record, save_events
from bench.chaos_servers import Postgres, Redis
from bench.common import ROOT, Group, bench_line, install_cleanup

if TYPE_CHECKING:  # the verdict imports the app, which reads its settings at import
    from bench.chaos_verdict import Verdict

SIZES = {"short": (150, 3), "full": (1000, 8)}  # workflows, of which time-limit overruns
RATE = 3.0  # workflows submitted per second: about two thirds of the 6 pool slots busy
SETTLE = {"short": 45.0, "full": 90.0}  # bound on the wait for the last workflows to end

Plan = list[tuple[float, str, str, int]]  # (seconds after start, workflow id, kind, x)


def plan_workflows(rng: random.Random, n: int, overruns: int, weights: dict[str, float]) -> Plan:
    """The seeded mix: kinds by weight, ``overruns`` time-limit chains spread among them."""
    names = list(weights)
    kinds = rng.choices(names, weights=[weights[k] for k in names], k=n)
    for i in rng.sample(range(n // 10, n), overruns):  # not in the first tenth: warm-up
        kinds[i] = "chain_overrun"
    return [
        (i / RATE, f"wf-{i:04d}-{kind}", kind, rng.randrange(1000)) for i, kind in enumerate(kinds)
    ]


class Submitter(threading.Thread):
    """Starts the planned workflows on time; a start that fails (Redis or Postgres down) is
    tried again with the same id, which never starts a second workflow."""

    def __init__(self, plan: Plan, t0: float, kinds: dict[str, Any]) -> None:
        super().__init__(name="chaos-submitter", daemon=True)
        self.plan, self.t0, self.kinds = plan, t0, kinds
        self.submitted = 0
        self.failed_starts = 0

    def run(self) -> None:
        for at, wid, kind, x in self.plan:
            time.sleep(max(0.0, self.t0 + at - time.time()))
            delay = 0.1
            while True:
                try:
                    self.kinds[kind].start(wid, x)
                    break
                except Exception as exc:
                    self.failed_starts += 1
                    print(f"  start of {wid} failed ({type(exc).__name__}), retrying", flush=True)
                    time.sleep(delay)
                    delay = min(delay * 2, 2.0)
            self.submitted += 1


def commit_measured() -> str:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout

    head = git("rev-parse", "--short", "HEAD").strip()
    return head + ("-dirty" if git("status", "--porcelain", "--untracked-files=no").strip() else "")


def run_chaos(
    cluster: Supervisor, injector: Injector, faults: list[Fault], plan: Plan, settle: float
) -> tuple[list[Event], Submitter]:
    """Submit the plan while dealing the faults; then wait, within ``settle`` s, for every
    workflow to end (the supervisor keeps restarting what dies meanwhile)."""
    from bench import chaos_app

    events: list[Event] = []
    t0 = time.time()
    submitter = Submitter(plan, t0, chaos_app.KINDS)
    submitter.start()
    pending = sorted(faults, key=lambda f: f.at)
    while pending or submitter.is_alive():
        events += cluster.poll()
        if pending and time.time() - t0 >= pending[0].at:
            fault = pending.pop(0)
            event = injector.fire(fault)
            if event is not None:
                events.append(event)
                print(f"  {event.at - t0:6.1f} s  {event.kind:<14} {event.worker:<4} in scope"
                      f" {len(event.affected):3d}  {event.detail}", flush=True)  # fmt: skip
        time.sleep(0.05)
    ours = {wid for _, wid, _, _ in plan}
    deadline = time.time() + settle
    left = ours
    while time.time() < deadline:
        events += cluster.poll()
        left = ours & injector.observer.active()
        if not left:
            break
        time.sleep(0.5)
    print(f"  settled at {time.time() - t0:.1f} s, {len(left)} workflows still active", flush=True)
    for event in events:
        if event.kind in ("crash", "sigterm_cold"):
            print(f"  {event.at - t0:6.1f} s  {event.kind} of {event.worker} {event.detail}")
    return events, submitter


def run(
    folder: Path, mode: str, rng: random.Random, n: int, pg_down: float | None
) -> tuple[Verdict, int, int]:
    """Bring the servers and processes up in ``folder``, run the chaos, judge it.

    Returns the verdict, the process restarts and the workflow starts tried again.
    """
    pg, redis = Postgres(folder / "pg"), Redis(folder)
    cluster: Supervisor | None = None
    try:
        pg.start()
        pg.create_database()
        redis.start()
        env = {"CHAOS_DB_URL": pg.url, "CHAOS_BROKER": redis.url, "CHAOS_QUEUE": "chaos"}
        os.environ.update(env)  # before the app is imported, here and in the workers
        from bench import chaos_app, chaos_facts, chaos_verdict

        chaos_app.durable.migrate()
        chaos_app.create_tables()
        weights = {k.name: k.weight for k in chaos_app.KINDS.values() if k.weight}
        plan = plan_workflows(rng, n, min(SIZES[mode][1], n // 10), weights)
        window = max(len(plan) / RATE - 2.0, 6.0)
        faults = plan_faults(rng, 3.0, window, COUNTS[mode], pg_down)
        cluster = Supervisor(dict(os.environ), folder, rng)
        cluster.start()
        print(f"servers and workers up; logs in {folder}", flush=True)
        observer = Observer(pg.url)
        injector = Injector(cluster, pg, redis, observer)
        events, submitter = run_chaos(cluster, injector, faults, plan, SETTLE[mode])
        cluster.stop()
        observer.dispose()
        facts = chaos_facts.read_facts(pg.url, chaos_app.durable.runtime.serializer)
        events += chaos_facts.log_events([w.log for w in cluster.workers], facts)
        save_events(events, folder / "events.json")
        kinds = {wid: (chaos_app.KINDS[kind], x) for _, wid, kind, x in plan}
        chains = {wid for wid, (kind, _) in kinds.items() if "chain" in kind.name}
        verdict = chaos_verdict.judge(facts, events, kinds, chains)
        return verdict, cluster.restarts, submitter.failed_starts
    finally:
        if cluster is not None:
            cluster.stop()
        pg.stop()
        redis.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--short", action="store_true", help="150 workflows, fewer faults")
    parser.add_argument("--seed", type=int, default=None, help="default: a random one, printed")
    parser.add_argument("--workflows", type=int, default=None, help="override the count")
    parser.add_argument("--keep", action="store_true", help="keep the logs and data folder")
    parser.add_argument(
        "--pg-down", type=float, default=None, help="seconds Postgres stays down on a restart"
    )
    args = parser.parse_args()
    mode = "short" if args.short else "full"
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1_000_000)
    n = args.workflows or SIZES[mode][0]
    commit = commit_measured()
    started = time.time()
    print(f"chaos run: {mode}, seed {seed}, {n} workflows, commit {commit}", flush=True)
    install_cleanup()
    # the store's retries while the faults strike: the workers' logs keep them, not the report
    logging.getLogger("celery_durable").setLevel(logging.ERROR)
    folder = Path(tempfile.mkdtemp(prefix="bench-chaos-"))
    folder.chmod(0o755)  # the postgres user reaches its data folder through it
    (folder / "pg").mkdir()
    try:
        verdict, restarts, failed_starts = run(folder, mode, random.Random(seed), n, args.pg_down)
    finally:
        Group.kill_all()
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    print_matrix(verdict.matrix)
    print_totals(verdict, restarts, failed_starts)
    bench_line(
        record(
            verdict, mode=mode, seed=seed, commit=commit, failed_starts=failed_starts,
            worker_restarts=restarts, wall_s=time.time() - started,
        )
    )  # fmt: skip
    return 0 if verdict.ok else 1


if __name__ == "__main__":
    sys.exit(main())
