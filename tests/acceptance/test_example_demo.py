"""The README's demo works with only Python: a worker SIGKILLed, a resume, each step once."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# a row of the demo's final table: workflow id, three execution counts, status, recoveries
ROW = re.compile(r"^\s+(order-\S+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\w+)\s+(\d+)$", re.MULTILINE)
# the crashed workflow, as the store shows it before the resume
CRASHED = re.compile(
    r"^\s+order-\S+\s+PENDING\s+steps recorded: #0 save_order SUCCESS, #1 charge_payment SUCCESS$",
    re.MULTILINE,
)


def test_demo_runs_every_step_exactly_once(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("CELERY_BROKER_URL", "DURABLE_DATABASE_URL", "SHOP_BROKER_DIR")
    }
    env["SHOP_DEMO_DIR"] = str(tmp_path / "demo")  # leave example_project/.demo alone
    proc = subprocess.Popen(
        [sys.executable, "example_project/demo.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        out, _ = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        proc.terminate()  # the demo stops its workers on SIGTERM
        out, _ = proc.communicate(timeout=60)
        pytest.fail(f"the demo did not finish in 120 s:\n{out}")

    assert proc.returncode == 0, out
    assert "sqlite:///" in out and "filesystem://" in out, out  # nothing but Python needed
    assert CRASHED.search(out), out
    rows = ROW.findall(out)
    assert len(rows) == 3, out
    for _wid, *counts, status, _recoveries in rows:
        assert (counts, status) == (["1", "1", "1"], "SUCCESS"), out
    assert "Exactly once" in out
