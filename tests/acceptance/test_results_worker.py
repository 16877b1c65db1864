"""Celery's own result API on durable tasks, answered from the durable store: with the
app's result backend configured (nothing durable is written to it) and with none."""

from __future__ import annotations

from typing import Any

import pytest
import redis
from celery import chain, states
from celery.result import AsyncResult
from sqlalchemy import event
from sqlalchemy.engine import Engine

from celery_durable.errors import MaxStepRetriesExceeded
from tests.apps import chains as c
from tests.apps import no_backend_app as nb
from tests.conftest import wait_for


def backend_keys(app: Any, ids: list[str]) -> list[str]:
    """The result keys the app's Redis backend holds for these task ids."""
    client = redis.Redis.from_url(app.conf.result_backend)
    try:
        return [i for i in ids if client.exists(f"celery-task-meta-{i}")]
    finally:
        client.close()


def test_a_chain_with_a_backend_configured_writes_nothing_to_it(worker: Any) -> None:
    c.setup()
    worker("tests.apps.chains")
    last = chain(c.s1.s(1), c.s2.s(), c.s3.s()).apply_async()
    result = last.get(timeout=30)
    assert last.status == states.SUCCESS
    ids = [last.id, last.parent.id, last.parent.parent.id]
    assert last.parent.get(timeout=5) == result[:3]  # .parent walking, each from the store
    assert AsyncResult(ids[2], app=c.app).get(timeout=5) == result[:2]
    assert c.app.AsyncResult(last.id).get(timeout=5) == result
    assert backend_keys(c.app, ids) == []  # the store holds them; Redis holds nothing


def test_plain_tasks_results_are_read_from_the_backend_alone(worker: Any) -> None:
    """Another task's finished result costs no store query: the configured backend holds
    it, and durable tasks write nothing there."""
    worker("tests.apps.chains")
    last = chain(c.plain_add.s(1), c.plain_add.s(), c.plain_add.s()).apply_async()
    ids = [last.id, last.parent.id, last.parent.parent.id]
    wait_for(lambda: len(backend_keys(c.app, ids)) == 3, timeout=30)  # not read yet
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    event.listen(Engine, "before_cursor_execute", count)
    try:
        assert [c.app.AsyncResult(i).get(timeout=5) for i in ids] == [4, 3, 2]
        assert AsyncResult(ids[2], app=c.app).status == states.SUCCESS
    finally:
        event.remove(Engine, "before_cursor_execute", count)
    assert statements == []


def test_results_without_any_backend(worker: Any) -> None:
    worker("tests.apps.no_backend_app")
    last = chain(nb.add_one.s(1), nb.add_one.s()).apply_async()
    assert last.get(timeout=30) == 3
    assert last.parent.get(timeout=5) == 2
    assert AsyncResult(last.id, app=nb.app).status == states.SUCCESS
    workflow = nb.plus_two.delay(5)
    assert workflow.get(timeout=30) == 7  # a code workflow's AsyncResult too
    failing = nb.refuse.delay(3)
    with pytest.raises(MaxStepRetriesExceeded):
        failing.get(timeout=30)
    assert failing.status == states.FAILURE
    with pytest.raises(NotImplementedError):  # a plain id: the app has no backend
        nb.app.AsyncResult("not-a-durable-task").get(timeout=1)


def test_a_chain_recorded_between_the_step_and_workflow_reads_is_found(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The race behind reading the durable callback of a Celery chord while Celery starts
    it: the step read misses the chain, which commits before the workflow read. The id is
    a durable step's, read from the store, never taken for another task's (whose result
    would then be awaited in Redis, where none comes)."""
    import uuid

    from celery_durable.runtime.chains import ChainStepSpec, record_chain

    c.setup()
    task_id = str(uuid.uuid4())
    store = c.durable.store
    real = store.find_step_by_task_id
    reads: list[str] = []

    def commits_after_the_first_read(wanted: str) -> Any:
        reads.append(wanted)
        if len(reads) == 1:
            spec = ChainStepSpec(c.s1.name, task_id, dict(c.s1.s(1)), None)
            record_chain(c.durable.runtime, task_id, [spec])
            return None
        return real(wanted)

    monkeypatch.setattr(store, "find_step_by_task_id", commits_after_the_first_read)
    backend = c.app.backend
    assert backend.get_task_meta(task_id)["status"] == states.PENDING
    monkeypatch.undo()
    assert backend._meta(task_id) is not None  # still known as a durable step's
