"""``MemoryStore``'s step history: a step's earlier runs set aside by resume (as
``store/history.py``)."""

from __future__ import annotations

from dataclasses import replace

from ..types import StepRecord
from .memory_tables import MemoryTables, MemoryTransaction


def set_aside_step(
    tables: MemoryTables, tx: MemoryTransaction, workflow_id: str, step_id: int
) -> None:
    """Keep the step's record and attempt errors in its history; drop its attempt errors.
    Applied at once, not staged: the caller holds the lock and nothing after this raises."""
    record = tx.step(workflow_id, step_id)
    if record is None:
        return
    attempts = tables._errors.get(workflow_id, {}).pop(step_id, {})
    errors = tuple(attempts[a][1] for a in sorted(attempts))
    runs = tables._history.setdefault(workflow_id, {}).setdefault(step_id, [])
    runs.append(replace(record, output=None, attempt_errors=errors))


class MemoryHistory(MemoryTables):
    def _forget(self, workflow_id: str) -> None:
        super()._forget(workflow_id)
        self._history.pop(workflow_id, None)  # as ON DELETE CASCADE does in SQL

    def load_step_history(self, workflow_id: str) -> dict[int, list[StepRecord]]:
        with self._lock:
            found = self._history.get(workflow_id, {})
            return {k: list(v) for k, v in sorted(found.items())}
