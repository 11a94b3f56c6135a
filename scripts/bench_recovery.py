"""Recovery benchmark: ``kill -9`` of a worker under a steady stream of ``!ping``, with the
session handed over (its shards RESUME) against forced re-identify (``resume_sessions = false``).

The sharder runs as a user runs it (``python -m sharder start --simulate``, 2 workers of
``--shards-per-worker`` shards, strict simulator with ``--max-concurrency`` and Discord's 5 s
identify window). Pings go to guilds of worker 1 at ``--rate`` per second; one second in,
worker 1 is killed. Printed per mode, medians of ``--runs``: the time from the kill until every
shard of worker 1 is ready again, the pings never answered (lost) and those answered twice
(replayed).

    python scripts/bench_recovery.py [--runs 3] [--rate 25] [--seconds 4]
                                     [--shards-per-worker 4] [--max-concurrency 1]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvloop

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from scripts.bench_routing import launch_master, wait_ready  # noqa: E402
from sharder.control import call  # noqa: E402
from simulator.child import call_control  # noqa: E402

ANSWER_TIMEOUT = 60.0  # re-identifying k shards one bucket at a time takes k windows of 5 s
CONFIG = """
log_level = "WARNING"
[sharding]
shards = {shards}
workers = 2
[supervisor]
heartbeat_interval = 0.5
restart_backoff = 0.2
resume_sessions = {resume}
[simulator]
guilds = {guilds}
max_concurrency = {max_concurrency}
strict = true
rest_route_limit = 1000
"""


@dataclass(frozen=True)
class World:
    shards_per_worker: int
    max_concurrency: int

    @property
    def shards(self) -> int:
        return 2 * self.shards_per_worker

    @property
    def victim_shards(self) -> range:
        """Worker 1's: the second half, as the contiguous assignment gives them."""
        return range(self.shards_per_worker, self.shards)

    def config(self, resume: bool) -> str:
        return CONFIG.format(
            shards=self.shards,
            resume=str(resume).lower(),
            guilds=8 * self.shards,
            max_concurrency=self.max_concurrency,
        )


async def one_run(world: World, resume: bool, rate: float, seconds: float) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(prefix="recovery-", dir="/tmp"))
    (directory / "sharder.toml").write_text(world.config(resume))
    socket = directory / "sharder.sock"
    process = launch_master(directory)
    try:
        status = await wait_ready(socket, time.perf_counter())
        control = status["api_url"].removesuffix("/api/v10") + "/_sim"
        guild_ids = (await call_control(control, "GET", "/world"))["guild_ids"]
        channels = [
            guild | (0x100 + n)  # a guild's channels: its id with 0x100 + n in the low bits
            for guild in guild_ids
            if (guild >> 22) % world.shards in world.victim_shards
            for n in range(3)
        ]
        before = await call_control(control, "GET", "/stats")
        victim = status["workers"][1]["pid"]
        sent: list[int] = []

        async def stream() -> None:
            for n in range(int(rate * seconds)):
                body = {"content": "!ping", "channel_id": channels[n % len(channels)]}
                sent.append((await call_control(control, "POST", "/messages", body))["id"])
                await asyncio.sleep(1 / rate)

        streaming = asyncio.create_task(stream())
        await asyncio.sleep(1.0)
        os.kill(victim, signal.SIGKILL)
        killed_at = time.perf_counter()
        recovered = await back_again(socket, victim)
        recovery = recovered - killed_at
        await streaming
        answers = await answered(control, sent)
        after = await call_control(control, "GET", "/stats")
        return {
            "recovery_s": recovery,
            "lost": sum(1 for message_id in sent if answers[message_id] == 0),
            "duplicates": sum(count - 1 for count in answers.values() if count > 1),
            "sent": len(sent),
            "identifies": after["identifies"] - before["identifies"],
            "resumes": after["resumes"] - before["resumes"],
        }
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(30)


async def back_again(socket: Path, victim: int) -> float:
    """When worker 1, in a new process, has every shard ready again."""
    while True:
        status = (await call(socket, {"command": "status"}))["status"]
        worker = status["workers"][1]
        shards = [s for s in status["shards"] if s["worker"] == 1]
        if worker["pid"] not in (None, victim) and all(s["state"] == "ready" for s in shards):
            return time.perf_counter()
        await asyncio.sleep(0.01)


async def answered(control: str, sent: list[int]) -> Counter[int]:
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        messages = await call_control(control, "GET", "/messages")
        counts: Counter[int] = Counter(
            int(message["message_reference"]["message_id"])
            for message in messages
            if message["message_reference"]
        )
        if all(counts[message_id] for message_id in sent) or time.monotonic() > deadline:
            return Counter({message_id: counts[message_id] for message_id in sent})
        await asyncio.sleep(0.25)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=float, default=25.0, help="pings per second")
    parser.add_argument("--seconds", type=float, default=4.0, help="length of the stream")
    parser.add_argument("--shards-per-worker", type=int, default=4)
    parser.add_argument("--max-concurrency", type=int, default=1)
    args = parser.parse_args()
    world = World(args.shards_per_worker, args.max_concurrency)
    print(
        f"bench_recovery: {os.cpu_count()} cores, medians of {args.runs} runs; "
        f"{world.shards_per_worker} shards per worker, max_concurrency {world.max_concurrency}"
    )
    for label, resume in (("RESUME handoff", True), ("forced re-identify", False)):
        runs = [
            uvloop.run(one_run(world, resume, args.rate, args.seconds)) for _ in range(args.runs)
        ]

        def median(key: str, runs: list[dict[str, Any]] = runs) -> float:
            return float(statistics.median(run[key] for run in runs))

        print(
            f"{label:<20} recovery {median('recovery_s'):5.2f} s  "
            f"lost {median('lost'):.0f} of {median('sent'):.0f}  "
            f"answered twice {median('duplicates'):.0f}  "
            f"identifies {median('identifies'):.0f}  resumes {median('resumes'):.0f}  "
            f"(recovery runs: {', '.join(format(run['recovery_s'], '.2f') for run in runs)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
