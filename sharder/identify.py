"""The identify gate: Discord's IDENTIFY rules, kept for every shard of every worker at once.

A shard belongs to bucket ``shard_id % max_concurrency``; a bucket may IDENTIFY once per
``window``; the whole bot may start ``total`` sessions per budget period. Workers ask before
every IDENTIFY (the first and every re-identify); the gate answers in bucket order, all buckets
in parallel, and holds everyone while the session budget is spent.

The window counts from when the IDENTIFY is sent, not from the grant: a worker whose loop is
busy (loading its other shards' guilds) may send it seconds after the grant arrived, and the
next grant of the bucket, sent to an idle worker, would then reach Discord too soon (measured:
12 of 64 IDENTIFYs inside their bucket's window at 50,000 guilds on 8 workers). So a shard
reports each IDENTIFY it sent, and a grant expires after a window: a shard that has not sent
by then asks again. The bucket's next grant waits for the report, or for the expiry of an
unreported grant, and then for a window.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from protocol.clock import Clock
from sharder.measures import MEASURES

log = logging.getLogger("sharder.identify")

Grant = Callable[[float], None]  # called with the grant's expiry (on the gate's clock)
# Added to the window and the budget period: Discord counts an IDENTIFY when it takes it in,
# after a trip whose length varies. A share of the window, at least the minimum: measured
# against the simulator at 50,000 guilds on 8 busy workers, whose loop is as busy as theirs, 1
# IDENTIFY in 64 came inside its 5 s window with 0.05 s, none with 0.25 s (5%).
WINDOW_MARGIN = 0.05
WINDOW_MARGIN_SHARE = 0.05


ShardKey = tuple[int, int]  # (generation, shard id)


@dataclass(frozen=True, slots=True)
class SessionBudget:
    total: int
    remaining: int
    reset_after: float  # seconds from now until ``remaining`` is ``total`` again (0: unused)
    period: float  # length of a budget period: a day on Discord


class IdentifyGate:
    def __init__(
        self,
        max_concurrency: int,
        window: float,
        budget: SessionBudget,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self.max_concurrency = max_concurrency
        self.window = window
        self.margin = max(WINDOW_MARGIN, WINDOW_MARGIN_SHARE * window)
        self.total = budget.total
        self.remaining = budget.remaining
        self.period = budget.period
        # An unused budget's period starts with its first use, as Discord's does.
        self.budget_resets_at = clock() + budget.reset_after if budget.reset_after else 0.0
        self.granted = 0
        # A shard waits as (generation, shard id): during a live reshard two generations of
        # shards, each numbered from 0, share the buckets.
        self._waiting: list[deque[tuple[ShardKey, Grant]]] = [
            deque() for _ in range(max_concurrency)
        ]
        self._next_at = [0.0] * max_concurrency
        # Per bucket, the grant whose IDENTIFY has not been reported sent: (shard, expiry).
        self._in_flight: list[tuple[ShardKey, float] | None] = [None] * max_concurrency
        self._timers: list[asyncio.TimerHandle | None] = [None] * max_concurrency
        self._asked_at: dict[ShardKey, float] = {}  # of the waiting: for the waits measured

    def request(self, shard_id: int, grant: Grant, generation: int = 0) -> None:
        """Call ``grant()`` once ``shard_id`` may IDENTIFY (at once if it may now)."""
        bucket = shard_id % self.max_concurrency
        # A shard asks again after its worker restarted: one place only.
        self.forget(shard_id, generation)
        self._waiting[bucket].append(((generation, shard_id), grant))
        self._asked_at[generation, shard_id] = self._clock()
        self._serve(bucket)

    def forget(self, shard_id: int, generation: int = 0) -> None:
        """Drop a waiting shard (its worker died)."""
        waiting = self._waiting[shard_id % self.max_concurrency]
        self._asked_at.pop((generation, shard_id), None)
        for entry in [entry for entry in waiting if entry[0] == (generation, shard_id)]:
            waiting.remove(entry)

    def sent(self, shard_id: int, sent_at: float, generation: int = 0) -> None:
        """A shard sent its IDENTIFY at ``sent_at``: its bucket's window runs from then."""
        bucket = shard_id % self.max_concurrency
        self._next_at[bucket] = max(self._next_at[bucket], sent_at + self.window + self.margin)
        flight = self._in_flight[bucket]
        if flight is not None and flight[0] == (generation, shard_id):
            self._in_flight[bucket] = None
        timer = self._timers[bucket]
        if timer is not None:
            timer.cancel()
            self._timers[bucket] = None
        self._serve(bucket)

    def position(self, shard_id: int, generation: int = 0) -> int | None:
        """How many IDENTIFYs of its bucket come before this shard's; None if not waiting."""
        for index, (key, _) in enumerate(self._waiting[shard_id % self.max_concurrency]):
            if key == (generation, shard_id):
                return index
        return None

    @property
    def budget_spent(self) -> bool:
        self._refill()
        return self.remaining <= 0

    def _refill(self) -> None:
        now = self._clock()
        if now >= self.budget_resets_at:
            if self.budget_resets_at:  # a period ended: the budget is whole again
                self.remaining = self.total
            self.budget_resets_at = now + self.period + self.margin

    def _serve(self, bucket: int) -> None:
        waiting = self._waiting[bucket]
        if not waiting or self._timers[bucket] is not None:
            return
        now = self._clock()
        flight = self._in_flight[bucket]
        if flight is not None and now >= flight[1]:
            # Never reported: it may have been sent at the last moment of the grant.
            self._in_flight[bucket] = None
            self._next_at[bucket] = max(
                self._next_at[bucket], flight[1] + self.window + self.margin
            )
            flight = None
        if self.budget_spent:
            wait = self.budget_resets_at - now
            log.warning("session start budget spent; the next IDENTIFY waits %.0f s", wait)
        elif flight is not None:
            wait = flight[1] - now  # a report wakes the bucket sooner
        else:
            wait = self._next_at[bucket] - now
        if wait > 0:
            loop = asyncio.get_running_loop()
            self._timers[bucket] = loop.call_later(wait, self._wake, bucket)
            return
        key, grant = waiting.popleft()
        expires = now + self.window + self.margin
        self._next_at[bucket] = expires
        self._in_flight[bucket] = (key, expires)
        self.remaining -= 1
        self.granted += 1
        MEASURES.identify_waits.observe(now - self._asked_at.pop(key, now))
        log.info("shard %d may identify (bucket %d)", key[1], bucket)
        grant(expires)
        self._serve(bucket)

    def _wake(self, bucket: int) -> None:
        self._timers[bucket] = None
        self._serve(bucket)
