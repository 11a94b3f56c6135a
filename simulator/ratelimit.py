"""REST rate limits as Discord applies them, with the headers a client paces itself by.

A route's bucket is its method and path template; the limit applies per bucket and *major
parameter* (channel, guild, webhook or interaction, with its token), so two channels do not
share a window but report the same ``X-RateLimit-Bucket``. On top sits the global limit of
requests per second per bot, which interaction callbacks are exempt from, as on Discord.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass

from simulator.limits import FixedWindow

MAJOR_PARAMETERS = ("channel_id", "guild_id", "webhook_id", "interaction_id")
GLOBAL_WINDOW = 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    headers: dict[str, str]
    retry_after: float = 0.0
    is_global: bool = False


class RestRateLimiter:
    def __init__(self, route_limit: int, route_window: float, global_limit: int) -> None:
        self.route_limit = route_limit
        self.route_window = route_window
        self._global = FixedWindow(global_limit, GLOBAL_WINDOW)
        self._buckets: dict[tuple[str, str], FixedWindow] = {}
        self._bucket_ids: dict[str, str] = {}

    def check(
        self,
        method: str,
        template: str,
        params: dict[str, str],
        *,
        exempt_from_global: bool = False,
    ) -> Verdict:
        now = time.monotonic()
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
                self.route_limit, self.route_window
            )
        if not exempt_from_global and not self._global.try_acquire(now):
            retry_after = self._global.reset_after(now)
            headers = {
                "X-RateLimit-Global": "true",
                "X-RateLimit-Scope": "global",
                "Retry-After": str(math.ceil(retry_after)),
            }
            return Verdict(False, headers, retry_after, is_global=True)
        allowed = bucket.try_acquire(now)
        reset_after = bucket.reset_after(now)
        headers = {
            "X-RateLimit-Limit": str(bucket.limit),
            "X-RateLimit-Remaining": str(bucket.remaining(now)),
            "X-RateLimit-Reset": f"{time.time() + reset_after:.3f}",
            "X-RateLimit-Reset-After": f"{reset_after:.3f}",
            "X-RateLimit-Bucket": bucket_id,
        }
        if allowed:
            return Verdict(True, headers)
        headers["X-RateLimit-Scope"] = "user"
        headers["Retry-After"] = str(math.ceil(reset_after))
        return Verdict(False, headers, reset_after)
