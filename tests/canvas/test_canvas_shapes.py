"""Which canvas shapes are durable: nested ones are (a chain or a chord in a member's place,
run as a child canvas); an empty group still fails at start, before anything is written."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from celery_durable.errors import UnsupportedCanvasError
from celery_durable.integration.canvas import Nested, canvas_stages
from tests.apps import canvas_app as ca


def test_a_chain_inside_a_group_member_is_one_nested_member() -> None:
    (stage,) = canvas_stages(ca.app, [group(chain(ca.first.s(1), ca.left.s()), ca.member.s(2))])
    (nested, task), is_group = stage
    assert is_group and isinstance(nested, Nested) and task.task == ca.member.name
    assert [[s.task for s in sigs] for sigs, _ in nested.stages] == [
        [ca.first.name],
        [ca.left.name],
    ]


def test_a_chord_inside_a_chords_header_is_one_nested_member() -> None:
    inner = chord([ca.member.s(1), ca.member.s(2)], ca.total.s())
    header, body = canvas_stages(ca.app, [chord([inner, ca.member.s(3)], ca.total.s())]) or []
    assert isinstance(header[0][0], Nested) and [g for _, g in header[0][0].stages] == [True, False]
    assert body[0][0].task == ca.total.name


def test_a_group_inside_a_group_is_unrolled_as_celery_runs_it() -> None:
    (stage,) = canvas_stages(ca.app, [group(group(ca.member.s(1), ca.member.s(2)), ca.member.s(3))])
    assert [s.args for s in stage[0]] == [(1,), (2,), (3,)]


def test_an_empty_group_is_refused_before_anything_is_written() -> None:
    with pytest.raises(UnsupportedCanvasError, match="empty group"):
        ca.durable.group(group(), ca.member.s(2))
    canvas = chain(ca.first.s(1), group(chord([], ca.total.s()), ca.member.s(3)))
    with pytest.raises(UnsupportedCanvasError, match="empty group"):
        canvas.apply_async()
