"""Messages and events on one real worker with one slot (shared by the module): an
approval waits without holding the slot, a recv times out on a worker, 100 concurrent
messages arrive once in per-sender order. Workers killed: test_messages_crash.py.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import pytest
from celery.bin.base import CLIContext
from click.testing import CliRunner, Result

from celery_durable import SetWorkflowID
from celery_durable import WorkflowStatusString as S
from celery_durable.integration.cli import durable as durable_cli
from tests.apps import messages_app as ma
from tests.apps.common import read_effects
from tests.conftest import WorkerProcess, wait_for

APP = "tests.apps.messages_app"
durable = ma.durable


@pytest.fixture(scope="module")
def one_slot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    """One worker with one slot, shared by the tests that kill no worker."""
    ma.setup()
    proc = WorkerProcess(APP, tmp_path_factory.mktemp("one_slot"), concurrency=1).start()
    yield proc
    proc.stop(timeout=10)


def parked(workflow_id: str) -> bool:
    """Given its slot back: ENQUEUED and not due before its recv's timeout."""
    wf = durable.store.get_workflow(workflow_id)
    return wf is not None and wf.status == S.ENQUEUED and wf.wake_at_ms is not None


def test_an_approval_waits_without_a_slot_while_twenty_workflows_run(
    one_slot: WorkerProcess,
) -> None:
    handle = durable.start_workflow(ma.approval, "o-1")
    assert durable.get_event(handle.workflow_id, "status", timeout_seconds=20) == "waiting"
    wait_for(lambda: parked(handle.workflow_id), timeout=10)
    others = [durable.start_workflow(ma.other, i) for i in range(20)]
    assert [h.get_result(timeout=30) for h in others] == [i * 2 for i in range(20)]
    assert parked(handle.workflow_id)  # the one slot ran all twenty meanwhile
    assert [m.topic for m in durable.list_workflow_messages(handle.workflow_id)] == []
    durable.send(handle.workflow_id, {"approved": True, "by": "ann"}, topic="approval")
    assert handle.get_result(timeout=20) == {
        "order": "o-1",
        "decision": {"approved": True, "by": "ann"},
    }
    assert durable.get_event(handle.workflow_id, "status", timeout_seconds=1) == "decided"
    names = [s.name for s in durable.list_workflow_steps(handle.workflow_id)]
    assert names == [
        "durable.set_event", "durable.recv.deadline", "durable.recv", "durable.set_event",
    ]  # fmt: skip
    assert read_effects(durable, handle.workflow_id)["approval"] == 2  # start, wake-up


def test_recv_times_out_with_none_after_two_seconds(one_slot: WorkerProcess) -> None:
    """On a worker (parked, woken at its timeout) and in a direct call (waiting inline)."""
    began = time.monotonic()
    handle = durable.start_workflow(ma.inbox, 1, 2.0)
    assert handle.get_result(timeout=20) == [None]
    assert 2.0 <= time.monotonic() - began < 6.0
    began = time.monotonic()
    with SetWorkflowID(f"{handle.workflow_id}-direct"):
        assert ma.inbox(1, 2.0) == [None]
    assert 2.0 <= time.monotonic() - began < 4.0


def test_hundred_messages_from_four_threads_reach_a_worker_once_in_order(
    one_slot: WorkerProcess,
) -> None:
    handle = durable.start_workflow(ma.inbox, 100, 30.0)

    def send_all(sender: int) -> None:
        for i in range(25):
            durable.send(handle.workflow_id, [sender, i], topic="n")

    senders = [threading.Thread(target=send_all, args=(s,)) for s in range(4)]
    for t in senders:
        t.start()
    for t in senders:
        t.join(30)
    received = handle.get_result(timeout=60)
    assert sorted(map(tuple, received)) == [(s, i) for s in range(4) for i in range(25)]
    for s in range(4):
        assert [i for who, i in received if who == s] == list(range(25))
    assert durable.list_workflow_messages(handle.workflow_id) == []


def cli(*args: str) -> Result:
    obj = CLIContext(app=ma.app, no_color=True, workdir=None)
    return CliRunner().invoke(durable_cli, list(args), obj=obj)


def test_the_cli_sends_and_lists_events_and_messages(one_slot: WorkerProcess) -> None:
    handle = durable.start_workflow(ma.approval, "o-cli")
    workflow_id = handle.workflow_id
    wait_for(lambda: parked(workflow_id), timeout=10)
    shown = cli("events", workflow_id)
    assert shown.exit_code == 0 and "status" in shown.output and '"waiting"' in shown.output
    other = durable.start_workflow(ma.inbox, 1, 30.0).workflow_id
    sent = cli("send", other, "--topic", "elsewhere", "--json", '{"n": 1}')
    assert sent.exit_code == 0, sent.output
    assert json.loads(cli("messages", other, "--json").stdout)[0]["topic"] == "elsewhere"
    sent = cli("send", workflow_id, "--topic", "approval", "--json", '{"ok": true}')
    assert sent.exit_code == 0, sent.output
    assert handle.get_result(timeout=20) == {"order": "o-cli", "decision": {"ok": True}}
    assert json.loads(cli("events", workflow_id, "--json").stdout) == {"status": "decided"}
    assert cli("messages", workflow_id).output.strip() == "no messages waiting"
    [received] = json.loads(cli("messages", workflow_id, "--all", "--json").stdout)
    assert (received["topic"], received["message"]) == ("approval", '{"ok": true}')
    unknown = cli("send", "no-such-workflow", "--json", "1")
    assert unknown.exit_code == 1 and "no-such-workflow" in unknown.output
    assert cli("send", workflow_id, "--json", "{bad").exit_code == 2
