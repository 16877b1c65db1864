"""Messages, events and patches in workflows called directly (run in this process), on
the in-memory store, Postgres and SQLite: what is recorded, consumed once, replayed."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest

from celery_durable import Durable, NonDeterministicWorkflowError, NonExistentWorkflow
from tests.conftest import wait_for
from tests.unit.helpers import Crash, call_as, crash_then_reenqueue, step, uid, workflow


def started(wf: Any, *args: Any) -> tuple[str, threading.Thread, list[Any]]:
    """Run ``wf`` directly in a thread under a new id; its result lands in the list."""
    workflow_id = uid("wf")
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(call_as(workflow_id, wf, *args)))
    thread.start()
    wait_for(lambda: wf.durable.get_workflow_status(workflow_id) is not None, timeout=10)
    return workflow_id, thread, out


def test_messages_arrive_in_send_order_per_topic_and_once(durable: Durable) -> None:
    def body() -> list[Any]:
        durable.set_event("status", "waiting")
        return [durable.recv("b", 10), durable.recv("a", 10), durable.recv("a", 10)]

    wf = workflow(durable, body)
    workflow_id, thread, out = started(wf)
    assert durable.get_event(workflow_id, "status", timeout_seconds=10) == "waiting"
    durable.send(workflow_id, {"n": 1}, topic="a")
    durable.send(workflow_id, {"n": 2}, topic="a")
    durable.send(workflow_id, "only", topic="b")
    thread.join(10)
    assert out == [["only", {"n": 1}, {"n": 2}]]
    assert durable.list_workflow_messages(workflow_id) == []
    assert len(durable.list_workflow_messages(workflow_id, include_consumed=True)) == 3
    names = [s.name for s in durable.list_workflow_steps(workflow_id)]
    assert names == ["durable.set_event"] + ["durable.recv.deadline", "durable.recv"] * 3


def test_a_repeated_idempotency_key_delivers_once_and_unknown_ids_raise(
    durable: Durable,
) -> None:
    wf = workflow(durable, lambda: [durable.recv(None, 5), durable.recv(None, 0.3)])
    workflow_id, thread, out = started(wf)
    for _ in range(3):
        durable.send(workflow_id, "paid", idempotency_key="evt-1")
    thread.join(10)
    assert out == [["paid", None]]
    durable.send(workflow_id, "again", idempotency_key="evt-1")  # after it was received
    assert durable.list_workflow_messages(workflow_id) == []
    with pytest.raises(NonExistentWorkflow):
        durable.send(uid("nobody"), "hello")


def test_recv_times_out_with_none_and_a_replay_gets_none_at_once(durable: Durable) -> None:
    crash = [True]

    def body() -> Any:
        got = durable.recv("never", timeout_seconds=0.5)
        if crash[0]:
            crash[0] = False
            raise Crash
        return got

    wf = workflow(durable, body)
    workflow_id = uid("wf")
    began = time.monotonic()
    crash_then_reenqueue(durable, workflow_id, wf)
    assert 0.5 <= time.monotonic() - began < 3
    began = time.monotonic()
    assert call_as(workflow_id, wf) is None
    assert time.monotonic() - began < 0.4  # the recorded None, not a second wait


def test_a_received_message_is_replayed_not_received_again(durable: Durable) -> None:
    crash = [True]

    def body() -> Any:
        got = durable.recv("t", 10)
        if crash[0]:
            crash[0] = False
            raise Crash  # the process dies right after recv returned
        return [got, durable.recv("t", 0.2)]

    wf = workflow(durable, body)
    workflow_id = uid("wf")
    runner = threading.Thread(target=lambda: crash_then_reenqueue(durable, workflow_id, wf))
    runner.start()
    wait_for(lambda: durable.get_workflow_status(workflow_id) is not None, timeout=10)
    durable.send(workflow_id, "first", topic="t")
    runner.join(10)
    durable.send(workflow_id, "second", topic="t")
    assert call_as(workflow_id, wf) == ["first", "second"]


def test_sends_inside_a_workflow_are_recorded_and_not_repeated(durable: Durable) -> None:
    inbox = workflow(durable, lambda: [durable.recv(None, 10), durable.recv(None, 0.3)])
    inbox_id, thread, out = started(inbox)
    crash = [True]

    def sender(to: str) -> str:
        durable.send(to, {"from": durable.workflow_id})
        if crash[0]:
            crash[0] = False
            raise Crash
        return "sent"

    wf = workflow(durable, sender)
    sender_id = uid("wf")
    crash_then_reenqueue(durable, sender_id, wf, inbox_id)
    assert call_as(sender_id, wf, inbox_id) == "sent"
    thread.join(10)
    assert out == [[{"from": sender_id}, None]]
    [step] = durable.list_workflow_steps(sender_id)
    assert (step.name, step.output) == ("durable.send", {"to": inbox_id, "topic": None})


def test_hundred_messages_from_four_threads_arrive_once_in_per_sender_order(
    durable: Durable,
) -> None:
    wf = workflow(durable, lambda: [durable.recv("n", 20) for _ in range(100)])
    workflow_id, thread, out = started(wf)

    def send_all(sender: int) -> None:
        for i in range(25):
            durable.send(workflow_id, [sender, i], topic="n")

    senders = [threading.Thread(target=send_all, args=(s,)) for s in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(30)
    thread.join(60)
    [received] = out
    assert sorted(map(tuple, received)) == [(s, i) for s in range(4) for i in range(25)]
    for s in range(4):
        assert [i for who, i in received if who == s] == list(range(25))


def test_events_latest_value_wins_and_get_event_times_out(durable: Durable) -> None:
    def body() -> str:
        durable.set_event("progress", 1)
        durable.set_event("progress", 2)
        return "done"

    wf = workflow(durable, body)
    workflow_id = uid("wf")
    assert call_as(workflow_id, wf) == "done"
    assert durable.get_event(workflow_id, "progress", timeout_seconds=1) == 2
    assert durable.list_workflow_events(workflow_id) == {"progress": 2}
    began = time.monotonic()
    assert durable.get_event(workflow_id, "other", timeout_seconds=0.3) is None
    assert time.monotonic() - began >= 0.3

    reader = workflow(durable, lambda w: durable.get_event(w, "progress", 1))
    assert call_as(uid("wf"), reader, workflow_id) == 2


def test_patch_keeps_old_runs_on_the_old_path(durable: Durable) -> None:
    version = [1]
    crash = [True]
    ran: list[str] = []

    def step_name(name: str) -> Callable[[], str]:
        def body() -> str:
            ran.append(name)
            return name

        return body

    old, new, last = (step(durable, step_name(n)) for n in ("old", "new", "last"))

    def body() -> list[str]:
        if version[0] == 1:  # before the change
            first = old()
        elif version[0] == 2:  # the change, patched
            first = new() if durable.patch("new-way") else old()
        elif version[0] == 4:  # later: no run recorded before the patch is left
            durable.deprecate_patch("new-way")
            first = new()
        else:  # the change without a patch
            first = new()
        if crash[0]:
            crash[0] = False
            raise Crash
        return [first, last()]

    wf = workflow(durable, body)
    in_flight = uid("wf")
    crash_then_reenqueue(durable, in_flight, wf)  # version 1 passed the patched point
    version[0] = 2
    assert call_as(in_flight, wf) == ["old", "last"]
    fresh = uid("wf")
    assert call_as(fresh, wf) == ["new", "last"]
    names = [s.name for s in durable.list_workflow_steps(fresh)]
    assert names[0] == "durable.patch:new-way"
    assert ran == ["old", "last", "new", "last"]

    crash[0] = True
    marked = uid("wf")
    crash_then_reenqueue(durable, marked, wf)  # a version-2 run in flight, past its marker
    version[0] = 4
    assert call_as(marked, wf) == ["new", "last"]
    assert call_as(uid("wf"), wf) == ["new", "last"]

    crash[0], version[0] = True, 1
    unpatched = uid("wf")
    crash_then_reenqueue(durable, unpatched, wf)
    version[0] = 3
    with pytest.raises(NonDeterministicWorkflowError):
        call_as(unpatched, wf)


def test_two_workflows_exchange_messages_at_once(durable: Durable) -> None:
    """Each sends to the other, then receives, ten times over, both at the same time."""

    def body(peer: str) -> list[Any]:
        durable.set_event("ready", True)
        assert durable.get_event(peer, "ready", timeout_seconds=10)  # the peer exists
        got = []
        for i in range(10):
            durable.send(peer, [durable.workflow_id, i], topic="ping")
            got.append(durable.recv("ping", timeout_seconds=10))
        return got

    wf = workflow(durable, body)
    a, b = uid("wf"), uid("wf")
    out: dict[str, Any] = {}
    runs = [
        threading.Thread(target=lambda me=me, peer=peer: out.update({me: call_as(me, wf, peer)}))
        for me, peer in ((a, b), (b, a))
    ]
    for t in runs:
        t.start()
    for t in runs:
        t.join(30)
    assert out == {a: [[b, i] for i in range(10)], b: [[a, i] for i in range(10)]}
