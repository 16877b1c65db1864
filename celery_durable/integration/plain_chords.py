"""Plain ``chord(header, body).apply_async()`` of durable steps, made a durable canvas.

Celery starts a chord with ``backend.apply_chord(header results, body)``, then applies the
header's members one by one (each with ``group_id`` and ``chord=body``). When the body is
made of durable steps, nothing of Celery's chord machinery is set up yet (no counter, no
``chord_unlock``): each durable member's ``apply_async`` is held here unpublished, and the
last one records the whole canvas (workflow id: the chord's group id, ``result.parent.id``)
and publishes its members. If a member that is not a durable step is published (seen by
``before_task_publish``, before its message leaves), the chord goes back to Celery's own
behaviour: its machinery is set up then, and the members held are sent as Celery would.
A chain in the header comes as its first task's ``apply_async`` (its last task carries the
chord's options); a chord in the header opens a chord of its own, whose body names the
outer chord: once whole, it is held as one nested member of the outer one. A chord that
turns out to be Celery's takes with it the held chords it is a member of and those in its
header (each callback must count in a Celery chord), and a chord in the header of a chord
that is Celery's from the start is Celery's own.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from celery import Task
from celery.canvas import Signature, maybe_signature
from celery.signals import before_task_publish

from .canvas import FlatStage, Member, Nested, canvas_stages, members, start_canvas
from .chains import STEP_KINDS

if TYPE_CHECKING:
    from .durable import Durable


@dataclass
class _Pending:
    size: int
    body: list[FlatStage]
    apply_chord: tuple[Any, Any, dict[str, Any]]  # Celery's arguments, for a fallback
    members: dict[int, Member] = field(default_factory=dict)
    within: tuple[str, int] | None = None  # a chord in this held chord's header, at this index
    celery: bool = False  # a plain member was seen: Celery's own chord from then on
    sized: bool = False  # Celery has announced the last member (set_chord_size)


@dataclass(frozen=True)
class _HeldChord(Nested):
    """A chord of a held chord's header, held whole: sent as Celery's own (from what was
    held) if the outer chord turns out to be Celery's."""

    group_id: str
    pending: _Pending


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
        body_sig = maybe_signature(body, app=app)
        stages = canvas_stages(app, [body_sig]) if results else None
        if stages is None:
            return False
        args = ((group_id, results), body, kw)
        outer = body_sig.options.get("group_id")
        within = None
        if outer != group_id and self.holds(outer):
            within = (outer, int(body_sig.options.get("group_index") or 0))
        elif body_sig.options.get("chord"):  # in the header of a chord that is Celery's
            return False  # Celery's own too: its callback must count in the outer chord
        with self._lock:
            self._chords[group_id] = _Pending(len(results), stages, args, within=within)
        return True

    def holds(self, group_id: str | None) -> bool:
        """Whether this chord's durable members are held (not back to Celery's chord)."""
        with self._lock:
            pending = self._chords.get(group_id or "")
            return pending is not None and not pending.celery

    def add(self, task: Task, sig: Signature, last: Signature | None = None) -> Any:
        """A durable member's ``apply_async``: held; the last one starts the canvas. A chain
        member (``sig``) comes as its first task's, its ``last`` task holding the chord's
        options."""
        options = (last or sig).options
        self._hold(options["group_id"], int(options.get("group_index") or 0), sig)
        return task.AsyncResult(options["task_id"])

    def _hold(self, group_id: str, index: int, member: Member) -> None:
        with self._lock:
            pending = self._chords[group_id]
            pending.members[index] = member
            if len(pending.members) < pending.size:
                return
            del self._chords[group_id]
        header = [pending.members[i] for i in sorted(pending.members)]
        stages = [(members(self.durable.app, header, "chord's header"), True), *pending.body]
        if pending.within is not None:  # a chord in a held chord's header: one member of it
            self._hold(*pending.within, _HeldChord(stages, group_id, pending))
        else:
            start_canvas(self.durable, stages, group_id)

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
        if self.holds(group_id) and getattr(task, "durable_kind", None) not in STEP_KINDS:
            self._give_to_celery(group_id)

    def _give_to_celery(self, group_id: str) -> None:
        """This held chord is Celery's own from now on; so are the held chords it is a
        member of, and those in its header (a callback of either must count in a chord
        of Celery's)."""
        with self._lock:
            pending = self._chords.get(group_id)
            if pending is None or pending.celery:
                return
            pending.celery = True
            if pending.sized:
                del self._chords[group_id]
            inner = [g for g, p in self._chords.items() if p.within and p.within[0] == group_id]
        if pending.within is not None:
            self._give_to_celery(pending.within[0])  # set up before this one's members run
        self._send_as_celery(group_id, pending)
        for g in inner:
            self._give_to_celery(g)

    def _send_as_celery(self, group_id: str, pending: _Pending) -> None:
        """Celery's chord state set up, the held members sent as they would have been (a
        chord held whole in the header: the same, one level down)."""
        backend = self.durable.app.backend
        header_result_args, body, kw = pending.apply_chord
        backend.apply_celery_chord(header_result_args, body, **kw)
        backend.fallback.set_chord_size(group_id, pending.size)
        for member in pending.members.values():
            if isinstance(member, _HeldChord):
                self._send_as_celery(member.group_id, member.pending)
            elif isinstance(member, Signature):
                member.apply_async()
