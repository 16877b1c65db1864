"""The ``DurableStore`` contract, on every store: messages consumed once in send order with
their checkpoint, idempotency keys, events, and parking a workflow until what it waits for
arrives (never missing an arrival that races the parking)."""

from __future__ import annotations

from celery_durable.store.interface import DurableStore
from celery_durable.store.messages_interface import (
    MessageRecord,
    ParkOutcome,
    ReceiveOutcome,
    SendOutcome,
    WaitKind,
)
from celery_durable.types import WorkflowRecord
from tests.store.contract import (
    MINUTE,
    RECOVERED,
    S,
    claim,
    clock,
    executor,
    get,
    stalled,
    step,
    uid,
    workflow,
)


def running(store: DurableStore) -> tuple[WorkflowRecord, str]:
    owner = executor(store)
    return claim(store, workflow(store), owner), owner


def message(
    store: DurableStore, to: str, text: str, topic: str = "", key: str | None = None
) -> MessageRecord:
    return MessageRecord(to, topic, text, store.clock.now_ms(), key)


def receive(
    store: DurableStore, workflow_id: str, step_id: int, topic: str = ""
) -> tuple[ReceiveOutcome, str | None]:
    return store.receive_message(workflow_id, topic, step(workflow_id, step_id, "durable.recv"))


def test_messages_are_consumed_once_in_send_order_per_topic(any_store: DurableStore) -> None:
    wf, _ = running(any_store)
    w = wf.workflow_id
    for text, topic in (('"a1"', "a"), ('"b1"', "b"), ('"a2"', "a")):
        assert any_store.send_message(message(any_store, w, text, topic)) == (
            SendOutcome.SENT,
            False,
        )
    assert [m.message for m in any_store.list_messages(w)] == ['"a1"', '"b1"', '"a2"']
    assert receive(any_store, w, 0, "a") == (ReceiveOutcome.RECEIVED, '"a1"')
    assert any_store.get_step(w, 0).output == '"a1"'  # type: ignore[union-attr]
    # the same step again (a duplicate run): refused, nothing consumed
    assert receive(any_store, w, 0, "a") == (ReceiveOutcome.REFUSED, None)
    assert receive(any_store, w, 1, "a") == (ReceiveOutcome.RECEIVED, '"a2"')
    assert receive(any_store, w, 2, "a") == (ReceiveOutcome.EMPTY, None)
    assert [m.message for m in any_store.list_messages(w)] == ['"b1"']
    consumed = any_store.list_messages(w, include_consumed=True)
    assert [(m.message, m.consumed_by_step) for m in consumed] == [
        ('"a1"', 0), ('"b1"', None), ('"a2"', 1),
    ]  # fmt: skip


def test_idempotency_keys_and_unknown_receivers(any_store: DurableStore) -> None:
    wf, _ = running(any_store)
    w = wf.workflow_id
    first = message(any_store, w, '"paid"', key="evt-1")
    assert any_store.send_message(first)[0] == SendOutcome.SENT
    assert any_store.send_message(message(any_store, w, '"x"', key="evt-1"))[0] == (
        SendOutcome.DUPLICATE
    )
    assert receive(any_store, w, 0)[0] == ReceiveOutcome.RECEIVED
    assert any_store.send_message(first)[0] == SendOutcome.DUPLICATE  # also once received
    other, _ = running(any_store)  # keys are per receiver
    assert any_store.send_message(message(any_store, other.workflow_id, '"p"', key="evt-1"))[0] == (
        SendOutcome.SENT
    )
    assert any_store.send_message(message(any_store, uid("none"), '"x"'))[0] == (
        SendOutcome.NO_WORKFLOW
    )


def test_a_send_inside_a_workflow_commits_with_its_checkpoint(any_store: DurableStore) -> None:
    sender, _ = running(any_store)
    inbox, _ = running(any_store)
    checkpoint = step(sender.workflow_id, 0, "durable.send")
    to = inbox.workflow_id
    assert any_store.send_message(message(any_store, to, '"1"'), checkpoint)[0] == (
        SendOutcome.SENT
    )
    # a second run of the same step: refused, and its message is not stored
    assert any_store.send_message(message(any_store, to, '"2"'), checkpoint)[0] == (
        SendOutcome.REFUSED
    )
    assert [m.message for m in any_store.list_messages(to)] == ['"1"']


def test_a_parked_reader_is_woken_by_the_message_it_waits_for(any_store: DurableStore) -> None:
    wf, owner = running(any_store)
    w = wf.workflow_id
    wake_at = any_store.clock.now_ms() + MINUTE
    assert any_store.park(w, executor(any_store), wake_at, WaitKind.MESSAGE, "t", w) == (
        ParkOutcome.NOT_OWNER
    )
    assert any_store.park(w, owner, wake_at, WaitKind.MESSAGE, "t", w) == ParkOutcome.PARKED
    parked = get(any_store, w)
    assert (parked.status, parked.executor_id, parked.wake_at_ms) == (S.ENQUEUED, None, wake_at)
    assert any_store.claim_workflow(w, wf.name, owner, 0) is None  # not due by itself
    assert any_store.send_message(message(any_store, w, '"x"', "other")) == (
        SendOutcome.SENT, False,
    )  # fmt: skip
    assert any_store.send_message(message(any_store, w, '"y"', "t")) == (SendOutcome.SENT, True)
    assert get(any_store, w).wake_at_ms is None
    assert any_store.send_message(message(any_store, w, '"z"', "t")) == (SendOutcome.SENT, False)
    claimed = any_store.claim_workflow(w, wf.name, owner, 0)
    assert claimed is not None
    # a message already there: the reader does not park
    assert any_store.park(w, owner, wake_at, WaitKind.MESSAGE, "t", w) == ParkOutcome.AVAILABLE
    assert get(any_store, w).status == S.PENDING


def test_a_stale_wait_never_wakes_a_later_suspension(any_store: DurableStore) -> None:
    wf, owner = running(any_store)
    w = wf.workflow_id
    now = any_store.clock.now_ms()
    assert any_store.park(w, owner, now + MINUTE, WaitKind.MESSAGE, "t", w) == ParkOutcome.PARKED
    clock(any_store).advance(MINUTE + 1)  # woken by its timeout instead
    owner = executor(any_store)
    assert any_store.claim_workflow(w, wf.name, owner, 0) is not None
    retry_at = any_store.clock.now_ms() + 5 * MINUTE  # now waiting out a retry
    assert any_store.suspend_workflow(w, owner, retry_at)
    assert any_store.send_message(message(any_store, w, '"late"', "t")) == (
        SendOutcome.SENT, False,
    )  # fmt: skip
    assert get(any_store, w).wake_at_ms == retry_at


def test_events_latest_wins_and_wake_their_parked_readers(any_store: DurableStore) -> None:
    setter, _ = running(any_store)
    reader, owner = running(any_store)
    s, r = setter.workflow_id, reader.workflow_id
    assert any_store.get_event(s, "status") is None
    wake_at = any_store.clock.now_ms() + MINUTE
    assert any_store.park(r, owner, wake_at, WaitKind.EVENT, "status", s) == ParkOutcome.PARKED
    assert any_store.set_event(s, "other", '"x"', step(s, 0, "durable.set_event")) == (True, [])
    assert any_store.set_event(s, "status", '"waiting"', step(s, 1, "durable.set_event")) == (
        True, [r],
    )  # fmt: skip
    assert any_store.set_event(s, "status", '"late"', step(s, 1, "durable.set_event")) == (
        False, [],
    )  # fmt: skip
    assert any_store.get_event(s, "status") == '"waiting"'
    assert any_store.set_event(s, "status", '"done"') == (True, [])
    assert [(e.key, e.value) for e in any_store.list_events(s)] == [
        ("other", '"x"'), ("status", '"done"'),
    ]  # fmt: skip
    assert any_store.claim_workflow(r, reader.name, owner, 0) is not None
    assert any_store.park(r, owner, wake_at, WaitKind.EVENT, "status", s) == (ParkOutcome.AVAILABLE)


def test_the_sweep_sends_a_reader_whose_wake_up_was_lost(any_store: DurableStore) -> None:
    wf, owner = running(any_store)
    w = wf.workflow_id
    wake_at = any_store.clock.now_ms() + 10 * MINUTE
    assert any_store.park(w, owner, wake_at, WaitKind.MESSAGE, "t", w) == ParkOutcome.PARKED
    clock(any_store).advance(2 * MINUTE)
    assert w not in [i for i, _ in stalled(any_store)]  # parked until its timeout
    assert any_store.send_message(message(any_store, w, '"x"', "t")) == (SendOutcome.SENT, True)
    # the sender's publish is lost: due (no wake-up time) for longer than a minute
    clock(any_store).advance(2 * MINUTE)
    assert (w, RECOVERED) in stalled(any_store)


def test_messages_and_events_go_with_their_workflow(any_store: DurableStore) -> None:
    wf, _ = running(any_store)
    w = wf.workflow_id
    assert any_store.send_message(message(any_store, w, '"x"', key="k"))[0] == SendOutcome.SENT
    assert any_store.set_event(w, "status", '"on"')[0]
    any_store.delete_workflow(w)
    assert any_store.list_messages(w, include_consumed=True) == []
    assert any_store.list_events(w) == [] and any_store.get_event(w, "status") is None
