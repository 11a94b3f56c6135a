"""The counting windows behind every limit the simulator enforces.

Discord's limits are fixed windows that open with the first request after the last one closed:
``limit`` uses, then nothing until ``reset_at``. The same window serves REST buckets, the REST
global limit, gateway sends per connection, identify buckets and the daily session budget.
"""

from __future__ import annotations

import time


class FixedWindow:
    __slots__ = ("limit", "reset_at", "used", "window")

    def __init__(self, limit: int, window: float) -> None:
        self.limit = limit
        self.window = window
        self.reset_at = 0.0
        self.used = 0

    def try_acquire(self, now: float | None = None) -> bool:
        """Take one use; False (and nothing taken) when the window is spent."""
        now = time.monotonic() if now is None else now
        if now >= self.reset_at:
            self.reset_at = now + self.window
            self.used = 0
        if self.used >= self.limit:
            return False
        self.used += 1
        return True

    def remaining(self, now: float | None = None) -> int:
        now = time.monotonic() if now is None else now
        return self.limit if now >= self.reset_at else self.limit - self.used

    def reset_after(self, now: float | None = None) -> float:
        """Seconds until the window reopens (0 when it is already open)."""
        now = time.monotonic() if now is None else now
        return max(0.0, self.reset_at - now)
