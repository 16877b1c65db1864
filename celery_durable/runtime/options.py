"""SetWorkflowID and SetWorkflowTimeout: options for the next workflow started in a block."""

from __future__ import annotations

from contextvars import ContextVar, Token
from types import TracebackType


class _Slot:
    """A value the next workflow start takes (once)."""

    def __init__(self, value: object) -> None:
        self.value = value
        self.used = False


_workflow_id: ContextVar[_Slot | None] = ContextVar("durable_set_workflow_id", default=None)
_timeout: ContextVar[float | None] = ContextVar("durable_set_workflow_timeout", default=None)


class SetWorkflowID:
    """``with SetWorkflowID("order-1"):`` the next workflow started in the block gets this id."""

    def __init__(self, workflow_id: str) -> None:
        if not isinstance(workflow_id, str) or not workflow_id:
            raise ValueError("SetWorkflowID takes a non-empty string")
        self.workflow_id = workflow_id
        self._token: Token[_Slot | None] | None = None

    def __enter__(self) -> SetWorkflowID:
        self._token = _workflow_id.set(_Slot(self.workflow_id))
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _workflow_id.reset(self._token)


class SetWorkflowTimeout:
    """``with SetWorkflowTimeout(60):`` workflows started in the block are cancelled after 60 s."""

    def __init__(self, seconds: float | None) -> None:
        if seconds is not None and seconds <= 0:
            raise ValueError("SetWorkflowTimeout takes a positive number of seconds or None")
        self.seconds = seconds
        self._token: Token[float | None] | None = None

    def __enter__(self) -> SetWorkflowTimeout:
        self._token = _timeout.set(self.seconds)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._token is not None:
            _timeout.reset(self._token)


def take_workflow_id() -> str | None:
    """The id set by the innermost SetWorkflowID, once; later starts get none."""
    slot = _workflow_id.get()
    if slot is None or slot.used:
        return None
    slot.used = True
    return str(slot.value)


def current_timeout() -> float | None:
    return _timeout.get()
