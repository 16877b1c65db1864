"""What a chaos run prints: the crash matrix (Markdown), the totals, examples of each
violation, the ``BENCH`` record; and the events file a kept run leaves for a closer look."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.chaos_cluster import Event

if TYPE_CHECKING:  # the verdict imports the app, which reads its settings at import
    from bench.chaos_verdict import Verdict

COLUMNS = {
    "label": "fault", "injected": "injected", "affected": "affected", "reruns": "re-runs",
    "unexplained": "unexplained", "lost": "lost",
    "recover_median_s": "recover median s", "recover_max_s": "recover max s",
}  # fmt: skip


def print_matrix(rows: list[dict[str, Any]]) -> None:
    """The matrix as a Markdown table (bench/RESULTS.md takes it as it is)."""

    def cell(value: Any) -> str:
        return "-" if value is None else f"{value:.1f}" if isinstance(value, float) else str(value)

    table = [list(COLUMNS.values())] + [[cell(row[k]) for k in COLUMNS] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(COLUMNS))]
    rule = ["-" * widths[0], *("-" * (w - 1) + ":" for w in widths[1:])]
    print()
    for line in [table[0], rule, *table[1:]]:
        pairs = enumerate(zip(line, widths, strict=True))
        cells = [c.rjust(w) if i else c.ljust(w) for i, (c, w) in pairs]
        print("| " + " | ".join(cells) + " |")


def print_totals(verdict: Verdict, restarts: int, failed_starts: int) -> None:
    """The totals under the matrix, then up to ten examples of each violation."""
    print(
        f"\n{verdict.workflows} workflows: {verdict.success} SUCCESS, {verdict.expected_error}"
        f" expected ERROR, {len(verdict.lost)} lost, {len(verdict.unexpected)} ended otherwise;"
        f" {len(verdict.reruns)} re-runs ({len(verdict.unexplained)} unexplained),"
        f" {verdict.designed_retries} designed retries; {len(verdict.double_commits)}"
        f" transaction bodies committed twice; {restarts} process restarts;"
        f" {failed_starts} starts retried"
    )
    problems = {
        "lost (still ENQUEUED or PENDING)": verdict.lost,
        "ended otherwise": [f"{w} {why}" for w, why in verdict.unexpected.items()],
        "unexplained re-runs": [
            f"{r.run.workflow_id} step {r.run.step_id} ({r.run.step}) attempt {r.run.attempt}"
            f" pid {r.run.pid} at {r.run.start:.3f}; before: pid {r.before.pid}"
            f" at {r.before.start:.3f}"
            for r in verdict.unexplained
        ],
        "started after its checkpoint": [
            f"{r.workflow_id} step {r.step_id} pid {r.pid} at {r.start:.3f}"
            for r in verdict.after_checkpoint
        ],
        "transaction committed twice": verdict.double_commits,
        "commit without checkpoint or checkpoint without commit": verdict.commit_mismatch,
    }
    for title, items in problems.items():
        if items:
            print(f"\n{title}: {len(items)}")
            for item in items[:10]:
                print(f"  {item}")


def record(verdict: Verdict, **extra: Any) -> dict[str, Any]:
    """The ``BENCH`` record: the verdict's totals, faults injected per kind, and ``extra``."""
    return {
        "bench": "chaos", **extra,
        "workflows": verdict.workflows, "success": verdict.success,
        "expected_error": verdict.expected_error, "lost": len(verdict.lost),
        "unexpected_status": len(verdict.unexpected), "reruns": len(verdict.reruns),
        "unexplained_reruns": len(verdict.unexplained),
        "designed_retries": verdict.designed_retries,
        "ran_after_checkpoint": len(verdict.after_checkpoint),
        "tx_double_commits": len(verdict.double_commits),
        "tx_commit_mismatch": len(verdict.commit_mismatch),
        "faults": {str(r["fault"]): r["injected"] for r in verdict.matrix if r["fault"] != "none"},
        "ok": verdict.ok,
    }  # fmt: skip


def save_events(events: list[Event], path: Path) -> None:
    """Every event with its pids and scope, for a look at a kept run (``--keep``)."""
    rows = [
        {**vars(e), "pids": sorted(e.pids), "affected": sorted(e.affected)}
        for e in sorted(events, key=lambda e: e.at)
    ]
    path.write_text(json.dumps(rows, indent=1))
