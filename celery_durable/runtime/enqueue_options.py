"""``SetEnqueueOptions``: durable-queue options for workflows started in a block (through
``.delay()``, ``.apply_async()`` or ``start_workflow``)."""

from __future__ import annotations

from contextvars import ContextVar, Token
from dataclasses import dataclass, fields, replace
from types import TracebackType
from typing import Any


@dataclass(frozen=True)
class EnqueueOptions:
    """How a workflow enters a durable queue; ``None``: not given."""

    queue: str | None = None  # a durable queue's name
    priority: int | None = None  # lower runs first (the queue needs priority_enabled)
    deduplication_id: str | None = None  # one active workflow per id in the queue
    delay_seconds: float | None = None  # admitted no earlier
    timeout_seconds: float | None = None  # cancelled this long after the start

    def __post_init__(self) -> None:
        if self.delay_seconds is not None and self.delay_seconds < 0:
            raise ValueError("delay_seconds must be >= 0")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise ValueError("timeout_seconds must be > 0")
        if self.priority is not None and not isinstance(self.priority, int):
            raise TypeError("priority must be an int")

    def merged(self, other: EnqueueOptions) -> EnqueueOptions:
        """These options, with every one ``other`` gives taking precedence."""
        given = {f.name: getattr(other, f.name) for f in fields(other)}
        return replace(self, **{k: v for k, v in given.items() if v is not None})

    @property
    def empty(self) -> bool:
        return all(getattr(self, f.name) is None for f in fields(self))


NO_OPTIONS = EnqueueOptions()
_current: ContextVar[EnqueueOptions] = ContextVar("durable_enqueue_options", default=NO_OPTIONS)
OPTION_NAMES = tuple(f.name for f in fields(EnqueueOptions))


class SetEnqueueOptions:
    """``with SetEnqueueOptions(priority=1, deduplication_id="o-1"):`` workflows started in
    the block (``.delay()`` too) get these options; options given at the start win, and an
    inner block's win over an outer one's. ``queue`` takes a durable queue or its name."""

    def __init__(
        self,
        *,
        queue: Any = None,
        priority: int | None = None,
        deduplication_id: str | None = None,
        delay_seconds: float | None = None,
        timeout_seconds: float | None = None,
    ) -> None:
        self.options = EnqueueOptions(
            getattr(queue, "name", queue), priority, deduplication_id, delay_seconds,
            timeout_seconds,
        )  # fmt: skip
        self._token: Token[EnqueueOptions] | None = None

    def __enter__(self) -> SetEnqueueOptions:
        self._token = _current.set(_current.get().merged(self.options))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _current.reset(self._token)


def current_enqueue_options() -> EnqueueOptions:
    return _current.get()
