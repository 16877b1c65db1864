"""What the runtime reports as work moves on; integration turns each into a Celery signal.

The runtime calls these at the moment they describe: ``step_checkpointed`` after the
commit and before anything is published, ``step_retrying`` before the wait, and so on.
Every method does nothing here; a subclass overrides what it needs. A handler's error is
the handler's: the runtime does not catch it.
"""

from __future__ import annotations


class Events:
    """Hooks with keyword arguments only, as the signals that carry them have."""

    def step_checkpointed(self, *, workflow_id: str, step_id: int, name: str) -> None:
        """A step's output was committed (for a chain step: before its next one is sent)."""

    def step_retrying(
        self,
        *,
        workflow_id: str,
        step_id: int,
        name: str,
        attempt: int,
        delay: float,
        exc: BaseException,
    ) -> None:
        """Attempt ``attempt`` (0-based) failed with ``exc``; the next runs after ``delay``."""

    def step_retries_exhausted(
        self, *, workflow_id: str, step_id: int, name: str, attempt: int, exc: BaseException
    ) -> None:
        """The step failed for good on attempt ``attempt``; ``exc`` is what it raises."""

    def workflow_recovered(self, *, workflow_id: str, recovery_attempts: int) -> None:
        """The sweep, a lost pool process or ``resume_workflow`` re-enqueued it."""

    def workflow_dead_lettered(self, *, workflow_id: str, recovery_attempts: int) -> None:
        """It exceeded ``max_recovery_attempts`` and will never run again."""
