"""Discord's global limit, held for every worker at once: slots spaced evenly, workers in turn.

At most ``limit`` requests in any window of one second (plus a margin for the trip to Discord),
spaced evenly, so a fixed window of Discord's never sees more; waiting workers take turns, so one
busy worker does not starve the others. The spacing matters: a burst of a whole second's
requests keeps the API busy, the next second's first request can then be counted late, and the
window it opens catches the following burst (measured: 50 429s in 4,000 messages with bursts,
none spaced). A global 429 pauses every slot; piling invalid requests slow the rate down.

Apart from the buckets: one timeline for the whole bot, which the per-route rules never touch.
"""

from __future__ import annotations

import asyncio
from collections import deque

from gate.invalid_requests import InvalidRequests
from gate.routes import Route
from gate.waiting import GateRefusal, Waits

# The global window's length past one second: requests leave the gate evenly spaced, but reach
# Discord with the jitter of the trip, and a late first request opens Discord's window late.
# Measured on a busy 2-core machine (8 workers flooding a 50/s limit): 0.04 s let 20 of 4,000
# requests through to a 429; 0.08 s none.
GLOBAL_MARGIN = 0.08
SLOWED_RATE = 0.2  # the share of the global limit left once invalid requests pile up
CATCH_UP_SLOTS = 4  # global slots a late gate may send at once to get back on its timeline


class GlobalLimit:
    def __init__(self, limit: int, window: float, invalid: InvalidRequests, waits: Waits) -> None:
        self.limit = limit
        self.window = window
        self._invalid = invalid
        self._waits = waits
        self._clock = waits.clock
        self._paused_until = 0.0  # a global 429's pause
        self._sent: deque[float] = deque()  # global slots taken within the window
        self._next_slot = 0.0  # when the evenly spaced timeline has its next slot
        self._waiting: dict[int, deque[asyncio.Future[None]]] = {}  # worker -> its turn
        self._turns: deque[int] = deque()  # workers waiting for a global slot, in turn
        self._wakeup: asyncio.TimerHandle | None = None
        self._wakeup_at = 0.0  # when it fires, by the gate's clock

    async def take(self, worker: int, route: Route, deadline: float) -> None:
        """A global slot for ``worker`` by ``deadline``, or ``GateRefusal``."""
        if not self._turns and self._slot_free(self._clock()):
            self._take_slot(self._clock())
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(worker, deque()).append(turn)
        if worker not in self._turns:
            self._turns.append(worker)
        self._grant_turns()
        try:
            async with self._waits.timeout_at(deadline):
                await turn
        except TimeoutError:
            raise GateRefusal(
                f"{route.name}: no global slot within {self._waits.max_wait:.0f} s "
                f"({self.limit} requests/s for the whole bot)"
            ) from None
        finally:
            if not turn.done():
                turn.cancel()

    def pause(self, until: float) -> None:
        """A global 429: no slot opens before ``until``."""
        self._paused_until = max(self._paused_until, until)

    def _slot_free(self, now: float) -> bool:
        return now >= self._next_slot_at(now)

    def _next_slot_at(self, now: float) -> float:
        """When the next global slot opens: the window has room, and the spacing has passed."""
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        rate = self._rate(now)
        opens = max(self._paused_until, self._next_slot)
        if len(self._sent) >= rate:
            opens = max(opens, self._sent[len(self._sent) - rate] + self.window)
        return opens

    def _take_slot(self, now: float) -> None:
        self._sent.append(now)
        spacing = self.window / self._rate(now)
        # The timeline goes on from where it should be, not from a slightly late send, so that
        # a busy machine's lateness does not add up (the window still caps the catching up);
        # after a pause it starts again from now.
        on_time = now - self._next_slot < CATCH_UP_SLOTS * spacing
        self._next_slot = (self._next_slot if on_time else now) + spacing

    def _rate(self, now: float) -> int:
        if self._invalid.slowed(now):
            return max(1, int(self.limit * SLOWED_RATE))
        return self.limit

    def _wake_up(self) -> None:
        self._wakeup = None
        self._grant_turns()

    def _grant_turns(self) -> None:
        now = self._clock()
        while self._turns and self._slot_free(now):
            worker = self._turns.popleft()
            queue = self._waiting[worker]
            turn = queue.popleft()
            if queue:
                self._turns.append(worker)  # round robin: the next worker goes next
            if turn.done():  # given up at its deadline
                continue
            self._take_slot(now)
            turn.set_result(None)
        if not self._turns:
            return
        # One wakeup at a time, at the next free slot: a worker arriving while it is set only
        # adds a turn, and a second timer would keep firing alongside it for as long as workers
        # wait (hundreds of calls per request under contention). Moved only if a slot now opens
        # sooner (the rate back up after invalid requests aged out).
        free_at = self._next_slot_at(now)
        if self._wakeup is not None:
            if free_at >= self._wakeup_at:
                return
            self._wakeup.cancel()
        self._wakeup_at = free_at
        loop = asyncio.get_running_loop()
        self._wakeup = loop.call_at(self._waits.loop_time(free_at), self._wake_up)
