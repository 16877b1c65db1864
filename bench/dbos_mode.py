"""The DBOS side of the comparison: N workflows of 10 steps on the same Postgres.

Run by bench/run.py in its own process; prints one JSON line with its figures.
"""

from __future__ import annotations

import json
import os
import sys
import time

from sqlalchemy import event
from sqlalchemy.engine import Engine

COUNTS = {"statements": 0, "commits": 0}


@event.listens_for(Engine, "before_cursor_execute")
def _count_statement(*_: object) -> None:
    COUNTS["statements"] += 1


@event.listens_for(Engine, "commit")
def _count_commit(*_: object) -> None:
    COUNTS["commits"] += 1


def main(n: int, url: str) -> None:
    from dbos import DBOS, DBOSConfig

    config: DBOSConfig = {"name": "celery-durable-bench", "system_database_url": url}
    DBOS(config=config)

    @DBOS.step()
    def inc(x: int) -> int:
        return x + 1

    @DBOS.workflow()
    def wf10(x: int) -> int:
        for _ in range(10):
            x = inc(x)
        return x

    DBOS.launch()
    before = dict(COUNTS)
    cpu0 = os.times()
    t0 = time.perf_counter()
    handles = [DBOS.start_workflow(wf10, 0) for _ in range(n)]
    results = [h.get_result() for h in handles]
    wall = time.perf_counter() - t0
    cpu1 = os.times()
    assert results == [10] * n, results[:5]
    print(
        json.dumps(
            {
                "wall": wall,
                "cpu_client": (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system),
                "statements": COUNTS["statements"] - before["statements"],
                "commits": COUNTS["commits"] - before["commits"],
            }
        ),
        flush=True,
    )
    DBOS.destroy()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
