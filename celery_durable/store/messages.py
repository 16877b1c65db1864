"""SQL for messages, events and waits (see store/messages_interface.py for the contract
and for why each wake-up decision locks one workflow row first)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select, update

from ..types import StepRecord, WorkflowState
from .base import StoreBase
from .messages_interface import (
    EventRecord,
    MessageRecord,
    ParkOutcome,
    ReceiveOutcome,
    SendOutcome,
    WaitKind,
)
from .tables import events, messages, waits, workflows


class _Refused(Exception):
    """The checkpoint exists (or the workflow stopped): roll the transaction back."""


class MessageQueries(StoreBase):
    def _lock_workflow(self, conn: Connection, workflow_id: str) -> bool:
        """Serialize wake-up decisions on this workflow's row (SQLite: the write lock).

        FOR NO KEY UPDATE, not FOR UPDATE: a checkpoint of another workflow's step, whose
        foreign key takes a key-share lock on its own row, does not wait for it, so two
        workflows sending to each other at once cannot deadlock."""
        stmt = (
            select(workflows.c.workflow_id)
            .where(workflows.c.workflow_id == workflow_id)
            .with_for_update(key_share=True)
        )
        return conn.execute(stmt).first() is not None

    def _checkpoint(self, conn: Connection, checkpoint: StepRecord | None) -> None:
        if checkpoint is not None:
            stmt, params = self._step_insert(self.step_values(checkpoint))
            if conn.execute(stmt, params).first() is None:
                raise _Refused

    def _wake(self, conn: Connection, readers: Any) -> list[str]:
        """Make due the workflows parked for a wait that ``readers`` (a waits condition)
        selects, still parked for it; their waits are removed."""
        parked = select(waits.c.workflow_id, waits.c.wake_at_ms).where(readers)
        woken = []
        for workflow_id, wake_at_ms in conn.execute(parked).all():
            done = conn.execute(
                update(workflows)
                .where(
                    workflows.c.workflow_id == workflow_id,
                    workflows.c.status == WorkflowState.ENQUEUED,
                    workflows.c.executor_id.is_(None),
                    workflows.c.wake_at_ms == wake_at_ms,
                )
                .values(wake_at_ms=None, updated_at_ms=self.clock.now_ms())
            )
            if done.rowcount == 1:
                woken.append(workflow_id)
        conn.execute(delete(waits).where(readers))
        return woken

    def send_message(
        self, message: MessageRecord, checkpoint: StepRecord | None = None
    ) -> tuple[SendOutcome, bool]:
        values = {k: v for k, v in message.__dict__.items() if k != "message_id"}
        insert = (
            self._insert(messages)
            .values(values)
            .on_conflict_do_nothing()
            .returning(messages.c.message_id)
        )

        def run(conn: Connection) -> tuple[SendOutcome, bool]:
            if not self._lock_workflow(conn, message.workflow_id):
                return SendOutcome.NO_WORKFLOW, False
            self._checkpoint(conn, checkpoint)
            if conn.execute(insert).first() is None:
                return SendOutcome.DUPLICATE, False
            readers = (
                (waits.c.workflow_id == message.workflow_id)
                & (waits.c.kind == WaitKind.MESSAGE)
                & (waits.c.key == message.topic)
            )
            return SendOutcome.SENT, bool(self._wake(conn, readers))

        try:
            return self._write("send_message", run)
        except _Refused:
            return SendOutcome.REFUSED, False

    def receive_message(
        self, workflow_id: str, topic: str, checkpoint: StepRecord
    ) -> tuple[ReceiveOutcome, str | None]:
        m = messages.c
        oldest = (
            select(m.message_id, m.message)
            .where(m.workflow_id == workflow_id, m.topic == topic, m.consumed_at_ms.is_(None))
            .order_by(m.message_id)
            .limit(1)
            .with_for_update()
        )

        def run(conn: Connection) -> tuple[ReceiveOutcome, str | None]:
            row = conn.execute(oldest).first()
            if row is None:
                return ReceiveOutcome.EMPTY, None
            message_id, text = row
            self._checkpoint(conn, StepRecord(**{**checkpoint.__dict__, "output": text}))
            conn.execute(
                update(messages)
                .where(m.message_id == message_id)
                .values(consumed_at_ms=self.clock.now_ms(), consumed_by_step=checkpoint.step_id)
            )
            conn.execute(delete(waits).where(waits.c.workflow_id == workflow_id))
            return ReceiveOutcome.RECEIVED, str(text)

        try:
            return self._write("receive_message", run)
        except _Refused:
            return ReceiveOutcome.REFUSED, None

    def set_event(
        self, workflow_id: str, key: str, value: str, checkpoint: StepRecord | None = None
    ) -> tuple[bool, list[str]]:
        now = self.clock.now_ms()
        upsert = (
            self._insert(events)
            .values(workflow_id=workflow_id, key=key, value=value, updated_at_ms=now)
            .on_conflict_do_update(
                index_elements=["workflow_id", "key"], set_={"value": value, "updated_at_ms": now}
            )
        )
        readers = (
            (waits.c.target_workflow_id == workflow_id)
            & (waits.c.kind == WaitKind.EVENT)
            & (waits.c.key == key)
        )

        def run(conn: Connection) -> tuple[bool, list[str]]:
            if not self._lock_workflow(conn, workflow_id):
                return False, []
            self._checkpoint(conn, checkpoint)
            conn.execute(upsert)
            return True, self._wake(conn, readers)

        try:
            return self._write("set_event", run)
        except _Refused:
            return False, []

    def get_event(self, workflow_id: str, key: str) -> str | None:
        e = events.c
        stmt = select(e.value).where(e.workflow_id == workflow_id, e.key == key)
        return self._read("get_event", lambda c: c.execute(stmt).scalar())

    def park(
        self,
        workflow_id: str,
        executor_id: str,
        wake_at_ms: int,
        kind: WaitKind,
        key: str,
        target_workflow_id: str,
    ) -> ParkOutcome:
        if kind == WaitKind.MESSAGE:
            m = messages.c
            there = select(m.message_id).where(
                m.workflow_id == workflow_id, m.topic == key, m.consumed_at_ms.is_(None)
            )
        else:
            e = events.c
            there = select(e.key).where(e.workflow_id == target_workflow_id, e.key == key)
        give_up = (
            update(workflows)
            .where(
                workflows.c.workflow_id == workflow_id,
                workflows.c.status == WorkflowState.PENDING,
                workflows.c.executor_id == executor_id,
            )
            .values(
                status=WorkflowState.ENQUEUED,
                executor_id=None,
                wake_at_ms=wake_at_ms,
                updated_at_ms=self.clock.now_ms(),
            )
        )
        wait = {
            "workflow_id": workflow_id,
            "kind": kind,
            "target_workflow_id": target_workflow_id,
            "key": key,
            "wake_at_ms": wake_at_ms,
        }
        record_wait = (
            self._insert(waits)
            .values(wait)
            .on_conflict_do_update(index_elements=["workflow_id"], set_=wait)
        )

        def run(conn: Connection) -> ParkOutcome:
            self._lock_workflow(conn, target_workflow_id)  # the row a sender locks
            if conn.execute(there.limit(1)).first() is not None:
                return ParkOutcome.AVAILABLE
            if conn.execute(give_up).rowcount != 1:
                return ParkOutcome.NOT_OWNER
            conn.execute(record_wait)
            return ParkOutcome.PARKED

        return self._write("park", run)

    def list_messages(
        self, workflow_id: str, *, include_consumed: bool = False
    ) -> list[MessageRecord]:
        stmt = select(messages).where(messages.c.workflow_id == workflow_id)
        if not include_consumed:
            stmt = stmt.where(messages.c.consumed_at_ms.is_(None))
        stmt = stmt.order_by(messages.c.message_id)

        def run(conn: Connection) -> list[MessageRecord]:
            return [MessageRecord(**r) for r in conn.execute(stmt).mappings()]

        return self._read("list_messages", run)

    def list_events(self, workflow_id: str) -> list[EventRecord]:
        stmt = select(events).where(events.c.workflow_id == workflow_id).order_by(events.c.key)

        def run(conn: Connection) -> list[EventRecord]:
            return [EventRecord(**r) for r in conn.execute(stmt).mappings()]

        return self._read("list_events", run)
