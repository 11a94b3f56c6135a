"""How the gate's rules wait for a request's turn: by the gate's clock, never past its deadline.

Shared by the bucket and the global limit, which both wait either until an instant (a window's
reset, a pause's end) or for a change, and refuse the request (``GateRefusal``) when its
deadline would pass first.
"""

from __future__ import annotations

import asyncio

from protocol.clock import Clock


class GateRefusal(Exception):
    """The request cannot be served before its deadline; the message says why."""


class Waits:
    def __init__(self, clock: Clock, max_wait: float) -> None:
        self.clock = clock
        self.max_wait = max_wait  # how long a request may wait in all: its deadline

    async def until(self, instant: float, deadline: float, why: str) -> None:
        """Sleep until ``instant``; refused at once if that is past ``deadline``."""
        if instant > deadline:
            raise GateRefusal(f"{why}: not within {self.max_wait:.0f} s")
        await asyncio.sleep(instant - self.clock())

    def timeout_at(self, deadline: float) -> asyncio.Timeout:
        """A timeout at ``deadline``, for a wait on an event rather than an instant."""
        return asyncio.timeout_at(self.loop_time(deadline))

    def loop_time(self, instant: float) -> float:
        """An instant of the gate's clock on the event loop's clock."""
        loop = asyncio.get_running_loop()
        return loop.time() + (instant - self.clock())
