"""Time as celery-durable reads it, from one injectable place.

The runtime and the store take a ``Clock``; every timestamp they write and every wait
they make goes through it. ``celery_durable.testing`` substitutes one whose ``sleep``
moves time forward at once, so a test skips a one-hour retry wait in microseconds.
"""

from __future__ import annotations

import time


class Clock:
    """The system clock: wall time for what is stored, monotonic time for waits."""

    def now_ms(self) -> int:
        """Epoch milliseconds: every stored timestamp."""
        return int(self.time() * 1000)

    def time(self) -> float:
        """Epoch seconds (a recorded wake-up time)."""
        return time.time()

    def monotonic(self) -> float:
        """Seconds for measuring a wait (never goes back)."""
        return time.monotonic()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


SYSTEM_CLOCK = Clock()
