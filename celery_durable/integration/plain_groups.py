"""Plain ``group(...).apply_async()`` of durable steps, made one durable canvas.

Celery applies a group's members one by one (each with the group's ``group_id`` and its
``group_index``, and no ``chord``), then builds the group's result with
``app.GroupResult(group_id, results, ready_barrier=...)``. No backend call or signal
announces the group before its members are sent, so each durable member's ``apply_async``
is held here unpublished, and the app's ``GroupResult`` (a subclass of the one Celery made
for this app, set in its place) starts the canvas when the group's result is built:
recorded whole under the group id (``result.id``), then published. A group with a member
that is not a durable step (Celery has published that one already) starts its held
members as they start outside a group: each its own durable workflow, as before.

A group's members are applied in one thread, so what is held is kept per thread; a group
whose application raised before its result was built leaves its held members unsent and
unrecorded (the caller got the exception).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from celery.canvas import Signature, group

from ..errors import UnsupportedCanvasError
from .canvas import canvas_stages, start_canvas

if TYPE_CHECKING:
    from .durable import Durable


@dataclass(frozen=True)
class _Held:
    member: Signature  # a task, or a chain (its first task's apply_async brought it)
    start_alone: Callable[[], Any]  # how it starts outside a group


class PendingGroups:
    """Durable members of plain groups being applied, by group id, in this thread."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._local = threading.local()
        pending = self
        base: Any = durable.app.GroupResult

        class GroupResult(base):  # type: ignore[misc]
            def __init__(self, id: Any = None, results: Any = None, **kwargs: Any) -> None:
                if id and kwargs.get("ready_barrier") is not None:  # group.apply_async's
                    pending.release(str(id), list(results or ()))
                super().__init__(id, results, **kwargs)

        GroupResult.__name__ = GroupResult.__qualname__ = base.__name__
        GroupResult.__module__ = base.__module__
        durable.app.GroupResult = GroupResult

    def _held(self) -> dict[str, dict[int, _Held]]:
        held: dict[str, dict[int, _Held]] | None = getattr(self._local, "held", None)
        if held is None:
            held = self._local.held = {}
        return held

    def place(self, options: dict[str, Any], links: list[Signature]) -> tuple[str, int] | None:
        """The group id and index of a plain group's member being applied (a chain member
        comes as its first task's ``apply_async``, its last task holding the group's
        options); None for anything else, and while held members start alone."""
        if getattr(self._local, "releasing", False):
            return None
        last = links[0].options if links else options
        if not last.get("group_id") or last.get("group_index") is None or last.get("chord"):
            return None
        if not links and "producer" not in options:  # not applied by a group
            return None
        return str(last["group_id"]), int(last["group_index"])

    def hold(
        self, place: tuple[str, int], member: Signature, start_alone: Callable[[], Any]
    ) -> None:
        group_id, index = place
        self._held().setdefault(group_id, {})[index] = _Held(member, start_alone)

    def release(self, group_id: str, results: list[Any]) -> None:
        """The group's result is being built: every member has been applied."""
        held = self._held().pop(group_id, None)
        if not held:
            return
        ordered = [held[i] for i in sorted(held)]
        stages = None
        if len(ordered) == len(results):
            app = self.durable.app
            try:
                stages = canvas_stages(app, [group([h.member for h in ordered], app=app)])
            except UnsupportedCanvasError:
                stages = None
        if stages is not None:
            start_canvas(self.durable, stages, group_id)
            return
        self._local.releasing = True
        try:
            for h in ordered:
                h.start_alone()
        finally:
            self._local.releasing = False
