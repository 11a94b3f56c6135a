"""The counting windows behind every limit the simulator enforces.

Discord's limits are fixed windows that open with the first request after the last one closed:
``limit`` uses, then nothing until ``reset_at``. The same window serves REST buckets, the REST
global limit, gateway sends per connection, identify buckets and the daily session budget.

Every component that keeps time takes a ``Clock``: production passes nothing and gets
``time.monotonic``; a test passes its virtual-time loop's clock, so the windows reopen when the
test advances the loop instead of when the wall clock has moved. A plain callable, as the
simulator imports nothing of the sharder it stands in front of.
"""

from __future__ import annotations

import time
from collections.abc import Callable

Clock = Callable[[], float]  # seconds, monotonic


class FixedWindow:
    __slots__ = ("_clock", "limit", "reset_at", "used", "window")

    def __init__(self, limit: int, window: float, clock: Clock = time.monotonic) -> None:
        self.limit = limit
        self.window = window
        self._clock = clock
        self.reset_at = 0.0
        self.used = 0

    def try_acquire(self, now: float | None = None) -> bool:
        """Take one use; False (and nothing taken) when the window is spent."""
        now = self._clock() if now is None else now
        if now >= self.reset_at:
            self.reset_at = now + self.window
            self.used = 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def remaining(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        return self.limit if now >= self.reset_at else self.limit - self.used

    def reset_after(self, now: float | None = None) -> float:
        """Seconds until the window reopens (0 when it is already open)."""
        now = self._clock() if now is None else now
        return max(0.0, self.reset_at - now)
