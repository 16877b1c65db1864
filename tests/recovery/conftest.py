"""Fixtures of the recovery tests: a clean queue, stalled workflow rows.

The recovery app is imported inside the fixtures: this file loads before the root
conftest has put the session's database and queue in the environment.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator, Sequence

import pytest
from sqlalchemy import bindparam, text

from celery_durable.runtime.workflows import StartRequest, record_start

from .helpers import lose_messages, session_queue, sink_queue


@pytest.fixture(autouse=True)
def _clean_queues() -> Iterator[None]:
    """No message left by an earlier test (or a killed worker) reaches this one's workers."""
    from tests.apps import recovery_app as ra

    ra.setup()
    for queue in (session_queue(), sink_queue()):
        lose_messages(queue)
    yield
    for queue in (session_queue(), sink_queue()):
        lose_messages(queue)


class Stalled:
    """Creates code workflows that look stalled: PENDING under an executor, sent to the sink."""

    def __init__(self) -> None:
        self.prefix = f"rt-{uuid.uuid4().hex[:8]}"
        self._numbers = itertools.count()

    def __call__(
        self,
        count: int,
        *,
        executor_id: str = "dead-executor",  # no heartbeat row: gone
        max_recovery_attempts: int | None = None,
    ) -> list[str]:
        from tests.apps import recovery_app as ra

        ids = [f"{self.prefix}-{next(self._numbers)}" for _ in range(count)]
        for wid in ids:
            request = StartRequest(
                workflow_id=wid,
                name=ra.quick.name,
                args=(wid,),
                queue=sink_queue(),
                max_recovery_attempts=max_recovery_attempts,
            )
            record_start(ra.durable.runtime, request, executor_id=executor_id)
        return ids

    def delete(self, ids: Sequence[str] | None = None) -> None:
        """Delete the given rows, or every row under this prefix (also bulk-inserted ones)."""
        from tests.apps import recovery_app as ra

        with ra.durable.store.engine.begin() as conn:
            if ids is None:
                stmt = text("DELETE FROM durable_workflows WHERE workflow_id LIKE :p")
                conn.execute(stmt, {"p": f"{self.prefix}-%"})
            else:
                stmt = text("DELETE FROM durable_workflows WHERE workflow_id IN :ids")
                conn.execute(stmt.bindparams(bindparam("ids", expanding=True)), {"ids": ids})


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    """Factory of stalled rows; every row under its prefix is deleted at teardown."""
    made = Stalled()
    yield made
    made.delete()
