"""The faults of a chaos run: a seeded plan of when each strikes, and how each is dealt.

Each fault reads from the store, just before it strikes, which workflows are in its
scope (those a killed worker owned, or every active one for a server fault), through
connections of its own, opened per read: the faults cut every other connection.
"""

from __future__ import annotations

import random
import signal
import time
from dataclasses import dataclass

from sqlalchemy import create_engine, text
from sqlalchemy.pool import NullPool

from bench.chaos_cluster import Event, Node, Supervisor
from bench.chaos_servers import Postgres, Redis
from celery_durable.store.engine import with_retries

COUNTS = {
    "short": {"sigkill": 3, "sigterm": 2, "redis_restart": 1, "pg_terminate": 3, "pg_restart": 1},
    "full": {"sigkill": 8, "sigterm": 4, "redis_restart": 3, "pg_terminate": 8, "pg_restart": 2},
}

OWNED = """
SELECT executor_id, workflow_id FROM durable_workflows
WHERE status = 'PENDING' AND executor_id IS NOT NULL
UNION
SELECT executor_id, workflow_id FROM durable_steps
WHERE status = 'RUNNING' AND executor_id IS NOT NULL
"""


@dataclass(frozen=True)
class Fault:
    """One planned fault: seconds after the start, kind, worker index, and a pause (the
    restart delay of a killed worker, or how long a server stays down)."""

    at: float
    kind: str
    target: int
    pause: float


def plan_faults(
    rng: random.Random,
    start: float,
    end: float,
    counts: dict[str, int],
    pg_down: float | None = None,
) -> list[Fault]:
    """Spread the faults over [start, end]: one per equal slot, at a random point of it, so
    two never strike at once and each has a few seconds before the next. A restarted
    server stays down 0.2 to 1.5 s, or ``pg_down`` s for Postgres when given."""
    kinds = [kind for kind, n in counts.items() for _ in range(n)]
    rng.shuffle(kinds)
    slot = (end - start) / max(1, len(kinds))
    faults = []
    for i, kind in enumerate(kinds):
        at = start + (i + rng.uniform(0.1, 0.9)) * slot
        target, pause = rng.randrange(3), rng.uniform(0.2, 1.5)  # drawn either way: same plan
        if kind == "pg_restart" and pg_down is not None:
            pause = pg_down
        faults.append(Fault(at, kind, target, pause))
    return faults


class Observer:
    """Reads the store from outside the library, each read on a fresh connection."""

    def __init__(self, url: str) -> None:
        self.engine = create_engine(url, poolclass=NullPool)

    def _rows(self, sql: str) -> list[tuple[object, ...]]:
        def run() -> list[tuple[object, ...]]:
            with self.engine.connect() as conn:
                return [tuple(row) for row in conn.execute(text(sql))]

        return with_retries(run, timeout=30, what="chaos snapshot")

    def active(self) -> frozenset[str]:
        rows = self._rows(
            "SELECT workflow_id FROM durable_workflows WHERE status IN ('ENQUEUED', 'PENDING')"
        )
        return frozenset(str(r[0]) for r in rows)

    def owned_by(self, node: Node) -> frozenset[str]:
        """Workflows the worker's executor runs now (a workflow, or a leased chain step)."""
        executors = self._rows(
            "SELECT executor_id, pid FROM durable_executors WHERE status = 'RUNNING'"
        )
        mine = {str(e) for e, pid in executors if pid == node.leader}
        return frozenset(str(w) for e, w in self._rows(OWNED) if e in mine)

    def dispose(self) -> None:
        self.engine.dispose()


def busy(workflows: frozenset[str]) -> tuple[int, int]:
    """How much a worker has to drain: its long workflows first (their ids say so; one
    outlives the executor timeout), then all it runs."""
    return sum(1 for w in workflows if w.endswith("_long")), len(workflows)


class Injector:
    """Deals each planned fault to the run's processes and servers."""

    def __init__(self, cluster: Supervisor, pg: Postgres, redis: Redis, observer: Observer):
        self.cluster = cluster
        self.pg = pg
        self.redis = redis
        self.observer = observer

    def _up(self, target: int) -> list[Node]:
        """Workers running and not draining, the planned target first."""
        nodes = self.cluster.workers[target:] + self.cluster.workers[:target]
        return [n for n in nodes if n.group is not None and n.term_at is None]

    def fire(self, fault: Fault) -> Event | None:
        """Deal ``fault``; None when it could not be (every worker already down)."""
        if fault.kind == "sigkill":
            up = self._up(fault.target)
            if not up:
                return None
            return self.cluster.sigkill(up[0], fault.pause, self.observer.owned_by(up[0]))
        if fault.kind == "sigterm":
            owned = [(self.observer.owned_by(n), n) for n in self._up(fault.target)]
            if not owned:
                return None
            affected, node = max(owned, key=lambda pair: busy(pair[0]))
            return self.cluster.sigterm(node, affected)
        affected = self.observer.active()
        at = time.time()
        if fault.kind == "pg_terminate":
            n = self.pg.terminate_backends()
            return Event(fault.kind, at, affected=affected, detail=f"{n} backends", until=at)
        if fault.kind == "pg_restart":
            self.pg.stop(signal.SIGQUIT)  # immediate: a crash of the server
            time.sleep(fault.pause)
            self.pg.start()
        elif fault.kind == "redis_restart":
            self.redis.stop()
            time.sleep(fault.pause)
            self.redis.start()
        else:
            raise ValueError(f"unknown fault {fault.kind!r}")
        back = time.time()
        return Event(
            fault.kind, at, affected=affected, detail=f"down {back - at:.1f} s", until=back
        )
