"""The REST gate's rules: Discord's global and per-route limits, held for every worker at once.

No I/O here: the gate process asks ``RestLimits.admit`` before it sends a request upstream and
tells ``settle`` what came back. Admission waits, in order:

1. for the route's bucket: a bucket is a route (method and path with ids as placeholders) and
   its *major parameter* (channel, guild, webhook or interaction), merged with the routes that
   Discord's ``X-RateLimit-Bucket`` says share it. An unknown bucket lets one request through
   to learn it; a known one lets ``limit`` through per window, the window's end taken from
   ``X-RateLimit-Reset-After`` as the response arrived (never earlier than Discord's);
2. for a global slot: at most ``global_limit`` requests in any window of one second (plus a
   margin for the trip to Discord), spaced evenly, so a fixed window of Discord's never sees
   more; waiting workers take turns, so one busy worker does not starve the others.
   Interaction callbacks are exempt, as on Discord. The spacing matters: a burst of a whole
   second's requests keeps the API busy, the next second's first request can then be counted
   late, and the window it opens catches the following burst (measured: 50 429s in 4,000
   messages with bursts, none spaced).

A 429 pauses what it names for everyone: the bucket (``user``), every major of the route
(``shared``), or everything (``global``); the request is then retried. Invalid requests (401,
403, and 429s that are not ``shared``) are counted over Discord's ten-minute ban window; past
``slowdown_at`` of the ban threshold the global rate drops to a fifth, past ``refuse_at`` the
gate refuses requests rather than have the bot's IP banned. A request that cannot be admitted
before its deadline is refused with the reason (``GateRefusal``).
"""

from __future__ import annotations

import asyncio
import math
import re
import time
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass, field

from protocol.clock import Clock

MAJOR_RESOURCES = ("channels", "guilds", "webhooks", "interactions")
TOKEN_AFTER = ("webhooks", "interactions")  # their second segment is a token, part of the major
INVALID_STATUSES = frozenset({401, 403, 429})
BAN_WINDOW = 600.0  # Discord counts invalid requests over ten minutes
# Every table is bounded: route templates (ids, tokens and emoji as placeholders) up to this
# many, the rest counted together; buckets and pauses dropped once idle and past their window
# (a bucket per interaction token would otherwise stay for good), swept this often, or as soon
# as their number has doubled since the last sweep (a burst of interactions).
MAX_ROUTES = 200
OTHER_ROUTES = "other routes"
SWEEP_INTERVAL = 10.0
# The global window's length past one second: requests leave the gate evenly spaced, but reach
# Discord with the jitter of the trip, and a late first request opens Discord's window late.
# Measured on a busy 2-core machine (8 workers flooding a 50/s limit): 0.04 s let 20 of 4,000
# requests through to a 429; 0.08 s none.
GLOBAL_MARGIN = 0.08
SLOWED_RATE = 0.2  # the share of the global limit left once invalid requests pile up
CATCH_UP_SLOTS = 4  # global slots a late gate may send at once to get back on its timeline
_ID = re.compile(r"^[0-9]{1,20}$")


class GateRefusal(Exception):
    """The request cannot be served before its deadline; the message says why."""


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    template: str  # "/channels/{channel_id}/messages/{id}"
    major: str  # "channels/123", "" for none

    @property
    def name(self) -> str:
        return f"{self.method} {self.template}"

    @property
    def exempt_from_global(self) -> bool:
        return self.template.startswith("/interactions/")


def redacted(path: str) -> str:
    """``path`` with its webhook or interaction token replaced, as logs may show it."""
    segments = path.split("/")
    for index, segment in enumerate(segments[:-2]):
        if segment in TOKEN_AFTER:
            segments[index + 2] = "{token}"
    return "/".join(segments)


def route_of(method: str, path: str) -> Route:
    """The route of a request path below the API base (``/channels/123/messages``)."""
    segments = [segment for segment in path.split("?", 1)[0].split("/") if segment]
    template: list[str] = []
    major = ""
    for index, segment in enumerate(segments):
        previous = segments[index - 1] if index else ""
        if index == 1 and previous in MAJOR_RESOURCES and _ID.match(segment):
            major = f"{previous}/{segment}"
            template.append("{" + previous.removesuffix("s") + "_id}")
        elif index == 2 and segments[0] in TOKEN_AFTER:
            major = f"{major}/{segment}"  # webhook and interaction tokens are majors too
            template.append("{token}")
        elif previous == "reactions":
            template.append("{emoji}")
        elif _ID.match(segment):
            template.append("{id}")
        else:
            template.append(segment)
    return Route(method.upper(), "/" + "/".join(template), major)


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


@dataclass(slots=True)
class RouteCounts:
    requests: int = 0
    queued_s: float = 0.0
    queued_max_s: float = 0.0
    got_429: int = 0
    invalid: int = 0


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
        self.invalid_limit = invalid_limit
        self.slowdown_at = slowdown_at
        self.refuse_at = refuse_at
        self.routes: dict[str, RouteCounts] = {}
        self.refused = 0
        self._buckets: dict[tuple[str, str], Bucket] = {}
        self._bucket_ids: dict[str, str] = {}  # route name -> X-RateLimit-Bucket
        self._paused: dict[str, float] = {}  # bucket id or route name -> until (shared 429s)
        self._global_until = 0.0  # a global 429's pause
        self._sent: deque[float] = deque()  # global slots taken within the window
        self._next_slot = 0.0  # when the evenly spaced timeline has its next slot
        self._invalid: deque[float] = deque()
        self._waiting: dict[int, deque[asyncio.Future[None]]] = {}  # worker -> its turn
        self._turns: deque[int] = deque()  # workers waiting for a global slot, in turn
        self._wakeup: asyncio.TimerHandle | None = None
        self._swept_at = clock()
        self._swept_size = 0  # buckets left by the last sweep

    @property
    def bucket_count(self) -> int:
        return len(self._buckets)

    # -- admission ---------------------------------------------------------------------------

    async def admit(self, worker: int, method: str, path: str) -> Admission:
        route = route_of(method, path)
        now = self._clock()
        deadline = now + self.max_wait
        invalid = self.invalid_count(now)
        if invalid >= self.refuse_at * self.invalid_limit:
            self.refused += 1
            raise GateRefusal(
                f"{invalid} invalid requests (401, 403, 429) in the last 10 minutes; Discord bans "
                f"at {self.invalid_limit}: the gate refuses requests until the count falls"
            )
        if (
            now - self._swept_at >= SWEEP_INTERVAL
            or len(self._buckets) > 2 * self._swept_size + MAX_ROUTES
        ):
            self.sweep(now)
        bucket = self._bucket(route)
        bucket.waiting += 1
        try:
            await self._take_bucket(route, bucket, deadline)
        finally:
            bucket.waiting -= 1
        try:
            if not route.exempt_from_global:
                await self._take_global_slot(worker, route, deadline)
        except BaseException:
            self._give_back(bucket)
            raise
        counts = self._counts(route)
        counts.requests += 1
        queued = self._clock() - now
        counts.queued_s += queued
        counts.queued_max_s = max(counts.queued_max_s, queued)
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
        bucket.in_flight -= 1
        bucket_id = headers.get("X-RateLimit-Bucket")
        if bucket_id:
            self._learn_bucket_id(route, bucket_id)
        limit = _number(headers.get("X-RateLimit-Limit"))
        reset_after = _number(headers.get("X-RateLimit-Reset-After"))
        remaining = _number(headers.get("X-RateLimit-Remaining"))
        if limit is not None and reset_after is not None:
            if bucket.limit is None:  # the first answer: what the window holds now
                bucket.remaining = int(remaining) if remaining is not None else 0
            bucket.limit = int(limit)
            ends = now + reset_after
            # The first answer of a window says when it ends; later ones may only push it back.
            bucket.reset_at = ends if bucket.reset_at == math.inf else max(bucket.reset_at, ends)
        counts = self._counts(route)
        scope = headers.get("X-RateLimit-Scope", "")
        if status in INVALID_STATUSES and not (status == 429 and scope == "shared"):
            counts.invalid += 1
            self._invalid.append(now)
        bucket.changed.set()
        if status != 429:
            return False
        counts.got_429 += 1
        if retry_after is None:
            retry_after = _number(headers.get("Retry-After")) or 1.0
        if headers.get("X-RateLimit-Global") or scope == "global":
            self._global_until = max(self._global_until, now + retry_after)
        elif scope == "shared":
            key = self._bucket_ids.get(route.name, route.name)
            self._paused[key] = max(self._paused.get(key, 0.0), now + retry_after)
        else:
            bucket.remaining = 0
            bucket.reset_at = max(bucket.reset_at, now + retry_after)
        return True

    def release(self, admission: Admission) -> None:
        """The request never reached Discord (the connection failed): its bucket turn is back."""
        self._give_back(admission.bucket)

    # -- buckets -----------------------------------------------------------------------------

    def _bucket(self, route: Route) -> Bucket:
        key = (self._bucket_ids.get(route.name, route.name), route.major)
        bucket = self._buckets.get(key)
        if bucket is None:
            bucket = self._buckets[key] = Bucket()
        return bucket

    def sweep(self, now: float) -> None:
        """Drop idle buckets past their window and ended pauses (``admit`` does it now and then)."""
        self._swept_at = now
        for idle in [key for key, bucket in self._buckets.items() if bucket.idle(now)]:
            del self._buckets[idle]
        for over in [name for name, until in self._paused.items() if until <= now]:
            del self._paused[over]
        self._swept_size = len(self._buckets)

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

    async def _take_bucket(self, route: Route, bucket: Bucket, deadline: float) -> None:
        while True:
            now = self._clock()
            paused = self._paused.get(self._bucket_ids.get(route.name, route.name), 0.0)
            if paused > now:
                await self._sleep_until(paused, deadline, f"{route.name} is paused by a 429")
                continue
            if bucket.limit is None:
                if bucket.in_flight == 0:  # one request at a time learns an unknown bucket
                    bucket.in_flight += 1
                    return
                await self._wait_change(bucket, deadline, route)
                continue
            if now >= bucket.reset_at:
                bucket.remaining = bucket.limit
                bucket.reset_at = math.inf  # until a response tells when this window ends
            if bucket.remaining > 0:
                bucket.remaining -= 1
                bucket.in_flight += 1
                return
            if bucket.reset_at == math.inf:
                await self._wait_change(bucket, deadline, route)
            else:
                why = f"{route.name} ({route.major or 'no major'}) is spent until its reset"
                await self._sleep_until(bucket.reset_at, deadline, why)

    async def _wait_change(self, bucket: Bucket, deadline: float, route: Route) -> None:
        bucket.changed.clear()
        try:
            async with asyncio.timeout_at(self._loop_time(deadline)):
                await bucket.changed.wait()
        except TimeoutError:
            self.refused += 1
            raise GateRefusal(
                f"{route.name}: no turn within {self.max_wait:.0f} s (its bucket is busy)"
            ) from None

    def _give_back(self, bucket: Bucket) -> None:
        bucket.in_flight -= 1
        if bucket.limit is not None:
            bucket.remaining += 1
        bucket.changed.set()

    # -- the global limit --------------------------------------------------------------------

    async def _take_global_slot(self, worker: int, route: Route, deadline: float) -> None:
        if not self._turns and self._slot_free(self._clock()):
            self._take_slot(self._clock())
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(worker, deque()).append(turn)
        if worker not in self._turns:
            self._turns.append(worker)
        self._grant_turns()
        try:
            async with asyncio.timeout_at(self._loop_time(deadline)):
                await turn
        except TimeoutError:
            self.refused += 1
            raise GateRefusal(
                f"{route.name}: no global slot within {self.max_wait:.0f} s "
                f"({self.global_limit} requests/s for the whole bot)"
            ) from None
        finally:
            if not turn.done():
                turn.cancel()

    def _slot_free(self, now: float) -> bool:
        return now >= self._next_slot_at(now)

    def _next_slot_at(self, now: float) -> float:
        """When the next global slot opens: the window has room, and the spacing has passed."""
        while self._sent and now - self._sent[0] >= self.window:
            self._sent.popleft()
        rate = self._rate(now)
        opens = max(self._global_until, self._next_slot)
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
        if self.invalid_count(now) >= self.slowdown_at * self.invalid_limit:
            return max(1, int(self.global_limit * SLOWED_RATE))
        return self.global_limit

    def _grant_turns(self) -> None:
        self._wakeup = None
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
        if self._turns and self._wakeup is None:
            loop = asyncio.get_running_loop()
            free_at = self._next_slot_at(now)
            self._wakeup = loop.call_at(self._loop_time(free_at), self._grant_turns)

    # -- invalid requests --------------------------------------------------------------------

    def invalid_count(self, now: float | None = None) -> int:
        now = self._clock() if now is None else now
        while self._invalid and now - self._invalid[0] > BAN_WINDOW:
            self._invalid.popleft()
        return len(self._invalid)

    # -- helpers -----------------------------------------------------------------------------

    def _counts(self, route: Route) -> RouteCounts:
        counts = self.routes.get(route.name)
        if counts is None:
            name = route.name if len(self.routes) < MAX_ROUTES else OTHER_ROUTES
            counts = self.routes.setdefault(name, RouteCounts())
        return counts

    async def _sleep_until(self, until: float, deadline: float, why: str) -> None:
        if until > deadline:
            self.refused += 1
            raise GateRefusal(f"{why}: not within {self.max_wait:.0f} s")
        await asyncio.sleep(until - self._clock())

    def _loop_time(self, instant: float) -> float:
        """An instant of the gate's clock on the event loop's clock."""
        loop = asyncio.get_running_loop()
        return loop.time() + (instant - self._clock())


def _number(text: str | None) -> float | None:
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return None
