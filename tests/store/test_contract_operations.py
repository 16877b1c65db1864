"""The ``DurableStore`` contract, on every store: what operating it asks (listings, counts,
executors, stalls, activity, the metrics feed, bulk cancellation, retention)."""

from __future__ import annotations

from celery_durable.store.interface import DurableStore
from celery_durable.types import PageCursor, WorkflowFilter
from tests.store.contract import (
    MINUTE,
    S,
    chain,
    claim,
    clock,
    executor,
    fresh,
    get,
    lease,
    run_link,
    step,
    uid,
    workflow,
)

F = WorkflowFilter


def ended(store: DurableStore, status: str = S.SUCCESS, **fields: object) -> str:
    """A workflow that ran and ended ``status`` now."""
    wf = workflow(store, **fields)
    claim(store, wf, executor(store))
    assert store.finish_workflow(wf.workflow_id, None, status, output='"ok"')
    return wf.workflow_id


def ids(records: list) -> list[str]:  # type: ignore[type-arg]
    return [r.workflow_id for r in records]


# listings and counts --------------------------------------------------------------
def test_filters_narrow_listings_and_counts(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    a = workflow(any_store, name="shop.order", queue="payments", workflow_id="order-1").workflow_id
    b = workflow(any_store, name="shop.order", workflow_id="order-2", created_at_ms=now - MINUTE)
    c = ended(any_store, S.ERROR, name="shop.refund", workflow_id="refund_%1")
    child = workflow(any_store, parent_workflow_id=a, workflow_id="ORDER-3").workflow_id

    def listed(where: WorkflowFilter) -> set[str]:
        return set(ids(any_store.list_page(where, limit=100)))

    assert listed(F()) == {a, b.workflow_id, c, child}
    assert listed(F(statuses=(S.ERROR,))) == {c}
    assert listed(F(statuses=(S.ENQUEUED, S.ERROR), name="shop.order")) == {a, b.workflow_id}
    assert listed(F(queue="payments")) == {a}
    assert listed(F(created_after_ms=now)) == {a, c, child}
    assert listed(F(created_before_ms=now)) == {b.workflow_id}
    assert listed(F(id_prefix="order-")) == {a, b.workflow_id}  # case counts
    assert listed(F(id_prefix="refund_%")) == {c}  # LIKE's wildcards are plain text
    assert listed(F(id_prefix="refund__")) == set()
    assert listed(F(parent_workflow_id=a)) == {child}
    assert any_store.count_by_status(F()) == {S.ENQUEUED: 3, S.ERROR: 1}
    assert any_store.count_by_status(F(name="shop.order")) == {S.ENQUEUED: 2}
    assert any_store.count_by_status(F(name="nothing")) == {}
    assert any_store.count_by_status(F(), cap=2) == {S.ENQUEUED: 3, S.ERROR: 1}  # 3: "over 2"
    assert any_store.count_by_status(F(statuses=(S.ERROR,)), cap=2) == {S.ERROR: 1}


def test_pages_are_newest_first_and_keyset_paged(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    made = [
        workflow(any_store, workflow_id=f"p-{i}", created_at_ms=now - (i // 2) * 1000)
        for i in range(7)
    ]  # two at each time: the id breaks the tie
    expected = sorted(made, key=lambda w: (w.created_at_ms, w.workflow_id), reverse=True)
    seen: list[str] = []
    after = None
    while True:
        page = any_store.list_page(F(id_prefix="p-"), limit=3, after=after)
        seen += ids(page)
        if len(page) < 3:
            break
        after = PageCursor(page[-1].created_at_ms, page[-1].workflow_id)
    assert seen == [w.workflow_id for w in expected]
    workflow(any_store, workflow_id="p-new")  # a row inserted meanwhile does not shift pages
    assert ids(any_store.list_page(F(id_prefix="p-"), limit=2, after=after)) == seen[6:]


def test_executor_filter_finds_what_it_runs(any_store: DurableStore) -> None:
    busy, idle = executor(any_store), executor(any_store)
    code = workflow(any_store)
    claim(any_store, code, busy)
    linked = chain(any_store)
    lease(any_store, linked, 0, busy)
    ended(any_store)  # ended: owned by nobody
    runs = set(ids(any_store.list_page(F(executor_id=busy), limit=10)))
    assert runs == {code.workflow_id, linked}
    assert any_store.list_page(F(executor_id=idle), limit=10) == []


def test_active_counts_by_name(any_store: DurableStore) -> None:
    workflow(any_store, name="a")
    workflow(any_store, name="a")
    claim(any_store, workflow(any_store, name="b"), executor(any_store))
    ended(any_store, name="a")
    assert any_store.count_active_by_name() == [("a", S.ENQUEUED, 2), ("b", S.PENDING, 1)]


# executors and stalls ---------------------------------------------------------------
def test_executors_with_what_they_run(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    live = executor(any_store)
    silent = executor(any_store, heartbeat_ms=now - 10 * MINUTE)  # still owns a workflow
    forgotten = executor(any_store, heartbeat_ms=now - 10 * MINUTE)
    owned = workflow(any_store)
    claim(any_store, owned, live)
    orphan = workflow(any_store, status=S.PENDING, executor_id=silent).workflow_id
    found = {x.executor.executor_id: x.workflow_ids for x in any_store.list_executors(now - MINUTE)}
    assert found == {live: (owned.workflow_id,), silent: (orphan,)}
    assert forgotten not in found
    assert any_store.delete_stale_executors(now - MINUTE) == 1
    assert any_store.get_executor(forgotten) is None
    assert any_store.get_executor(silent) is not None  # it still owns work


def test_stalled_workflows_and_the_oldest_due(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    dead = executor(any_store, heartbeat_ms=now - 10 * MINUTE)
    crashed = workflow(any_store, status=S.PENDING, executor_id=dead, updated_at_ms=now - 5)
    lost = workflow(any_store, updated_at_ms=now - 3 * MINUTE)
    waiting = workflow(any_store, updated_at_ms=now - 5 * MINUTE, wake_at_ms=now + MINUTE)
    workflow(any_store)  # just queued
    cutoff = fresh(any_store)
    assert any_store.count_stalled(cutoff, cutoff) == 2
    listed = ids(any_store.list_stalled(cutoff, cutoff, 10))
    assert listed == [lost.workflow_id, crashed.workflow_id]  # longest untouched first
    assert ids(any_store.list_stalled(cutoff, cutoff, 1)) == [lost.workflow_id]
    assert any_store.oldest_enqueued_ms(now) == now - 3 * MINUTE  # not the one still waiting
    clock(any_store).advance(2 * MINUTE)  # now its wake-up is past: due since then
    assert any_store.oldest_enqueued_ms(any_store.clock.now_ms()) == now - 3 * MINUTE
    assert waiting.workflow_id not in ids(any_store.list_stalled(cutoff, cutoff, 10))


def test_no_enqueued_workflow_has_no_oldest(any_store: DurableStore) -> None:
    ended(any_store)
    assert any_store.oldest_enqueued_ms(any_store.clock.now_ms()) is None


# activity and the metrics feed ------------------------------------------------------
def test_activity_per_bucket(any_store: DurableStore) -> None:
    start = (any_store.clock.now_ms() // MINUTE + 1) * MINUTE
    clock(any_store).ms = start + 10
    ok = ended(any_store)
    failed = workflow(any_store)
    claim(any_store, failed, executor(any_store))
    any_store.record_step_error(failed.workflow_id, 0, 0, "flaky", '"e0"')
    clock(any_store).advance(MINUTE)
    any_store.record_step_error(failed.workflow_id, 0, 1, "flaky", '"e1"')
    assert any_store.finish_workflow(failed.workflow_id, None, S.ERROR, error='"boom"')
    buckets = any_store.activity(start, MINUTE)
    got = [(b.start_ms, b.started, b.succeeded, b.failed, b.retries) for b in buckets]
    assert got == [(start, 2, 1, 0, 1), (start + MINUTE, 0, 0, 1, 1)]
    assert any_store.activity(start + MINUTE, MINUTE)[0].failed == 1
    assert ok


def test_ended_feed_pages_by_completion_with_steps(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    first = workflow(any_store)
    claim(any_store, first, executor(any_store))
    assert any_store.record_step(step(first.workflow_id, 0, attempts=3))
    assert any_store.finish_workflow(first.workflow_id, None, S.SUCCESS, output='"ok"')
    clock(any_store).advance(5)
    second = ended(any_store, S.ERROR)
    workflow(any_store)  # active: not in the feed
    start = PageCursor(now - 1, "")
    feed = any_store.ended_after(start, now + 10, 10)
    assert [e.workflow.workflow_id for e in feed] == [first.workflow_id, second]
    assert [(s.step_id, s.attempts) for s in feed[0].steps] == [(0, 3)]
    page = any_store.ended_after(start, now + 10, 1)
    after = PageCursor(page[0].workflow.completed_at_ms or 0, page[0].workflow.workflow_id)
    assert [e.workflow.workflow_id for e in any_store.ended_after(after, now + 10, 1)] == [second]
    assert any_store.ended_after(start, now + 5, 10)[0].workflow.workflow_id == first.workflow_id
    assert len(any_store.ended_after(start, now + 5, 10)) == 1  # until is exclusive


def test_failed_attempts_between(any_store: DurableStore) -> None:
    now = any_store.clock.now_ms()
    wf = workflow(any_store)
    any_store.record_step_error(wf.workflow_id, 0, 0, "a", '"e"')
    any_store.record_step_error(wf.workflow_id, 0, 1, "a", '"e"')
    clock(any_store).advance(10)
    any_store.record_step_error(wf.workflow_id, 1, 0, "b", '"e"')
    assert any_store.failed_attempts_between(now, now + 10) == {"a": 2}
    assert any_store.failed_attempts_between(now, now + 11) == {"a": 2, "b": 1}


# actions and retention --------------------------------------------------------------
def test_cancel_workflows_ends_only_active_ones(any_store: DurableStore) -> None:
    owner = executor(any_store)
    running = workflow(any_store)
    claim(any_store, running, owner)
    queued = workflow(any_store).workflow_id
    done = ended(any_store)
    cancelled = any_store.cancel_workflows([running.workflow_id, queued, done, uid("missing")])
    assert sorted(cancelled) == sorted([running.workflow_id, queued])
    assert get(any_store, running.workflow_id).status == S.CANCELLED
    assert get(any_store, running.workflow_id).executor_id == owner  # gives it up itself
    assert get(any_store, done).status == S.SUCCESS
    assert any_store.cancel_workflows([]) == []


def test_retention_deletes_only_old_ended_workflows(any_store: DurableStore) -> None:
    everything = [S.SUCCESS, S.ERROR, S.CANCELLED, S.MAX_RECOVERY_ATTEMPTS_EXCEEDED]
    old = [ended(any_store, status) for status in everything]
    with_steps = old[0]
    any_store.record_step_error(with_steps, 0, 0, "a", '"e"')
    linked = chain(any_store)
    run_link(any_store, linked, 0)
    run_link(any_store, linked, 1, last=True)
    old.append(linked)
    parent = workflow(any_store).workflow_id  # active: its ended child stays
    kept_child = ended(any_store, parent_workflow_id=parent)
    lone_parent = ended(any_store)  # ended, but its child still runs: it stays
    workflow(any_store, parent_workflow_id=lone_parent)
    active = workflow(any_store, completed_at_ms=1).workflow_id  # resumed: never deleted
    clock(any_store).advance(MINUTE)
    recent = ended(any_store)
    cutoff = any_store.clock.now_ms() - MINUTE // 2
    assert any_store.count_deletable(everything, cutoff) == len(old)
    assert any_store.count_deletable([S.ERROR], cutoff) == 1
    first = any_store.delete_ended(everything, 2, before_ms=cutoff)
    rest = any_store.delete_ended(everything, 100, before_ms=cutoff)
    assert len(first) == 2 and sorted(first + rest) == sorted(old)
    assert any_store.delete_ended(everything, 100, before_ms=cutoff) == []  # idempotent
    for wid in old:
        assert any_store.get_workflow(wid) is None
        assert any_store.load_steps(wid) == {}
    for wid in (parent, kept_child, lone_parent, active, recent):
        assert any_store.get_workflow(wid) is not None
    assert any_store.delete_ended([S.ENQUEUED, S.PENDING], 100) == []


def test_delete_by_id_takes_only_ended_ones(any_store: DurableStore) -> None:
    done = ended(any_store)
    active = workflow(any_store).workflow_id
    deleted = any_store.delete_ended([S.SUCCESS, S.ENQUEUED], 10, workflow_ids=[done, active])
    assert deleted == [done]
    assert any_store.get_workflow(active) is not None
    assert any_store.delete_ended([S.SUCCESS], 10, workflow_ids=[]) == []
