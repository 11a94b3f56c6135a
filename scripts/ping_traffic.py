"""``!ping`` traffic through a change to a running sharder, and what became of every ping.

Used by the benchmarks of changes without downtime (``bench_rolling``, and the like): pings go
at a steady rate to one channel of every guild in turn, through the simulator's control API;
afterwards each ping counts as answered once, twice or more, or never, and its reply latency
(reply snowflake minus ping snowflake: both the simulator's clock) says how long it waited.
The figures that matter for a change are over the pings sent while it ran, against the ones
sent before it: the worst wait, and the longest the bot went without answering anything.
"""

from __future__ import annotations

import asyncio
import itertools
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

from scripts.bench_chaos import percentile, snowflake_time
from sharder.control import ControlError
from simulator.child import call_control
from simulator.world import CHANNEL_BASE

ANSWER_TIMEOUT = 30.0  # after the last ping, how long the last replies may take


@dataclass
class PingTraffic:
    control_url: str
    rate: float
    sent: list[tuple[int, float]] = field(default_factory=list)  # ping id, sent at
    failed: int = 0  # pings the simulator did not take (its control API was busy)

    async def run(self, until: asyncio.Event) -> None:
        """Send pings at ``rate`` until ``until`` is set."""
        world = await call_control(self.control_url, "GET", "/world")
        channels = [guild | CHANNEL_BASE for guild in world["guild_ids"]]
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not until.is_set():
            body = {"content": "!ping", "channel_id": channels[len(self.sent) % len(channels)]}
            try:
                injected = await call_control(self.control_url, "POST", "/messages", body)
            except ControlError:
                self.failed += 1
            else:
                ping_id = int(injected["id"])
                self.sent.append((ping_id, snowflake_time(ping_id)))
            next_at += interval
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    async def replies(self) -> dict[int, list[float]]:
        """Each ping's reply times, once every ping has one or ``ANSWER_TIMEOUT`` passed."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while True:
            messages = await call_control(self.control_url, "GET", "/messages")
            replies: defaultdict[int, list[float]] = defaultdict(list)
            for message in messages:
                reference = message["message_reference"]
                if reference and message["content"].startswith("pong"):
                    replies[int(reference["message_id"])].append(snowflake_time(message["id"]))
            if all(replies[ping] for ping, _ in self.sent) or time.monotonic() > deadline:
                return replies
            await asyncio.sleep(0.5)


@dataclass(frozen=True)
class ReplyReport:
    """Pings sent within [start, end) of the simulator's clock, and their replies."""

    sent: int
    lost: int  # never answered
    doubles: int  # answers past the first
    p50: float  # reply latency, seconds
    p99: float
    worst: float
    silence: float  # the longest time without any reply, within the window

    @classmethod
    def of(
        cls,
        sent: list[tuple[int, float]],
        replies: dict[int, list[float]],
        start: float,
        end: float,
    ) -> ReplyReport:
        window = [(ping, at) for ping, at in sent if start <= at < end]
        waits = sorted(min(replies[ping]) - at for ping, at in window if replies.get(ping))
        answered_at = sorted(t for ping, _ in window for t in replies.get(ping, ()))
        edges = [start, *(t for t in answered_at if start <= t < end), end]
        return cls(
            sent=len(window),
            lost=sum(1 for ping, _ in window if not replies.get(ping)),
            doubles=sum(len(replies[ping]) - 1 for ping, _ in window if replies.get(ping)),
            p50=statistics.median(waits) if waits else float("nan"),
            p99=percentile(waits, 0.99) if waits else float("nan"),
            worst=waits[-1] if waits else float("nan"),
            silence=max(b - a for a, b in itertools.pairwise(edges)),
        )

    def line(self) -> str:
        return (
            f"{self.sent} pings, {self.lost} lost, {self.doubles} answered twice; reply "
            f"p50 {self.p50 * 1000:.0f} ms, p99 {self.p99 * 1000:.0f} ms, worst "
            f"{self.worst * 1000:.0f} ms; longest silence {self.silence * 1000:.0f} ms"
        )
