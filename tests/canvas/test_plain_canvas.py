"""Plain Celery groups and chords: made of durable steps they start (the Producer bug), and
made of plain tasks they behave as Celery's own."""

from __future__ import annotations

import uuid
from typing import Any

from celery import chord, group

from tests.apps import canvas_app as ca


def test_plain_group_of_durable_steps_is_one_durable_canvas(two_workers: Any) -> None:
    """The bug: group(...).apply_async() raised 'Producer is not JSON serializable'. Now
    the group is recorded whole under its group id (``result.id``), a chain member too."""
    members = [ca.member.s(1), ca.first.s(2) | ca.member.s(), ca.member.s(4)]
    result = group(members).apply_async()
    assert result.get(timeout=30) == [1, 9, 16]
    handle = ca.durable.retrieve_workflow(result.id)
    assert handle.get_result(timeout=30) == [1, 9, 16]
    steps = ca.durable.list_workflow_steps(result.id)
    assert [(s.stage, s.member) for s in steps] == [(0, 0), (0, 1), (0, 2)]
    assert ca.effects(result.id) == {"member:1": 1, "member:4": 1}
    assert ca.effects(f"{result.id}:1") == {"first": 1, "member:3": 1}  # the chain member


def test_plain_group_with_a_plain_task_is_celerys_group(two_workers: Any) -> None:
    """Each durable member then starts as its own durable workflow, as outside a group."""
    key = f"mixed-{uuid.uuid4().hex[:8]}"
    result = group(ca.member.s(4), ca.plain_square.s(5, key)).apply_async()
    assert result.get(timeout=30) == [16, 25]
    assert ca.effects(key) == {"plain:5": 1}
    assert ca.durable.get_workflow_status(result.id) is None
    member_id = result.results[0].id
    assert ca.durable.get_workflow_status(member_id).status == "SUCCESS"  # type: ignore[union-attr]
    assert ca.effects(member_id) == {"member:4": 1}


def test_plain_chord_of_non_durable_tasks_is_celerys_own(two_workers: Any) -> None:
    result = chord([ca.plain_square.s(i) for i in range(4)], ca.plain_sum.s()).apply_async()
    assert result.get(timeout=30) == 14
    expected = {f"plain:{i}": 1 for i in range(4)}
    assert ca.effects("plain") == {**expected, "plain_sum": 1}


def test_plain_chord_of_durable_steps_is_a_durable_canvas(two_workers: Any) -> None:
    """Recorded whole under the group id (``result.parent.id``); no chord counter is used."""
    result = chord([ca.member.s(i) for i in range(5)], ca.total.s()).apply_async()
    assert result.get(timeout=30) == [i * i for i in range(5)]
    handle = ca.durable.retrieve_workflow(result.parent.id)
    assert handle.get_result(timeout=30) == [i * i for i in range(5)]
    assert ca.durable.retrieve_workflow(result.id).workflow_id == handle.workflow_id
    steps = ca.durable.list_workflow_steps(handle.workflow_id)
    assert [(s.stage, s.member) for s in steps] == [(0, i) for i in range(5)] + [(1, 0)]
    assert ca.effects(handle.workflow_id) == {**{f"member:{i}": 1 for i in range(5)}, "total": 1}


def test_group_piped_into_a_callback_is_a_durable_chord(two_workers: Any) -> None:
    result = (group(ca.member.s(7), ca.member.s(8)) | ca.total.s()).apply_async()
    assert result.get(timeout=30) == [49, 64]
    assert ca.durable.get_workflow_status(result.parent.id).status == "SUCCESS"  # type: ignore[union-attr]


def test_plain_chord_mixing_plain_and_durable_members_is_celerys_own(two_workers: Any) -> None:
    """A member that is not a durable step: Celery's chord machinery, as before (its
    callback, a durable step, is started by Celery's chord counter when both are done)."""
    result = chord([ca.member.s(5), ca.plain_square.s(6)], ca.total.s()).apply_async()
    assert result.get(timeout=30) == [25, 36]  # read from the store once Celery starts it
    assert ca.durable.retrieve_workflow(result.id).get_result(timeout=30) == [25, 36]
    assert ca.durable.get_workflow_status(result.parent.id) is None


def test_plain_chord_mixing_a_plain_task_and_a_durable_chord_is_celerys_own(
    two_workers: Any,
) -> None:
    """The durable outer callback was held with the inner chord until the plain task
    showed the outer chord is Celery's: both are then Celery's chords, and complete."""
    key = f"mixed-{uuid.uuid4().hex[:8]}"
    inner = chord([ca.member.s(1), ca.member.s(2)], ca.total.s())
    result = chord([ca.plain_square.s(3, key), inner], ca.total.s()).apply_async()
    assert result.get(timeout=30) == [9, [1, 4]]
    assert ca.effects(key) == {"plain:3": 1}
    assert ca.durable.get_workflow_status(result.parent.id) is None  # not a durable canvas


def test_a_durable_chord_in_the_header_of_a_plain_callbacks_chord_is_celerys_own(
    two_workers: Any,
) -> None:
    key = f"plain-cb-{uuid.uuid4().hex[:8]}"
    inner = chord([ca.member.s(5), ca.member.s(6)], ca.total.s())
    result = chord([inner, ca.member.s(7)], ca.plain_collect.s(key)).apply_async()
    assert result.get(timeout=30) == [[25, 36], 49]
    assert ca.effects(key) == {"plain_collect": 1}
