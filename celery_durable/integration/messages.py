"""``Durable``'s messages, events and patches (the runtime decides in runtime/messages.py
and runtime/patches.py; this adapts them to the ``Durable`` object)."""

from __future__ import annotations

from typing import Any

from ..runtime import messages, patches
from ..runtime.messages import MessageRecord
from ..runtime.runtime import Runtime


class DurableMessages:
    """Mixed into ``Durable``: workflows that wait on the world, and safe code upgrades."""

    # given by Durable
    @property
    def runtime(self) -> Runtime:
        raise NotImplementedError

    def send(
        self,
        workflow_id: str,
        message: Any,
        topic: str | None = None,
        idempotency_key: str | None = None,
    ) -> None:
        """Send ``message`` to a workflow, from anywhere; ``durable.recv(topic)`` gets it.
        A repeated ``idempotency_key`` is a no-op (the first message wins), also after the
        first was received. An unknown workflow raises ``NonExistentWorkflow``."""
        messages.send(self.runtime, workflow_id, message, topic, idempotency_key)

    def recv(self, topic: str | None = None, timeout_seconds: float = 60.0) -> Any:
        """In a workflow: the next message on ``topic`` in send order, or ``None`` after
        ``timeout_seconds``. A long wait on a worker holds no worker slot."""
        return messages.recv(self.runtime, topic, timeout_seconds)

    def set_event(self, key: str, value: Any) -> None:
        """In a workflow: publish ``value`` under ``key`` (the latest value wins)."""
        messages.set_event(self.runtime, key, value)

    def get_event(self, workflow_id: str, key: str, timeout_seconds: float = 60.0) -> Any:
        """A workflow's event ``key``, waiting up to ``timeout_seconds`` for it to be set
        (``None`` then). From anywhere; inside a workflow, a recorded step."""
        return messages.get_event(self.runtime, workflow_id, key, timeout_seconds)

    def patch(self, name: str) -> bool:
        """In a workflow: True for runs reaching this point under the new code, False for
        runs that passed it before the patch was deployed (see docs/upgrades.md)."""
        return patches.patch(self.runtime, name)

    def deprecate_patch(self, name: str) -> bool:
        """Stands in for ``patch(name)`` once no run recorded before the patch is left:
        always True, and records nothing."""
        return patches.deprecate_patch(self.runtime, name)

    def list_workflow_messages(
        self, workflow_id: str, include_consumed: bool = False
    ) -> list[MessageRecord]:
        """Messages waiting for a workflow (with ``include_consumed``, the received ones
        too), in send order; ``message`` is the stored JSON text."""
        return messages.list_messages(self.runtime, workflow_id, include_consumed)

    def list_workflow_events(self, workflow_id: str) -> dict[str, Any]:
        """A workflow's events: key -> latest value."""
        return messages.list_events(self.runtime, workflow_id)
