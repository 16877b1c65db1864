"""The crash matrix in its short form: real workers, real faults, a seeded plan.

``python -m bench.chaos --short`` starts its own Postgres and Redis (the shared ones are
never restarted), so this test needs the Postgres 15 binaries and redis-server on the
machine, and root (to run Postgres as the ``postgres`` user). It asserts the verdict's
totals from the ``BENCH`` line; the matrix itself is printed on failure.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
SEED = 1  # a fixed plan, so a failure can be run again as it was


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_short_chaos_run_loses_nothing_and_runs_nothing_twice_unexplained() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "bench.chaos", "--short", "--seed", str(SEED)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=230,
    )
    report = f"exit {out.returncode}\n{out.stdout[-6000:]}\n{out.stderr[-3000:]}"
    lines = [line[6:] for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    assert lines, f"no BENCH line:\n{report}"
    totals = json.loads(lines[-1])
    assert totals["lost"] == 0, report
    assert totals["unexpected_status"] == 0, report
    assert totals["tx_double_commits"] == 0, report
    assert totals["tx_commit_mismatch"] == 0, report
    assert totals["unexplained_reruns"] == 0, report
    assert totals["ran_after_checkpoint"] == 0, report
    assert totals["workflows"] == totals["success"] + totals["expected_error"], report
    for fault in ("sigkill", "sigterm", "redis_restart", "pg_terminate", "pg_restart"):
        assert totals["faults"][fault] >= 1, f"{fault} was never injected:\n{report}"
    assert out.returncode == 0, report
