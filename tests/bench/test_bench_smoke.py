"""The benchmarks in smoke mode, so they cannot rot: every mode completes, results correct.

Figures are not asserted here (they live in bench/RESULTS.md); each script asserts its
own results (every chain and workflow returned the right value) and exits non-zero if not.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def run_bench(module: str, *args: str, timeout: float = 240) -> list[dict[str, object]]:
    out = subprocess.run(
        [sys.executable, "-m", module, "--smoke", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert out.returncode == 0, f"{module} failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    rows = [json.loads(line[6:]) for line in out.stdout.splitlines() if line.startswith("BENCH ")]
    assert rows, f"{module} printed no BENCH line:\n{out.stdout[-3000:]}"
    return rows


def test_throughput_bench_runs_every_mode() -> None:
    rows = run_bench("bench.run")
    modes = {row["mode"] for row in rows}
    assert {"plain", "durable_chain", "durable_workflow", "plain_chord", "durable_chord"} <= modes
    try:
        import dbos  # noqa: F401
    except ImportError:
        pass
    else:
        assert "dbos" in modes
    for row in rows:
        assert float(row["steps_per_s"]) > 0  # type: ignore[arg-type]


@pytest.mark.parametrize("module", ["bench.sweep", "bench.soak"])
def test_recovery_and_memory_benches_run(module: str) -> None:
    assert run_bench(module)


def test_messages_bench_wakes_parked_workflows() -> None:
    [row] = run_bench("bench.messages")
    assert (row["mode"], row["round_trips"]) == ("parked", 5)
