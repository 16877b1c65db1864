"""The chaos run's `celery worker` and `celery beat` processes, supervised as in production:
a process that exits is started again. Every process death is recorded as an ``Event``
with the pids it took, which is what later tells a legitimate re-run from a violation.
"""

from __future__ import annotations

import random
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

from bench.common import Group, worker_cmd

APP = "bench.chaos_app"
WARM_GRACE = 20.0  # seconds a warm shutdown may take before the supervisor SIGKILLs it
# the events that kill processes: a step running in one of their pids may run again
KILLS = frozenset({"sigkill", "sigterm_cold", "crash", "time_limit"})


@dataclass
class Event:
    """One fault: its kind, when (epoch seconds, just before it), what it took.

    ``pids`` are the processes it struck (killed, for the kinds in ``KILLS``; a warm
    shutdown's are only asked to stop); ``affected`` the workflows in its scope, read
    from the store just before it (the verdict adds those with a step running in ``pids``).
    """

    kind: str
    at: float
    worker: str = ""
    pids: frozenset[int] = frozenset()
    affected: frozenset[str] = frozenset()
    detail: str = ""
    until: float = 0.0  # a server fault: when the server was back


@dataclass
class Node:
    """One supervised process: its command, its log, and its current incarnation."""

    name: str
    cmd: list[str]
    log: Path
    group: Group | None = None
    pids: set[int] = field(default_factory=set)  # the incarnation's processes seen so far
    restart_at: float | None = None
    term_at: float | None = None  # a warm shutdown is under way since then

    @property
    def leader(self) -> int | None:
        return self.group.pid if self.group is not None else None


class Supervisor:
    """Starts the workers and beats, restarts whatever exits, records deaths as events."""

    def __init__(self, env: dict[str, str], logs: Path, rng: random.Random) -> None:
        self.env = env
        self.rng = rng
        queues = f"{env['CHAOS_QUEUE']},{env['CHAOS_QUEUE']}.sweep"
        self.workers = [
            Node(f"w{i}", [*worker_cmd(APP, queues, 2), "-n", f"chaos-w{i}@%h"], logs / f"w{i}.log")
            for i in range(3)
        ]
        self.beats = [
            Node(f"beat{i}", beat_cmd(logs / f"beat{i}"), logs / f"beat{i}.log") for i in range(2)
        ]
        self.restarts = 0

    def start(self, timeout: float = 90.0) -> None:
        """Start every process; return when the workers are ready."""
        for node in self.workers + self.beats:
            self._launch(node)
        for node in self.workers:
            assert node.group is not None
            node.group.wait_for_log(" ready.", timeout=timeout)

    def _launch(self, node: Node) -> None:
        node.group = Group(node.cmd, self.env, node.log)
        node.pids = {node.group.pid}
        node.restart_at = node.term_at = None

    def _look(self, node: Node) -> set[int]:
        """Every process of this incarnation seen so far: the leader and its pool children.

        Cumulative: once the leader has died its children are no longer its children, yet
        a step may still be running in one, and its death must be on record."""
        if node.group is None:
            return node.pids
        try:
            leader = psutil.Process(node.group.pid)
            node.pids |= {c.pid for c in leader.children(recursive=True)}
        except psutil.NoSuchProcess:
            pass
        return node.pids

    def _down(self, node: Node, restart_after: float) -> tuple[frozenset[int], float]:
        """SIGKILL what is left of the group and schedule the restart. Returns its pids and
        the time right after the kill: no step can have started in them later."""
        pids = frozenset(self._look(node))
        if node.group is not None:
            node.group.kill()
            node.group = None
        at = time.time()
        node.term_at = None
        node.restart_at = at + restart_after
        return pids, at

    def sigkill(self, node: Node, restart_after: float, affected: frozenset[str]) -> Event:
        """SIGKILL the worker's whole process group, as a lost machine would."""
        pids, at = self._down(node, restart_after)
        return Event("sigkill", at, node.name, pids, affected)

    def sigterm(self, node: Node, affected: frozenset[str]) -> Event:
        """Warm shutdown: the pool drains; ``poll`` restarts it once it has exited."""
        at = time.time()
        pids = frozenset(self._look(node))
        if node.group is not None:
            node.group.proc.send_signal(signal.SIGTERM)
            node.term_at = at
        return Event("sigterm", at, node.name, pids, affected)

    def poll(self) -> list[Event]:
        """Restart what is due; record what died on its own or overstayed a warm shutdown."""
        events: list[Event] = []
        now = time.time()
        for node in self.workers + self.beats:
            if node.group is None:
                if node.restart_at is not None and now >= node.restart_at:
                    self._launch(node)
                    self.restarts += 1
                continue
            self._look(node)
            code = node.group.proc.poll()
            if code is not None and node.term_at is not None:
                node.group.kill()  # a pool child left behind after the drain
                node.group = None
                self._launch(node)
                self.restarts += 1
            elif code is not None:
                pids, at = self._down(node, self.rng.uniform(0.2, 1.0))
                if node in self.workers:  # a beat's death affects no step
                    events.append(Event("crash", at, node.name, pids, detail=f"exit {code}"))
            elif node.term_at is not None and now - node.term_at > WARM_GRACE:
                pids, at = self._down(node, 0.2)
                events.append(Event("sigterm_cold", at, node.name, pids))
        return events

    def stop(self) -> None:
        for node in self.workers + self.beats:
            if node.group is not None:
                node.group.kill()
                node.group = None
            node.restart_at = None


def beat_cmd(stem: Path) -> list[str]:
    """`celery beat` with its own schedule and pid files (two beats run side by side)."""
    return [
        sys.executable, "-m", "celery", "-A", APP, "beat", "-l", "info",
        "-s", f"{stem}-schedule", "--pidfile", f"{stem}.pid",
    ]  # fmt: skip
