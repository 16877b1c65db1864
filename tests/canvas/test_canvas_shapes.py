"""Shapes a durable canvas does not support yet fail at start, before anything is written."""

from __future__ import annotations

import pytest
from celery import chain, chord, group

from celery_durable.errors import UnsupportedCanvasError
from tests.apps import canvas_app as ca


def test_a_chain_inside_a_group_member_is_refused_at_start() -> None:
    with pytest.raises(UnsupportedCanvasError, match="chain inside a group"):
        ca.durable.group(chain(ca.first.s(1), ca.left.s()), ca.member.s(2))


def test_a_chord_inside_a_chords_header_is_refused_at_start() -> None:
    inner = chord([ca.member.s(1)], ca.total.s())
    with pytest.raises(UnsupportedCanvasError, match="chord inside a chord's header"):
        ca.durable.chord([inner, ca.member.s(2)], ca.total.s())


def test_a_plain_chain_with_an_unsupported_group_is_refused_before_publishing() -> None:
    canvas = chain(ca.first.s(1), group(chain(ca.left.s(), ca.right.s()), ca.member.s(3)))
    with pytest.raises(UnsupportedCanvasError):
        canvas.apply_async()
