"""The ``DurableStore`` contract, on every store: the recovery sweep, lost pool processes,
deadlines and executors."""

from __future__ import annotations

import pytest

from celery_durable.store.interface import DurableStore
from celery_durable.types import (
    ExecutorRecord,
    ResumeOutcome,
    StepState,
    WorkflowRecord,
)
from tests.store.contract import (
    DEAD_LETTERED,
    MINUTE,
    RECOVERED,
    S,
    chain,
    claim,
    clock,
    executor,
    fresh,
    gave_up,
    get,
    get_step,
    lease,
    resumed,
    run_link,
    stalled,
    uid,
    workflow,
)


# recovery -------------------------------------------------------------------------
def test_a_run_under_a_dead_executor_is_recovered_and_counts(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    dead, live = executor(any_store, heartbeat_ms=now - 2 * MINUTE), executor(any_store)
    crashed, running = workflow(any_store), workflow(any_store)
    claim(any_store, crashed, dead)
    claim(any_store, running, live)
    found = any_store.claim_stalled(fresh(any_store), fresh(any_store), 10, gave_up)
    assert [(r.workflow_id, r.status, r.executor_id, a) for r, a in found] == [
        (crashed.workflow_id, S.PENDING, dead, RECOVERED)  # the row as it was
    ]
    again = get(any_store, crashed.workflow_id)
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 1)
    assert get(any_store, running.workflow_id).executor_id == live
    assert stalled(any_store) == []  # re-enqueued just now: not lost (yet)


def test_a_lost_message_is_sent_again_without_counting(any_store: DurableStore) -> None:
    start = any_store.clock.now_ms()
    lost = workflow(any_store, max_recovery_attempts=0)
    waiting = workflow(any_store, wake_at_ms=start + 2 * MINUTE)  # a retry not yet due
    clock(any_store).advance(2 * MINUTE - 1)
    recent = workflow(any_store)
    assert stalled(any_store) == [(lost.workflow_id, RECOVERED)]
    again = get(any_store, lost.workflow_id)
    assert (again.status, again.recovery_attempts) == (S.ENQUEUED, 0)
    assert again.updated_at_ms == any_store.clock.now_ms()
    for untouched in (waiting, recent):
        assert get(any_store, untouched.workflow_id) == untouched
    clock(any_store).advance(MINUTE + 2)  # all three lost now, the first one again
    found = {wid for wid, _ in stalled(any_store)}
    assert found == {lost.workflow_id, waiting.workflow_id, recent.workflow_id}


def test_a_crash_past_max_recovery_attempts_is_dead_lettered(any_store: DurableStore) -> None:
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    over = workflow(any_store, max_recovery_attempts=1, recovery_attempts=1)
    under = workflow(any_store, max_recovery_attempts=1)
    claim(any_store, over, dead)
    claim(any_store, under, dead)
    clock(any_store).advance(5)
    assert sorted(stalled(any_store)) == sorted(
        [(over.workflow_id, DEAD_LETTERED), (under.workflow_id, RECOVERED)]
    )
    ended = get(any_store, over.workflow_id)
    assert (ended.status, ended.error, ended.executor_id, ended.recovery_attempts) == (
        S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, gave_up(over), None, 1,
    )  # fmt: skip
    assert ended.completed_at_ms == any_store.clock.now_ms()
    assert get(any_store, under.workflow_id).recovery_attempts == 1
    assert any_store.claim_workflow(over.workflow_id, over.name, dead, 0) is None
    clock(any_store).advance(10 * MINUTE)
    assert stalled(any_store) == [(under.workflow_id, RECOVERED)]  # lost: not counted


def test_a_sweep_that_fails_midway_changes_nothing(any_store: DurableStore) -> None:
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    first = workflow(any_store)
    claim(any_store, first, dead)
    clock(any_store).advance(1)
    second = workflow(any_store, max_recovery_attempts=0)
    claim(any_store, second, dead)

    def broken(record: WorkflowRecord) -> str:
        raise RuntimeError("no error text")

    with pytest.raises(RuntimeError, match="no error text"):
        any_store.claim_stalled(fresh(any_store), fresh(any_store), 10, broken)
    for record in (first, second):
        after = get(any_store, record.workflow_id)
        assert (after.status, after.executor_id, after.recovery_attempts) == (S.PENDING, dead, 0)


def test_only_the_step_of_a_dead_executor_is_released(any_store: DurableStore) -> None:
    wid = chain(any_store)
    dead = executor(any_store, heartbeat_ms=any_store.clock.now_ms() - 2 * MINUTE)
    live = executor(any_store)
    lease(any_store, wid, 0, dead)
    kept = lease(any_store, wid, 1, live)
    only_live = chain(any_store)
    lease(any_store, only_live, 0, live)
    assert stalled(any_store) == [(wid, RECOVERED)]
    record = get(any_store, wid)
    assert (record.status, record.recovery_attempts) == (S.ENQUEUED, 1)
    freed = get_step(any_store, wid, 0)
    assert (freed.status, freed.executor_id, freed.lease_id) == (StepState.PENDING, None, None)
    held = get_step(any_store, wid, 1)
    assert (held.status, held.executor_id, held.lease_id) == (StepState.RUNNING, live, kept)
    assert any_store.finish_chain_step(wid, 1, kept, '"1"', 1, False)


def test_lost_chain_links_are_sent_again_without_counting(any_store: DurableStore) -> None:
    never_started = chain(any_store)
    next_lost = chain(any_store)
    run_link(any_store, next_lost, 0)
    retry_due, retry_later = chain(any_store), chain(any_store)
    for wid, due in ((retry_due, 1), (retry_later, any_store.clock.now_ms() + 10 * MINUTE)):
        held = lease(any_store, wid, 0, executor(any_store))
        assert any_store.retry_chain_step(wid, 0, held, 0, "link0", '"e"', due)
    just_linked = chain(any_store)
    held = lease(any_store, just_linked, 0, executor(any_store))
    clock(any_store).advance(2 * MINUTE)
    # a long first step just ended: its chain's row is old, the next message is not
    assert any_store.finish_chain_step(just_linked, 0, held, '"0"', 1, False)
    chain(any_store)  # just made
    found = stalled(any_store)
    assert sorted(found) == sorted(
        (wid, RECOVERED) for wid in (never_started, next_lost, retry_due)
    )
    for wid in (never_started, next_lost, retry_due):
        assert (get(any_store, wid).status, get(any_store, wid).recovery_attempts) == (
            S.ENQUEUED, 0,
        )  # fmt: skip
    assert get_step(any_store, retry_due, 0).status == StepState.RETRYING


def test_claim_stalled_takes_the_oldest_first_up_to_its_limit(any_store: DurableStore) -> None:
    made = []
    for _ in range(3):
        made.append(workflow(any_store).workflow_id)
        clock(any_store).advance(1_000)
    clock(any_store).advance(2 * MINUTE)
    assert stalled(any_store, limit=2) == [(made[0], RECOVERED), (made[1], RECOVERED)]
    assert stalled(any_store, limit=2) == [(made[2], RECOVERED)]


def test_recover_lost_takes_only_the_run_that_died(any_store: DurableStore) -> None:
    """A pool process of a live worker died: its run counts as a crash, reported once."""
    worker, other = executor(any_store), executor(any_store)
    record = workflow(any_store)
    wid = record.workflow_id
    claim(any_store, record, worker)
    assert any_store.recover_lost(wid, other, gave_up) is None
    found = any_store.recover_lost(wid, worker, gave_up)
    assert found is not None
    assert (found[0].status, found[0].executor_id, found[1]) == (S.PENDING, worker, RECOVERED)
    again = get(any_store, wid)
    assert (again.status, again.executor_id, again.recovery_attempts) == (S.ENQUEUED, None, 1)
    assert any_store.recover_lost(wid, worker, gave_up) is None  # a second report
    claim(any_store, record, other)
    assert any_store.recover_lost(wid, worker, gave_up) is None
    assert any_store.recover_lost(uid("missing"), worker, gave_up) is None
    ownerless = workflow(any_store, S.PENDING)
    assert any_store.recover_lost(ownerless.workflow_id, worker, gave_up) is None


def test_recover_lost_frees_a_cancelled_run_of_that_worker(any_store: DurableStore) -> None:
    """Cancelled while its step ran, then its pool process died: no recovery (it ended),
    but the owner goes, so the workflow can be resumed while the worker lives on."""
    worker = executor(any_store)
    record = workflow(any_store)
    claim(any_store, record, worker)
    assert any_store.set_status(record.workflow_id, S.CANCELLED, keep_owner=True)
    assert any_store.recover_lost(record.workflow_id, worker, gave_up) is None
    after = get(any_store, record.workflow_id)
    assert (after.status, after.executor_id, after.recovery_attempts) == (S.CANCELLED, None, 0)
    assert resumed(any_store, record.workflow_id) == ResumeOutcome.RESUMED


def test_recover_lost_releases_the_chain_step_of_that_worker(any_store: DurableStore) -> None:
    worker, other = executor(any_store), executor(any_store)
    wid = chain(any_store)
    lease(any_store, wid, 0, worker)
    found = any_store.recover_lost(wid, worker, gave_up)
    assert found is not None and found[1] == RECOVERED
    assert get_step(any_store, wid, 0).status == StepState.PENDING
    held = lease(any_store, wid, 0, other)  # redelivered elsewhere
    assert any_store.recover_lost(wid, worker, gave_up) is None
    assert get_step(any_store, wid, 0).lease_id == held


def test_recover_lost_dead_letters_past_the_limit(any_store: DurableStore) -> None:
    worker = executor(any_store)
    record = workflow(any_store, max_recovery_attempts=0)
    claim(any_store, record, worker)
    found = any_store.recover_lost(record.workflow_id, worker, gave_up)
    assert found is not None and found[1] == DEAD_LETTERED
    ended = get(any_store, record.workflow_id)
    assert (ended.status, ended.error) == (S.MAX_RECOVERY_ATTEMPTS_EXCEEDED, gave_up(record))


def test_cancel_expired_ends_active_workflows_past_their_deadline(
    any_store: DurableStore,
) -> None:
    now = any_store.clock.now_ms()
    owner = executor(any_store)
    running = workflow(any_store, deadline_ms=now - 1)
    claim(any_store, running, owner)
    queued = workflow(any_store, deadline_ms=now - 5)
    untouched = [
        workflow(any_store, deadline_ms=now),  # not yet past
        workflow(any_store, S.SUCCESS, deadline_ms=now - 1),
        workflow(any_store),
    ]
    clock(any_store).advance(1_000)  # the sweep's `now` is what counts, not the clock

    def expired(wid: str) -> str:
        return f'"expired {wid}"'

    first = any_store.cancel_expired(now, 1, expired)
    assert len(first) == 1
    rest = any_store.cancel_expired(now, 10, expired)
    assert sorted(first + rest) == sorted([running.workflow_id, queued.workflow_id])
    assert any_store.cancel_expired(now, 10, expired) == []
    ended = get(any_store, running.workflow_id)
    assert (ended.status, ended.executor_id, ended.error) == (
        S.CANCELLED, owner, expired(running.workflow_id),
    )  # fmt: skip
    assert ended.completed_at_ms == ended.updated_at_ms == now
    for record in untouched:
        assert get(any_store, record.workflow_id) == record


# executors ----------------------------------------------------------------------------
def test_executors_register_beat_and_stop(any_store: DurableStore) -> None:
    start = any_store.clock.now_ms()
    ex = uid("ex")
    first = ExecutorRecord(ex, "host-a", 11, start, start, "RUNNING")
    any_store.register_executor(first)
    assert any_store.get_executor(ex) == first
    clock(any_store).advance(500)
    any_store.heartbeat(ex)
    beat = any_store.get_executor(ex)
    assert beat is not None and (beat.last_heartbeat_ms, beat.status) == (start + 500, "RUNNING")
    clock(any_store).advance(500)
    any_store.stop_executor(ex)
    stopped = any_store.get_executor(ex)
    assert stopped is not None
    assert (stopped.status, stopped.last_heartbeat_ms) == ("STOPPED", start + 1_000)
    any_store.heartbeat(ex)  # a late beat does not bring it back
    assert any_store.get_executor(ex).status == "STOPPED"  # type: ignore[union-attr]
    later = start + 5_000
    any_store.register_executor(ExecutorRecord(ex, "host-b", 22, later, later, "RUNNING"))
    assert any_store.get_executor(ex) == ExecutorRecord(ex, "host-a", 11, start, later, "RUNNING")
    assert any_store.get_executor(uid("ex")) is None
    any_store.heartbeat(uid("ex"))
    any_store.stop_executor(uid("ex"))


def test_prepare_and_dispose_keep_the_rows(any_store: DurableStore) -> None:
    record = workflow(any_store)
    any_store.prepare()
    any_store.dispose()
    assert any_store.get_workflow(record.workflow_id) == record
