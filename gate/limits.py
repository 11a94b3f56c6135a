"""The REST gate's rules: Discord's global and per-route limits, held for every worker at once.

No I/O here: the gate process asks ``RestLimits.admit`` before it sends a request upstream and
tells ``settle`` what came back. Admission waits, in order:

1. for the route's bucket (``gate.buckets``): a turn within the route's per-route limit,
   learned from Discord's headers;
2. for a global slot (``gate.global_limit``): at most ``global_limit`` requests in any window
   of one second plus a margin, spaced evenly, workers in turn. Interaction callbacks are
   exempt, as on Discord.

A 429 pauses what it names for everyone: the bucket (``user``), every major of the route
(``shared``), or everything (``global``); the request is then retried. Invalid requests are
counted over Discord's ten-minute ban window (``gate.invalid_requests``), which slows the gate
down and then stops it before a ban. A request that cannot be admitted before its deadline is
refused with the reason (``GateRefusal``). What happened per route is counted for the report
(``gate.route_stats``).

This module only puts those parts in order; each changes for its own reasons in its own module.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from gate.buckets import Bucket, Buckets, header_number
from gate.global_limit import GLOBAL_MARGIN, GlobalLimit
from gate.invalid_requests import InvalidRequests, is_invalid
from gate.route_stats import RouteCounts, RouteStats
from gate.routes import Route, route_of
from gate.waiting import GateRefusal, Waits
from protocol.clock import Clock


@dataclass(slots=True)
class Admission:
    """A request let through: what its answer settles."""

    route: Route
    bucket: Bucket


class RestLimits:
    def __init__(
        self,
        global_limit: int,
        *,
        max_wait: float = 30.0,
        margin: float = GLOBAL_MARGIN,
        invalid_limit: int = 10_000,
        slowdown_at: float = 0.5,
        refuse_at: float = 0.95,
        clock: Clock = time.monotonic,
    ) -> None:
        self._clock = clock
        self.global_limit = global_limit
        self.max_wait = max_wait
        self.window = 1.0 + margin
        self.refused = 0
        waits = Waits(clock, max_wait)
        self._invalid = InvalidRequests(invalid_limit, slowdown_at, refuse_at)
        self._buckets = Buckets(waits)
        self._global = GlobalLimit(global_limit, self.window, self._invalid, waits)
        self._stats = RouteStats()

    @property
    def routes(self) -> dict[str, RouteCounts]:
        """Every route's counts by name, the routes past ``MAX_ROUTES`` as ``OTHER_ROUTES``."""
        return self._stats.by_name

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    async def admit(self, worker: int, method: str, path: str) -> Admission:
        route = route_of(method, path)
        now = self._clock()
        deadline = now + self.max_wait
        try:
            self._invalid.check(now)
            bucket = await self._buckets.take(route, now, deadline)
            try:
                if not route.exempt_from_global:
                    await self._global.take(worker, route, deadline)
            except BaseException:
                self._buckets.give_back(bucket)
                raise
        except GateRefusal:
            self.refused += 1
            raise
        self._stats.admitted(route, self._clock() - now)
        return Admission(route, bucket)

    def settle(
        self,
        admission: Admission,
        status: int,
        headers: Mapping[str, str],
        retry_after: float | None = None,
    ) -> bool:
        """Learn from a response; True if it was a 429 the request should be retried after.

        ``retry_after``: a 429 body's (in milliseconds' precision, where ``Retry-After`` is
        rounded up to whole seconds)."""
        now = self._clock()
        route, bucket = admission.route, admission.bucket
        self._buckets.answered(route, bucket, now, headers)
        if status < 400:
            return False
        scope = headers.get("X-RateLimit-Scope", "")
        if is_invalid(status, scope):
            self._stats.of(route).invalid += 1
            self._invalid.record(now)
        if status != 429:
            return False
        self._stats.of(route).got_429 += 1
        if retry_after is None:
            retry_after = header_number(headers.get("Retry-After")) or 1.0
        if headers.get("X-RateLimit-Global") or scope == "global":
            self._global.pause(now + retry_after)
        elif scope == "shared":
            self._buckets.pause(route, now + retry_after)
        else:
            self._buckets.spend(bucket, now + retry_after)
        return True

    def release(self, admission: Admission) -> None:
        """The request never reached Discord (the connection failed): its bucket turn is back."""
        self._buckets.give_back(admission.bucket)

    def sweep(self, now: float) -> None:
        """Drop idle buckets past their window and ended pauses (``admit`` does it now and then)."""
        self._buckets.sweep(now)

    def invalid_count(self, now: float | None = None) -> int:
        return self._invalid.count(self._clock() if now is None else now)
