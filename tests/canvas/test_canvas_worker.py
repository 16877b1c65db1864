"""Durable groups, chords and a group inside a chain, on real workers."""

from __future__ import annotations

from typing import Any

from celery import chain, group

from celery_durable import WorkflowStatusString as S
from tests.apps import canvas_app as ca

RESULT_TIMEOUT = 30


def test_durable_chord_callback_gets_outputs_in_member_order(two_workers: Any) -> None:
    handle = ca.durable.chord([ca.member.s(i, 0.05 * (5 - i)) for i in range(6)], ca.total.s())
    h = handle.start()
    assert h.get_result(timeout=RESULT_TIMEOUT) == [i * i for i in range(6)]
    assert h.get_status().status == S.SUCCESS
    counts = ca.effects(h.workflow_id)
    assert counts == {**{f"member:{i}": 1 for i in range(6)}, "total": 1}
    steps = ca.durable.list_workflow_steps(h.workflow_id)
    assert [(s.stage, s.member) for s in steps] == [(0, i) for i in range(6)] + [(1, 0)]
    assert [s.status for s in steps] == ["SUCCESS"] * 7


def test_durable_group_result_is_the_list(two_workers: Any) -> None:
    h = ca.durable.group(ca.member.s(3), ca.member.s(4)).start(workflow_id="grp-fixed-id")
    assert h.get_result(timeout=RESULT_TIMEOUT) == [9, 16]
    again = ca.durable.group(ca.member.s(3), ca.member.s(4)).start(workflow_id="grp-fixed-id")
    assert again.get_result(timeout=RESULT_TIMEOUT) == [9, 16]
    assert ca.effects("grp-fixed-id") == {"member:3": 1, "member:4": 1}


def test_group_inside_a_plain_chain_across_two_queues(two_workers: Any) -> None:
    result = chain(
        ca.first.s(1),
        group(ca.left.s(), ca.right.s().set(queue=ca.OTHER_QUEUE)),
        ca.total.s(),
    ).apply_async()
    handle = ca.durable.retrieve_workflow(result.id)
    out = handle.get_result(timeout=RESULT_TIMEOUT)
    assert [o[:2] for o in out] == [[2, "left"], [2, "right"]]
    assert out[0][2].startswith("wa@") and out[1][2].startswith("wb@")
    assert ca.effects(handle.workflow_id) == {"first": 1, "left": 1, "right": 1, "total": 1}
    assert result.get(timeout=RESULT_TIMEOUT) == out


def test_fork_of_a_chord_from_its_callback_reruns_only_the_callback(two_workers: Any) -> None:
    h = ca.durable.chord([ca.member.s(i) for i in range(3)], ca.total.s()).start()
    assert h.get_result(timeout=RESULT_TIMEOUT) == [0, 1, 4]
    fork = ca.durable.fork_workflow(h.workflow_id, start_step=3)  # step 3: the callback
    assert fork.get_result(timeout=RESULT_TIMEOUT) == [0, 1, 4]
    assert ca.effects(fork.workflow_id) == {"total": 1}
    assert ca.effects(h.workflow_id) == {**{f"member:{i}": 1 for i in range(3)}, "total": 1}
