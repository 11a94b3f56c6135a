"""Discord's per-route limits: a bucket per route and major parameter, learned from responses.

A bucket is a route (``gate.routes``) and its major parameter, merged with the routes that
Discord's ``X-RateLimit-Bucket`` says share it. An unknown bucket lets one request through to
learn it; a known one lets ``limit`` through per window, the window's end taken from
``X-RateLimit-Reset-After`` as the response arrived (never earlier than Discord's). A 429 spends
the bucket (``user``) or pauses every major of the route (``shared``).

Apart from the global limit: these are per-route rules, learned from each route's headers, and
change when Discord changes how it buckets routes.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from gate.routes import MAX_ROUTES, Route
from gate.waiting import GateRefusal, Waits

# Buckets and pauses are dropped once idle and past their window (a bucket per interaction
# token would otherwise stay for good), swept this often, or as soon as their number has
# doubled since the last sweep (a burst of interactions).
SWEEP_INTERVAL = 10.0


@dataclass(slots=True)
class Bucket:
    limit: int | None = None  # None until a response says
    remaining: int = 1
    reset_at: float = 0.0  # when the current window ends, by the gate's clock
    in_flight: int = 0
    waiting: int = 0  # admissions waiting for it: it may not be dropped meanwhile
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def idle(self, now: float) -> bool:
        """Nothing in flight or waiting, and its window over: forgetting it loses nothing."""
        return self.in_flight == 0 and self.waiting == 0 and now >= self.reset_at


class Buckets:
    def __init__(self, waits: Waits) -> None:
        self._waits = waits
        self._clock = waits.clock
        self._buckets: dict[tuple[str, str], Bucket] = {}  # (bucket id or route name, major)
        self._bucket_ids: dict[str, str] = {}  # route name -> X-RateLimit-Bucket
        self._paused: dict[str, float] = {}  # bucket id or route name -> until (shared 429s)
        self._swept_at = waits.clock()
        self._swept_size = 0  # buckets left by the last sweep

    def __len__(self) -> int:
        return len(self._buckets)

    async def take(self, route: Route, now: float, deadline: float) -> Bucket:
        """A turn in the route's bucket, taken by ``deadline`` or refused (``GateRefusal``)."""
        if (
            now - self._swept_at >= SWEEP_INTERVAL
            or len(self._buckets) > 2 * self._swept_size + MAX_ROUTES
        ):
            self.sweep(now)
        bucket = self._bucket(route)
        bucket.waiting += 1
        try:
            while True:
                now = self._clock()
                paused = self._paused.get(self._bucket_ids.get(route.name, route.name), 0.0)
                if paused > now:
                    await self._waits.until(paused, deadline, f"{route.name} is paused by a 429")
                    continue
                if bucket.limit is None:
                    if bucket.in_flight == 0:  # one request at a time learns an unknown bucket
                        bucket.in_flight += 1
                        return bucket
                    await self._wait_change(bucket, deadline, route)
                    continue
                if now >= bucket.reset_at:
                    bucket.remaining = bucket.limit
                    bucket.reset_at = math.inf  # until a response tells when this window ends
                if bucket.remaining > 0:
                    bucket.remaining -= 1
                    bucket.in_flight += 1
                    return bucket
                if bucket.reset_at == math.inf:
                    await self._wait_change(bucket, deadline, route)
                else:
                    why = f"{route.name} ({route.major or 'no major'}) is spent until its reset"
                    await self._waits.until(bucket.reset_at, deadline, why)
        finally:
            bucket.waiting -= 1

    def answered(
        self, route: Route, bucket: Bucket, now: float, headers: Mapping[str, str]
    ) -> None:
        """Learn from a response's bucket headers; the request's turn is over."""
        bucket.in_flight -= 1
        bucket_id = headers.get("X-RateLimit-Bucket")
        if bucket_id:
            self._learn_bucket_id(route, bucket_id)
        limit = header_number(headers.get("X-RateLimit-Limit"))
        reset_after = header_number(headers.get("X-RateLimit-Reset-After"))
        remaining = header_number(headers.get("X-RateLimit-Remaining"))
        if limit is not None and reset_after is not None:
            if bucket.limit is None:  # the first answer: what the window holds now
                bucket.remaining = int(remaining) if remaining is not None else 0
            bucket.limit = int(limit)
            ends = now + reset_after
            # The first answer of a window says when it ends; later ones may only push it back.
            bucket.reset_at = ends if bucket.reset_at == math.inf else max(bucket.reset_at, ends)
        bucket.changed.set()

    def spend(self, bucket: Bucket, until: float) -> None:
        """A 429 of the bucket's own (``user``): nothing more goes until ``until``."""
        bucket.remaining = 0
        bucket.reset_at = max(bucket.reset_at, until)

    def pause(self, route: Route, until: float) -> None:
        """A ``shared`` 429: every major of the route (its bucket id) waits until ``until``."""
        key = self._bucket_ids.get(route.name, route.name)
        self._paused[key] = max(self._paused.get(key, 0.0), until)

    def give_back(self, bucket: Bucket) -> None:
        """A turn taken but not used: the request never reached Discord."""
        bucket.in_flight -= 1
        if bucket.limit is not None:
            bucket.remaining += 1
        bucket.changed.set()

    def sweep(self, now: float) -> None:
        """Drop idle buckets past their window and ended pauses (``take`` does it now and then)."""
        self._swept_at = now
        for idle in [key for key, bucket in self._buckets.items() if bucket.idle(now)]:
            del self._buckets[idle]
        for over in [name for name, until in self._paused.items() if until <= now]:
            del self._paused[over]
        self._swept_size = len(self._buckets)

    def _bucket(self, route: Route) -> Bucket:
        key = (self._bucket_ids.get(route.name, route.name), route.major)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket()
        return bucket

    def _learn_bucket_id(self, route: Route, bucket_id: str) -> None:
        if self._bucket_ids.get(route.name) == bucket_id:
            return
        if route.name not in self._bucket_ids and len(self._bucket_ids) >= MAX_ROUTES:
            return  # past the bound: the route keeps a bucket of its own
        self._bucket_ids[route.name] = bucket_id
        # Routes Discord says share a bucket share its state: the first one learned is kept.
        for (name, major), bucket in list(self._buckets.items()):
            if name == route.name:
                self._buckets.setdefault((bucket_id, major), bucket)
                del self._buckets[(name, major)]

    async def _wait_change(self, bucket: Bucket, deadline: float, route: Route) -> None:
        bucket.changed.clear()
        try:
            async with self._waits.timeout_at(deadline):
                await bucket.changed.wait()
        except TimeoutError:
            raise GateRefusal(
                f"{route.name}: no turn within {self._waits.max_wait:.0f} s (its bucket is busy)"
            ) from None


def header_number(text: str | None) -> float | None:
    """A rate-limit header's number; None if absent or not a number."""
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
