"""``MemoryStore``'s side of messages, events and waits (see store/messages.py for the SQL).

Each method runs under the store's one lock, so the ordering the SQL store gets from
locking a workflow row holds here by construction."""

from __future__ import annotations

import itertools
from dataclasses import replace

from ..clock import Clock
from ..types import StepRecord, WorkflowState
from .memory_tables import MemoryTables, MemoryTransaction
from .messages_interface import (
    EventRecord,
    MessageRecord,
    ParkOutcome,
    ReceiveOutcome,
    SendOutcome,
    WaitKind,
)

# a parked workflow's wait: (kind, target workflow id, key, wake_at_ms)
Wait = tuple[WaitKind, str, str, int]


class MemoryMessages(MemoryTables):
    def __init__(self, clock: Clock) -> None:
        super().__init__(clock)
        self._messages: list[MessageRecord] = []  # in send order
        self._message_ids = itertools.count(1)
        self._events: dict[tuple[str, str], EventRecord] = {}
        self._waits: dict[str, Wait] = {}  # by parked workflow id

    def _forget(self, workflow_id: str) -> None:
        super()._forget(workflow_id)
        self._messages = [m for m in self._messages if m.workflow_id != workflow_id]
        for key in [k for k in self._events if k[0] == workflow_id]:
            del self._events[key]
        self._waits.pop(workflow_id, None)

    def _checkpointed(self, tx: MemoryTransaction, checkpoint: StepRecord | None) -> bool:
        w = None if checkpoint is None else tx.workflow(checkpoint.workflow_id)
        if checkpoint is None:
            return True
        if w is None or w.status != WorkflowState.PENDING:
            return False
        done = checkpoint.completed_at_ms
        if w.deadline_ms is not None and done is not None and done > w.deadline_ms:
            return False
        if tx.step(checkpoint.workflow_id, checkpoint.step_id) is not None:
            return False
        tx.put_step(checkpoint)
        return True

    def _wake(self, tx: MemoryTransaction, kind: WaitKind, target: str, key: str) -> list[str]:
        woken = []
        for workflow_id, (k, t, wanted, wake_at_ms) in list(self._waits.items()):
            if (k, t, wanted) != (kind, target, key):
                continue
            del self._waits[workflow_id]
            w = tx.workflow(workflow_id)
            if (
                w is not None
                and w.status == WorkflowState.ENQUEUED
                and w.executor_id is None
                and w.wake_at_ms == wake_at_ms
            ):
                tx.put_workflow(w, wake_at_ms=None, updated_at_ms=self.clock.now_ms())
                woken.append(workflow_id)
        return woken

    def send_message(
        self, message: MessageRecord, checkpoint: StepRecord | None = None
    ) -> tuple[SendOutcome, bool]:
        with self.atomic() as tx:
            if tx.workflow(message.workflow_id) is None:
                return SendOutcome.NO_WORKFLOW, False
            if not self._checkpointed(tx, checkpoint):
                return SendOutcome.REFUSED, False
            key = message.idempotency_key
            if key is not None and any(
                m.workflow_id == message.workflow_id and m.idempotency_key == key
                for m in self._messages
            ):
                return SendOutcome.DUPLICATE, False
            self._messages.append(replace(message, message_id=next(self._message_ids)))
            woken = self._wake(tx, WaitKind.MESSAGE, message.workflow_id, message.topic)
            return SendOutcome.SENT, bool(woken)

    def receive_message(
        self, workflow_id: str, topic: str, checkpoint: StepRecord
    ) -> tuple[ReceiveOutcome, str | None]:
        with self.atomic() as tx:
            waiting = [
                i
                for i, m in enumerate(self._messages)
                if m.workflow_id == workflow_id and m.topic == topic and m.consumed_at_ms is None
            ]
            if not waiting:
                return ReceiveOutcome.EMPTY, None
            i = waiting[0]
            m = self._messages[i]
            if not self._checkpointed(tx, replace(checkpoint, output=m.message)):
                return ReceiveOutcome.REFUSED, None
            self._messages[i] = replace(
                m, consumed_at_ms=self.clock.now_ms(), consumed_by_step=checkpoint.step_id
            )
            self._waits.pop(workflow_id, None)
            return ReceiveOutcome.RECEIVED, m.message

    def set_event(
        self, workflow_id: str, key: str, value: str, checkpoint: StepRecord | None = None
    ) -> tuple[bool, list[str]]:
        with self.atomic() as tx:
            if tx.workflow(workflow_id) is None or not self._checkpointed(tx, checkpoint):
                return False, []
            self._events[(workflow_id, key)] = EventRecord(
                workflow_id, key, value, self.clock.now_ms()
            )
            return True, self._wake(tx, WaitKind.EVENT, workflow_id, key)

    def get_event(self, workflow_id: str, key: str) -> str | None:
        with self._lock:
            found = self._events.get((workflow_id, key))
            return None if found is None else found.value

    def park(
        self,
        workflow_id: str,
        executor_id: str,
        wake_at_ms: int,
        kind: WaitKind,
        key: str,
        target_workflow_id: str,
    ) -> ParkOutcome:
        with self.atomic() as tx:
            if kind == WaitKind.MESSAGE:
                there = any(
                    m.workflow_id == workflow_id and m.topic == key and m.consumed_at_ms is None
                    for m in self._messages
                )
            else:
                there = (target_workflow_id, key) in self._events
            if there:
                return ParkOutcome.AVAILABLE
            w = tx.workflow(workflow_id)
            if w is None or w.status != WorkflowState.PENDING or w.executor_id != executor_id:
                return ParkOutcome.NOT_OWNER
            tx.put_workflow(
                w,
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                wake_at_ms=wake_at_ms,
                updated_at_ms=self.clock.now_ms(),
            )
            self._waits[workflow_id] = (kind, target_workflow_id, key, wake_at_ms)
            return ParkOutcome.PARKED

    def list_messages(
        self, workflow_id: str, *, include_consumed: bool = False
    ) -> list[MessageRecord]:
        with self._lock:
            return [
                m
                for m in self._messages
                if m.workflow_id == workflow_id and (include_consumed or m.consumed_at_ms is None)
            ]

    def list_events(self, workflow_id: str) -> list[EventRecord]:
        with self._lock:
            return sorted(
                (e for (w, _), e in self._events.items() if w == workflow_id), key=lambda e: e.key
            )
