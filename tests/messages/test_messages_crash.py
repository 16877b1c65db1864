"""Messages and patches across SIGKILLed workers: an approval killed while it waits and
right after its recv returned consumes its message once; a run started under version 1 of
a workflow finishes on its old path after a patched upgrade (version 2), a new run takes
the new path. (Apart from test_messages_worker.py: its shared worker would take the
crash flags.)
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path

from celery_durable import WorkflowStatusString as S
from tests.apps import messages_app as ma
from tests.apps.common import read_effects
from tests.conftest import WorkerProcess, resume_after_crash, wait_for
from tests.messages.test_messages_worker import parked

APP = "tests.apps.messages_app"
durable = ma.durable


def test_killed_while_waiting_and_right_after_recv_the_message_is_consumed_once(
    worker: Callable[..., WorkerProcess], flags: Path, tmp_path: Path
) -> None:
    ma.setup()
    first = worker(APP, concurrency=1)
    handle = durable.start_workflow(ma.approval, "o-2")
    wait_for(lambda: parked(handle.workflow_id), timeout=20)
    first.kill()  # SIGKILL while the workflow waits (parked: nothing of it on the worker)
    (flags / "after_recv").touch()
    durable.send(handle.workflow_id, "approved", topic="approval", idempotency_key="hook-1")
    durable.send(handle.workflow_id, "approved", topic="approval", idempotency_key="hook-1")
    second = WorkerProcess(APP, tmp_path, concurrency=1)
    with contextlib.suppress(RuntimeError):  # it may take the wake-up before it logs ready
        second.start()
    assert second.wait_exit(timeout=30) == -9  # killed right after recv returned
    resume_after_crash(durable, handle.workflow_id)
    worker(APP, concurrency=1)
    assert handle.get_result(timeout=30) == {"order": "o-2", "decision": "approved"}
    [message] = durable.list_workflow_messages(handle.workflow_id, include_consumed=True)
    assert message.consumed_at_ms is not None
    recv = [s for s in durable.list_workflow_steps(handle.workflow_id) if s.name == "durable.recv"]
    assert [s.output for s in recv] == ["approved"]
    assert handle.get_status().status == S.SUCCESS


def test_a_run_started_on_version_one_finishes_on_its_path_after_a_patched_upgrade(
    worker: Callable[..., WorkerProcess], flags: Path
) -> None:
    ma.setup()
    (flags / "upgraded_mid").touch()
    old = worker(APP, concurrency=1, env={"DURABLE_TEST_CODE_VERSION": "1"})
    in_flight = durable.start_workflow(ma.upgraded, "o-3")
    assert old.wait_exit(timeout=30) == -9  # killed after "old-check", before "ship"
    worker(APP, concurrency=1, env={"DURABLE_TEST_CODE_VERSION": "2"})
    resume_after_crash(durable, in_flight.workflow_id)
    fresh = durable.start_workflow(ma.upgraded, "o-4")
    assert in_flight.get_result(timeout=30) == ["reserve", "old-check", "ship"]
    assert fresh.get_result(timeout=30) == ["reserve", "fraud-check", "ship"]
    assert read_effects(durable, in_flight.workflow_id) == {
        "reserve": 1, "old-check": 1, "ship": 1,
    }  # fmt: skip
    steps = [s.name for s in durable.list_workflow_steps(fresh.workflow_id)]
    assert "durable.patch:fraud-check" in steps
