"""REST rate limits as Discord applies them, with the headers a client paces itself by.

A route's bucket is its method and path template; the limit applies per bucket and *major
parameter* (channel, guild, webhook or interaction, with its token), so two channels do not
share a window but report the same ``X-RateLimit-Bucket``. On top sits the global limit of
requests per second per bot, which interaction callbacks are exempt from, as on Discord.

A route can also be forced into a *shared* 429 (``force_shared``), as Discord answers when a
resource many bots use is busy: until it ends, every call to the route, whatever its major
parameter, is refused with ``X-RateLimit-Scope: shared``. It is checked before the global limit,
so a refused call takes no global slot.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Literal

from simulator.limits import Clock, FixedWindow

MAJOR_PARAMETERS = ("channel_id", "guild_id", "webhook_id", "interaction_id")
GLOBAL_WINDOW = 1.0

Scope = Literal["user", "global", "shared"]


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0
    scope: Scope | None = None  # what refused the call; None when it is allowed


class RestRateLimiter:
    def __init__(
        self,
        route_limit: int,
        route_window: float,
        global_limit: int,
        clock: Clock = time.monotonic,
    ) -> None:
        self.route_limit = route_limit
        self.route_window = route_window
        self._clock = clock
        self._global = FixedWindow(global_limit, GLOBAL_WINDOW, clock)
        self._buckets: dict[tuple[str, str], FixedWindow] = {}
        self._bucket_ids: dict[str, str] = {}
        self._shared_until: dict[str, float] = {}  # route -> end of its forced 429, by the clock

    def force_shared(self, method: str, template: str, retry_after: float) -> None:
        """Refuse every call to the route, on any major parameter, for ``retry_after`` seconds."""
        self._shared_until[f"{method} {template}"] = self._clock() + retry_after

    def check(
        self,
        method: str,
        template: str,
        params: dict[str, str],
        *,
        exempt_from_global: bool = False,
    ) -> Verdict:
        now = self._clock()
        route = f"{method} {template}"
        bucket_id = self._bucket_ids.get(route)
        if bucket_id is None:
            bucket_id = hashlib.sha1(route.encode()).hexdigest()[:16]
            self._bucket_ids[route] = bucket_id
        major = next((params[name] for name in MAJOR_PARAMETERS if name in params), "")
        if "token" in params:  # webhooks and interactions: one bucket per token, as on Discord
            major = f"{major}/{params['token']}"
        bucket = self._buckets.get((bucket_id, major))
        if bucket is None:
            bucket = self._buckets[(bucket_id, major)] = FixedWindow(
                self.route_limit, self.route_window, self._clock
            )
        shared_until = self._shared_until.get(route)
        if shared_until is not None:
            if now < shared_until:
                shared_after = shared_until - now
                headers = self._bucket_headers(bucket, bucket_id, now)
                headers["X-RateLimit-Scope"] = "shared"
                headers["Retry-After"] = str(math.ceil(shared_after))
                return Verdict(False, headers, shared_after, "shared")
            del self._shared_until[route]  # over: the route answers from its buckets again
        if not exempt_from_global and not self._global.try_acquire(now):
            retry_after = self._global.reset_after(now)
            headers = {
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
                "Retry-After": str(math.ceil(retry_after)),
            }
            return Verdict(False, headers, retry_after, "global")
        allowed = bucket.try_acquire(now)
        headers = self._bucket_headers(bucket, bucket_id, now)
        if allowed:
            return Verdict(True, headers)
        reset_after = bucket.reset_after(now)
        headers["X-RateLimit-Scope"] = "user"
        headers["Retry-After"] = str(math.ceil(reset_after))
        return Verdict(False, headers, reset_after, "user")

    @staticmethod
    def _bucket_headers(bucket: FixedWindow, bucket_id: str, now: float) -> dict[str, str]:
        reset_after = bucket.reset_after(now)
        # X-RateLimit-Reset is an epoch instant, which no monotonic clock gives: the wall clock
        # now, plus what the limiter's own clock says is left.
        return {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(bucket.remaining(now)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_id,
        }
