"""The verdict of a chaos run and its crash matrix.

Checks: every workflow ended as its kind must (SUCCESS with the right output, or ERROR
with its business error); every committed transaction body appears exactly once, and
only with its step's checkpoint; no step body started after its step's outcome was
recorded; and every second run of a step body is explained, by a designed retry (an
earlier attempt raised on purpose) or by an event that ended the earlier run before its
checkpoint: a kill of its process; for a transaction step, the store rolling it back on
a database error (the worker logs it); for a chain step, a Postgres crash while it ran
(its lease commits asynchronously and may be lost, as docs/design-decisions.md allows).
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from bench.chaos_app import Declined, Kind
from bench.chaos_cluster import KILLS, Event
from bench.chaos_facts import Execution, Facts

ROWS = {
    "sigkill": "worker SIGKILL (whole group)",
    "sigterm": "worker SIGTERM (warm shutdown)",
    "sigterm_cold": "warm shutdown overdue, SIGKILL",
    "crash": "worker died on its own",
    "time_limit": "pool process killed (hard time limit)",
    "redis_restart": "Redis restarted empty",
    "pg_terminate": "Postgres backends terminated",
    "pg_restart": "Postgres restarted (immediate)",
    "redelivered": "duplicate delivery (redelivered)",
}

ENDERS = KILLS | {"rollback", "pg_restart"}  # events that can end a step body's run
# how far back a fault may be blamed for an unexplained re-run: a warm shutdown's drain,
# then the executor timeout and a sweep, fit in it
BLAME_WINDOW = 20.0


@dataclass(frozen=True)
class Rerun:
    """A step body that ran again; ``cause`` is the fault that explains it, or None, and
    ``before`` the latest earlier run of the step."""

    run: Execution
    cause: Event | None
    before: Execution


@dataclass
class Verdict:
    """Counts and examples of every check, and the matrix rows."""

    workflows: int = 0
    success: int = 0
    expected_error: int = 0
    lost: list[str] = field(default_factory=list)
    unexpected: dict[str, str] = field(default_factory=dict)  # workflow id: how it ended
    reruns: list[Rerun] = field(default_factory=list)
    designed_retries: int = 0
    after_checkpoint: list[Execution] = field(default_factory=list)
    double_commits: list[str] = field(default_factory=list)
    commit_mismatch: list[str] = field(default_factory=list)
    matrix: list[dict[str, object]] = field(default_factory=list)

    @property
    def unexplained(self) -> list[Rerun]:
        return [r for r in self.reruns if r.cause is None]

    @property
    def ok(self) -> bool:
        return not (
            self.lost or self.unexpected or self.unexplained or self.after_checkpoint
            or self.double_commits or self.commit_mismatch
        )  # fmt: skip


def could_end(run: Execution, event: Event, checkpoint: float | None, chains: set[str]) -> bool:
    """Could ``event`` have ended ``run`` before its step's outcome was recorded?"""
    if checkpoint is not None and event.at > checkpoint:
        return False
    if event.kind == "pg_restart":  # the lease, claimed before the crash, may be lost
        return run.workflow_id in chains and run.start <= event.until
    if run.start > event.at:
        return False
    if event.kind in KILLS:
        return run.pid in event.pids
    return event.kind == "rollback" and run.step == "book" and run.pid in event.pids


def explain(facts: Facts, events: list[Event], chains: set[str], verdict: Verdict) -> None:
    """Match every run after a step's first with an earlier run that it replaces."""
    enders = sorted((e for e in events if e.kind in ENDERS), key=lambda e: e.at)
    for key, runs in facts.executions.items():
        checkpoint = facts.checkpoints.get(key)
        earlier: list[Execution] = []  # runs not yet matched with the run that replaced them
        for i, run in enumerate(runs):
            if checkpoint is not None and run.start > checkpoint + 0.001:
                verdict.after_checkpoint.append(run)
            if i:
                retried = next(
                    (p for p in earlier if p.planned_failure and p.attempt < run.attempt), None
                )
                if retried is not None:
                    earlier.remove(retried)
                    verdict.designed_retries += 1
                else:
                    cause = _take_cause(earlier, run, enders, checkpoint, chains)
                    verdict.reruns.append(Rerun(run, cause, runs[i - 1]))
            earlier.append(run)


def _take_cause(
    earlier: list[Execution],
    run: Execution,
    enders: list[Event],
    checkpoint: float | None,
    chains: set[str],
) -> Event | None:
    for previous in earlier:
        for event in enders:
            if event.at <= run.start and could_end(previous, event, checkpoint, chains):
                earlier.remove(previous)
                return event
    return None


def widen_scopes(facts: Facts, events: list[Event], planned: Iterable[str]) -> None:
    """Add to each event the workflows with a step running in its processes; drop those
    that had ended before it, or are not the run's."""
    ours = set(planned)
    by_pid: dict[int, list[Execution]] = defaultdict(list)
    for runs in facts.executions.values():
        for run in runs:
            by_pid[run.pid].append(run)
    for event in events:
        scope = set(event.affected)
        for pid in event.pids:
            for run in by_pid.get(pid, ()):
                checkpoint = facts.checkpoints.get(run.key)
                if run.start <= event.at and (checkpoint is None or checkpoint >= event.at):
                    scope.add(run.workflow_id)
        event.affected = frozenset(
            w for w in scope if w in ours and not facts.ended_before(w, event.at)
        )


def check_endings(facts: Facts, plan: dict[str, tuple[Kind, int]], verdict: Verdict) -> None:
    verdict.workflows = len(plan)
    for wid, (kind, x) in plan.items():
        ending = facts.endings.get(wid)
        if ending is None or ending.status in ("ENQUEUED", "PENDING"):
            verdict.lost.append(wid)
        elif kind.declined and ending.status == "ERROR" and isinstance(ending.error, Declined):
            verdict.expected_error += 1
        elif not kind.declined and ending.status == "SUCCESS":
            if ending.output == kind.expected_output(x):
                verdict.success += 1
            else:
                verdict.unexpected[wid] = f"{kind.name}: output {ending.output!r}"
        else:
            verdict.unexpected[wid] = f"{kind.name}: {ending.status} {ending.error!r}"


def check_commits(facts: Facts, verdict: Verdict) -> None:
    for key in sorted(facts.transaction_steps | set(facts.commits)):
        n = facts.commits[key]
        if n > 1:
            verdict.double_commits.append(f"{key[0]} step {key[1]}: {n} commits")
        elif (n == 1) != (key in facts.transaction_steps):
            recorded = "a" if key in facts.transaction_steps else "no"
            verdict.commit_mismatch.append(
                f"{key[0]} step {key[1]}: {n} commits, {recorded} checkpoint"
            )


def build_matrix(facts: Facts, events: list[Event], verdict: Verdict) -> None:
    """One row per fault kind: injected, affected, re-runs, unexplained, lost, recovery."""
    lost = set(verdict.lost) | set(verdict.unexpected)
    blamed: dict[str, list[Rerun]] = defaultdict(list)
    for rerun in verdict.reruns:
        blamed[_blame(rerun, events)].append(rerun)
    for kind, label in ROWS.items():
        mine = [e for e in events if e.kind == kind]
        pairs = [(e, w) for e in mine for w in e.affected]
        waits = [t - e.at for e, w in pairs if (t := facts.progress_after(w, e.at)) is not None]
        if kind == "redelivered":  # stops no work: nothing to recover from
            waits = []
        struck = {w for _, w in pairs}
        verdict.matrix.append({
            "fault": kind, "label": label, "injected": len(mine), "affected": len(pairs),
            "reruns": len(blamed[kind]),
            "unexplained": sum(1 for r in blamed[kind] if r.cause is None),
            "lost": len(struck & lost),
            "recover_median_s": statistics.median(waits) if waits else None,
            "recover_max_s": max(waits, default=None),
        })  # fmt: skip
    if blamed["none"]:
        verdict.matrix.append({
            "fault": "none", "label": "no fault in scope", "injected": 0, "affected": 0,
            "reruns": len(blamed["none"]), "unexplained": len(blamed["none"]), "lost": 0,
            "recover_median_s": None, "recover_max_s": None,
        })  # fmt: skip


def _blame(rerun: Rerun, events: list[Event]) -> str:
    """The explaining fault's kind. An unexplained re-run goes to the last fault whose
    scope held its workflow in the ``BLAME_WINDOW`` before it; a redelivery only when no
    other fault did, since a redelivery is how a fault's duplicate usually arrives."""
    cause = rerun.cause
    if cause is not None and cause.kind != "rollback":
        return cause.kind
    if cause is not None:  # the database fault that made the store roll back
        faults = [e for e in events if e.kind.startswith("pg_") and e.at <= cause.at]
        return max(faults, key=lambda e: e.at).kind if faults else "none"
    start, wid = rerun.run.start, rerun.run.workflow_id
    near = [
        e
        for e in events
        if e.kind in ROWS and start - BLAME_WINDOW <= e.at <= start and wid in e.affected
    ]
    faults = [e for e in near if e.kind != "redelivered"] or near
    return max(faults, key=lambda e: e.at).kind if faults else "none"


def judge(
    facts: Facts, events: list[Event], plan: dict[str, tuple[Kind, int]], chains: set[str]
) -> Verdict:
    verdict = Verdict()
    widen_scopes(facts, events, plan)
    check_endings(facts, plan, verdict)
    check_commits(facts, verdict)
    explain(facts, events, chains, verdict)
    build_matrix(facts, events, verdict)
    return verdict
