"""Whether a child process lives, and whether its event loop makes progress: two clocks in
memory the master and the child share.

A heartbeat answered by the event loop cannot tell a busy loop from a dead process: a worker
deserialising a guild of 40,000 members holds its loop for seconds and misses every ping. So a
child keeps two stamps of the system-wide monotonic clock in a shared page:

- ``alive_at``, written by a small daemon thread every ``period``: the process runs. A stopped
  process (SIGSTOP) or an interpreter that never releases the GIL stops writing it.
- ``progress_at``, written by a callback on the event loop every ``period``: the loop turns.

The master reads both at its own pace, without a message, so a busy child costs it nothing: a
stale ``alive_at`` is a hung process, a stale ``progress_at`` alone is a busy loop, until it has
been stale for the supervisor's ``loop_stall_timeout``.
"""

from __future__ import annotations

import asyncio
import ctypes
import threading
import time
from multiprocessing.sharedctypes import RawArray
from typing import Any

ALIVE, PROGRESS = 0, 1


class Liveness:
    """The shared stamps of one child; made by the master, passed to the child at spawn."""

    def __init__(self) -> None:
        # Unlocked: each stamp has one writer, and a double is written whole on every platform
        # this runs on.
        self._stamps: Any = RawArray(ctypes.c_double, 2)
        self.reset()

    def reset(self) -> None:
        """A new process is starting: it counts as alive and turning from now on."""
        now = time.monotonic()
        self._stamps[ALIVE] = now
        self._stamps[PROGRESS] = now

    def silent_for(self, now: float) -> float:
        """Seconds since the process last said it runs."""
        return max(0.0, now - float(self._stamps[ALIVE]))

    def stalled_for(self, now: float) -> float:
        """Seconds since the event loop last turned."""
        return max(0.0, now - float(self._stamps[PROGRESS]))

    def report(self, loop: asyncio.AbstractEventLoop, period: float) -> None:
        """In the child: keep both stamps fresh, every ``period`` seconds, until it exits."""

        def turned() -> None:
            self._stamps[PROGRESS] = time.monotonic()
            loop.call_later(period, turned)

        def runs() -> None:
            while True:
                self._stamps[ALIVE] = time.monotonic()
                time.sleep(period)

        turned()
        threading.Thread(target=runs, name="liveness", daemon=True).start()
