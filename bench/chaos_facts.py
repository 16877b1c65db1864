"""What a chaos run left behind, read once it settled: the store's workflows and step
checkpoints, the effect and commit rows the step bodies wrote, and the events only the
workers' logs know of (pool processes killed by a hard time limit, redelivered messages).
"""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.chaos_app import REDELIVERED
from bench.chaos_cluster import Event
from celery_durable.serialization import Serializer

Key = tuple[str, int]  # (workflow id, step id)
LINE = re.compile(r"^\[(\d+\.\d+) \w+/\S+ (\d+)\] (.*)$")  # chaos_app.LOG_FORMAT
TIME_LIMIT = re.compile(r"Hard time limit \([\d.]+s\) exceeded for [\w.]+\[([\w-]+)\]")
REDELIVERY = re.compile(re.escape(REDELIVERED) + r" (\S+)")
# the store rolled a transaction step back on a database error and runs its body again
ROLLBACK = "durable database error during transaction step"


@dataclass(frozen=True)
class Execution:
    """One run of a step body, as its effect row recorded it."""

    workflow_id: str
    step_id: int
    step: str
    attempt: int
    pid: int
    start: float
    planned_failure: bool

    @property
    def key(self) -> Key:
        return (self.workflow_id, self.step_id)


@dataclass(frozen=True)
class Ending:
    """A workflow's row at the end: status, decoded output, error (rebuilt), end time."""

    status: str
    output: object = None
    error: BaseException | None = None
    completed_at: float | None = None


@dataclass
class Facts:
    endings: dict[str, Ending] = field(default_factory=dict)
    # when each step's outcome (output, or final error) was recorded, in epoch seconds
    checkpoints: dict[Key, float] = field(default_factory=dict)
    transaction_steps: set[Key] = field(default_factory=set)  # chaos.book, recorded SUCCESS
    executions: dict[Key, list[Execution]] = field(default_factory=dict)  # by start time
    commits: Counter[Key] = field(default_factory=Counter)
    task_workflow: dict[str, Key] = field(default_factory=dict)  # chain step task ids

    progress: dict[str, list[float]] = field(default_factory=dict)  # checkpoints and end

    def progress_after(self, workflow_id: str, at: float) -> float | None:
        """The first step checkpoint or end of ``workflow_id`` after ``at``."""
        return min((t for t in self.progress.get(workflow_id, ()) if t > at), default=None)

    def ended_before(self, workflow_id: str, at: float) -> bool:
        ending = self.endings.get(workflow_id)
        return bool(ending and ending.completed_at and ending.completed_at <= at)


def read_facts(url: str, serializer: Serializer) -> Facts:
    facts = Facts()
    engine = create_engine(url, poolclass=NullPool)
    with engine.connect() as conn:
        for wid, status, output, error, done in conn.execute(
            text(
                "SELECT workflow_id, status, output, error, completed_at_ms FROM durable_workflows"
            )
        ):
            facts.endings[wid] = Ending(
                status,
                serializer.loads(output) if output is not None else None,
                serializer.loads_exception(error) if error else None,
                done / 1000 if done else None,
            )
        for wid, sid, name, status, done, task_id in conn.execute(
            text(
                "SELECT workflow_id, step_id, name, status, completed_at_ms, task_id"
                " FROM durable_steps"
            )
        ):
            if status in ("SUCCESS", "ERROR") and done:
                facts.checkpoints[(wid, sid)] = done / 1000
            if name == "chaos.book" and status == "SUCCESS":
                facts.transaction_steps.add((wid, sid))
            if task_id:
                facts.task_workflow[task_id] = (wid, sid)
        grouped: dict[Key, list[Execution]] = defaultdict(list)
        for row in conn.execute(
            text(
                "SELECT workflow_id, step_id, step, attempt, pid, started_at, planned_failure"
                " FROM chaos_effects ORDER BY started_at"
            )
        ):
            execution = Execution(*row)
            grouped[execution.key].append(execution)
        facts.executions = dict(grouped)
        for wid, sid, n in conn.execute(
            text("SELECT workflow_id, step_id, count(*) FROM chaos_commits GROUP BY 1, 2")
        ):
            facts.commits[(wid, sid)] = n
    engine.dispose()
    progress: dict[str, list[float]] = defaultdict(list)
    for (wid, _), at in facts.checkpoints.items():
        progress[wid].append(at)
    for wid, ending in facts.endings.items():
        if ending.completed_at:
            progress[wid].append(ending.completed_at)
    facts.progress = dict(progress)
    return facts


def log_events(logs: list[Path], facts: Facts) -> list[Event]:
    """Time-limit kills, redelivered messages and rolled back transaction steps, from the
    workers' logs.

    A time-limit kill's pid is that of the step's last run started before it; a
    redelivered message is one of a workflow's when its task id is a workflow's or a
    chain step's (others, such as sweep tasks, are left out).
    """
    events: list[Event] = []
    for path in logs:
        for line in path.read_text(errors="replace").splitlines():
            found = LINE.match(line)
            if found is None:
                continue
            at, pid, message = float(found.group(1)), int(found.group(2)), found.group(3)
            if message.startswith(ROLLBACK):
                events.append(Event("rollback", at, path.stem, frozenset({pid})))
            elif hit := TIME_LIMIT.search(message):
                key = facts.task_workflow.get(hit.group(1))
                runs = [e for e in facts.executions.get(key, []) if e.start <= at] if key else []
                pids = frozenset({runs[-1].pid}) if runs else frozenset()
                affected = frozenset({key[0]}) if key else frozenset()
                events.append(Event("time_limit", at, path.stem, pids, affected))
            elif hit := REDELIVERY.search(message):
                task_id = hit.group(1)
                wid = task_id if task_id in facts.endings else None
                if wid is None and task_id in facts.task_workflow:
                    wid = facts.task_workflow[task_id][0]
                if wid is not None:
                    events.append(Event("redelivered", at, path.stem, affected=frozenset({wid})))
    return events
