"""A change to a running sharder under ``!ping`` traffic, measured: what the benchmarks of
change without downtime (``bench_rolling``, ``bench_reshard``) share.

The sharder runs as a user runs it (``python -m sharder start --simulate``, the reference bot).
Pings go at a steady rate to one channel of every guild in turn, through the simulator's
control API, for ``2 * settle`` seconds, then through the change (asked on the control socket
and followed in the status until it ends), then ``settle`` seconds more. The first ``settle``
seconds are not counted: a large world's sharder answers slowly for a few seconds after it
reports ready (10,000 guilds: replies of up to 5 s), which is not what a change costs.

Afterwards each ping counts as answered once, twice or more, or never, and its reply latency
(reply snowflake minus ping snowflake: both the simulator's clock) says how long it waited.
The figures that matter are over the pings sent while the change ran, against those sent in
the counted seconds before it: the worst wait, and the longest the bot went without answering
anything; and the sessions the change started (IDENTIFYs) or resumed, and the identify rules
it broke, as the simulator counted them.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import shutil
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import uvloop

from scripts.bench_chaos import percentile, snowflake_time
from scripts.bench_routing import launch_master, stop_master, wait_ready
from sharder.control import call
from simulator.child import ControlError, call_control
from simulator.world import CHANNEL_BASE

ANSWER_TIMEOUT = 30.0  # after the last ping, how long the last replies may take
CHANGE_TIMEOUT = 600.0
GATEWAY_COUNTS = ("identifies", "resumes", "identify_violations")


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


@dataclass(frozen=True)
class ChangeRun:
    took: float
    phases: dict[str, list[float]]  # per phase, the time each step (a worker's, or the one) took
    before: ReplyReport
    during: ReplyReport
    gateway: dict[str, int]  # GATEWAY_COUNTS from the change's start to the run's end

    def lines(self, name: str) -> list[str]:
        phases = ", ".join(
            f"{phase} {statistics.median(times):.2f} s (max {max(times):.2f})"
            for phase, times in self.phases.items()
        )
        return [
            f"{name} {self.took:.1f} s; {phases}",
            f"  before: {self.before.line()}",
            f"  during: {self.during.line()}",
            "  sessions: " + ", ".join(f"{count} {key}" for key, count in self.gateway.items()),
        ]


async def follow(socket: Path, field: str) -> tuple[float, dict[str, list[float]]]:
    """Poll the status's ``field`` (``roll``, ``reshard``) until the change ends: how long it
    took and, per phase, the time each of its steps spent in it."""
    spent: defaultdict[tuple[Any, str], float] = defaultdict(float)
    last = time.monotonic()
    deadline = last + CHANGE_TIMEOUT
    while time.monotonic() < deadline:
        change = (await call(socket, {"command": "status"}))["status"][field]
        now = time.monotonic()
        if change["state"] not in ("rolling", "resharding"):
            if change["state"] != "done":
                raise RuntimeError(f"the {field} {change['state']}: {change['reason']}")
            phases: defaultdict[str, list[float]] = defaultdict(list)
            for (_, phase), seconds in sorted(spent.items(), key=lambda item: str(item[0])):
                phases[phase].append(seconds)
            return float(change["took_s"]), dict(phases)
        if change["phase"] is not None:
            spent[change.get("worker"), change["phase"]] += now - last
        last = now
        await asyncio.sleep(0.05)
    raise TimeoutError(f"the {field} did not end within {CHANGE_TIMEOUT:g} s")


async def measure_change(
    config: str, request: dict[str, Any], field: str, rate: float, settle: float
) -> ChangeRun:
    """One run: a sharder with ``config``, pings at ``rate``, the change ``request``."""
    directory = Path(tempfile.mkdtemp(prefix="change-", dir="/tmp"))
    (directory / "sharder.toml").write_text(config)
    socket = directory / "sharder.sock"
    process = launch_master(directory, directory / "sharder.log")
    try:
        status = await wait_ready(socket, time.perf_counter())
        control = status["api_url"].removesuffix("/api/v10") + "/_sim"
        traffic = PingTraffic(control, rate)
        stop = asyncio.Event()
        pinging = asyncio.create_task(traffic.run(stop))
        await asyncio.sleep(settle)
        measured_from = time.time()
        await asyncio.sleep(settle)
        before = await call_control(control, "GET", "/stats")
        started = time.time()  # the simulator's snowflakes are of the wall clock
        answer = await call(socket, request)
        if not answer["ok"]:
            raise RuntimeError(answer["error"])
        took, phases = await follow(socket, field)
        await asyncio.sleep(settle)
        stop.set()
        await pinging
        after = await call_control(control, "GET", "/stats")
        replies = await traffic.replies()
        return ChangeRun(
            took=took,
            phases=phases,
            before=ReplyReport.of(traffic.sent, replies, measured_from, started),
            during=ReplyReport.of(traffic.sent, replies, started, started + took),
            gateway={key: after[key] - before[key] for key in GATEWAY_COUNTS},
        )
    except BaseException:
        sys.stderr.write((directory / "sharder.log").read_text()[-4000:])
        raise
    finally:
        stop_master(process)
        shutil.rmtree(directory, ignore_errors=True)


CONFIG = """
log_level = "WARNING"
[sharding]
shards = {shards}
workers = {workers}
[supervisor]
heartbeat_interval = 0.5
[simulator]
guilds = {guilds}
members_per_guild = {members}
max_concurrency = {max_concurrency}
strict = true
rest_route_limit = 1000
"""


def arguments(description: str, shards: int, workers: int) -> argparse.ArgumentParser:
    """The flags every benchmark of change takes; ``shards`` and ``workers`` their defaults."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--guilds", type=int, default=2000)
    parser.add_argument("--members", type=int, default=25)
    parser.add_argument("--shards", type=int, default=shards)
    parser.add_argument("--workers", type=int, default=workers)
    parser.add_argument("--rate", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    return parser


def config(args: argparse.Namespace, max_concurrency: int) -> str:
    """The sharder's: the world the flags ask for, a strict simulator with Discord's identify
    window and room in its REST buckets (the replies go to a new channel each)."""
    return CONFIG.format(
        shards=args.shards,
        workers=args.workers,
        guilds=args.guilds,
        members=args.members,
        max_concurrency=max_concurrency,
    )


def measure_runs(
    runs: int, config: str, request: dict[str, Any], field: str, rate: float, settle: float
) -> list[ChangeRun]:
    """``runs`` runs of ``measure_change``, each printed as it ends, then their medians."""
    done: list[ChangeRun] = []
    for number in range(1, runs + 1):
        run = uvloop.run(measure_change(config, request, field, rate, settle))
        done.append(run)
        print(f"run {number}: " + "\n".join(run.lines(field)), flush=True)
    print(medians(done, field))
    return done


def lost_and_doubles(runs: list[ChangeRun]) -> tuple[int, int]:
    """Pings never answered, and answers past the first, over all runs."""
    lost = sum(run.during.lost + run.before.lost for run in runs)
    return lost, sum(run.during.doubles + run.before.doubles for run in runs)


def medians(runs: list[ChangeRun], name: str) -> str:
    median = statistics.median
    return (
        f"median of {len(runs)}: {name} {median(run.took for run in runs):.1f} s; during it "
        f"reply p99 {median(run.during.p99 for run in runs) * 1000:.0f} ms (before "
        f"{median(run.before.p99 for run in runs) * 1000:.0f} ms), worst "
        f"{median(run.during.worst for run in runs) * 1000:.0f} ms, longest silence "
        f"{median(run.during.silence for run in runs) * 1000:.0f} ms"
    )
