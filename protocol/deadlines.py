"""Request deadlines on one timer: a wheel of time slots.

Every request has a deadline, and a busy link has tens of thousands in flight per second. An
event-loop timer per request costs more than the rest of the request's path (uvloop gives each
its own libuv timer), so deadlines are kept in slots of ``resolution`` seconds behind a single
timer. Most requests are answered within microseconds, so a new deadline first waits in a
nursery (one dict entry, added and removed in O(1)); a tick every ``resolution`` files the
survivors into their slots. A deadline fires at most one ``resolution`` late, never early.
"""

from __future__ import annotations

import asyncio
import heapq
import math
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

from protocol.clock import Clock
from protocol.messages import DEADLINE_MAX

Key = TypeVar("Key", bound=Hashable)

DEFAULT_RESOLUTION = 0.02


class DeadlineWheel(Generic[Key]):
    def __init__(
        self,
        on_expire: Callable[[Key], None],
        resolution: float = DEFAULT_RESOLUTION,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._on_expire = on_expire
        self._resolution = resolution
        self._clock = clock  # read once per slot, never per deadline
        self._nursery: dict[Key, float] = {}  # deadlines added since the last tick
        self._tick: asyncio.TimerHandle | None = None
        self._slots: dict[int, set[Key]] = {}
        self._slot_of: dict[Key, int] = {}
        self._order: list[int] = []  # slot numbers, a heap; emptied slots are skipped lazily
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot: int | None = None

    def __len__(self) -> int:
        return len(self._nursery) + len(self._slot_of)

    def add(self, key: Key, deadline: float) -> None:
        """Call ``on_expire(key)`` once ``deadline`` (on the wheel's clock) has passed;
        ``ValueError`` for a deadline that is not an instant of that clock (NaN, infinite,
        negative), before anything else is touched: one bad entry must not break the tick."""
        if not 0.0 <= deadline <= DEADLINE_MAX:
            raise ValueError(f"not a deadline: {deadline!r}")
        self._nursery[key] = deadline
        if self._tick is None:
            self._tick = asyncio.get_running_loop().call_later(self._resolution, self._file)

    def discard(self, key: Key) -> None:
        if self._nursery.pop(key, None) is not None:
            return
        slot = self._slot_of.pop(key, None)
        if slot is None:
            return
        members = self._slots[slot]
        members.discard(key)
        if not members:
            del self._slots[slot]

    def clear(self) -> None:
        for timer in (self._tick, self._timer):
            if timer is not None:
                timer.cancel()
        self._tick = self._timer = self._timer_slot = None
        self._nursery.clear()
        self._slots.clear()
        self._slot_of.clear()
        self._order.clear()

    def _file(self) -> None:
        """The tick: deadlines that outlived a ``resolution`` go to their slots."""
        self._tick = None
        nursery, self._nursery = self._nursery, {}
        earliest = self._timer_slot
        for key, deadline in nursery.items():
            slot = math.ceil(deadline / self._resolution)
            members = self._slots.get(slot)
            if members is None:
                members = self._slots[slot] = set()
                heapq.heappush(self._order, slot)
            members.add(key)
            self._slot_of[key] = slot
            if earliest is None or slot < earliest:
                earliest = slot
        if earliest is not None and earliest != self._timer_slot:
            self._arm(earliest)

    def _arm(self, slot: int) -> None:
        if self._timer is not None:
            self._timer.cancel()
        delay = max(0.0, slot * self._resolution - self._clock())
        self._timer = asyncio.get_running_loop().call_later(delay, self._fire)
        self._timer_slot = slot

    def _fire(self) -> None:
        self._timer = self._timer_slot = None
        now = self._clock()
        order = self._order
        while order and order[0] * self._resolution <= now:
            members = self._slots.pop(heapq.heappop(order), None)
            for key in members or ():
                del self._slot_of[key]
                self._on_expire(key)
        while order and order[0] not in self._slots:
            heapq.heappop(order)  # emptied by discard
        if order:
            self._arm(order[0])
