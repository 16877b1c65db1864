"""Crash-and-recover demo: a worker is SIGKILLed mid-workflow, and no step runs twice.

Run from anywhere: ``python example_project/demo.py`` (or ``bash scripts/demo.sh``).
It needs only Python: the store is celery-durable's embedded SQLite default and the broker
is kombu's ``filesystem://`` transport, both under ``example_project/.demo/`` (rebuilt on
every run). Set ``CELERY_BROKER_URL`` and/or ``DURABLE_DATABASE_URL`` to use Redis and
Postgres instead; ``SHOP_DEMO_DIR`` moves the demo folder.

Exit status: 0 when every step of every order ran exactly once, 1 when a count or a
status is wrong, 2 when the demo itself could not run (a worker did not start or die).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from types import ModuleType
from typing import Any, NoReturn

from celery_durable import Durable, ResumeOutcome, SetWorkflowID, WorkflowHandle

HERE = Path(__file__).resolve().parent
DEFAULT_DEMO_DIR = HERE / ".demo"  # git-ignored
DEMO_DIR = Path(os.environ.get("SHOP_DEMO_DIR") or DEFAULT_DEMO_DIR).resolve()
MARKER = ".celery-durable-demo"  # another folder is only deleted when it holds this file
TOTALS = [25.0, 99.9, 7.5]  # one order workflow each
STEPS = ["save_order", "charge_payment", "send_confirmation"]
WAIT = 60.0  # seconds allowed for a worker to start, die or finish the workflows


class DemoError(Exception):
    """The demo could not be carried out (as opposed to a wrong result)."""


def say(text: str = "") -> None:
    print(text, flush=True)


def fresh_demo_dir() -> None:
    if DEMO_DIR.exists():
        mine = DEMO_DIR == DEFAULT_DEMO_DIR or (DEMO_DIR / MARKER).exists()
        if not mine and any(DEMO_DIR.iterdir()):
            raise DemoError(f"{DEMO_DIR} is not empty and not a demo folder: not touching it")
        shutil.rmtree(DEMO_DIR)
    DEMO_DIR.mkdir(parents=True)
    (DEMO_DIR / MARKER).touch()


class Worker:
    """A real ``celery -A shop.celery_app worker`` in its own process group."""

    def __init__(self, number: int, env: dict[str, str]) -> None:
        self.number = number
        self.env = env
        self.log_path = DEMO_DIR / f"worker-{number}.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        cmd = [
            sys.executable, "-m", "celery", "-A", "shop.celery_app", "worker",
            "--pool", "solo", "--loglevel", "info", "--hostname", f"demo{self.number}@%h",
            "--without-mingle", "--without-gossip", "--without-heartbeat",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                cmd, cwd=DEMO_DIR, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )  # fmt: skip
        deadline = time.monotonic() + WAIT
        while " ready." not in self.log():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.fail("did not start")
            time.sleep(0.1)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def fail(self, what: str) -> NoReturn:
        raise DemoError(
            f"worker #{self.number} {what}; end of {self.log_path}:\n{self.log()[-3000:]}"
        )

    def wait_killed(self) -> None:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            self.fail(f"was still running after {WAIT:.0f}s")
        if code != -signal.SIGKILL:
            self.fail(f"exited with {code}, not by SIGKILL")

    def stop(self) -> None:
        """Warm shutdown, then SIGKILL whatever is left of its process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            say(f"(stopping worker #{self.number}: warm shutdown)")
            self.proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=30)
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()


def configure() -> dict[str, str]:
    """Environment for this process and the workers: demo folders, crash flags, imports."""
    flags = DEMO_DIR / "flags"
    flags.mkdir()
    os.environ.setdefault("SHOP_BROKER_DIR", str(DEMO_DIR / "broker"))
    os.environ["SHOP_CRASH_FLAGS"] = str(flags)
    os.chdir(DEMO_DIR)  # the embedded SQLite default is a file in the current directory
    sys.path.insert(0, str(HERE))
    path = [str(HERE), *filter(None, [os.environ.get("PYTHONPATH")])]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(path)}


def describe(app: Any, durable: Durable) -> None:
    store = durable.store.engine.url.render_as_string(hide_password=True)
    broker = app.conf.broker_url.split("://")[0] + "://"
    say("celery-durable demo: an order workflow survives a worker SIGKILL")
    say(f"  store : {store}" + ("" if durable.settings.database_url else "  (embedded default)"))
    where = os.environ["SHOP_BROKER_DIR"] if broker == "filesystem://" else ""
    say(f"  broker: {broker}" + (f"  (folders under {where})" if where else ""))
    say(f"  logs  : {DEMO_DIR}/worker-*.log")


def start_orders(durable: Durable, tasks: ModuleType) -> dict[str, WorkflowHandle]:
    """Start one workflow per order; returns the handles by order id."""
    run_id = uuid.uuid4().hex[:6]
    handles = {}
    for number, total in enumerate(TOTALS, start=1):
        order_id = f"{run_id}-{number}"
        with SetWorkflowID(f"order-{order_id}"):
            handles[order_id] = durable.start_workflow(tasks.process_order, order_id, total)
    return handles


def show_state(durable: Durable, handles: dict[str, WorkflowHandle]) -> None:
    for handle in handles.values():
        steps = durable.list_workflow_steps(handle.workflow_id)
        done = ", ".join(f"#{s.step_id} {s.name.rsplit('.', 1)[-1]} {s.status}" for s in steps)
        status = handle.get_status().status
        say(f"    {handle.workflow_id:<16} {status:<9} steps recorded: {done or 'none'}")


def resume_once_owner_gone(durable: Durable, workflow_id: str) -> None:
    deadline = time.monotonic() + WAIT
    while (outcome := durable.resume(workflow_id)) == ResumeOutcome.RUNNING:
        if time.monotonic() > deadline:
            raise DemoError(f"workflow {workflow_id} still owned by a live worker after {WAIT}s")
        time.sleep(0.5)
    say(f"    {workflow_id:<16} {outcome}")


def effects_table(tasks: ModuleType, handles: dict[str, WorkflowHandle]) -> bool:
    """Print executions per step for each order; True when all are 1 and all succeeded."""
    counts = tasks.count_effects(list(handles))
    say(f"    {'workflow':<16}" + "".join(f"{s:>19}" for s in STEPS) + "  status    recoveries")
    ok = True
    for order_id, handle in handles.items():
        status = handle.get_status()
        row = [counts[order_id][s] for s in STEPS]
        ok = ok and row == [1, 1, 1] and status.status == "SUCCESS"
        cells = "".join(f"{n:>19}" for n in row)
        recoveries = status.recovery_attempts
        say(f"    {handle.workflow_id:<16}{cells}  {status.status:<9} {recoveries:>10}")
    return ok


def run(workers: list[Worker]) -> bool:
    fresh_demo_dir()
    env = configure()
    from shop import tasks
    from shop.celery_app import app, durable

    describe(app, durable)
    tasks.create_tables()

    say("\n[1] Worker #1 starts (solo pool, its own process group).")
    workers.append(Worker(1, env))
    workers[0].start()
    (DEMO_DIR / "flags" / tasks.CRASH_BEFORE_CONFIRMATION).touch()
    say("    A flag file is set: the first send_confirmation SIGKILLs the worker, that is")
    say("    right after charge_payment's output was checkpointed.")

    handles = start_orders(durable, tasks)
    ids = [h.workflow_id for h in handles.values()]
    say(f"\n[2] Started {len(ids)} order workflows: {', '.join(ids)}")

    workers[0].wait_killed()
    say("\n[3] Worker #1 was SIGKILLed mid-workflow. What the store says now:")
    show_state(durable, handles)

    unfinished = durable.list_workflows(status=["ENQUEUED", "PENDING"], workflow_ids=ids)
    say(f"\n[4] durable.resume_workflow(id) for the {len(unfinished)} unfinished workflows:")
    say("    each goes on from its first incomplete step. Worker #2 starts.")
    timeout = durable.settings.executor_timeout
    say(f"    (Until worker #1's last heartbeat is {timeout:.0f} s old it may still be running")
    say("    them, so resume leaves them alone: the demo asks again until it resumes them.)")
    workers.append(Worker(2, {**env, "SHOP_CRASH_FLAGS": ""}))
    workers[1].start()
    for workflow in unfinished:
        resume_once_owner_gone(durable, workflow.workflow_id)
    for handle in handles.values():
        try:
            result = handle.get_result(timeout=WAIT)
        except TimeoutError as exc:
            workers[1].fail(str(exc))
        say(f"    {handle.workflow_id:<16} -> {result}")

    say("\n[5] Side effects: how many times each step's body ran, per workflow")
    ok = effects_table(tasks, handles)
    if ok:
        say("\nExactly once: every step of every order ran one time, despite the SIGKILL.")
    else:
        say("\nWRONG: a step ran more or less than once, or a workflow did not succeed.")
    return ok


def main() -> int:
    workers: list[Worker] = []

    def terminate(signum: int, _frame: Any) -> NoReturn:
        raise SystemExit(128 + signum)

    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, terminate)
    try:
        return 0 if run(workers) else 1
    except DemoError as exc:
        say(f"\ndemo failed: {exc}")
        return 2
    except KeyboardInterrupt:
        say("\ninterrupted")
        return 130
    finally:
        for signum in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(signum, signal.SIG_IGN)  # let the clean-up finish
        for worker in workers:
            worker.stop()


if __name__ == "__main__":
    sys.exit(main())
