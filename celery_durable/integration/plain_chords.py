"""Plain ``chord(header, body).apply_async()`` of durable steps, made a durable canvas.

Celery starts a chord with ``backend.apply_chord(header results, body)``, then applies the
header's members one by one (each with ``group_id`` and ``chord=body``). When the body is
made of durable steps, nothing of Celery's chord machinery is set up yet (no counter, no
``chord_unlock``): each durable member's ``apply_async`` is held here unpublished, and the
last one records the whole canvas (workflow id: the chord's group id, ``result.parent.id``)
and publishes its members. If a member that is not a durable step is published (seen by
``before_task_publish``, before its message leaves), the chord goes back to Celery's own
behaviour: its machinery is set up then, and the members held are sent as Celery would.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.canvas import Signature, maybe_signature
from celery.signals import before_task_publish

from .canvas import FlatStage, canvas_stages, start_canvas
from .chains import STEP_KINDS

if TYPE_CHECKING:
    from .durable import Durable


@dataclass
class _Pending:
    size: int
    body: list[FlatStage]
    apply_chord: tuple[Any, Any, dict[str, Any]]  # Celery's arguments, for a fallback
    members: dict[int, Signature] = field(default_factory=dict)
    celery: bool = False  # a plain member was seen: Celery's own chord from then on
    sized: bool = False  # Celery has announced the last member (set_chord_size)


class PendingChords:
    """Header members of durable chords being applied, by group id (one ``apply_async`` of
    a chord runs in one thread; entries live only during it)."""

    def __init__(self, durable: Durable) -> None:
        self.durable = durable
        self._lock = threading.Lock()
        self._chords: dict[str, _Pending] = {}
        before_task_publish.connect(self._on_publish, weak=False)

    def open(self, header_result_args: Any, body: Any, **kw: Any) -> bool:
        """From ``apply_chord``: hold this chord's members if its body is durable steps."""
        group_id = header_result_args[0]
        results = list(header_result_args[1])  # frozen already (a regen caches its items)
        app = self.durable.app
        stages = canvas_stages(app, [maybe_signature(body, app=app)]) if results else None
        if stages is None:
            return False
        args = ((group_id, results), body, kw)
        with self._lock:
            self._chords[group_id] = _Pending(len(results), stages, args)
        return True

    def holds(self, group_id: str | None) -> bool:
        """Whether this chord's durable members are held (not back to Celery's chord)."""
        with self._lock:
            pending = self._chords.get(group_id or "")
            return pending is not None and not pending.celery

    def add(self, task: Task, sig: Signature) -> Any:
        """A durable member's ``apply_async``: held; the last one starts the canvas."""
        options = sig.options
        group_id = options["group_id"]
        with self._lock:
            pending = self._chords[group_id]
            pending.members[int(options.get("group_index") or 0)] = sig
            if len(pending.members) < pending.size:
                return task.AsyncResult(options["task_id"])
            del self._chords[group_id]
        members = [pending.members[i] for i in sorted(pending.members)]
        start_canvas(self.durable, [(members, True), *pending.body], group_id)
        return task.AsyncResult(options["task_id"])

    def sized(self, group_id: str) -> bool:
        """From ``set_chord_size``: True when this chord is (or was) held here, so Celery's
        counter must not be reset."""
        with self._lock:
            pending = self._chords.get(group_id)
            if pending is None:
                return False
            if pending.celery:  # only the last member is left: Celery's from here
                del self._chords[group_id]
            pending.sized = True
            return True

    def _on_publish(self, sender: Any = None, headers: Any = None, **_: Any) -> None:
        """A member that is not a durable step: the chord is Celery's own after all."""
        group_id = str((headers or {}).get("group") or "")
        task = self.durable.app.tasks.get(sender or "")
        if not self.holds(group_id) or getattr(task, "durable_kind", None) in STEP_KINDS:
            return
        with self._lock:
            pending = self._chords[group_id]
            pending.celery = True
            if pending.sized:
                del self._chords[group_id]
        fallback = self.durable.app.backend.fallback
        header_result_args, body, kw = pending.apply_chord
        fallback.apply_chord(header_result_args, body, **kw)
        fallback.set_chord_size(group_id, pending.size)
        for sig in pending.members.values():  # sent as they would have been
            sig.apply_async()
