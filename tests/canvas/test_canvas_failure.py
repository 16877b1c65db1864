"""A member that exhausts its retries ends the canvas ERROR; fixed, then resumed, only what
failed runs again."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from celery_durable import WorkflowStatusString as S
from celery_durable.errors import MaxStepRetriesExceeded
from tests.apps import canvas_app as ca
from tests.conftest import wait_for


def test_member_exhausting_retries_fails_the_chord_then_resume_reruns_only_it(
    two_workers: Any, flags: Path
) -> None:
    wid = f"chord-fail-{uuid.uuid4().hex[:8]}"
    header = [ca.member.s(1), ca.member.s(2, 0.8), ca.flaky.s(3)]
    h = ca.durable.chord(header, ca.total.s()).start(workflow_id=wid, link_error=ca.errback.s(wid))
    with pytest.raises(MaxStepRetriesExceeded) as failed:
        h.get_result(timeout=30)
    assert len(failed.value.errors) == 3  # retries=2: three attempts, every error kept
    assert h.get_status().status == S.ERROR
    wait_for(lambda: ca.effects(wid)["eb"] == 1)
    # the slow member was running when the canvas failed: its output is still recorded
    wait_for(lambda: ca.durable.list_workflow_steps(wid)[1].status == "SUCCESS")
    time.sleep(0.5)  # an errback or a callback sent late would show by now
    assert ca.effects(wid) == {"member:1": 1, "member:2": 1, "flaky": 3, "eb": 1}

    (flags / "fixed").touch()
    resumed = ca.durable.resume_workflow(wid)
    assert resumed.get_result(timeout=30) == [1, 4, -3]
    assert ca.effects(wid) == {"member:1": 1, "member:2": 1, "flaky": 4, "eb": 1, "total": 1}
    flaky_step = ca.durable.list_workflow_steps(wid)[2]
    assert flaky_step.status == "SUCCESS"


def test_code_workflow_resumed_from_its_failed_step_keeps_the_earlier_errors(
    two_workers: Any, flags: Path
) -> None:
    h = ca.durable.start_workflow(ca.three_steps, 4)
    with pytest.raises(MaxStepRetriesExceeded):
        h.get_result(timeout=30)
    assert ca.effects(h.workflow_id) == {"first": 1, "flaky": 3}

    (flags / "fixed").touch()
    assert ca.durable.resume_workflow(h.workflow_id).get_result(timeout=30) == [5, -5]
    assert h.get_status().status == S.SUCCESS
    assert ca.effects(h.workflow_id) == {"first": 1, "flaky": 4, "total": 1}
    second = ca.durable.list_workflow_steps(h.workflow_id)[1]
    assert (second.status, second.errors) == ("SUCCESS", [])
    (earlier,) = second.history  # the failed run, set aside with its three attempt errors
    assert earlier.status == "ERROR"
    assert [str(e) for e in earlier.errors] == ["flaky 5 failed"] * 3
