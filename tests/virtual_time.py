"""Virtual time for unit tests of timers: an event loop whose clock jumps instead of waiting.

A test marked ``virtual_time`` (conftest) runs on ``VirtualTimeLoop`` and gives the component
under test ``virtual_clock()``, so the component's instants and the loop's timers share one time
line. When every task waits, the loop moves its clock straight to the next timer, so
``await advance(seconds)`` runs every timer due within ``seconds`` in order, each at its own
instant, and returns at once. Time never moves while a callback is ready: a task that never
waits on a timer keeps virtual time still. The approach of the ``looptime`` plugin, in a few
lines on asyncio's own loop.
"""

from __future__ import annotations

import asyncio
import selectors

from protocol.clock import Clock

# As a monotonic clock reads some time after boot: an instant a few seconds back is still valid.
START = 100_000.0


class _JumpingSelector(selectors.DefaultSelector):
    """Polls for I/O without blocking; with none, moves the clock to the next timer instead."""

    def __init__(self) -> None:
        super().__init__()
        self.now = START

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)
        if ready or timeout == 0:
            return ready
        if timeout is None:  # no timer: only real I/O (a thread's call_soon_threadsafe) wakes it
            return super().select(None)
        self.now += timeout
        return []


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    def __init__(self) -> None:
        self._selector_clock = _JumpingSelector()
        super().__init__(self._selector_clock)

    def time(self) -> float:
        return self._selector_clock.now


def virtual_clock() -> Clock:
    """The running loop's clock, for the component under test; fails on a real-time loop."""
    loop = asyncio.get_running_loop()
    assert isinstance(loop, VirtualTimeLoop), "mark the test virtual_time, or it waits for real"
    return loop.time


async def advance(seconds: float) -> None:
    """Let ``seconds`` of virtual time pass, every timer due meanwhile firing at its instant."""
    virtual_clock()
    await asyncio.sleep(seconds)
