"""The ``DurableStore`` contract, on every store: step checkpoints, attempt errors and transaction
steps."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    StepRecord,
    StepState,
)
from tests.store.conftest import sql_engine_of
from tests.store.contract import (
    S,
    chain,
    executor,
    fresh,
    get,
    get_step,
    lease,
    step,
    uid,
    workflow,
)


# steps ------------------------------------------------------------------------------
def test_record_step_first_wins(any_store: DurableStore) -> None:
    """Checkpoints land only while the workflow runs (PENDING); the first one wins."""
    record = workflow(any_store, S.PENDING)
    first = step(record.workflow_id, 0, output='"first"', attempts=2, started_at_ms=5)
    assert any_store.record_step(first)
    assert not any_store.record_step(step(record.workflow_id, 0, output='"second"'))
    assert any_store.record_step(step(record.workflow_id, 1))
    loaded = any_store.load_steps(record.workflow_id)
    assert sorted(loaded) == [0, 1]
    assert loaded[0] == first
    assert any_store.get_step(record.workflow_id, 0) == first


@pytest.mark.parametrize("status", [S.ENQUEUED, S.CANCELLED, S.SUCCESS])
def test_no_checkpoint_unless_the_workflow_is_running(any_store: DurableStore, status: str) -> None:
    """A cancelled (or not yet claimed, or ended) workflow records no further step."""
    wid = workflow(any_store, status).workflow_id
    assert not any_store.record_step(step(wid, 0))
    assert not any_store.record_step(step(uid("missing"), 0))
    assert any_store.load_steps(wid) == {}


def test_attempt_errors_load_in_order_and_unfinished_step_is_retrying(
    any_store: DurableStore,
) -> None:
    wid = workflow(any_store, S.PENDING).workflow_id
    for attempt in (2, 0, 1):  # recorded out of order on purpose
        any_store.record_step_error(wid, 1, attempt, "tests.store.flaky", f'"err {attempt}"')
    any_store.record_step_error(wid, 1, 0, "tests.store.flaky", '"duplicate ignored"')
    any_store.record_step_error(wid, 0, 0, "tests.store.done", '"err done"')
    any_store.record_step(step(wid, 0, "tests.store.done", attempts=2))
    loaded = any_store.load_steps(wid)
    assert (loaded[0].status, loaded[0].attempt_errors) == ("SUCCESS", ('"err done"',))
    assert loaded[1] == StepRecord(
        wid, 1, "tests.store.flaky", StepState.RETRYING, attempts=3,
        attempt_errors=('"err 0"', '"err 1"', '"err 2"'),
    )  # fmt: skip
    assert any_store.get_step(wid, 1) is None  # no row yet
    assert any_store.get_step(wid, 0).attempt_errors == ()  # type: ignore[union-attr]


def test_an_attempt_error_needs_its_workflow(any_store: DurableStore) -> None:
    missing = uid("missing")
    with pytest.raises(Exception):  # noqa: B017 (SQL: a foreign key; memory: KeyError)
        any_store.record_step_error(missing, 0, 0, "tests.store.flaky", '"e"')
    assert any_store.load_steps(missing) == {}


def test_steps_are_found_by_id_and_by_task_id(any_store: DurableStore) -> None:
    wid = chain(any_store)
    link = get_step(any_store, wid, 1)
    assert (link.name, link.status, link.signature) == ("link1", StepState.PENDING, '{"link": 1}')
    assert link.task_id is not None
    assert any_store.find_step_by_task_id(link.task_id) == link
    assert any_store.find_step_by_task_id(uid("task")) is None
    assert any_store.get_step(wid, 9) is None


# transaction steps ----------------------------------------------------------------
def items(store: DurableStore, *item_ids: str) -> int:
    with sql_engine_of(store).connect() as conn:
        rows = conn.execute(text("SELECT item_id FROM store_test_items")).scalars().all()
    return len(set(rows) & set(item_ids))


def run_tx(
    store: DurableStore,
    wid: str,
    item_id: str,
    finish: Callable[[Any, str], bool] | None = None,
    fail: bool = False,
) -> tuple[bool, Any]:
    """Insert ``item_id`` and (unless ``finish`` says otherwise) checkpoint step 0 of ``wid``
    in one transaction."""

    def body(session: Session) -> str:
        session.execute(text("INSERT INTO store_test_items VALUES (:i)"), {"i": item_id})
        if fail:
            raise RuntimeError("body failed")
        return item_id

    def checkpoint(tx: Any, result: str) -> bool:
        return store.insert_checkpoint(tx, step(wid, 0, output=f'"{result}"'))

    return store.run_transaction_step(body, finish or checkpoint)


def test_transaction_commits_body_and_checkpoint_together(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")
    assert run_tx(any_store, wid, item) == (True, item)
    assert items(any_store, item) == 1
    assert any_store.load_steps(wid)[0].output == f'"{item}"'


def test_transaction_with_duplicate_checkpoint_rolls_back_its_body(any_store: DurableStore) -> None:
    wid, first, second = workflow(any_store, S.PENDING).workflow_id, uid("item"), uid("item")
    run_tx(any_store, wid, first)
    assert run_tx(any_store, wid, second) == (False, None)
    assert (items(any_store, first), items(any_store, second)) == (1, 0)
    assert any_store.load_steps(wid)[0].output == f'"{first}"'


def test_transaction_of_a_workflow_not_running_rolls_back(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.CANCELLED).workflow_id, uid("item")
    assert run_tx(any_store, wid, item) == (False, None)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_transaction_whose_body_raises_leaves_nothing(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")
    with pytest.raises(RuntimeError, match="body failed"):
        run_tx(any_store, wid, item, fail=True)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_transaction_whose_finish_raises_leaves_nothing(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")

    def finish(tx: Any, result: str) -> bool:
        assert any_store.insert_checkpoint(tx, step(wid, 0))
        raise RuntimeError("finish failed")

    with pytest.raises(RuntimeError, match="finish failed"):
        run_tx(any_store, wid, item, finish)
    assert items(any_store, item) == 0
    assert any_store.load_steps(wid) == {}


def test_a_transaction_sees_its_own_checkpoint(any_store: DurableStore) -> None:
    wid, item = workflow(any_store, S.PENDING).workflow_id, uid("item")

    def finish(tx: Any, result: str) -> bool:
        first = any_store.insert_checkpoint(tx, step(wid, 0, output='"first"'))
        return first and not any_store.insert_checkpoint(tx, step(wid, 0, output='"second"'))

    assert run_tx(any_store, wid, item, finish) == (True, item)
    assert any_store.load_steps(wid)[0].output == '"first"'


def test_a_commit_that_fails_leaves_no_checkpoint(any_store: DurableStore) -> None:
    """The body breaks a constraint checked only at COMMIT: its checkpoint is not kept."""
    wid = workflow(any_store, S.PENDING).workflow_id

    def body(session: Session) -> str:
        session.execute(text("INSERT INTO store_test_children VALUES (:p)"), {"p": 404})
        return "orphan"

    def finish(tx: Any, result: str) -> bool:
        return any_store.insert_checkpoint(tx, step(wid, 0))

    with pytest.raises(IntegrityError):
        any_store.run_transaction_step(body, finish)
    assert any_store.load_steps(wid) == {}
    assert any_store.record_step(step(wid, 0, output='"later"'))


def test_a_chain_step_commits_with_its_transaction_under_its_lease(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, links=1)
    held = lease(any_store, wid, 0, executor(any_store))
    item, lost = uid("item"), uid("item")

    def complete(lease_id: str) -> Callable[[Any, str], bool]:
        return lambda tx, result: any_store.complete_chain_step(
            tx, wid, 0, lease_id, f'"{result}"', 1, True
        )

    assert run_tx(any_store, wid, lost, complete("not-the-lease")) == (False, None)
    assert items(any_store, lost) == 0
    assert get_step(any_store, wid, 0).status == StepState.RUNNING
    assert run_tx(any_store, wid, item, complete(held)) == (True, item)
    assert items(any_store, item) == 1
    assert get_step(any_store, wid, 0).output == f'"{item}"'
    done = get(any_store, wid)
    assert (done.status, done.output) == (S.SUCCESS, f'"{item}"')


def test_a_step_that_ended_after_the_deadline_is_not_recorded(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    record = workflow(any_store, S.PENDING, deadline_ms=now + 1000)
    assert not any_store.record_step(step(record.workflow_id, 0, completed_at_ms=now + 1001))
    assert any_store.record_step(step(record.workflow_id, 0, completed_at_ms=now + 1000))


def test_a_chain_step_leased_inside_its_transaction(any_store: DurableStore) -> None:
    """The lease is the transaction's first statement: it commits with the body and the
    checkpoint, rolls back with a body that raises, and refuses a step already done
    (whose body then never runs)."""
    wid = chain(any_store, links=1)
    worker = executor(any_store)
    leased: list[str] = []

    def start(tx: Any) -> bool:
        found = any_store.lease_chain_step(tx, wid, 0, "link0", worker, fresh(any_store))
        leased[:] = [found.lease_id or ""] if found is not None else []
        return found is not None

    def finish(tx: Any, result: str) -> bool:
        return any_store.complete_chain_step(tx, wid, 0, leased[0], f'"{result}"', 1, True)

    def body(item: str, fail: bool = False) -> Callable[[Session], str]:
        def run(session: Session) -> str:
            session.execute(text("INSERT INTO store_test_items VALUES (:i)"), {"i": item})
            if fail:
                raise RuntimeError("body failed")
            return item

        return run

    failed, done, late = uid("item"), uid("item"), uid("item")
    with pytest.raises(RuntimeError):
        any_store.run_transaction_step(body(failed, fail=True), finish, start=start)
    assert get_step(any_store, wid, 0).status == StepState.PENDING  # the lease rolled back
    assert get(any_store, wid).status == S.ENQUEUED
    assert any_store.run_transaction_step(body(done), finish, start=start) == (True, done)
    assert get_step(any_store, wid, 0).status == StepState.SUCCESS
    assert get(any_store, wid).status == S.SUCCESS
    assert any_store.run_transaction_step(body(late), finish, start=start) == (False, None)
    assert items(any_store, failed, done, late) == 1
