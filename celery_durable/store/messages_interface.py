"""What messages, events and waits ask of a store (``durable.send``/``recv``,
``set_event``/``get_event``): part of ``DurableStore`` (store/interface.py), implemented
by store/messages.py (SQL) and store/memory_messages.py, held to one contract
(tests/store/test_contract_messages.py).

Every wake-up decision is serialized on one workflow row: a send locks the receiver's row,
a ``set_event`` the setter's; a workflow parking itself to wait locks the same row before
it looks for what it waits for. So a message or event arriving while its reader parks is
either seen by the reader (which then does not park) or finds the reader parked (and wakes
it): a wake-up is never lost between the two.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from ..types import StepRecord

#: the stored topic of ``send``/``recv`` without one
NO_TOPIC = ""


class WaitKind(StrEnum):
    """What a parked workflow waits for."""

    MESSAGE = "MESSAGE"  # a message on ``key`` (a topic) to itself
    EVENT = "EVENT"  # the event ``key`` of the target workflow


class SendOutcome(StrEnum):
    SENT = "SENT"
    DUPLICATE = "DUPLICATE"  # the idempotency key was sent before: nothing new
    NO_WORKFLOW = "NO_WORKFLOW"  # the receiver does not exist: nothing written
    REFUSED = "REFUSED"  # the sender's checkpoint exists (or it stopped): rolled back


class ReceiveOutcome(StrEnum):
    RECEIVED = "RECEIVED"  # consumed, and checkpointed in the same transaction
    EMPTY = "EMPTY"  # no message on that topic
    REFUSED = "REFUSED"  # the checkpoint exists (or the workflow stopped): nothing consumed


class ParkOutcome(StrEnum):
    PARKED = "PARKED"  # ENQUEUED until woken or ``wake_at_ms``
    AVAILABLE = "AVAILABLE"  # what it waits for arrived meanwhile: not parked
    NOT_OWNER = "NOT_OWNER"  # the run no longer owns the workflow: not parked


@dataclass(frozen=True)
class MessageRecord:
    """A message to ``workflow_id`` (value: serialized text), in send order by id."""

    workflow_id: str
    topic: str
    message: str
    created_at_ms: int
    idempotency_key: str | None = None
    message_id: int | None = None  # given by the store
    consumed_at_ms: int | None = None
    consumed_by_step: int | None = None


@dataclass(frozen=True)
class EventRecord:
    workflow_id: str
    key: str
    value: str  # serialized text
    updated_at_ms: int


class MessagesStore(Protocol):
    def send_message(
        self, message: MessageRecord, checkpoint: StepRecord | None = None
    ) -> tuple[SendOutcome, bool]:
        """Store ``message`` (once per idempotency key) and, in the same transaction, the
        sender's ``checkpoint`` (a send inside a workflow). Also returns whether the
        receiver, parked waiting for this topic, was made due (the caller publishes it)."""
        ...

    def receive_message(
        self, workflow_id: str, topic: str, checkpoint: StepRecord
    ) -> tuple[ReceiveOutcome, str | None]:
        """Consume the oldest unconsumed message on ``topic``, its text becoming the
        output of ``checkpoint``, in one transaction; returns the text."""
        ...

    def set_event(
        self, workflow_id: str, key: str, value: str, checkpoint: StepRecord | None = None
    ) -> tuple[bool, list[str]]:
        """Set (replace) an event with ``checkpoint`` in one transaction; returns whether it
        was recorded and the parked readers of that event made due (to publish)."""
        ...

    def get_event(self, workflow_id: str, key: str) -> str | None: ...

    def park(
        self,
        workflow_id: str,
        executor_id: str,
        wake_at_ms: int,
        kind: WaitKind,
        key: str,
        target_workflow_id: str,
    ) -> ParkOutcome:
        """Give the workflow up (ENQUEUED, due at ``wake_at_ms``) until a message on
        ``key`` (MESSAGE) or the event ``key`` of ``target_workflow_id`` (EVENT) arrives,
        unless it is there already."""
        ...

    def list_messages(
        self, workflow_id: str, *, include_consumed: bool = False
    ) -> list[MessageRecord]:
        """Messages to a workflow in send order (by default those not yet received)."""
        ...

    def list_events(self, workflow_id: str) -> list[EventRecord]:
        """A workflow's events by key."""
        ...
