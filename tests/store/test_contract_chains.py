"""The ``DurableStore`` contract, on every store: chain steps: leases, completion, retries,
failure."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    StepRecord,
    StepState,
    WorkflowKind,
    WorkflowRecord,
)
from tests.store.contract import (
    S,
    chain,
    clock,
    executor,
    fresh,
    get,
    get_step,
    lease,
    run_link,
    uid,
    workflow,
)


# chains --------------------------------------------------------------------------------
def test_insert_chain_creates_once(any_store: DurableStore) -> None:
    wid = chain(any_store, links=2)
    record = get(any_store, wid)
    assert (record.kind, record.status) == (WorkflowKind.CHAIN, S.ENQUEUED)
    other = StepRecord(wid, 0, "other", StepState.PENDING)
    assert not any_store.insert_chain(record, [other, StepRecord(wid, 5, "x", StepState.PENDING)])
    assert not any_store.insert_workflow(record)
    assert sorted(any_store.load_steps(wid)) == [0, 1]
    assert get_step(any_store, wid, 0).name == "link0"


def test_a_chain_step_is_leased_once_while_its_executor_is_live(any_store: DurableStore) -> None:
    wid = chain(any_store)
    first, second = executor(any_store), executor(any_store)
    now = any_store.clock.now_ms()
    assert any_store.claim_chain_step(wid, 0, "link1", first, fresh(any_store)) is None  # name
    assert any_store.claim_chain_step(wid, 7, "link7", first, fresh(any_store)) is None
    claimed = any_store.claim_chain_step(wid, 0, "link0", first, fresh(any_store))
    assert claimed is not None and claimed.lease_id
    assert claimed == StepRecord(
        wid, 0, "link0", StepState.RUNNING, attempts=0, executor_id=first,
        lease_id=claimed.lease_id,
    )  # fmt: skip
    leased = get_step(any_store, wid, 0)
    assert (leased.status, leased.executor_id, leased.lease_id) == (
        StepState.RUNNING, first, claimed.lease_id,
    )  # fmt: skip
    assert (leased.started_at_ms, leased.due_at_ms) == (now, None)
    running = get(any_store, wid)
    assert (running.status, running.started_at_ms, running.updated_at_ms) == (S.PENDING, now, now)
    assert any_store.claim_chain_step(wid, 0, "link0", second, now) is None  # first beat at now
    clock(any_store).advance(1_000)
    again = any_store.claim_chain_step(wid, 0, "link0", second, now + 1)
    assert again is not None and again.lease_id not in (None, claimed.lease_id)
    assert get_step(any_store, wid, 0).started_at_ms == now
    assert get(any_store, wid).updated_at_ms == now  # already PENDING: left as it was


def test_a_step_of_a_stopped_executor_can_be_leased_again(any_store: DurableStore) -> None:
    wid = chain(any_store)
    first = executor(any_store)
    lease(any_store, wid, 0, first)
    any_store.stop_executor(first)
    assert get_step(any_store, wid, 0).lease_id != lease(any_store, wid, 0, executor(any_store))


def test_no_step_starts_past_the_deadline_or_once_the_chain_ended(
    any_store: DurableStore,
) -> None:
    wid = chain(any_store, deadline_ms=any_store.clock.now_ms())
    ex = executor(any_store)
    held = lease(any_store, wid, 0, ex)  # at its deadline: still in time
    assert any_store.finish_chain_step(wid, 0, held, '"0"', 1, False)
    clock(any_store).advance(1)
    assert any_store.claim_chain_step(wid, 1, "link1", ex, fresh(any_store)) is None
    for status in (S.CANCELLED, S.SUCCESS, S.ERROR):
        ended = chain(any_store, status=status)
        assert any_store.claim_chain_step(ended, 0, "link0", ex, fresh(any_store)) is None
        assert get_step(any_store, ended, 0).status == StepState.PENDING


def test_finishing_a_step_needs_its_lease(any_store: DurableStore) -> None:
    wid = chain(any_store)
    held = lease(any_store, wid, 0, executor(any_store))
    assert not any_store.finish_chain_step(wid, 0, "not-the-lease", '"x"', 1, False)
    assert (get_step(any_store, wid, 0).status, get_step(any_store, wid, 0).output) == (
        StepState.RUNNING, None,
    )  # fmt: skip
    clock(any_store).advance(7)
    assert any_store.finish_chain_step(wid, 0, held, '"out"', 3, False)
    done = get_step(any_store, wid, 0)
    assert (done.status, done.output, done.attempts, done.executor_id) == (
        StepState.SUCCESS, '"out"', 3, None,
    )  # fmt: skip
    assert done.completed_at_ms == any_store.clock.now_ms()
    assert (get(any_store, wid).status, get(any_store, wid).output) == (S.PENDING, None)
    assert not any_store.finish_chain_step(wid, 0, held, '"again"', 4, False)
    assert get_step(any_store, wid, 0).output == '"out"'


def test_the_last_step_ends_the_chain_while_it_is_active(any_store: DurableStore) -> None:
    wid = chain(any_store)
    run_link(any_store, wid, 0)
    held = lease(any_store, wid, 1, executor(any_store))
    clock(any_store).advance(3)
    assert any_store.finish_chain_step(wid, 1, held, '"final"', 1, True)
    done = get(any_store, wid)
    assert (done.status, done.output, done.error, done.executor_id) == (
        S.SUCCESS, '"final"', None, None,
    )  # fmt: skip
    assert done.completed_at_ms == any_store.clock.now_ms()

    cancelled = chain(any_store, links=1)
    held = lease(any_store, cancelled, 0, executor(any_store))
    assert any_store.set_status(cancelled, S.CANCELLED, keep_owner=True)
    assert any_store.finish_chain_step(cancelled, 0, held, '"late"', 1, True)
    assert get_step(any_store, cancelled, 0).status == StepState.SUCCESS
    assert (get(any_store, cancelled).status, get(any_store, cancelled).output) == (
        S.CANCELLED, None,
    )  # fmt: skip


def test_retries_then_failure_record_every_attempt(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    ex = executor(any_store)
    due = any_store.clock.now_ms() + 5_000
    for attempt in (0, 1):
        claimed = any_store.claim_chain_step(wid, 0, "link0", ex, fresh(any_store))
        assert claimed is not None and claimed.attempts == attempt
        assert claimed.lease_id is not None
        error = f'"err {attempt}"'
        assert any_store.retry_chain_step(wid, 0, claimed.lease_id, attempt, "link0", error, due)
        waiting = get_step(any_store, wid, 0)
        assert (waiting.status, waiting.attempts, waiting.due_at_ms) == (
            StepState.RETRYING, attempt + 1, due,
        )  # fmt: skip
        assert (waiting.executor_id, waiting.lease_id) == (None, None)
    held = lease(any_store, wid, 0, ex)
    assert get_step(any_store, wid, 0).due_at_ms is None
    clock(any_store).advance(9)
    assert any_store.fail_chain_step(wid, 0, held, 2, "link0", '"err 2"', '"final"')
    failed = any_store.load_steps(wid)[0]
    assert (failed.status, failed.error, failed.attempts, failed.lease_id) == (
        StepState.ERROR, '"final"', 3, None,
    )  # fmt: skip
    assert failed.attempt_errors == ('"err 0"', '"err 1"', '"err 2"')
    assert failed.completed_at_ms == any_store.clock.now_ms()
    ended = get(any_store, wid)
    assert (ended.status, ended.error, ended.output, ended.executor_id) == (
        S.ERROR, '"final"', None, None,
    )  # fmt: skip
    assert ended.completed_at_ms == any_store.clock.now_ms()


def test_retry_or_failure_with_a_lost_lease_changes_nothing(any_store: DurableStore) -> None:
    wid = chain(any_store, links=1)
    held = lease(any_store, wid, 0, executor(any_store))
    assert not any_store.retry_chain_step(wid, 0, "lost", 0, "link0", '"e"', 1)
    assert not any_store.fail_chain_step(wid, 0, "lost", 0, "link0", '"e"', '"final"')
    still = get_step(any_store, wid, 0)
    assert (still.status, still.lease_id, still.attempts) == (StepState.RUNNING, held, 0)
    assert get(any_store, wid).status == S.PENDING
    assert any_store.load_steps(wid)[0].attempt_errors == ()  # a stale error is not kept


def test_first_open_step_and_the_one_before_it(any_store: DurableStore) -> None:
    wid = chain(any_store, links=3)
    assert any_store.first_open_step(wid) == (get_step(any_store, wid, 0), None)
    run_link(any_store, wid, 0)
    first, previous = any_store.first_open_step(wid) or (None, None)
    assert (first, previous) == (get_step(any_store, wid, 1), get_step(any_store, wid, 0))
    assert previous is not None and previous.output == '"out0"'
    held = lease(any_store, wid, 1, executor(any_store))
    running = any_store.first_open_step(wid)
    assert running is not None and (running[0].step_id, running[0].status) == (1, "RUNNING")
    assert any_store.finish_chain_step(wid, 1, held, '"out1"', 1, False)
    run_link(any_store, wid, 2, last=True)
    assert any_store.first_open_step(wid) is None
    assert any_store.first_open_step(uid("missing")) is None


def test_concurrent_claims_have_one_winner(any_store: DurableStore) -> None:
    record, wid = workflow(any_store), chain(any_store)
    owners = [executor(any_store) for _ in range(6)]
    cutoff = fresh(any_store)

    def run(owner: str) -> WorkflowRecord | None:
        return any_store.claim_workflow(record.workflow_id, record.name, owner, cutoff)

    with ThreadPoolExecutor(len(owners)) as pool:
        runs = list(pool.map(run, owners))
        leases = list(
            pool.map(lambda e: any_store.claim_chain_step(wid, 0, "link0", e, cutoff), owners)
        )
    assert sum(r is not None for r in runs) == 1
    assert sum(s is not None for s in leases) == 1
